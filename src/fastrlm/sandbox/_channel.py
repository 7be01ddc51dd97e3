"""Host-side frame I/O on the worker's pipes, without threads and without ever blocking.

:class:`Channel` reads worker frames from a non-blocking fd through the event loop and checks
each one (:func:`~._protocol.check_worker_frame`). Whatever arrives (garbage, a header
announcing gigabytes, half a frame then EOF, valid JSON with an unknown op) ends as a
:class:`ProtocolError` or, for a clean EOF between frames, a :class:`WorkerCrashedError`; the
caller decides the worker's fate. The size check happens before the body is read, so an
oversized frame costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import select
from typing import Any

from .._foundation.errors import ProtocolError, SandboxError, WorkerCrashedError
from . import _protocol

_PIPE_BYTES = 1 << 20
_F_SETPIPE_SZ: int = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux only
_READ_MIN = 1 << 16  # small frames: one read often brings several
_READ_MAX = 1 << 20  # never ask os.read for more than a full pipe holds


async def _wait_fd(fd: int, *, writable: bool) -> None:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not future.done():
            future.set_result(None)

    if writable:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await future
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


def readable_within(fd: int, seconds: float | None) -> bool:
    """Whether ``fd`` turns readable within ``seconds`` (None: no limit; 0: now)."""
    return _ready_within(fd, select.POLLIN, seconds)


def writable_within(fd: int, seconds: float | None) -> bool:
    """Whether ``fd`` turns writable within ``seconds`` (as :func:`readable_within`)."""
    return _ready_within(fd, select.POLLOUT, seconds)


def _ready_within(fd: int, event: int, seconds: float | None) -> bool:
    # poll, not select: a busy server's descriptors run past select's 1024
    poller = select.poll()
    poller.register(fd, event)
    return bool(poller.poll(None if seconds is None else max(int(seconds * 1000), 0)))


async def wait_readable(fd: int) -> None:
    """Wait until ``fd`` is readable (a pipe with data or EOF, an exited pidfd)."""
    await _wait_fd(fd, writable=False)


class Channel:
    """Frames in from ``fd_in`` (worker->host), frames out to ``fd_out`` (host->worker). Owns
    both fds (made non-blocking) and closes them in :meth:`close`. ``max_frame`` caps the
    frames accepted."""

    def __init__(
        self, fd_in: int, fd_out: int, *, max_frame: int = _protocol.MAX_FRAME_BYTES
    ) -> None:
        self._in = fd_in
        self._out = fd_out
        self._max = max_frame
        self._buffer = bytearray()
        for fd in (fd_in, fd_out):
            os.set_blocking(fd, False)
            with contextlib.suppress(OSError):  # a bigger pipe only saves wake-ups
                fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_BYTES)

    async def send(self, message: dict[str, Any]) -> None:
        """Write one frame. Raises WorkerCrashedError when the worker's end is closed and
        SandboxError for a message too large to be a frame."""
        try:
            frame = _protocol.encode_frame(message)
        except _protocol.FrameError as exc:
            raise SandboxError(f"cannot send to the worker: {exc}") from None
        await self.send_bytes(frame)

    async def send_bytes(self, data: bytes | memoryview) -> None:
        """Write raw bytes (a frame, or a context stream ahead of the frames). Raises
        WorkerCrashedError when the worker's end is closed."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._out, view) :]
            except BlockingIOError:
                await _wait_fd(self._out, writable=True)
            except OSError as exc:  # EPIPE: the worker closed its end or died
                raise WorkerCrashedError(f"the worker stopped reading: {exc}") from None

    async def _fill(self, n: int) -> None:
        while len(self._buffer) < n:
            try:
                want = min(max(n - len(self._buffer), _READ_MIN), _READ_MAX)
                chunk = os.read(self._in, want)
            except BlockingIOError:
                await wait_readable(self._in)
                continue
            except OSError as exc:
                raise WorkerCrashedError(f"cannot read from the worker: {exc}") from None
            if not chunk:
                if self._buffer:
                    raise ProtocolError(
                        f"truncated frame: the pipe closed after {len(self._buffer)} bytes"
                    )
                raise WorkerCrashedError("the worker closed its pipe")
            self._buffer += chunk

    async def receive(self) -> dict[str, Any]:
        """Read and validate one frame. Raises ProtocolError (malformed, truncated, oversized,
        unknown op, wrong fields) or WorkerCrashedError (the pipe closed between frames)."""
        header = _protocol.HEADER.size
        await self._fill(header)
        (size,) = _protocol.HEADER.unpack_from(self._buffer)
        if size > self._max:
            raise ProtocolError(f"the worker announced a {size:,}-byte frame (limit {self._max:,})")
        await self._fill(header + size)
        body = bytes(self._buffer[header : header + size])
        del self._buffer[: header + size]
        try:
            return _protocol.check_worker_frame(_protocol.decode_body(body))
        except _protocol.FrameError as exc:
            raise ProtocolError(str(exc)) from None

    def pending(self) -> bool:
        """True when bytes from the worker are waiting although nothing was asked: a frame
        written outside any request. Never blocks; EOF counts as nothing pending (the next
        :meth:`receive` reports it)."""
        if self._buffer:
            return True
        try:
            chunk = os.read(self._in, _READ_MIN)
        except (BlockingIOError, OSError):
            return False
        self._buffer += chunk
        return bool(chunk)

    def close(self) -> None:
        """Close both fds; idempotent."""
        for fd in (self._in, self._out):
            if fd >= 0:
                os.close(fd)
        self._in = self._out = -1
