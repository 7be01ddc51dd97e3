"""The live view: one run's page served on 127.0.0.1, following its JSONL trace as it grows.

:class:`LiveView` serves from a daemon thread (aiohttp,
:class:`~fastrlm._foundation.httpd.ThreadedHTTPServer`; reading and rendering the trace run on
its worker threads, so a big page does not hold the event streams). Routes:

- ``GET /``: the page (:func:`~._html.render_html`) of the trace as it is now, told where to
  follow it from (the byte offset it was rendered at).
- ``GET /events``: server-sent events. Each message carries the trace lines appended since the
  previous one, one ``data:`` field per JSONL line, and ``id:`` the byte offset after them, so a
  browser that reconnects (``Last-Event-ID``) or reloads resumes exactly where it was; only
  whole lines are sent (a line being written waits for its newline). ``event: waiting`` says
  the trace does not exist yet; ``event: writer`` with ``data: alive`` or ``data: gone`` says
  whether a process holds the trace's writer lock (:mod:`._lock`), when that changes (a run
  killed before its ``run.finished`` is "gone" without one: the page then says incomplete);
  a ``: keep-alive`` comment goes out when nothing happens.
- ``GET /parts``: the server-rendered summary and detail as JSON ``{"summary", "detail"}``,
  which the page fetches to redraw turns, cells and totals.
- ``GET /call?run=RUN_ID&id=CALL_ID``: one sub-call's ``{"prompt", "reply", "error"}`` as the
  trace holds them, for a call the page did not pack whole (past
  :data:`~._html_data.MAX_PACKED_CHARS`); 404 for a call the trace does not have.

The server never ends on its own: a run that finishes, or that crashes and leaves its trace
without ``run.finished``, is still served (the page says which: running while the writer holds
the trace, incomplete once it is gone). Nothing but loopback is bound,
and a request whose ``Host`` is not ``127.0.0.1:PORT`` or ``localhost:PORT`` is refused (403),
so a web page that reaches the port through DNS rebinding cannot read the trace.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

from ._html import render_html, render_parts
from ._lock import writer_alive
from ._reader import Trace, _with_answer

#: How often an open event stream looks for new lines in the trace.
POLL_S = 0.1
#: Seconds of silence after which an event stream sends a keep-alive comment.
KEEPALIVE_S = 15.0
#: How often an event stream asks whether the trace's writer is still alive (:mod:`._lock`).
WRITER_CHECK_S = 0.5
#: Most trace lines in one server-sent message (a fast run's burst is split).
MAX_LINES_PER_MESSAGE = 5000
#: Bytes read from a trace at a time.
READ_BYTES = 4 << 20


class TraceTail:
    """The events of a trace file read so far, and the byte offset after the last whole line.

    ``locate`` gives the file (``None`` while it does not exist yet, as before a run starts);
    the first path it gives is kept. Thread-safe.
    """

    def __init__(self, locate: Callable[[], Path | None]) -> None:
        self._locate = locate
        self.path: Path | None = None
        self.offset = 0
        self.events: list[dict[str, Any]] = []
        self.unreadable = 0
        self._lock = threading.Lock()

    def find(self) -> Path | None:
        if self.path is None:
            path = self._locate()
            if path is not None and path.is_file():
                self.path = path
        return self.path

    def refresh(self) -> Trace:
        """Read what was appended since the last call; the trace as it is now."""
        with self._lock:
            path = self.find()
            while path is not None:
                chunk, offset = read_lines(path, self.offset)
                if offset == self.offset:
                    break
                self.offset = offset
                for line in chunk:
                    try:
                        data = json.loads(line)
                    except json.JSONDecodeError:
                        self.unreadable += 1
                        continue
                    if isinstance(data, dict) and "type" in data:
                        self.events.append(_with_answer(data, path.parent))
                    else:
                        self.unreadable += 1
            trace = Trace(path or Path("waiting.jsonl"), list(self.events), self.unreadable)
            trace.writing = path is not None and writer_alive(path) is True
            return trace


def read_lines(path: Path, offset: int, limit: int | None = None) -> tuple[list[str], int]:
    """Whole lines of ``path`` from byte ``offset`` (at most ``limit``), and the offset after
    them. A last line without its newline yet is left for the next read. Reads a bounded
    chunk (:data:`READ_BYTES`, more only for a longer line), so a reader far behind a big
    trace costs no more per call than one that kept up."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read(READ_BYTES)
            while b"\n" not in data and len(data) % READ_BYTES == 0 and data:
                more = handle.read(READ_BYTES)  # one line longer than a chunk
                if not more:
                    break
                data += more
    except OSError:
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    raw = data[: end + 1].split(b"\n")[:-1]
    if limit is not None and len(raw) > limit:
        raw = raw[:limit]
    used = sum(len(line) + 1 for line in raw)
    lines = [line.decode("utf-8", "replace").rstrip("\r") for line in raw]
    return [line for line in lines if line.strip()], offset + used


def sse_message(lines: list[str], offset: int) -> bytes:
    """One server-sent event: ``id`` the offset after ``lines``, one ``data`` field each."""
    return (f"id: {offset}\n" + "".join(f"data: {line}\n" for line in lines) + "\n").encode()


class LiveView:
    """Serve the trace that ``locate`` finds on ``http://127.0.0.1:PORT/`` until :meth:`close`.

    ``port=0`` picks a free port (see :attr:`url`). Raises ``OSError`` when the port is taken.
    """

    def __init__(self, locate: Callable[[], Path | None], *, port: int = 0) -> None:
        from .._foundation.httpd import ThreadedHTTPServer  # aiohttp: imported when a view is made

        self.tail = TraceTail(locate)
        #: Set once the page itself has been sent to a browser (``ask --view`` waits for it).
        self.page_served = threading.Event()
        self._server = ThreadedHTTPServer(self._handle, "127.0.0.1", port,
                                          name="fastrlm-live-view", grace_s=POLL_S * 10)
        self.port: int = self._server.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def stopping(self) -> bool:
        return self._server.stopped

    def start(self) -> LiveView:
        self._server.start()
        return self

    def close(self) -> None:
        """Stop serving; open event streams end within :data:`POLL_S`."""
        self._server.close()

    def __enter__(self) -> LiveView:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        port = self.port
        if request.headers.get("Host") not in (f"127.0.0.1:{port}", f"localhost:{port}"):
            # a page elsewhere reaching this port through DNS rebinding must not read the trace
            return _response(HTTPStatus.FORBIDDEN, "text/plain; charset=utf-8",
                             f"open the live view as http://127.0.0.1:{port}/\n".encode())
        if request.method != "GET":
            return _response(HTTPStatus.METHOD_NOT_ALLOWED, "text/plain; charset=utf-8",
                             b"the live view answers GET only\n")
        if request.path == "/":
            page = await self._server.in_thread(self._page)
            self.page_served.set()
            return _response(HTTPStatus.OK, "text/html; charset=utf-8", page)
        if request.path == "/parts":
            parts = await self._server.in_thread(self._parts)
            return _response(HTTPStatus.OK, "application/json", parts)
        if request.path == "/events":
            return await self._events(request)
        if request.path == "/call":
            found = await self._server.in_thread(self._call, request.query.get("run", ""),
                                                 request.query.get("id", ""))
            if found is None:
                return _response(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8",
                                 b"no such sub-call in this trace\n")
            return _response(HTTPStatus.OK, "application/json", found)
        return _response(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8",
                         b"not found: the live view serves /, /events, /parts and /call\n")

    def _page(self) -> bytes:
        trace = self.tail.refresh()
        offset = self.tail.offset
        return render_html(trace, live={"events": f"/events?from={offset}",
                                        "parts": "/parts", "call": "/call"}).encode()

    def _call(self, run_id: str, call_id: str) -> bytes | None:
        """One sub-call's texts as the trace holds them (whole with full tracing), as JSON
        ``{"prompt", "reply", "error"}``; ``None`` when the trace has no such call."""
        self.tail.refresh()
        texts: dict[str, Any] = {}
        for event in reversed(self.tail.events):  # a call's latest record is its own
            kind = event.get("type")
            if (kind in ("subcall.started", "subcall.finished")
                    and event.get("run_id") == run_id and event.get("call_id") == call_id):
                if kind == "subcall.started":
                    texts.setdefault("prompt", event.get("prompt") or event.get("prompt_preview"))
                    break  # the start comes first: nothing older belongs to this call
                texts.setdefault("reply", event.get("response") or event.get("response_preview"))
                texts.setdefault("error", event.get("error"))
        return json.dumps(texts).encode() if texts else None

    def _parts(self) -> bytes:
        return json.dumps(render_parts(self.tail.refresh(), live=True)).encode()

    async def _events(self, request: web.BaseRequest) -> web.StreamResponse:
        from aiohttp import web

        offset = _start_offset(request)
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store",
            "Connection": "close"})
        response.force_close()
        await response.prepare(request)
        server = self._server
        try:
            await response.write(b"retry: 1000\n\n")
            waiting_said = False
            quiet_since = time.monotonic()
            writer: bool | None = None  # as last told: True alive, False gone, None not yet
            checked = 0.0
            while not server.stopped:
                path = self.tail.find()
                if path is None:
                    if not waiting_said:
                        await response.write(b"event: waiting\ndata: \n\n")
                        waiting_said = True
                    lines: list[str] = []
                else:
                    lines, offset = await server.in_thread(read_lines, path, offset,
                                                           MAX_LINES_PER_MESSAGE)
                if lines:
                    await response.write(sse_message(lines, offset))
                    quiet_since = time.monotonic()
                    continue
                if path is not None and time.monotonic() - checked >= WRITER_CHECK_S:
                    checked = time.monotonic()
                    alive = writer_alive(path)
                    if alive is not None and alive != writer:
                        if not alive:  # its last lines are all on disk now: they go first
                            offset = await self._drain(response, path, offset)
                        writer = alive
                        state = b"alive" if alive else b"gone"
                        await response.write(b"event: writer\ndata: " + state + b"\n\n")
                if time.monotonic() - quiet_since > KEEPALIVE_S:
                    await response.write(b": keep-alive\n\n")
                    quiet_since = time.monotonic()
                await server.wait_stopping(POLL_S)
        except ConnectionError:
            pass  # the browser went away (closed, reloaded): its next stream resumes
        return response


    async def _drain(self, response: web.StreamResponse, path: Path, offset: int) -> int:
        while True:
            lines, offset = await self._server.in_thread(read_lines, path, offset,
                                                         MAX_LINES_PER_MESSAGE)
            if not lines:
                return offset
            await response.write(sse_message(lines, offset))


def _response(status: HTTPStatus, kind: str, body: bytes) -> web.Response:
    from aiohttp import web

    return web.Response(status=status, body=body, headers={
        "Content-Type": kind, "Cache-Control": "no-store"})


def _start_offset(request: web.BaseRequest) -> int:
    for value in (request.headers.get("Last-Event-ID"), *request.query.getall("from", [])):
        if value is not None and value.strip().isdigit():
            return int(value)
    return 0
