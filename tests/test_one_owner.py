"""Facts with one owner agree wherever they are read: the state directory and which stop
reasons are limits (each had copies that disagreed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastrlm import RLM, ContextError, RLMResult, StopReason
from fastrlm._foundation.pricing import PriceTable
from fastrlm._foundation.stop import is_limit
from fastrlm._foundation.usage import UsageSummary
from fastrlm.cli._exit import ExitCode, exit_code_for
from fastrlm.lm import SubcallCache
from fastrlm.server._http import HTTPError
from fastrlm.server._protocol import finish_reason, parse_chat_request
from fastrlm.testing import ScriptedLM
from fastrlm.trace import TraceWriter, index_path, traces_dir
from fastrlm.trace._html_model import stop_state


def test_every_state_path_expands_a_tilde_in_fastrlm_home(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("FASTRLM_HOME", "~/fh")
    home = tmp_path / "fh"
    assert traces_dir() == home / "traces"
    assert index_path() == home / "index.sqlite"
    assert TraceWriter().home == home
    assert SubcallCache().path == home / "cache.sqlite"
    (home).mkdir()
    (home / "prices.json").write_text('{"models": {"acme/m": {"input": 1, "output": 2}}}')
    assert PriceTable.default().price("acme/m") is not None


@pytest.mark.parametrize("reason", list(StopReason))
def test_the_cli_the_viewer_and_the_server_agree_on_which_stops_are_limits(
        reason: StopReason) -> None:
    limit = reason.is_limit
    assert is_limit(reason.value) is limit
    assert (exit_code_for(reason.value, None) is ExitCode.LIMIT) is limit
    assert (stop_state(reason.value) == "warn") is limit
    assert (finish_reason(_result(reason)) == "length") is limit


def test_invalid_output_is_a_limit_everywhere() -> None:
    assert StopReason.INVALID_OUTPUT.is_limit
    assert stop_state("invalid_output") == "warn"
    assert not is_limit("no-such-reason") and not is_limit(None)


def test_unpriced_lists_each_model_once_and_ignores_none() -> None:
    table = PriceTable({})
    assert table.unpriced(["b/x", None, "a/y", "b/x"]) == ["a/y", "b/x"]


def _result(reason: StopReason) -> RLMResult:
    return RLMResult(answer="", stop_reason=reason, usage=UsageSummary(), cost_usd=0.0,
                     trace_id="r", trace_path=None, iterations=1, subcalls=0, sandbox="none",
                     duration_s=0.0)


@pytest.mark.parametrize("context", [None, "", "  \n\t ", [], {}, ()])
def test_the_engine_and_the_server_refuse_the_same_contexts(context: object) -> None:
    rlm = RLM(ScriptedLM(lambda m: "```repl\nFINAL('x')\n```"), sandbox="none")
    with pytest.raises(ContextError, match="context is"):
        rlm.completion("q", context)
    if isinstance(context, tuple):
        return  # JSON has no tuples
    body = {"model": "rlm", "messages": [{"role": "user", "content": "q"}], "context": context}
    with pytest.raises(HTTPError) as caught:
        parse_chat_request(json.dumps(body).encode(), frozenset({"rlm"}))
    assert caught.value.code == ("invalid_context" if context is None else "empty_context")
