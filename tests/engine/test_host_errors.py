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


class _UserLM(ScriptedLM):
    """A user's own LM object (the LM protocol, not a fastrlm provider) whose ``complete``
    raises plain exceptions: it knows nothing of ProviderError."""


def _sub_failing_on(word: str) -> ScriptedLM:
    def answer(messages: list[dict[str, str]]) -> str | BaseException:
        prompt = messages[-1]["content"]
        return ValueError(f"cannot parse {prompt}") if word in prompt else f"ok:{prompt}"

    return _UserLM(answer, model="mine/sub")


@pytest.mark.parametrize("kind", ["none", "process"])
async def test_a_user_lm_raising_a_plain_exception_fails_only_its_own_sub_call(
    kind: str,
) -> None:
    # One ValueError out of a user's LM used to escape the gated call: the whole
    # llm_query_batched (and a plain llm_query, the cell) failed instead of one slot.
    if kind == "process":
        try:
            _layers.plans_for("process")
        except SandboxUnavailableError as exc:
            pytest.skip(str(exc))
    code = ("r = llm_query_batched(['a', 'bad b', 'c']) + [llm_query('bad d'), llm_query('e')]"
            "\nFINAL(repr(r))")
    rlm, _ = make_rlm([repl(code)], sub=_sub_failing_on("bad"), sandbox=kind)
    out = await rlm.acompletion("q", context="c")
    answer = eval(out.answer)  # noqa: S307 - our own repr
    failed = ("[error: subcall_failed: ProviderError: mine/sub: the LM object raised "
              "ValueError: cannot parse bad ")
    assert answer[0] == "ok:a" and answer[2] == "ok:c" and answer[4] == "ok:e"
    assert answer[1].startswith(failed + "b") and answer[3].startswith(failed + "d")
    assert out.subcalls == 5


async def test_a_user_lm_raising_a_plain_exception_at_the_root_is_an_error_stop() -> None:
    from fastrlm import ProviderError

    root = _UserLM([RuntimeError("my client is down")], model="mine/root")
    rlm, _ = make_rlm(root)
    with pytest.raises(ProviderError, match=r"^mine/root: the LM object raised "
                                            r"RuntimeError: my client is down") as info:
        await rlm.acompletion("q", context="c")
    assert isinstance(info.value.__cause__, RuntimeError)  # the original, for debugging
    assert info.value.model == "mine/root" and not info.value.retryable
    assert info.value.result is not None and info.value.result.stop_reason.value == "error"
