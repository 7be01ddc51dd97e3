"""Hard limits seen from the engine: answers too large for the limit, answers too large for a
trace, poisoned values and late timeouts under ``sandbox="none"``, contexts nested too deeply."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from fastrlm import Budget, ContextError, Limits, RLMError
from fastrlm.context import describe_context
from fastrlm.sandbox import create_sandbox
from fastrlm.trace._writer import ANSWER_INLINE_CHARS

from .helpers import make_rlm, repl


def deep_list(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


def test_an_answer_past_max_answer_chars_is_refused_and_the_run_goes_on() -> None:
    rlm, root = make_rlm(
        [repl("FINAL('x' * 5000)"), repl("FINAL('short')")],
        limits=Limits(max_answer_chars=1000),
    )
    result = rlm.completion("q", context="c")
    assert result.answer == "short"
    told = json.dumps(root.calls[1])
    assert "5,000 characters" in told and "Limits.max_answer_chars" in told


def test_a_long_answer_goes_beside_the_trace_and_the_trace_stays_small(tmp_path: Path) -> None:
    size = 3_000_000
    rlm, _ = make_rlm([repl(f"FINAL('z' * {size})")], trace=tmp_path)
    result = rlm.completion("q", context="c")
    assert len(result.answer) == size
    trace = Path(str(result.trace_path))
    assert trace.stat().st_size < 100_000
    finished = [json.loads(line) for line in trace.read_text().splitlines()][-1]
    assert finished["type"] == "run.finished"
    assert len(finished["answer"]) == ANSWER_INLINE_CHARS
    assert finished["answer_chars"] == size
    sidecar = trace.parent / finished["answer_file"]
    assert sidecar.read_text() == result.answer
    assert finished["answer_sha256"] == hashlib.sha256(result.answer.encode()).hexdigest()

    from fastrlm.trace import read_trace

    assert read_trace(trace).finished is not None
    assert read_trace(trace).finished["answer"] == result.answer  # type: ignore[index]


POISON = (
    "class Slow:\n"
    "    def __bool__(self):\n"
    "        while True:\n"
    "            pass\n"
    "class Ambiguous:\n"
    "    def __bool__(self):\n"
    "        raise ValueError('ambiguous')\n"
)


@pytest.mark.parametrize(
    "cell",
    [
        "answer['content'] = 'x'\nanswer['ready'] = Ambiguous()",
        "answer['content'] = 'x'\nanswer['ready'] = Slow()",  # the soft timeout lands late
        "class S(str):\n    def __str__(self): raise RuntimeError('no')\nFINAL(S('fine'))",
    ],
)
def test_under_sandbox_none_nothing_but_rlm_errors_escape_completion(cell: str) -> None:
    rlm, root = make_rlm(
        [repl(POISON), repl(cell), repl("FINAL('survived')")],
        budget=Budget(exec_timeout_s=0.5),
    )
    try:
        result = rlm.completion("q", context="c")
    except RLMError:
        pytest.fail("an RLMError is allowed to escape, but this run should have survived")
    assert result.answer in ("survived", "fine")


def test_a_100k_deep_context_is_a_context_error_saying_what_is_wrong() -> None:
    deep = deep_list(100_000)
    with pytest.raises(ContextError, match="nested too deeply"):
        describe_context(deep)
    rlm, _ = make_rlm([repl("FINAL('never')")])
    with pytest.raises(ContextError, match="nested too deeply"):
        rlm.completion("q", context=deep)


@pytest.mark.sandbox
async def test_the_worker_refuses_a_deep_context_with_a_context_error() -> None:
    from fastrlm import SandboxUnavailableError

    try:
        sandbox = create_sandbox("auto")
    except SandboxUnavailableError as exc:
        pytest.skip(str(exc))
    try:
        with pytest.raises(ContextError, match="nested too deeply"):
            await sandbox.start({"rows": deep_list(100_000)}, None)  # type: ignore[arg-type]
    finally:
        await sandbox.close()


@pytest.mark.parametrize(
    "bad",
    [
        {"worker_memory_mb": 10},
        {"scratch_mb": 0},
        {"max_answer_chars": 0},
        {"worker_env": {"A=B": "c"}},
        {"worker_env": {"A": 1}},
    ],
)
def test_sandbox_limits_out_of_range_are_refused_with_the_field_named(
    bad: dict[str, object]
) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        Limits(**bad)  # type: ignore[arg-type]


def test_limits_stay_hashable_with_a_worker_environment() -> None:
    assert hash(Limits(worker_env={"A": "1"})) == hash(Limits())
    assert Limits(worker_env={"A": "1"}) != Limits()
