"""The HTTP edge: auth, OpenAI-shaped 4xx errors, the strict parser, keep-alive."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from fastrlm.server import HTTPLimits

from .helpers import ECHO_SHAPE, QUESTION, raw_request, root, serving


async def test_with_a_key_requests_need_the_bearer_token() -> None:
    async with serving(root(ECHO_SHAPE), key="s3cret", client_key="wrong") as (server, client):
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.models.list()
        assert caught.value.code == "invalid_api_key"
        good = openai.AsyncOpenAI(base_url=server.base_url, api_key="s3cret", max_retries=0)
        try:
            reply = await good.chat.completions.create(model="rlm", messages=QUESTION,
                                                       extra_body={"context": "abc"})
        finally:
            await good.close()
        status, _, health = await raw_request(server.port, "GET", "/health")
    assert reply.choices[0].message.content == "str:3"
    assert status == 200 and health["status"] == "ok"  # no auth on /health


async def test_without_a_key_any_token_is_accepted() -> None:
    async with serving(root(ECHO_SHAPE), client_key="anything") as (_, client):
        assert [m.id for m in (await client.models.list()).data][0] == "rlm"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b'{"model": "rlm"}', "missing_messages"),
        (b'{"model": "rlm", "messages": []}', "missing_messages"),
        (b'{"messages": [{"role": "user", "content": "q"}]}', "missing_model"),
        (b'{"model": "rlm", "messages": [{"role": "system", "content": "s"}]}',
         "missing_question"),
        (b'{"model": "rlm", "messages": [{"role": "user", "content": "q"}], "context": ""}',
         "empty_context"),
        (b'{"model": "rlm", "messages": [{"role": "user", "content": "q"}], "context": []}',
         "empty_context"),
        (b'{"model": "rlm", "messages": [{"role": "user", "content": "q"}], "context": null}',
         "invalid_context"),
        (b'{"model": "rlm", "messages": [{"role": "user", "content": "q"}], '
         b'"fastrlm": {"max_usd": -1}}', "invalid_fastrlm"),
        (b'{"model": "rlm", "messages": [{"role": "user", "content": "q"}], '
         b'"fastrlm": {"max_dollars": 1}}', "invalid_fastrlm"),
        (b'{"model": "rlm", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}',
         "unsupported_content"),
    ],
)
async def test_bad_requests_are_400_in_openai_error_shape(body: bytes, code: str) -> None:
    async with serving(root(ECHO_SHAPE)) as (server, _):
        status, _, reply = await raw_request(server.port, "POST", "/v1/chat/completions", body,
                                             {"Content-Type": "application/json"})
    assert status == 400
    error = reply["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error"
    assert error["message"]


async def test_the_sdk_raises_bad_request_for_an_empty_context() -> None:
    async with serving(root(ECHO_SHAPE)) as (_, client):
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="rlm", messages=QUESTION,
                                                 extra_body={"context": "   "})
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="gpt-4o", messages=QUESTION)
    assert caught.value.code == "empty_context"


async def exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    reply = await reader.read()  # the server closes after an error
    writer.close()
    await writer.wait_closed()
    return reply


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /v1/models HTTP/2.0\r\n\r\n", 505),
        (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n", 411),
        # HTTP/1.1 needs a Host (RFC 9112 3.2): these carry one to reach the check they pin
        (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
         501),
        (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n",
         413),
        (b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 400),
        (b"GET /v1/models HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
         400),
        (b"GET /v1/models HTTP/1.1\r\nBad Header: x\r\n\r\n", 400),
        (b"GET /v1/models HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431),
        (b"GET /v1/models HTTP/1.1\r\nHost: x\r\n"
         + b"".join(b"X%d: %s\r\n" % (i, b"a" * 8000) for i in range(9)) + b"\r\n", 431),
    ],
)
async def test_the_parser_refuses_malformed_requests(request_bytes: bytes, status: int) -> None:
    async with serving(root(ECHO_SHAPE), http_limits=HTTPLimits(max_body_bytes=1000)) as (
        server, _
    ):
        reply = await exchange(server.port, request_bytes)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == str(status).encode()
    assert b"Connection: close" in head
    assert json.loads(body)["error"]["message"]


async def test_unknown_routes_and_methods() -> None:
    async with serving(root(ECHO_SHAPE)) as (server, _):
        missing = await raw_request(server.port, "GET", "/v1/embeddings")
        wrong = await raw_request(server.port, "GET", "/v1/chat/completions")
    assert missing[0] == 404 and missing[2]["error"]["code"] == "not_found"
    assert wrong[0] == 405 and wrong[1]["allow"] == "POST"


async def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    async with serving(root(ECHO_SHAPE)) as (server, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        body = json.dumps({"model": "rlm", "messages": QUESTION, "context": "ab"}).encode()
        for _ in range(2):
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            reply = json.loads(await reader.readexactly(length))
            assert b"200 OK" in head and b"Connection: keep-alive" in head
            assert reply["choices"][0]["message"]["content"] == "str:2"
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize(
    ("sent", "limits"),
    [
        # a connection that never sends a request
        (b"", HTTPLimits(idle_timeout_s=0.2, header_timeout_s=1000)),
        # a head that never ends (slowloris), its limit shorter than the idle one
        (b"GET /v1/models HTTP/1.1\r\nHost: x\r\n",
         HTTPLimits(idle_timeout_s=1000, header_timeout_s=0.2)),
        (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n{",
         HTTPLimits(idle_timeout_s=1000, header_timeout_s=1000, body_timeout_s=0.2)),
    ],
)
async def test_a_client_that_stalls_mid_request_is_disconnected(
    sent: bytes, limits: HTTPLimits
) -> None:
    async with serving(root(ECHO_SHAPE), http_limits=limits) as (server, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(sent)
        await writer.drain()
        assert await reader.read() == b""  # closed, with nothing to answer
        writer.close()
        await writer.wait_closed()


async def test_no_response_names_the_server_software_or_its_version() -> None:
    async with serving(root(ECHO_SHAPE)) as (server, _):
        _, health, _ = await raw_request(server.port, "GET", "/health")
        _, missing, _ = await raw_request(server.port, "GET", "/nope")
        refused = await exchange(server.port, b"GARBAGE\r\n\r\n")
    assert health["server"] == missing["server"] == "fastrlm"
    assert b"aiohttp" not in refused and b"Python" not in refused


async def test_a_body_over_the_limit_names_the_flag_that_raises_it() -> None:
    async with serving(root(ECHO_SHAPE), http_limits=HTTPLimits(max_body_bytes=1000)) as (
        server, _
    ):
        reply = await exchange(server.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                            b"Content-Length: 999999\r\n\r\n")
    message = json.loads(reply.partition(b"\r\n\r\n")[2])["error"]["message"]
    assert "999,999 bytes" in message and "1,000 bytes" in message
    assert "fastrlm serve --max-body-mb" in message
