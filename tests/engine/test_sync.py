"""The one sync-over-async runner: blocking doors (``completion()``, a blocking session, the
DSPy bridge) run the engine on a private loop in a daemon thread."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import signal
import threading
from collections.abc import AsyncGenerator

import pytest

from fastrlm import RLM
from fastrlm._core.sync import SyncRunner
from fastrlm.testing import ScriptedLM, skip_unless_sandbox

from .helpers import repl

_WHO: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


def test_a_blocking_call_from_a_running_loop_is_refused_without_a_stray_coroutine() -> None:
    rlm = RLM(ScriptedLM([repl("FINAL('x')")]), sandbox="none")

    async def inside() -> None:
        rlm.completion("q", "ctx")

    with pytest.raises(RuntimeError, match=r"RLM.completion\(\) was called from a running "
                                           r"event loop; use `await rlm.acompletion"):
        asyncio.run(inside())
    gc.collect()  # an unawaited coroutine would warn here (warnings are errors)


def test_the_coroutine_runs_in_the_callers_context_on_the_runners_thread() -> None:
    seen: list[tuple[str, str]] = []

    async def look() -> None:
        seen.append((_WHO.get(), threading.current_thread().name))

    token = _WHO.set("caller")
    try:
        with SyncRunner("fastrlm-test-runner") as runner:
            runner.run(look())
    finally:
        _WHO.reset(token)
    assert seen == [("caller", "fastrlm-test-runner")]


def test_one_runner_keeps_its_loop_across_calls_and_survives_an_error() -> None:
    async def loop_id() -> int:
        return id(asyncio.get_running_loop())

    async def fail() -> None:
        raise ValueError("boom")

    with SyncRunner("fastrlm-test-runner") as runner:
        first = runner.run(loop_id())
        with pytest.raises(ValueError, match="boom"):
            runner.run(fail())
        assert runner.run(loop_id()) == first


def test_closing_the_runner_finalises_async_generators_and_leftover_tasks() -> None:
    """What ``asyncio.run`` does at its end: loop-bound clients close in their generator's
    finally, and a task left running is cancelled, not abandoned."""
    closed: list[str] = []
    holder: dict[str, object] = {}

    async def guard() -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            closed.append("generator")

    async def lingering() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            closed.append("task")

    async def start() -> None:
        gen = guard()
        holder["gen"] = gen  # a strong reference, as LoopBoundClient keeps
        await gen.__anext__()
        holder["task"] = asyncio.get_running_loop().create_task(lingering())
        await asyncio.sleep(0)  # let the task reach its wait

    runner = SyncRunner("fastrlm-test-runner")
    runner.run(start())
    runner.close()
    runner.close()  # idempotent
    assert sorted(closed) == ["generator", "task"]


def test_the_runner_thread_is_a_daemon_so_an_unclosed_one_never_holds_up_exit() -> None:
    runner = SyncRunner("fastrlm-test-daemon")

    async def name() -> bool:
        return threading.current_thread().daemon

    try:
        assert runner.run(name()) is True
    finally:
        runner.close()


def test_an_abandoned_runner_stops_and_closes_its_loop_without_reporting_dropped_tasks(
        caplog: pytest.LogCaptureFixture) -> None:
    """A finalizer (a session never closed) must not wait: abandon() returns at once, and the
    runner's own thread closes the loop, a task still pending on it dropped silently."""
    runner = SyncRunner("fastrlm-test-abandon")
    held: dict[str, object] = {}

    async def leave_work() -> asyncio.AbstractEventLoop:
        held["task"] = asyncio.get_running_loop().create_task(asyncio.Event().wait())
        await asyncio.sleep(0)
        return asyncio.get_running_loop()

    loop = runner.run(leave_work())
    thread = runner._thread
    assert thread is not None
    runner.abandon()
    thread.join()
    assert loop.is_closed()
    held.clear()
    gc.collect()
    assert "destroyed" not in caplog.text  # "Task was destroyed but it is pending!"
    runner.close()  # nothing left to close


def test_an_interrupt_cancels_the_run_and_waits_for_it_alone() -> None:
    """Ctrl-C while a blocking call waits: the run is cancelled and has unwound when the
    interrupt reaches the caller, while the loop's other tasks (a session worker's watchdog)
    are left running for the next call."""
    runner = SyncRunner("fastrlm-test-interrupt")
    unwound: list[str] = []
    held: dict[str, asyncio.Task[None]] = {}

    async def setup() -> None:
        held["watchdog"] = asyncio.get_running_loop().create_task(asyncio.Event().wait())

    async def interrupted() -> None:
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        try:
            await asyncio.Event().wait()
        finally:
            unwound.append("run")

    async def alive() -> bool:
        return not held["watchdog"].done()

    try:
        runner.run(setup())
        with pytest.raises(KeyboardInterrupt):
            runner.run(interrupted())
        assert unwound == ["run"]
        assert runner.run(alive()) is True
    finally:
        runner.close()



def test_an_interrupt_taken_by_another_thread_still_reaches_the_waiting_caller() -> None:
    """The kernel may hand a process's SIGINT to any thread (it passes the main thread over when
    that already has a signal pending): Python's handler then runs there and only marks the
    signal for the main thread, which a plain wait on the run's future never notices. The wait
    looks for it in short slices, so the Ctrl-C still cancels the run (CI once saw a chat's
    Ctrl-C ignored until its question's 60 s answer)."""
    runner = SyncRunner("fastrlm-test-interrupt-elsewhere")
    unwound: list[str] = []

    async def interrupted_on_the_loops_thread() -> None:
        assert threading.current_thread() is not threading.main_thread()
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)
        try:
            await asyncio.sleep(120)  # a safety net: without the check the caller waits it out
        finally:
            unwound.append("run")

    try:
        with pytest.raises(KeyboardInterrupt):
            runner.run(interrupted_on_the_loops_thread())
        assert unwound == ["run"]
    finally:
        runner.close()


@pytest.mark.parametrize("kind", ["none", "bwrap", "landlock"])
def test_ctrl_c_during_a_session_question_returns_and_the_session_still_closes(
        kind: str) -> None:
    """The session's loop also holds its worker's tasks: an interrupt waits for the question's
    run only, and close() then stops the worker."""
    skip_unless_sandbox(kind)
    asked: list[int] = []

    async def reply(messages: list[dict[str, str]]) -> str:
        asked.append(len(messages))
        if len(asked) == 2:  # the second question: interrupt the caller, then hang
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
            await asyncio.Event().wait()
        return repl("FINAL('first')")

    session = RLM(ScriptedLM(reply), sandbox=kind).session()
    try:
        assert session.ask("q1", context="c").answer == "first"
        with pytest.raises(KeyboardInterrupt):
            session.ask("q2")
    finally:
        session.close()
    assert session.closed and session.state.sandbox is None


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
def test_a_task_raising_keyboard_interrupt_reaches_the_caller_and_the_loop_lives_on(
        error: type[BaseException]) -> None:
    # asyncio re-raises these out of run_forever: the runner's thread died and the waiter
    # waited forever (completion() hung when a model object raised KeyboardInterrupt).
    async def child() -> None:
        raise error("from a task")

    async def run() -> None:
        await asyncio.create_task(child())

    async def ok() -> str:
        return "still running"

    runner = SyncRunner("fastrlm-test")
    try:
        with pytest.raises(error, match="from a task"):
            runner.run(run())
        assert runner.run(ok()) == "still running"
    finally:
        runner.close()


def test_a_model_raising_keyboard_interrupt_ends_completion_instead_of_hanging() -> None:
    def reply(_messages: object) -> str:
        raise KeyboardInterrupt("from the model")

    with pytest.raises(KeyboardInterrupt, match="from the model"):
        RLM(ScriptedLM(reply), sandbox="none").completion("q", "ctx")
