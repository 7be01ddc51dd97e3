"""The ``none`` sandbox: model code runs in a thread of the host process. UNSAFE.

Model code here can read the host's memory and environment (API keys included), open sockets
and run programs. It exists for debugging and for measuring the isolated worker against. The
soft timeout is delivered with ``PyThreadState_SetAsyncExc`` (it interrupts Python loops, not C
calls); a cell that still does not stop is abandoned, and a fresh namespace replaces it.
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import sys
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from .._foundation.errors import ContextError
from . import _hostops, kinds
from ._base import ExecResult, HostBridge, SandboxLimits, cell_result
from ._protocol import text_whole
from ._runtime import CappedWriter, CellTimeout, ReplRuntime, one_line_error


class _ThreadRouter:
    """Stands in for sys.stdout/sys.stderr: writes from a cell's thread go to that cell's
    buffer, everything else to the real stream. Avoids the official RLM's bug where parallel
    runs corrupted each other's stdout."""

    def __init__(self, real: Any, local: threading.local, attr: str) -> None:
        self._real = real
        self._local = local
        self._attr = attr

    def write(self, s: str) -> int:
        target = getattr(self._local, self._attr, None)
        return (target or self._real).write(s)  # type: ignore[no-any-return]

    def flush(self) -> None:
        target = getattr(self._local, self._attr, None)
        (target or self._real).flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


_local = threading.local()
_router_lock = threading.Lock()
_router_users = 0


def _install_router() -> None:
    """Route sys.stdout/stderr through a router, unless one is in place: checked on the streams
    themselves, not by counting users, since the application (``redirect_stdout``, a test
    runner's capture) may have replaced them while another sandbox was open."""
    global _router_users
    with _router_lock:
        for name, attr in (("stdout", "out"), ("stderr", "err")):
            stream = getattr(sys, name)
            if not isinstance(stream, _ThreadRouter):
                setattr(sys, name, _ThreadRouter(stream, _local, attr))
        _router_users += 1


def _remove_router() -> None:
    global _router_users
    with _router_lock:
        _router_users -= 1
        if _router_users == 0:
            for name in ("stdout", "stderr"):
                stream = getattr(sys, name)
                if isinstance(stream, _ThreadRouter):
                    setattr(sys, name, stream._real)


def _raise_in_thread(thread_id: int) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(CellTimeout)
    )


def _interrupted(exc: BaseException, out: CappedWriter, err: CappedWriter) -> dict[str, Any]:
    """The result of a cell whose runtime bookkeeping was interrupted by ``exc``."""
    return {
        "stdout": out.getvalue(),
        "stderr": err.getvalue(),
        "error": f"the cell was interrupted: {one_line_error(exc)}",
        "final": None,
        "answer_content": None,
        "restored": [],
        "timed_out": isinstance(exc, CellTimeout),
        "dropped_bytes": out.dropped + err.dropped,
    }


_T = TypeVar("_T")

class InProcessSandbox:
    """The unsafe in-process sandbox (``sandbox="none"``)."""

    layer = "none"
    unsafe = True

    def __init__(self, limits: SandboxLimits | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self._runtime: ReplRuntime | None = None
        self._context: object = None
        self._bridge: HostBridge | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._host_tasks: set[asyncio.Task[Any]] = set()
        self._host_seconds = 0.0
        self._host_since = 0.0
        self._in_host = 0
        self._closed = False
        self._defined: dict[str, tuple[object, str | None]] = {}

    async def start(self, context: object, bridge: HostBridge) -> None:
        self._loop = asyncio.get_running_loop()
        await text_whole(context)  # a shared file's str: its middle may still be copying
        try:  # a Path becomes what the worker would see: a FileTree, or a table from Parquet
            self._context = kinds.in_process(context)
        except kinds.KindError as exc:
            raise ContextError(str(exc)) from exc
        self._bridge = bridge
        self._runtime = self._new_runtime()
        _install_router()

    def _new_runtime(self) -> ReplRuntime:
        runtime = ReplRuntime(
            self._context,
            self._host_call,
            max_output_bytes=self.limits.max_output_bytes,
            max_answer_chars=self.limits.max_answer_chars,
            tools=self.limits.tools,
        )
        runtime.redirect_streams = False
        for name, (value, alias) in self._defined.items():  # a session's contexts survive
            runtime.define(name, value, alias)
        return runtime

    def _host_call(self, op: str, payload: dict[str, Any]) -> object:
        """The runtime's host call: :func:`._hostops.dispatch` on the host's event loop, this
        (the cell's) thread blocked meanwhile. Raises what ``dispatch`` raises for a request it
        refuses (model code that calls this by hand)."""
        assert self._loop is not None and self._bridge is not None
        if self._closed:  # a thread of model code that outlived its run: nothing more is sent
            raise RuntimeError("the sandbox is closed: its run is over")
        coro = _hostops.dispatch(self._bridge, op, payload)
        self._host_since = time.monotonic()
        self._in_host += 1
        try:
            return asyncio.run_coroutine_threadsafe(self._tracked(coro), self._loop).result()
        finally:
            self._in_host -= 1
            self._host_seconds += time.monotonic() - self._host_since

    async def _tracked(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run a host call as a task :meth:`close` can cancel: no host call of a closed
        sandbox's REPL goes on (or reports anything) after its run has ended."""
        task = asyncio.current_task()
        assert task is not None
        self._host_tasks.add(task)
        try:
            return await coro
        finally:
            self._host_tasks.discard(task)

    def _own_time(self, started: float) -> float:
        """Seconds the cell has run, not counting time blocked on host calls."""
        now = time.monotonic()
        current = now - self._host_since if self._in_host else 0.0
        return now - started - self._host_seconds - current

    async def execute(self, code: str) -> ExecResult:
        if self._runtime is None or self._closed:
            raise RuntimeError("sandbox is not started")
        runtime = self._runtime
        done: Future[dict[str, Any]] = Future()
        ident: list[int] = []
        out = CappedWriter(self.limits.max_output_bytes)
        err = CappedWriter(max(self.limits.max_output_bytes // 4, 1024))

        def run() -> None:
            # The soft timeout lands wherever this thread is, the runtime's own bookkeeping
            # included: whatever it interrupts becomes the cell's error, never the host's.
            try:
                ident.append(threading.get_ident())
                _local.out, _local.err = out, err
                try:
                    result = runtime.execute(code, out, err)
                except BaseException as exc:  # noqa: BLE001 - a CellTimeout landing late, say
                    result = _interrupted(exc, out, err)
                done.set_result(result)
            except BaseException as exc:  # noqa: BLE001 - a second interrupt, in set_result
                if not done.done():
                    done.set_result(_interrupted(exc, out, err))
            finally:
                _local.out = _local.err = None

        started = time.monotonic()
        self._host_seconds = 0.0
        # The cell runs in a copy of the caller's context (as asyncio.to_thread would), so its
        # host calls, and any span or context variable the run set, carry on from the run's.
        thread = threading.Thread(target=contextvars.copy_context().run, args=(run,),
                                  name="fastrlm-cell", daemon=True)
        thread.start()
        waiter = asyncio.wrap_future(done)
        soft = self.limits.exec_timeout_s
        hard = soft + self.limits.hard_grace_s
        interrupted = False
        while True:
            limit = hard if interrupted else soft
            try:
                wait = max(limit - self._own_time(started), 0.01)
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the result of a
                # cell that ends just as the run is cancelled, and the cancellation is lost
                async with asyncio.timeout(wait):
                    raw = await asyncio.shield(waiter)
                break
            except TimeoutError:
                if self._own_time(started) < limit:
                    continue  # time spent waiting on sub-calls does not count
                if not interrupted:
                    interrupted = True
                    _raise_in_thread(ident[0])
                    continue
                # The cell ignores the interrupt (a C call, or it catches BaseException):
                # abandon its thread and start over with a fresh namespace.
                self._runtime = self._new_runtime()
                return ExecResult(
                    stdout=out.getvalue(),
                    stderr=err.getvalue(),
                    error="The cell did not stop after its time limit and was abandoned; "
                    "the REPL was restarted and all variables were lost.",
                    timed_out=True,
                    restarted=True,
                    duration_s=time.monotonic() - started,
                )
            except BaseException:
                if ident:  # the run was cancelled: stop the cell too
                    _raise_in_thread(ident[0])
                raise
        return cell_result(raw, time.monotonic() - started)

    async def define(self, name: str, value: object = None, *, alias: str | None = None) -> None:
        assert self._runtime is not None
        self._runtime.define(name, value, alias)
        self._defined.pop(name, None)
        self._defined[name] = (value, alias)

    async def show_vars(self) -> str:
        return self._runtime.show_vars() if self._runtime else ""

    async def close(self) -> None:
        self.discard()
        pending = [task for task in self._host_tasks if not task.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def discard(self) -> None:
        if not self._closed and self._runtime is not None:
            self._closed = True
            _remove_router()
        self._runtime = None
