"""A finished run leaves nothing in a reference cycle: its objects, its context among them, are
freed when it returns, by reference counting, not at some later pass of the garbage collector.

Before, every run's graph was one cycle garbage (the run and its bridge, the worker and its
watchdog, the in-process REPL's namespace and its functions). A server with 32 runs in flight
promoted those graphs to the oldest generation, and each full collection (tens of milliseconds)
stalled every request at once; a run over a big context kept it in memory until then. Each case
asks through every host call (sub-calls, a batch, a child run) and checks, with the collector
off, that the context's reference count is back where it was and that a collection finds no
object of fastrlm's.

Not for ``sandbox="none"``: there the REPL's namespace is model code's globals in this process;
a function defined in it holds it in a cycle, and a thread of model code may still use it after
the run (it gets errors, tests/engine/test_after_the_run.py), so it is left to the collector."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from fastrlm import RLM, Budget
from fastrlm.testing import ScriptedLM, skip_unless_sandbox

from .helpers import repl

CODE = (
    "a = llm_query('one')\n"
    "b = llm_query_batched(['x', 'y'])\n"
    "c = rlm_query('child question', 'child context')\n"
    "def joined():\n"
    "    return a + c + str(len(b))\n"
    "FINAL(joined())"
)


def _root(messages: list[dict[str, Any]]) -> str:
    asked = str(messages[-1]["content"])  # a child run's question, or the root's turn
    return repl("FINAL('child')") if "child question" in asked else repl(CODE)


def _rlm(kind: str) -> RLM:
    return RLM(ScriptedLM(_root, model="scripted/root"),
               ScriptedLM(lambda m: "one", model="scripted/sub"),
               sandbox=kind, budget=Budget(max_depth=2), trace=True)


class _Garbage:
    """What a collection finds unreachable while the collector is held off."""

    def __init__(self) -> None:
        self.fastrlm: list[str] = []

    def collect(self) -> None:
        gc.collect()
        self.fastrlm = sorted({
            f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage
            if type(o).__module__.startswith("fastrlm")})


@pytest.fixture
def garbage() -> Iterator[_Garbage]:
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # found unreachable: kept in gc.garbage, to be named
    try:
        yield _Garbage()
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def _context() -> str:
    return "".join(["the context "] * 1000)  # a str of its own: its count is this test's


@pytest.mark.parametrize("warm", [False, True])
@pytest.mark.parametrize("kind", ["bwrap", "landlock"])
async def test_a_finished_run_leaves_nothing_for_the_garbage_collector(
        kind: str, warm: bool, garbage: _Garbage) -> None:
    skip_unless_sandbox(kind)
    rlm = _rlm(kind)
    workers = await rlm.awarm_workers(slots=2) if warm else None
    try:
        await rlm.acompletion("q", context="a first run: what it imports is not its garbage")
        gc.collect()
        context = _context()
        held = sys.getrefcount(context)
        for _ in range(3):
            result = await rlm.acompletion("q", context=context)
            assert result.answer == "onechild2", result.error
        assert sys.getrefcount(context) == held
        garbage.collect()
        assert garbage.fastrlm == []
    finally:
        if workers is not None:
            workers.close()


@pytest.mark.parametrize("kind", ["bwrap", "landlock"])
async def test_a_closed_session_leaves_nothing_for_the_garbage_collector(
        kind: str, garbage: _Garbage) -> None:
    skip_unless_sandbox(kind)
    rlm = _rlm(kind)
    async with rlm.session() as first:  # what a session imports is not its garbage
        await first.aask("q", context="a first session")
    del first
    gc.collect()
    context = _context()
    held = sys.getrefcount(context)
    async with rlm.session() as session:
        for _ in range(2):
            result = await session.aask("q", context=context)
            assert result.answer == "onechild2", result.error
    del session  # a closed session still names its last context; dropped, it lets go
    assert sys.getrefcount(context) == held
    garbage.collect()
    assert garbage.fastrlm == []
