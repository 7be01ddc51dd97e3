"""fastrlm's one HTTP server stack: aiohttp's low-level server, on the caller's event loop or
on a daemon thread with a loop of its own.

:class:`~fastrlm.server.RLMServer` serves on the caller's loop (``server/_http.py`` holds it to
the API's limits and error shapes). The live view (``trace/_live.py``) and the fake model
servers (``testing/``) run beside synchronous code, so they serve from a
:class:`ThreadedHTTPServer`. aiohttp's C parser reads every request and aiohttp turns Nagle off
(``TCP_NODELAY``) on every connection. The MCP server is the one door not on this stack: the MCP
SDK's streamable-HTTP transport is an ASGI app, served by uvicorn.

A handler drops a connection unanswered by raising ``ConnectionError`` (:func:`drop`); aiohttp
would otherwise answer an exception with a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

from aiohttp import web, web_protocol

T = TypeVar("T")

#: A server's handler of one parsed request.
Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class Connection(web_protocol.RequestHandler):
    """aiohttp's connection handler; a ``ConnectionError`` from the handler closes the
    connection without an answer."""

    def handle_error(
        self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, ConnectionError):
            raise exc  # aiohttp closes the connection quietly on a ConnectionError
        return super().handle_error(request, status, exc, message)


class Server(web.Server):
    """aiohttp's low-level server, making :attr:`connection_class` connections."""

    connection_class: type[Connection] = Connection

    def __call__(self) -> Connection:
        return self.connection_class(self, loop=self._loop, **self._kwargs)


def drop(reason: str) -> NoReturn:
    """Close the request's connection without answering it."""
    raise ConnectionResetError(reason)


class _Workers:
    """Daemon threads for blocking work: one more starts whenever all are busy, so work that
    blocks (a scripted handler holding a request) never waits for a free thread, and a thread
    still blocked at exit does not hold the process."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[Callable[[], None]] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads = 0

    def submit(self, fn: Callable[[], None]) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
            else:
                self._threads += 1
                threading.Thread(target=self._work, name=self._name, daemon=True).start()
        self._jobs.put((fn,))

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            job[0]()
            with self._lock:
                self._idle += 1

    def close(self) -> None:
        with self._lock:
            for _ in range(self._threads):
                self._jobs.put(None)
            self._threads = self._idle = 0


class ThreadedHTTPServer:
    """Serve ``handler`` on a daemon thread with its own event loop.

    The socket is bound here (``OSError`` when ``host:port`` is taken; ``port=0`` picks a free
    one, see :attr:`port`); :meth:`start` serves, :meth:`close` stops: it sets :attr:`stopping`,
    gives open handlers ``grace_s`` to end, then drops their connections.
    """

    def __init__(
        self, handler: Handler, host: str = "127.0.0.1", port: int = 0, *, name: str,
        backlog: int = 1024, grace_s: float = 5.0, **settings: Any,
    ) -> None:
        self._handler = handler
        self._name = name
        self._grace_s = grace_s
        self._settings = settings
        self._sock = socket.create_server((host, port), backlog=backlog)
        self.port: int = self._sock.getsockname()[1]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._workers = _Workers(f"{name}-worker")
        self._stopped = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._served: tuple[asyncio.Server, web.Server] | None = None

    @property
    def stopped(self) -> bool:
        """Whether :meth:`close` was called (readable from any thread)."""
        return self._stopped.is_set()

    def start(self) -> None:
        if self._thread is not None:
            return
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), loop).result()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        server = Server(self._handler, access_log=None, **self._settings)
        listener = await asyncio.get_running_loop().create_server(server, sock=self._sock)
        self._served = (listener, server)

    async def wait_stopping(self, seconds: float) -> bool:
        """Wait up to ``seconds`` (on the server's loop), less when :meth:`close` is called;
        whether it was."""
        assert self._stopping is not None
        if self._stopping.is_set() or seconds <= 0:
            return self._stopping.is_set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        return self._stopping.is_set()

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a worker thread, so that blocking work does not hold the loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(result: Any, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        def run() -> None:
            try:
                result, error = fn(*args), None
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(settle, result, error)

        self._workers.submit(run)
        return await future

    def close(self) -> None:
        """Stop serving: handlers see :attr:`stopping`, and get ``grace_s`` to end."""
        self._stopped.set()
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            self._sock.close()
            return
        self._loop = self._thread = None
        with contextlib.suppress(TimeoutError):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(self._grace_s + 5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        if not thread.is_alive():
            loop.close()
        self._workers.close()

    async def _shutdown(self) -> None:
        assert self._stopping is not None and self._served is not None
        self._stopping.set()
        listener, server = self._served
        listener.close()
        await server.shutdown(self._grace_s)
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
