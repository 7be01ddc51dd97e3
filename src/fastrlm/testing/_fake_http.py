"""The fake servers' HTTP side: :class:`~._fake_server.FakeOpenAIServer` (and the Anthropic
one) served by aiohttp on a thread of its own
(:class:`~fastrlm._foundation.httpd.ThreadedHTTPServer`).

Parsing, routing and writing run on the server's loop; the script's side of a request (the
recording, ``hold_until_in_flight``, the handler) runs on a worker thread, so a handler may
block. Imported when a fake starts, so that importing :mod:`fastrlm.testing` imports no HTTP
stack.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .._foundation.httpd import ThreadedHTTPServer, drop
from ._fake_server import FakeOpenAIServer, FakeReply, FakeRequest, Fault, Reply


def serve(fake: FakeOpenAIServer, host: str, port: int) -> ThreadedHTTPServer:
    """Bind ``host:port`` and serve ``fake`` until the returned server is closed."""
    server: ThreadedHTTPServer

    async def handle(http: web.BaseRequest) -> web.StreamResponse:
        return await _serve(fake, server, http)

    server = ThreadedHTTPServer(handle, host, port, name=type(fake).__name__, lingering_time=0,
                                grace_s=1.0)
    server.start()
    return server


async def _serve(
    fake: FakeOpenAIServer, server: ThreadedHTTPServer, http: web.BaseRequest
) -> web.StreamResponse:
    headers = {k.lower(): v for k, v in http.headers.items()}
    path = http.path_qs
    if http.method == "GET" and path.rstrip("/") == fake.api_prefix + "/models":
        await server.in_thread(fake._take, "GET", path, headers, {})
        try:
            return _json(200, fake._models_body())
        finally:
            fake._leave()
    raw = await http.read()
    if http.method != "POST" or not fake._is_completion_path(path):
        return _json(404, fake._error_body(404, f"no route {path}"))
    try:
        body = json.loads(raw or b"{}")
    except json.JSONDecodeError:
        return _json(400, fake._error_body(400, "request body is not JSON"))
    request, reply = await server.in_thread(fake._take, "POST", path, headers, body)
    try:
        return await _answer(fake, server, http, request, reply)
    finally:
        fake._leave()


async def _answer(
    fake: FakeOpenAIServer, server: ThreadedHTTPServer, http: web.BaseRequest,
    request: FakeRequest, reply: Reply | None,
) -> web.StreamResponse:
    if reply is None:
        return _json(400, fake._error_body(400, "fake server: script exhausted"))
    spec = FakeReply(text=reply) if isinstance(reply, str) else reply
    latency = fake.latency_s
    if isinstance(spec, FakeReply) and spec.latency_s is not None:
        latency = spec.latency_s
    if await server.wait_stopping(latency):
        drop("the fake server is closing")
    if isinstance(spec, Fault):
        return await _fault(fake, server, request, spec)
    if request.body.get("stream"):
        return await _stream(http, fake._stream_events(request, spec))
    return _json(200, fake._completion_body(request, spec, usage=True))


async def _fault(
    fake: FakeOpenAIServer, server: ThreadedHTTPServer, request: FakeRequest, fault: Fault
) -> web.StreamResponse:
    if fault.kind == "status":
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        return _json(fault.status, fake._error_body(fault.status, fault.message), headers)
    if fault.kind == "stall":
        await server.wait_stopping(fault.stall_s)
        drop("stalled")
    if fault.kind == "raw":
        return _raw(fault.status, fault.text.encode())
    if fault.kind == "malformed_json":
        return _raw(200, b'{"id": "chatcmpl-broken", "choices": [')
    if fault.kind == "missing_usage":
        return _json(200, fake._completion_body(request, FakeReply(fault.text), usage=False))
    if fault.kind == "empty_choices":
        body = fake._completion_body(request, FakeReply("unused"), usage=True)
        body["choices"] = []
        return _json(200, body)
    drop("disconnect")


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> web.Response:
    return _raw(status, json.dumps(body).encode(), headers)


def _raw(status: int, data: bytes, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=data, content_type="application/json",
                        headers=headers)


async def _stream(http: web.BaseRequest, events: list[tuple[str, Any]]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache", "Connection": "close"})
    response.force_close()
    await response.prepare(http)
    for name, data in events:
        payload = data if isinstance(data, str) else json.dumps(data)
        prefix = f"event: {name}\n" if name else ""
        await response.write(f"{prefix}data: {payload}\n\n".encode())
    await response.write_eof()
    return response
