"""A small, strict HTTP/1.1 layer over asyncio streams: just what an OpenAI-style API needs.

Requests: ``GET``/``POST``/``HEAD``/``OPTIONS`` with an origin-form target, headers capped in count
and bytes, and a body only by ``Content-Length`` (``Transfer-Encoding`` is refused with 501, so
no chunked request bodies), capped at :attr:`HTTPLimits.max_body_bytes` (413, refused from the
header before the body is read). ``Expect: 100-continue`` is honoured. Keep-alive follows the
HTTP version and the ``Connection`` header. Responses: a complete JSON body, or a server-sent
event stream (chunked on HTTP/1.1, close-delimited on HTTP/1.0).

Every protocol violation is an :class:`HTTPError` carrying its status and an OpenAI-shaped error
body; the connection is closed after it is answered.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_METHODS = frozenset({"GET", "POST", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class HTTPLimits:
    """Caps on what a client may send. Times are seconds; sizes are bytes."""

    max_line_bytes: int = 8192
    max_headers: int = 100
    max_header_bytes: int = 64 * 1024
    max_body_bytes: int = 64 * 1024 * 1024
    idle_timeout_s: float = 30.0  # a kept-alive connection waiting for its next request
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


@dataclass(slots=True)
class Request:
    """One parsed request. Header names are lower-case; ``path`` is percent-decoded and has no
    query string."""

    method: str
    path: str
    version: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


async def read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limits: HTTPLimits
) -> Request | None:
    """Read one request. Returns ``None`` when the client closed (or idled out) between requests.

    Raises :class:`HTTPError` for a malformed or oversized request, ``TimeoutError`` when a
    started request stalls, ``ConnectionError`` when the client vanishes mid-request.
    """
    try:
        async with asyncio.timeout(limits.idle_timeout_s):
            first = await _read_line(reader, limits)
    except TimeoutError:
        return None
    if first is None:
        return None
    async with asyncio.timeout(limits.header_timeout_s):
        request = _parse_request_line(first)
        request.headers = await _read_headers(reader, limits)
    length = _content_length(request, limits)
    if length and request.headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
    if length:
        try:
            async with asyncio.timeout(limits.body_timeout_s):
                request.body = await reader.readexactly(length)
        except asyncio.IncompleteReadError as exc:
            raise ConnectionResetError("the client closed the connection mid-body") from exc
    return request


async def _read_line(reader: asyncio.StreamReader, limits: HTTPLimits) -> bytes | None:
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise ConnectionResetError("the client closed the connection mid-request") from exc
    except asyncio.LimitOverrunError as exc:
        raise HTTPError(431, "a request line or header is too long") from exc
    if len(line) > limits.max_line_bytes:
        raise HTTPError(431, "a request line or header is too long")
    return line.rstrip(b"\r\n")


def _parse_request_line(line: bytes) -> Request:
    parts = line.split(b" ")
    if len(parts) != 3:
        raise HTTPError(400, "malformed request line")
    method, target, version = (p.decode("latin-1") for p in parts)
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HTTPError(505, f"unsupported HTTP version {version!r}")
    if method not in _METHODS:
        raise HTTPError(501, f"method {method!r} is not implemented")
    if not target.startswith("/"):
        raise HTTPError(400, "the request target must be a path")
    return Request(method=method, path=unquote(target.split("?", 1)[0]), version=version)


async def _read_headers(reader: asyncio.StreamReader, limits: HTTPLimits) -> dict[str, str]:
    headers: dict[str, str] = {}
    total = 0
    while True:
        line = await _read_line(reader, limits)
        if line is None:
            raise ConnectionResetError("the client closed the connection mid-headers")
        if not line:
            return headers
        total += len(line)
        if total > limits.max_header_bytes or len(headers) >= limits.max_headers:
            raise HTTPError(431, "too many or too large headers")
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.match(name):
            raise HTTPError(400, "malformed header line")  # also obsolete line folding
        key = name.decode("latin-1").lower()
        text = value.strip(b" \t").decode("latin-1")
        if key in headers:
            if key in ("content-length", "host", "authorization"):
                if headers[key] != text:
                    raise HTTPError(400, f"conflicting {key} headers")
                continue
            headers[key] = f"{headers[key]}, {text}"
        else:
            headers[key] = text


def _content_length(request: Request, limits: HTTPLimits) -> int:
    if "transfer-encoding" in request.headers:
        raise HTTPError(501, "Transfer-Encoding is not supported: send a Content-Length body")
    raw = request.headers.get("content-length")
    if raw is None:
        if request.method in ("POST", "PUT", "PATCH"):
            raise HTTPError(411, "a Content-Length header is required")
        return 0
    if not raw.isdigit() or not raw.isascii():
        raise HTTPError(400, "invalid Content-Length")
    length = int(raw)
    if length > limits.max_body_bytes:
        raise HTTPError(
            413,
            f"the request body ({length:,} bytes) is over this server's limit "
            f"({limits.max_body_bytes:,} bytes)",
            code="request_too_large",
        )
    return length


def _head(status: int, headers: dict[str, str], keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def send_json(
    writer: asyncio.StreamWriter,
    status: int,
    payload: object,
    *,
    keep_alive: bool,
    headers: dict[str, str] | None = None,
    head_only: bool = False,
) -> None:
    """Write a complete JSON response."""
    body = json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")
    head = {"Content-Type": "application/json", "Content-Length": str(len(body)),
            **(headers or {})}
    writer.write(_head(status, head, keep_alive) + (b"" if head_only else body))
    await writer.drain()


async def send_error(writer: asyncio.StreamWriter, error: HTTPError, *, keep_alive: bool) -> None:
    await send_json(writer, error.status, error.body(), keep_alive=keep_alive,
                    headers=error.headers)


class EventStream:
    """A ``text/event-stream`` response: :meth:`start`, then :meth:`send` per event, :meth:`end`.

    On HTTP/1.1 the body is chunked, so the connection can be kept alive; on HTTP/1.0 it is
    delimited by closing the connection."""

    def __init__(self, writer: asyncio.StreamWriter, version: str, keep_alive: bool) -> None:
        self.writer = writer
        self.chunked = version == "HTTP/1.1"
        self.keep_alive = keep_alive and self.chunked
        self.started = False

    async def start(self) -> None:
        headers = {"Content-Type": "text/event-stream; charset=utf-8",
                   "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        if self.chunked:
            headers["Transfer-Encoding"] = "chunked"
        self.writer.write(_head(200, headers, self.keep_alive))
        self.started = True
        await self.writer.drain()

    async def send(self, data: object) -> None:
        """Send one ``data:`` event: a JSON object, or a literal str such as ``[DONE]``."""
        text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False,
                                                             default=str)
        self._write(f"data: {text}\n\n".encode())
        await self.writer.drain()

    async def end(self) -> None:
        if self.chunked:
            self.writer.write(b"0\r\n\r\n")
            await self.writer.drain()

    def _write(self, data: bytes) -> None:
        if self.chunked:
            self.writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.writer.write(data)
