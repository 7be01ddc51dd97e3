"""The error answers the engine gives REPL code, through the one host-call path: the same text
on both sandboxes, in the one ``[error: <kind>: <message>]`` format."""

from __future__ import annotations

import pytest

from fastrlm import Budget, SandboxUnavailableError
from fastrlm.sandbox import _layers
from fastrlm.testing import ScriptedLM

from .helpers import make_rlm, repl

CALLS = (
    "r = [llm_query('x', model='nope'), rlm_query('x', model='nope'), "
    "llm_query_batched(['a', 'b'], model='nope')]\nFINAL(repr(r))"
)


async def _answer(kind: str, **kw: object) -> list[object]:
    rlm, _ = make_rlm([repl(CALLS)], sandbox=kind, **kw)
    out = await rlm.acompletion("q", context="c")
    answer: list[object] = eval(out.answer)  # noqa: S307 - our own repr
    return answer


@pytest.mark.sandbox
async def test_unknown_model_and_disabled_subcalls_read_the_same_on_both_sandboxes() -> None:
    try:
        _layers.plans_for("auto")
    except SandboxUnavailableError as exc:
        pytest.skip(f"no isolated sandbox here: {exc}")
    unknown = ("[error: unknown_model: no model named 'nope'; configured models: "
               "scripted/root, scripted/sub]")
    for kind in ("none", "auto"):
        assert await _answer(kind) == [unknown, unknown, [unknown, unknown]]
    disabled = "[error: subcalls_disabled: sub-calls are disabled in this run]"
    for kind in ("none", "auto"):
        assert await _answer(kind, subcalls=False) == [disabled, disabled, [disabled] * 2]


async def test_a_child_that_stops_without_an_answer_is_a_child_failed_answer() -> None:
    from fastrlm import RateLimitError

    def root_turn(messages: list[dict[str, str]]) -> str | BaseException:
        if "sub question" in messages[1]["content"]:
            return RateLimitError("slow down")  # the child's first turn fails
        if len(messages) == 2:
            return repl("FINAL(rlm_query('sub question', 'ctx'))")
        return "no code"

    root = ScriptedLM(root_turn, model="scripted/root")
    rlm, _ = make_rlm(root, budget=Budget(max_depth=2))
    out = await rlm.acompletion("q", context="c")
    assert out.answer.startswith("[error: child_failed: the child RLM stopped (error) without an "
                                 "answer: RateLimitError: slow down")
