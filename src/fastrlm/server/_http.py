"""The server's HTTP layer on aiohttp: its limits, its refusals, and the response shapes.

aiohttp's C parser (llhttp) reads requests; this module holds it to the server's contract.
Requests: ``Content-Length`` bodies only (``Transfer-Encoding`` is refused with 501, so no
chunked request bodies; a ``POST`` without a length gets 411), capped at
:attr:`HTTPLimits.max_body_bytes` (413, refused from the header before the body is read).
``Expect: 100-continue`` is honoured. HTTP/1.1 requests need a ``Host`` header (RFC 9112; the
parser answers 400). Keep-alive follows the HTTP version and the ``Connection`` header.
Responses: a complete JSON body, or a server-sent event stream (chunked on HTTP/1.1,
close-delimited on HTTP/1.0).

Every refusal, the parser's included, is an OpenAI-shaped ``{"error": ...}`` JSON body; the
connection is closed after a refusal of the request's framing. A client that leaves mid-request
cancels its handler (and so its run).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from multidict import CIMultiDictProxy

from .._foundation.httpd import Connection, Handler, Server
from .._foundation.text import json_text


@dataclass(frozen=True, slots=True)
class HTTPLimits:
    """Caps on what a client may send. Times are seconds; sizes are bytes."""

    max_line_bytes: int = 8192
    max_headers: int = 100
    max_header_bytes: int = 64 * 1024
    max_body_bytes: int = 64 * 1024 * 1024
    idle_timeout_s: float = 30.0  # a connection waiting for its (next) request
    header_timeout_s: float = 30.0  # from the first byte of a request to the end of its headers
    body_timeout_s: float = 300.0


class HTTPError(Exception):
    """A request the server refuses: ``status`` and an OpenAI-shaped ``{"error": ...}`` body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {"message": self.message, "type": self.type, "param": None,
                      "code": self.code},
            **self.extra,
        }


#: Told of each request the parser refused: the client's address and the refusal.
OnRefused = Callable[[str, HTTPError], None]


def client_of(request: web.BaseRequest) -> str:
    """``host:port`` of the request's peer, ``-`` when unknown."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "-"


def lowered(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    """The headers as a plain dict with lower-case names (the first of repeated ones)."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        out.setdefault(name.lower(), value)
    return out


async def read_body(request: web.BaseRequest, limits: HTTPLimits) -> bytes:
    """Check the request's framing and read its body.

    Raises :class:`HTTPError` (505 for a version other than 1.0/1.1, 501 for
    ``Transfer-Encoding``, 411 for a ``POST`` without ``Content-Length``, 413 over
    :attr:`HTTPLimits.max_body_bytes`, 431 for headers over
    :attr:`HTTPLimits.max_header_bytes`, 400 for conflicting ``Host``/``Authorization``),
    ``ConnectionResetError`` when the client leaves mid-body or its body stalls past
    :attr:`HTTPLimits.body_timeout_s` (the connection is then dropped unanswered).
    """
    if request.version not in ((1, 0), (1, 1)):
        raise HTTPError(505, f"unsupported HTTP version "
                        f"'HTTP/{request.version.major}.{request.version.minor}'")
    if sum(map(len, chain.from_iterable(request.raw_headers))) > limits.max_header_bytes:
        raise HTTPError(431, "too many or too large headers")
    for name in ("Host", "Authorization"):
        if len(set(request.headers.getall(name, ()))) > 1:
            raise HTTPError(400, f"conflicting {name.lower()} headers")
    if "Transfer-Encoding" in request.headers:
        raise HTTPError(501, "Transfer-Encoding is not supported: send a Content-Length body")
    length = request.content_length
    if length is None:
        if request.method in ("POST", "PUT", "PATCH"):
            raise HTTPError(411, "a Content-Length header is required")
        return b""
    if length > limits.max_body_bytes:
        raise HTTPError(
            413,
            f"the request body ({length:,} bytes) is over this server's limit "
            f"({limits.max_body_bytes:,} bytes): send a smaller one, or raise the limit where "
            "the server starts (fastrlm serve --max-body-mb, or "
            "HTTPLimits(max_body_bytes=...))",
            code="request_too_large",
        )
    if not length:
        return b""
    if request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            body = await request.content.read()
    except TimeoutError as exc:
        raise ConnectionResetError(
            f"the request body stalled past {limits.body_timeout_s} s") from exc
    if len(body) < length:
        raise ConnectionResetError("the client closed the connection mid-body")
    return body


def json_response(
    status: int, payload: object, *, keep_alive: bool, headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A complete JSON response (its head alone to a ``HEAD``); ``Connection`` says whether the
    connection stays open."""
    body = json_text(payload, default=str).encode("utf-8")
    head = {"Content-Type": "application/json", **_connection_headers(keep_alive),
            **(headers or {})}
    response = web.Response(status=status, body=body, headers=head)
    if not keep_alive:
        response.force_close()
    return response


def error_response(error: HTTPError, *, keep_alive: bool) -> web.Response:
    return json_response(error.status, error.body(), keep_alive=keep_alive,
                         headers=error.headers)


def _connection_headers(keep_alive: bool) -> dict[str, str]:
    # Server: not aiohttp's default, which names its version and Python's
    return {"Server": "fastrlm", "Connection": "keep-alive" if keep_alive else "close"}


class EventStream:
    """A ``text/event-stream`` response: :meth:`start`, then :meth:`send` per event, :meth:`end`.

    On HTTP/1.1 the body is chunked, so the connection can be kept alive; on HTTP/1.0 it is
    delimited by closing the connection."""

    def __init__(self, request: web.BaseRequest, keep_alive: bool) -> None:
        self.request = request
        self.keep_alive = keep_alive and request.version == (1, 1)
        self.response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no"})
        self.started = False

    async def start(self) -> None:
        self.response.headers.update(_connection_headers(self.keep_alive))
        if not self.keep_alive:
            self.response.force_close()
        await self.response.prepare(self.request)
        self.started = True

    async def send(self, data: object, event: str | None = None) -> None:
        """Send one ``data:`` event (named ``event`` when given): a JSON object, or a literal
        str such as ``[DONE]``."""
        text = data if isinstance(data, str) else json_text(data, default=str)
        head = f"event: {event}\n" if event else ""
        await self.response.write(f"{head}data: {text}\n\n".encode())

    async def end(self) -> None:
        if not self.keep_alive:
            self.response.force_close()
        await self.response.write_eof()


class _Connection(Connection):
    """A connection with the server's time limits on a request's head and
    the parser's refusals answered in the API's error shape."""

    def __init__(self, manager: _Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = manager.limits
        self._on_refused = manager.on_refused
        # One lazy timer per connection: moving the deadline is an assignment, and the timer,
        # when it fires, closes the connection or sleeps on to the deadline as it is by then.
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._head_started = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.await_head()

    def data_received(self, data: bytes) -> None:
        if not self._head_started and self._deadline is not None:
            self._head_started = True
            self._arm(self._limits.header_timeout_s)
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def await_head(self) -> None:
        """Wait for a request: idle, then header time limits run until :meth:`head_done`."""
        self._head_started = False
        self._arm(self._limits.idle_timeout_s)

    def head_done(self) -> None:
        self._deadline = None

    def _arm(self, seconds: float) -> None:
        self._deadline = deadline = self._loop.time() + seconds
        if self._timer is None or self._timer.when() > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self._deadline is None:
            return  # a request is being answered: await_head() arms the timer again
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._expire)
        elif self.transport is not None:
            self.transport.close()  # idle, or a request's head stalled: nobody to answer

    def handle_error(
        self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, HttpProcessingError):
            error = _parser_refusal(exc)
            self._on_refused(client_of(request), error)
            return error_response(error, keep_alive=False)
        return super().handle_error(request, status, exc, message)


def _parser_refusal(exc: HttpProcessingError) -> HTTPError:
    text = (exc.message or "malformed request").splitlines()[0].rstrip(":")
    if isinstance(exc, LineTooLong):
        return HTTPError(431, "a request line or header is too long")
    if text.startswith("Too many headers"):
        return HTTPError(431, "too many or too large headers")
    return HTTPError(400, f"malformed request: {text}")


class _Server(Server):
    connection_class = _Connection

    def __init__(self, handler: Handler, limits: HTTPLimits, on_refused: OnRefused) -> None:
        super().__init__(
            handler, handler_cancellation=True, access_log=None,
            keepalive_timeout=limits.idle_timeout_s, max_line_size=limits.max_line_bytes,
            max_field_size=limits.max_line_bytes, max_headers=limits.max_headers,
            lingering_time=0)
        self.limits = limits
        self.on_refused = on_refused


def protocol_of(request: web.BaseRequest) -> _Connection:
    protocol = request.protocol
    assert isinstance(protocol, _Connection)
    return protocol


async def listen(
    handler: Handler, host: str, port: int, limits: HTTPLimits, on_refused: OnRefused,
) -> tuple[asyncio.Server, web.Server]:
    """Serve ``handler`` on ``host:port`` (0 picks a free port). Raises ``OSError``."""
    server = _Server(handler, limits, on_refused)
    listener = await asyncio.get_running_loop().create_server(server, host, port)
    return listener, server
