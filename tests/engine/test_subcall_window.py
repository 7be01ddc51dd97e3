"""The sub-call window: derived from the sub-model's context size, told to the root, enforced."""

from __future__ import annotations

import pytest

from fastrlm import Limits
from fastrlm._foundation.windows import (
    DEFAULT_WINDOW_TOKENS,
    MIN_SUBCALL_WINDOW_CHARS,
    SAFE_CHARS_PER_TOKEN,
    context_window,
    subcall_window_chars,
)
from fastrlm.events import SubcallStarted
from fastrlm.testing import ScriptedLM, prompt_of

from .helpers import make_rlm, repl


@pytest.mark.parametrize(
    ("model", "tokens"),
    [
        ("openai/gpt-5-mini", 272_000),
        ("gpt-5", 272_000),
        ("fireworks/accounts/fireworks/models/qwen3-coder-480b-a35b-instruct", 262_144),
        ("openrouter/qwen/qwen3-8b", 32_768),
        ("anthropic/claude-sonnet-4-5", 200_000),
        ("made-up/model", None),
    ],
)
def test_the_model_table_knows_real_windows(model: str, tokens: int | None) -> None:
    assert context_window(model) == tokens


def test_the_window_in_chars_comes_from_the_tokens_minus_the_answer_reserve() -> None:
    assert subcall_window_chars("openai/gpt-5-mini", 16_384) == (272_000 - 16_384) * 3
    unknown = subcall_window_chars("x/unknown", 16_384)
    assert unknown == (DEFAULT_WINDOW_TOKENS - 16_384) * SAFE_CHARS_PER_TOKEN
    assert subcall_window_chars("qwen3-8b", 40_000) == MIN_SUBCALL_WINDOW_CHARS
    assert subcall_window_chars("openai/gpt-5-mini", 16_384, override=5_000) == 5_000


def test_limits_refuse_a_tiny_window() -> None:
    with pytest.raises(ValueError, match="subcall_window_chars"):
        Limits(subcall_window_chars=10)


async def test_a_prompt_over_the_window_comes_back_as_an_error_naming_both_sizes() -> None:
    sub = ScriptedLM(lambda m: f"read {len(prompt_of(m))}", model="scripted/sub")
    events: list[object] = []
    code = "print(llm_query('x' * 5001)); print(llm_query('y' * 5000))"
    rlm, root = make_rlm([repl(code), repl("FINAL('done')")], sub=sub, events=events,
                         limits=Limits(subcall_window_chars=5000))
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "done"
    assert len(sub.calls) == 1 and len(prompt_of(sub.calls[0])) == 5000  # the fitting one only
    assert not [e for e in events if isinstance(e, SubcallStarted) and e.prompt_chars > 5000]
    shown = root.calls[1][-1]["content"]  # the REPL output the root saw next
    assert "[error: prompt_too_long: 5,001 characters for sub-model scripted/sub" in shown
    assert "window of 5,000 characters" in shown and "read 5000" in shown


async def test_batched_prompts_over_the_window_fail_alone_and_keep_the_arity() -> None:
    sub = ScriptedLM(lambda m: "ok", model="scripted/sub")
    code = "r = llm_query_batched(['a' * 10, 'b' * 2000, 'c']); print(len(r), r)"
    rlm, root = make_rlm([repl(code), repl("FINAL('done')")], sub=sub,
                         limits=Limits(subcall_window_chars=1000))
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "done"
    shown = root.calls[1][-1]["content"]  # the REPL output the root saw next
    assert "3 ['ok', '[error: prompt_too_long" in shown and "'ok']" in shown
    assert len(sub.calls) == 2


async def test_the_root_is_told_the_window_that_is_enforced() -> None:
    rlm, root = make_rlm([repl("FINAL('x')")], limits=Limits(subcall_window_chars=123_456))
    await rlm.acompletion("q", context="c")
    system = root.calls[0][0]["content"]
    assert "123,456 characters" in system and "61,728 characters" in system  # window and half


async def test_without_an_override_the_window_is_the_sub_models_own() -> None:
    sub = ScriptedLM(["unused"], model="openai/gpt-5-mini")
    rlm, root = make_rlm([repl("FINAL('x')")], sub=sub)
    await rlm.acompletion("q", context="c")
    expected = subcall_window_chars("openai/gpt-5-mini", Limits().sub_max_tokens)
    assert f"{expected:,} characters" in root.calls[0][0]["content"]
