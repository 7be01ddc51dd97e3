"""Fan-out width: Limits.max_concurrency when set, else the sub-model provider's default."""

from __future__ import annotations

import pytest

from fastrlm import Limits
from fastrlm.lm import resolve
from fastrlm.lm._base import DEFAULT_CONCURRENCY, LOCAL_CONCURRENCY, default_concurrency
from fastrlm.testing import ScriptedLM

from .helpers import make_rlm, repl


@pytest.mark.parametrize(
    ("spec", "kw", "width"),
    [
        ("openai/gpt-5", {"api_key": "k"}, 64),
        ("groq/llama", {"api_key": "k"}, 16),
        ("openrouter/a/b", {"api_key": "k"}, 32),
        ("vllm/qwen", {}, 256),
        ("ollama/qwen", {}, LOCAL_CONCURRENCY),
        ("openai/served-here", {"base_url": "http://127.0.0.1:8000/v1"}, LOCAL_CONCURRENCY),
        ("openai/served-here", {"base_url": "http://localhost:8000/v1"}, LOCAL_CONCURRENCY),
        ("openai/elsewhere", {"base_url": "https://llm.example.com/v1"}, 64),
    ],
)
def test_each_provider_has_its_default_width(spec: str, kw: dict[str, str], width: int) -> None:
    assert default_concurrency(resolve(spec, **kw)) == width


def test_a_model_that_names_no_width_gets_the_default() -> None:
    assert default_concurrency(ScriptedLM(["x"])) == DEFAULT_CONCURRENCY
    odd = ScriptedLM(["x"])
    odd.default_concurrency = True  # type: ignore[attr-defined]
    assert default_concurrency(odd) == DEFAULT_CONCURRENCY


def _fan_out(width: int | None, limits: Limits) -> int:
    sub = ScriptedLM(lambda m: "ok", model="scripted/sub", latency_s=0.2)
    if width is not None:
        sub.default_concurrency = width  # type: ignore[attr-defined]
    rlm, _ = make_rlm([repl("r = llm_query_batched(['p'] * 12)\nFINAL(str(len(r)))")],
                      sub=sub, limits=limits)
    assert rlm.completion("q", context="c").answer == "12"
    return sub.max_in_flight


def test_the_engine_uses_the_sub_models_width_when_limits_leave_it_unset() -> None:
    assert _fan_out(3, Limits()) == 3


def test_an_explicit_max_concurrency_wins_over_the_providers_default() -> None:
    assert _fan_out(3, Limits(max_concurrency=5)) == 5


def test_max_concurrency_refuses_zero_and_names_what_unset_means() -> None:
    with pytest.raises(ValueError, match="sub-model provider's default"):
        Limits(max_concurrency=0)
