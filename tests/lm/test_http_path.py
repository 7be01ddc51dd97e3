"""The OpenAI-compatible provider's own HTTP path (aiohttp): translation, headers, bodies."""

from __future__ import annotations

import json
import socket
import ssl

import aiohttp
import pytest

from fastrlm import (
    AuthenticationError,
    ProviderConnectionError,
    ProviderError,
    ProviderResponseError,
    RateLimitError,
)
from fastrlm.lm import OpenAIChatLM
from fastrlm.lm._chat import read_completion
from fastrlm.lm._openai import HTTPStatusError, _error_message, translate_http
from fastrlm.testing import FakeOpenAIServer, Fault

from .helpers import USER, fast_retry, openai_lm

KW = {"provider": "openai", "model": "m", "base_url": "http://10.0.0.1:1/v1"}


def _status(status: int, body: object = None, headers: dict[str, str] | None = None
            ) -> HTTPStatusError:
    raw = json.dumps(body).encode() if body is not None else b""
    return HTTPStatusError(status, raw, headers or {})


def test_a_rate_limit_status_carries_its_retry_after() -> None:
    failure = translate_http(_status(429, headers={"Retry-After": "2"}), **KW)
    assert isinstance(failure.error, RateLimitError)
    assert failure.retryable and failure.retry_after_s == 2.0


def test_a_server_error_is_retryable_and_names_the_servers_message() -> None:
    body = {"error": {"message": "the GPU caught fire", "type": "server_error"}}
    failure = translate_http(_status(503, body, {"retry-after-ms": "250"}), **KW)
    assert isinstance(failure.error, ProviderResponseError)
    assert failure.retryable and failure.retry_after_s == 0.25
    assert "the GPU caught fire" in str(failure.error) and "503" in str(failure.error)


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_is_an_authentication_error_never_retried(status: int) -> None:
    failure = translate_http(_status(status, {"error": {"message": "bad key"}}), **KW)
    assert isinstance(failure.error, AuthenticationError) and not failure.retryable


def test_a_bad_request_is_not_retried() -> None:
    failure = translate_http(_status(400, {"error": "unknown field"}), **KW)
    assert type(failure.error) is ProviderError and not failure.retryable
    assert "unknown field" in str(failure.error)


def test_a_broken_connection_is_retryable_and_names_the_url() -> None:
    failure = translate_http(aiohttp.ServerDisconnectedError(), **KW)
    assert isinstance(failure.error, ProviderConnectionError) and failure.retryable
    assert "http://10.0.0.1:1/v1" in str(failure.error)


def test_a_body_that_is_not_json_is_a_retryable_response_error() -> None:
    try:
        json.loads(b"<html>")
    except ValueError as exc:
        failure = translate_http(exc, **KW)
    assert isinstance(failure.error, ProviderResponseError) and failure.retryable


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"error": {"message": "nope"}}', "nope"),
        (b'{"error": "flat"}', "flat"),
        (b"plain text failure", "plain text failure"),
        (b"", "(empty body)"),
        (b'{"detail": 1}', '{"detail": 1}'),
    ],
)
def test_the_error_message_is_read_from_any_body(body: bytes, expected: str) -> None:
    assert _error_message(body) == expected


def test_the_reader_takes_every_field_of_a_json_reply() -> None:
    data = {
        "id": "c1",
        "choices": [{"finish_reason": "stop", "message": {"content": "hi"}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "cost": 0.5,
                  "prompt_tokens_details": {"cached_tokens": 8},
                  "completion_tokens_details": {"reasoning_tokens": 1}},
    }
    text, usage, finish, cost, raw = read_completion(data, USER, provider="openai", model="m")
    assert (text, finish, cost, raw) == ("hi", "stop", 0.5, {"id": "c1"})
    assert (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens,
            usage.reasoning_tokens, usage.estimated) == (10, 2, 8, 1, False)


def test_a_length_cut_reply_without_text_is_not_retried() -> None:
    data = {"choices": [{"finish_reason": "length", "message": {"content": None}}]}
    with pytest.raises(ProviderResponseError) as caught:
        read_completion(data, USER, provider="openai", model="m")
    assert caught.value.retryable is False


def test_headers_carry_the_key_the_presets_headers_and_the_environments_org(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_ORG_ID", "org-1")
    monkeypatch.delenv("OPENAI_PROJECT_ID", raising=False)
    lm = OpenAIChatLM("openrouter/x", base_url="http://127.0.0.1:9/v1", api_key="sk-1",
                      default_headers={"X-Title": "fastrlm"})
    headers = lm.request_headers()
    assert headers["Authorization"] == "Bearer sk-1"
    assert headers["X-Title"] == "fastrlm" and headers["OpenAI-Organization"] == "org-1"
    assert "OpenAI-Project" not in headers
    assert headers["Content-Type"] == "application/json"


async def test_the_server_sees_the_body_and_headers_the_provider_built() -> None:
    async with FakeOpenAIServer(["ok"]) as server:
        lm = openai_lm(server, extra_body={"top_k": 3})
        await lm.complete(USER, max_tokens=7)
        await lm.aclose()
    request = server.completion_requests[0]
    assert request.body["max_tokens"] == 7 and request.body["top_k"] == 3
    assert request.body["messages"] == [{"role": "user", "content": "hello there"}]
    assert request.headers["authorization"] == "Bearer test-key"


async def test_the_servers_error_message_reaches_the_raised_error() -> None:
    async with FakeOpenAIServer(default=Fault.http_status(422, "temperature out of range")
                                ) as server:
        lm = openai_lm(server, retry=fast_retry(max_retries=2))
        with pytest.raises(ProviderError, match="temperature out of range"):
            await lm.complete(USER)
        await lm.aclose()
    assert len(server.completion_requests) == 1  # a 4xx other than 408/409/429 is final


def test_the_proxy_comes_from_the_environment_and_no_proxy_is_honoured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fastrlm.lm._openai import proxy_for

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
                 "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert proxy_for("https://api.openai.com/v1") == (None, None)
    monkeypatch.setenv("HTTPS_PROXY", "http://user:pw@proxy.internal:3128")
    proxy, auth = proxy_for("https://api.openai.com/v1")
    assert proxy == "http://proxy.internal:3128"
    assert auth is not None and auth.login == "user"
    monkeypatch.setenv("NO_PROXY", "api.openai.com")
    assert proxy_for("https://api.openai.com/v1") == (None, None)


def _dns_error(errno: int) -> aiohttp.ClientConnectorDNSError:
    """aiohttp's error for a failed lookup, chained to the resolver's answer as aiohttp does."""
    from aiohttp.client_reqrep import ConnectionKey

    key = ConnectionKey("nowhere.test", 80, False, True, None, None, None, None)
    answer = socket.gaierror(errno, "resolver says so")
    try:
        raise aiohttp.ClientConnectorDNSError(key, answer) from answer
    except aiohttp.ClientConnectorDNSError as exc:
        return exc


def test_a_host_name_that_does_not_resolve_is_not_retried() -> None:
    failure = translate_http(_dns_error(socket.EAI_NONAME), **KW)
    assert isinstance(failure.error, ProviderConnectionError)
    assert not failure.retryable and not failure.error.retryable
    assert "does not resolve; not retried" in str(failure.error)


def test_a_temporary_resolver_failure_is_retried() -> None:
    failure = translate_http(_dns_error(socket.EAI_AGAIN), **KW)
    assert failure.retryable and failure.error.retryable


def test_a_certificate_that_does_not_verify_is_not_retried() -> None:
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
    try:
        raise aiohttp.ServerDisconnectedError() from cause
    except aiohttp.ServerDisconnectedError as exc:
        failure = translate_http(exc, **KW)
    assert not failure.retryable and "certificate does not verify" in str(failure.error)


async def test_an_unresolvable_host_is_tried_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's case: with no network, a DNS "name not known" was sent 6 times."""
    def no_such_name(*args: object, **kwargs: object) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    lm = OpenAIChatLM("openai/m", base_url="http://nowhere.test/v1", api_key="k",
                      retry=fast_retry(max_retries=5, sleep=sleep))
    with pytest.raises(ProviderConnectionError, match="does not resolve"):
        await lm.complete(USER)
    await lm.aclose()
    assert waits == []


async def test_a_refused_connection_is_retried(unused_port: int) -> None:
    """Refused means nothing listens now: a server being (re)started answers seconds later."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    lm = OpenAIChatLM("openai/m", base_url=f"http://127.0.0.1:{unused_port}/v1", api_key="k",
                      retry=fast_retry(max_retries=2, sleep=sleep))
    with pytest.raises(ProviderConnectionError, match="is the server running"):
        await lm.complete(USER)
    await lm.aclose()
    assert len(waits) == 2


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_base_url_without_v1_suggests_it() -> None:
    async with FakeOpenAIServer(["ok"]) as server:
        lm = OpenAIChatLM("openai/m", base_url=server.url, api_key="k", retry=fast_retry())
        with pytest.raises(ProviderError, match=r"did you mean the base URL http://127\.0\.0\.1:"
                                                r"\d+/v1\?") as raised:
            await lm.complete(USER)
        await lm.aclose()
    assert raised.value.status == 404


def test_a_404_under_a_versioned_base_url_gives_no_v1_hint() -> None:
    failure = translate_http(_status(404, {"error": "no such model"}), **KW)
    assert "did you mean" not in str(failure.error)
