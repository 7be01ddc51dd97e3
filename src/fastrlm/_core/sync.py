"""The one way blocking code runs the async engine: :class:`SyncRunner`, a private event loop in
a daemon thread.

Used by ``RLM.completion()`` (one runner per call), a blocking :class:`~fastrlm.Session` (one for
the session: its REPL worker is bound to the loop that started it) and the DSPy bridge. The
thread is a daemon, so a runner nobody closed never holds up interpreter exit. A coroutine runs
in a copy of the caller's context (an OpenTelemetry span, say, stays the parent).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future, wait
from types import TracebackType
from typing import Any, Self, TypeVar

_T = TypeVar("_T")

#: The longest a blocking call waits without looking for a pending Ctrl-C. The kernel hands a
#: process's SIGINT to any thread that does not block it (another one when the main thread
#: already has a signal pending); Python then only marks it for the main thread, which sees it
#: when it next runs, and a wait on a lock is not woken for it. Waiting in short slices bounds
#: how late such a Ctrl-C is seen; one delivered to the main thread wakes it at once.
_SIGNAL_CHECK_S = 0.25


def refuse_running_loop(what: str, instead: str) -> None:
    """Raise RuntimeError if called from a running event loop (blocking it would stall every
    other task there): ``what`` cannot be used there, ``instead`` can."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(f"{what} was called from a running event loop; use `{instead}` there")


class SyncRunner:
    """Runs coroutines, one :meth:`run` at a time, on an event loop of its own (started on first
    use, in a daemon thread named ``name``). ``what`` / ``instead``: a call from a running event
    loop is refused with that advice (see :func:`refuse_running_loop`); without them it is
    allowed. :meth:`close` (idempotent) ends what is left on the loop and stops it."""

    def __init__(self, name: str, *, what: str | None = None, instead: str = "") -> None:
        self._name = name
        self._what = what
        self._instead = instead
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._loop is not None

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on the loop and return its result (or raise its error). An interrupt of
        the waiting thread (Ctrl-C) cancels it and waits until it has unwound."""
        if self._what is not None:
            try:
                refuse_running_loop(self._what, self._instead)
            except RuntimeError:
                coro.close()
                raise
        loop = self._started()
        task: list[asyncio.Task[Any]] = []  # this run's task, once it has started

        async def tracked() -> _T:
            current = asyncio.current_task()
            assert current is not None
            task.append(current)
            return await coro

        future: Future[_T] | None = None
        try:  # an interrupt may land even before the run is scheduled: it is handled alike
            future = asyncio.run_coroutine_threadsafe(tracked(), loop)
            while not future.done():  # a short wait at a time: see _SIGNAL_CHECK_S
                wait((future,), timeout=_SIGNAL_CHECK_S)
            return future.result()
        except BaseException:
            if future is None or not future.done():
                asyncio.run_coroutine_threadsafe(_unwound(task, coro), loop).result()
            raise

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        try:
            asyncio.run_coroutine_threadsafe(_shutdown(loop), loop).result()
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()

    def abandon(self) -> None:
        """Stop the loop without waiting for anything (a finalizer, interpreter exit): what
        still runs on it is dropped on purpose, unreported. Never blocks."""
        loop, self._loop, self._thread = self._loop, None, None
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(_drop, loop)

    def _started(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=_serve, args=(loop,), name=self._name,
                                      daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """The runner's thread: the loop runs until stopped, then this thread closes it. A task
    that raises ``KeyboardInterrupt`` or ``SystemExit`` (a model object's or a user's callback)
    keeps it as its error, and asyncio also re-raises it out of ``run_forever``: the loop goes
    on, so whoever awaits that task gets the error (a run's waiter too), never waits forever.
    A real Ctrl-C reaches the main thread, not this one."""
    try:
        while True:
            try:
                loop.run_forever()
                return
            except (KeyboardInterrupt, SystemExit):
                continue
    finally:
        loop.close()


def _drop(loop: asyncio.AbstractEventLoop) -> None:
    loop.set_exception_handler(lambda loop, context: None)
    loop.stop()


async def _unwound(task: list[asyncio.Task[Any]], coro: Coroutine[Any, Any, Any]) -> None:
    """Cancel an interrupted run and wait for it to unwind; only that run: the loop's other
    tasks (a session worker's watchdog) live on. Scheduled after the run itself, this finds
    its task started if it was scheduled at all; a run never scheduled is closed instead."""
    if task:
        for started in task:
            started.cancel()
        await asyncio.gather(*task, return_exceptions=True)
    else:
        coro.close()


async def _shutdown(loop: asyncio.AbstractEventLoop) -> None:
    """What ``asyncio.run`` does at its end: cancel what is left, finalise async generators
    (clients tied to the loop close there) and the default executor."""
    others = asyncio.all_tasks() - {asyncio.current_task()}
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
    await loop.shutdown_asyncgens()
    await loop.shutdown_default_executor()
