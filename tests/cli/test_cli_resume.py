"""``fastrlm resume``: a stopped run goes on from its record; recorded turns are not sent again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fastrlm.cli import ExitCode, cli

from .helpers import NEVER_FINAL, ROOT, SIMPLE_FINAL, server


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(cli, args, catch_exceptions=False)


@pytest.fixture
def doc(tmp_path: Path) -> Path:
    path = tmp_path / "doc.txt"
    path.write_text("The festival happens in Lisbon every June. " * 20)
    return path


def test_resume_goes_on_with_a_run_a_limit_stopped_sending_only_the_new_turns(
        doc: Path) -> None:
    with server([NEVER_FINAL, NEVER_FINAL, SIMPLE_FINAL]) as srv:
        base = ["-m", f"openai/{ROOT}", "--base-url", srv.base_url]
        first = invoke(["ask", "Where?", "-c", str(doc), "--max-iterations", "1",
                        "--json", *base])
        assert first.exit_code == ExitCode.LIMIT, first.stderr
        run_id = json.loads(first.stdout)["trace_id"]
        sent = len(srv.completion_requests)
        resumed = invoke(["resume", run_id, "-c", str(doc), "--max-iterations", "5",
                          "--base-url", srv.base_url, "--json"])
        assert resumed.exit_code == ExitCode.OK, resumed.stderr
        assert len(srv.completion_requests) == sent + 1  # turns 1 and 2 came from the record
    payload = json.loads(resumed.stdout)
    assert payload["answer"] == "forty-two" and payload["trace_id"] != run_id


def test_resume_without_the_context_says_how_to_give_it(doc: Path) -> None:
    with server([SIMPLE_FINAL]) as srv:
        first = invoke(["ask", "Where?", "-c", str(doc), "--json", "-m", f"openai/{ROOT}",
                        "--base-url", srv.base_url])
        run_id = json.loads(first.stdout)["trace_id"]
        resumed = invoke(["resume", run_id, "--base-url", srv.base_url])
    assert resumed.exit_code == ExitCode.BAD_INPUT
    assert "fastrlm resume RUN --context PATH" in resumed.stderr


def test_resume_of_an_unknown_run_or_a_reply_without_a_turn_is_bad_input() -> None:
    missing = invoke(["resume", "nosuchrun"])
    assert missing.exit_code == ExitCode.BAD_INPUT and "no run matches" in missing.stderr
    bad = invoke(["resume", "last", "--reply", "x"])
    assert bad.exit_code == ExitCode.BAD_INPUT and "--at-turn" in bad.stderr


def test_resume_at_turn_forks_with_a_given_reply(doc: Path) -> None:
    with server([NEVER_FINAL, SIMPLE_FINAL]) as srv:
        base = ["-m", f"openai/{ROOT}", "--base-url", srv.base_url]
        first = invoke(["ask", "Where?", "-c", str(doc), "--json", *base])
        run_id = json.loads(first.stdout)["trace_id"]
        sent = len(srv.completion_requests)
        forked = invoke(["resume", run_id, "-c", str(doc), "--at-turn", "2", "--reply",
                         '```repl\nFINAL("forked")\n```', "--json", *base])
        assert len(srv.completion_requests) == sent
    assert forked.exit_code == ExitCode.OK, forked.stderr
    assert json.loads(forked.stdout)["answer"] == "forked"


def test_chat_resume_replays_a_session_then_asks_on(doc: Path) -> None:
    import os

    from fastrlm.trace import read_head

    first = '```repl\nx = len(context)\nFINAL(str(x))\n```'
    after = '```repl\nFINAL(str(x + 1))\n```'
    with server([first, after]) as srv:
        base = ["-m", f"openai/{ROOT}", "--base-url", srv.base_url, "-c", str(doc), "--json"]
        asked = CliRunner().invoke(cli, ["chat", *base], input="How long?\n",
                                   catch_exceptions=False)
        assert asked.exit_code == ExitCode.OK, asked.stderr
        traces = Path(os.environ["FASTRLM_HOME"]) / "traces"
        [session] = {h["session"] for p in traces.glob("*.record")
                     if (h := read_head(p)) is not None}
        assert f"fastrlm chat --resume {session}" in asked.stderr
        sent = len(srv.completion_requests)
        resumed = CliRunner().invoke(cli, ["chat", *base, "--resume", session],
                                     input="And plus one?\n", catch_exceptions=False)
        assert len(srv.completion_requests) == sent + 1  # only the new question's turn
    assert resumed.exit_code == ExitCode.OK, resumed.stderr
    assert "replayed 1 question(s)" in resumed.stderr
    assert json.loads(resumed.stdout.splitlines()[-1])["answer"] == str(len(doc.read_text()) + 1)


def test_ask_prompt_rlms_sends_the_official_turn_format(doc: Path) -> None:
    import pytest

    pytest.importorskip("rlm")
    with server([SIMPLE_FINAL]) as srv:
        result = invoke(["ask", "Where?", "-c", str(doc), "--prompt", "rlms",
                         "-m", f"openai/{ROOT}", "--base-url", srv.base_url])
        [request] = srv.completion_requests
    assert result.exit_code == ExitCode.OK, result.stderr
    assert request.messages[1]["content"].startswith("Answer the following: Where?")
    assert request.messages[-1]["content"].endswith("Turn 1/30:")


def test_ask_prompt_refuses_an_unknown_profile_naming_the_known_ones(doc: Path) -> None:
    result = invoke(["ask", "Where?", "-c", str(doc), "--prompt", "nano", "-m", "openai/x",
                     "--base-url", "http://127.0.0.1:9/v1"])
    assert result.exit_code == ExitCode.BAD_INPUT and "known: rlms" in result.stderr
