"""The live view: one run's page served on 127.0.0.1, following its JSONL trace as it grows.

:class:`LiveView` runs a standard-library HTTP server in a daemon thread. Routes:

- ``GET /``: the page (:func:`~._html.render_html`) of the trace as it is now, told where to
  follow it from (the byte offset it was rendered at).
- ``GET /events``: server-sent events. Each message carries the trace lines appended since the
  previous one, one ``data:`` field per JSONL line, and ``id:`` the byte offset after them, so a
  browser that reconnects (``Last-Event-ID``) or reloads resumes exactly where it was; only
  whole lines are sent (a line being written waits for its newline). ``event: waiting`` says
  the trace does not exist yet; a ``: keep-alive`` comment goes out when nothing happens.
- ``GET /parts``: the server-rendered summary and detail as JSON ``{"summary", "detail"}``,
  which the page fetches to redraw turns, cells and totals.

The server never ends on its own: a run that finishes, or that crashes and leaves its trace
without ``run.finished``, is still served (the page says which). Nothing but loopback is bound,
and a request whose ``Host`` is not ``127.0.0.1:PORT`` or ``localhost:PORT`` is refused (403),
so a web page that reaches the port through DNS rebinding cannot read the trace.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ._html import render_html, render_parts
from ._reader import Trace, _with_answer

#: How often an open event stream looks for new lines in the trace.
POLL_S = 0.1
#: Seconds of silence after which an event stream sends a keep-alive comment.
KEEPALIVE_S = 15.0
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
        self.tail = TraceTail(locate)
        self._stop = threading.Event()
        view = self

        class Handler(_Handler):
            live = view

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, args=(POLL_S,),
                                        name="fastrlm-live-view", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, less when :meth:`close` is called; whether it was."""
        return self._stop.wait(seconds)

    def start(self) -> LiveView:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; open event streams end within :data:`POLL_S`."""
        self._stop.set()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LiveView:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Handler(BaseHTTPRequestHandler):
    live: LiveView
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        """Quiet: the live view is a local tool, not a server with an access log."""

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        url = urlsplit(self.path)
        port = self.live.port
        if self.headers.get("Host") not in (f"127.0.0.1:{port}", f"localhost:{port}"):
            # a page elsewhere reaching this port through DNS rebinding must not read the trace
            self._send(HTTPStatus.FORBIDDEN, "text/plain; charset=utf-8",
                       f"open the live view as http://127.0.0.1:{port}/\n".encode())
            return
        if url.path == "/":
            trace = self.live.tail.refresh()
            offset = self.live.tail.offset
            page = render_html(trace, live={"events": f"/events?from={offset}",
                                            "parts": "/parts"})
            self._send(HTTPStatus.OK, "text/html; charset=utf-8", page.encode())
        elif url.path == "/parts":
            parts = render_parts(self.live.tail.refresh())
            self._send(HTTPStatus.OK, "application/json", json.dumps(parts).encode())
        elif url.path == "/events":
            self._events(url.query)
        else:
            self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8",
                       b"not found: the live view serves /, /events and /parts\n")

    def _send(self, status: HTTPStatus, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _start_offset(self, query: str) -> int:
        for value in (self.headers.get("Last-Event-ID"), *parse_qs(query).get("from", [])):
            if value is not None and value.strip().isdigit():
                return int(value)
        return 0

    def _events(self, query: str) -> None:
        offset = self._start_offset(query)
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        live = self.live
        try:
            self.wfile.write(b"retry: 1000\n\n")
            self.wfile.flush()
            waiting_said = False
            quiet_since = time.monotonic()
            while not live.stopping:
                path = live.tail.find()
                if path is None:
                    if not waiting_said:
                        self.wfile.write(b"event: waiting\ndata: \n\n")
                        self.wfile.flush()
                        waiting_said = True
                    lines: list[str] = []
                else:
                    lines, offset = read_lines(path, offset, MAX_LINES_PER_MESSAGE)
                if lines:
                    self.wfile.write(sse_message(lines, offset))
                    self.wfile.flush()
                    quiet_since = time.monotonic()
                    continue
                if time.monotonic() - quiet_since > KEEPALIVE_S:
                    self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
                    quiet_since = time.monotonic()
                live.wait(POLL_S)
        except (BrokenPipeError, ConnectionResetError):
            return  # the browser went away (closed, reloaded): its next stream resumes
