"""The core provider through the real ``openai`` SDK against FakeOpenAIServer: every fault."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time

import openai
import pytest

from fastrlm import (
    AuthenticationError,
    ProviderConnectionError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
    RateLimitError,
)
from fastrlm.lm import LM, OpenAIChatLM
from fastrlm.testing import FakeOpenAIServer, FakeReply, FakeRequest, Fault

from .helpers import USER, fast_retry, openai_lm


def _gap(server: FakeOpenAIServer, first: int, second: int) -> float:
    requests = server.completion_requests
    return requests[second].received_at - requests[first].received_at


async def test_reply_text_and_usage_details_are_read() -> None:
    reply = FakeReply(
        "done", prompt_tokens=1200, completion_tokens=300, cached_tokens=1000, reasoning_tokens=200
    )
    async with FakeOpenAIServer([reply]) as server:
        lm = openai_lm(server, "openai/gpt-5-mini")
        response = await lm.complete(USER, max_tokens=500)
        await lm.aclose()
    assert isinstance(lm, LM)
    assert response.text == "done"
    assert response.model == "openai/gpt-5-mini"
    assert response.finish_reason == "stop"
    usage = response.usage
    assert (usage.input_tokens, usage.output_tokens) == (1200, 300)
    assert (usage.cached_input_tokens, usage.reasoning_tokens) == (1000, 200)
    assert not usage.estimated
    assert response.latency_s > 0


async def test_rate_limit_is_retried_after_the_retry_after_seconds() -> None:
    async with FakeOpenAIServer([Fault.rate_limit(retry_after="0.3"), "ok"]) as server:
        lm = openai_lm(server)
        response = await lm.complete(USER)
        await lm.aclose()
    assert response.text == "ok"
    assert len(server.completion_requests) == 2
    assert _gap(server, 0, 1) >= 0.3


async def test_retry_after_as_an_http_date_is_honoured() -> None:
    def handler(request: FakeRequest) -> str | Fault:
        if request.index > 0:
            return "ok"
        # An HTTP date has whole seconds: the wait it asks for is 0.5 to 1.5 s from now.
        return Fault.rate_limit(retry_after=email.utils.formatdate(time.time() + 1.5, usegmt=True))

    async with FakeOpenAIServer(handler=handler) as server:
        lm = openai_lm(server)
        assert (await lm.complete(USER)).text == "ok"
        await lm.aclose()
    assert _gap(server, 0, 1) >= 0.5


async def test_rate_limit_that_never_ends_surfaces_as_rate_limit_error() -> None:
    async with FakeOpenAIServer(default=Fault.rate_limit(retry_after="0")) as server:
        lm = openai_lm(server, retry=fast_retry(max_retries=2))
        with pytest.raises(RateLimitError) as info:
            await lm.complete(USER)
        await lm.aclose()
    assert len(server.completion_requests) == 3
    assert info.value.retry_after_s == 0
    assert info.value.status == 429


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_are_retried(status: int) -> None:
    async with FakeOpenAIServer([Fault.server_error(status), "recovered"]) as server:
        lm = openai_lm(server)
        assert (await lm.complete(USER)).text == "recovered"
        await lm.aclose()
    assert len(server.completion_requests) == 2


async def test_server_error_retry_after_is_honoured_too() -> None:
    async with FakeOpenAIServer([Fault.server_error(503, retry_after="0.25"), "ok"]) as server:
        lm = openai_lm(server)
        assert (await lm.complete(USER)).text == "ok"
        await lm.aclose()
    assert _gap(server, 0, 1) >= 0.25


async def test_a_stall_past_the_timeout_is_cut_and_retried() -> None:
    async with FakeOpenAIServer([Fault.stall(30)], default="after the stall") as server:
        lm = openai_lm(server, retry=fast_retry(timeout_s=0.3))
        started = time.monotonic()
        assert (await lm.complete(USER)).text == "after the stall"
        elapsed = time.monotonic() - started
        await lm.aclose()
    assert len(server.completion_requests) >= 2  # more only if this machine is very slow
    assert 0.3 <= elapsed < 5


async def test_stalls_every_time_surface_as_provider_timeout() -> None:
    backoffs: list[float] = []

    async def sleep(seconds: float) -> None:
        backoffs.append(seconds)

    async with FakeOpenAIServer(default=Fault.stall(30)) as server:
        lm = openai_lm(server, retry=fast_retry(max_retries=1, timeout_s=0.3, sleep=sleep))
        with pytest.raises(ProviderTimeoutError):
            await lm.complete(USER)
        await lm.aclose()
    assert len(backoffs) == 1  # two attempts, both cut (the second may die before it lands)
    assert 1 <= len(server.completion_requests) <= 2


async def test_malformed_json_is_retried_then_surfaced_as_response_error() -> None:
    async with FakeOpenAIServer([Fault.malformed_json(), "fine"]) as server:
        lm = openai_lm(server)
        assert (await lm.complete(USER)).text == "fine"
        await lm.aclose()
    async with FakeOpenAIServer(default=Fault.malformed_json()) as server:
        lm = openai_lm(server, retry=fast_retry(max_retries=1))
        with pytest.raises(ProviderResponseError, match="malformed"):
            await lm.complete(USER)
        await lm.aclose()


async def test_missing_usage_is_estimated_and_marked() -> None:
    async with FakeOpenAIServer([Fault.missing_usage("four chars x")]) as server:
        lm = openai_lm(server)
        response = await lm.complete(USER)
        await lm.aclose()
    assert response.text == "four chars x"
    assert response.usage.estimated
    assert response.usage.output_tokens == 3
    assert response.usage.input_tokens > 0
    assert len(server.completion_requests) == 1


async def test_empty_choices_are_retried_then_a_response_error() -> None:
    async with FakeOpenAIServer([Fault.empty_choices(), "second try"]) as server:
        lm = openai_lm(server)
        assert (await lm.complete(USER)).text == "second try"
        await lm.aclose()
    async with FakeOpenAIServer(default=Fault.empty_choices()) as server:
        lm = openai_lm(server, retry=fast_retry(max_retries=2))
        with pytest.raises(ProviderResponseError, match="no choices"):
            await lm.complete(USER)
        await lm.aclose()
    assert len(server.completion_requests) == 3


async def test_no_text_because_of_the_length_limit_is_not_retried() -> None:
    reply = FakeReply(None, finish_reason="length", completion_tokens=100, reasoning_tokens=100)
    async with FakeOpenAIServer([reply, "never asked"]) as server:
        lm = openai_lm(server, "openai/gpt-5-nano")
        with pytest.raises(ProviderResponseError, match="length"):
            await lm.complete(USER, max_tokens=100)
        await lm.aclose()
    assert len(server.completion_requests) == 1


@pytest.mark.parametrize("status", [401, 403])
async def test_authentication_errors_are_never_retried(status: int) -> None:
    async with FakeOpenAIServer([Fault.http_status(status, "bad key"), "never"]) as server:
        lm = openai_lm(server, retry=fast_retry(max_retries=5))
        with pytest.raises(AuthenticationError, match="bad key"):
            await lm.complete(USER)
        await lm.aclose()
    assert len(server.completion_requests) == 1


async def test_a_bad_request_is_a_provider_error_not_retried() -> None:
    async with FakeOpenAIServer([Fault.http_status(400, "context too long"), "x"]) as server:
        lm = openai_lm(server)
        with pytest.raises(ProviderError, match="context too long") as info:
            await lm.complete(USER)
        await lm.aclose()
    assert type(info.value) is ProviderError
    assert len(server.completion_requests) == 1


async def test_a_dropped_connection_is_retried() -> None:
    async with FakeOpenAIServer([Fault.disconnect(), "reconnected"]) as server:
        lm = openai_lm(server)
        assert (await lm.complete(USER)).text == "reconnected"
        await lm.aclose()


async def test_an_unreachable_endpoint_is_a_connection_error() -> None:
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    lm = OpenAIChatLM(
        "openai/m",
        base_url=f"http://127.0.0.1:{port}/v1",
        api_key="k",
        retry=fast_retry(max_retries=1),
    )
    with pytest.raises(ProviderConnectionError):
        await lm.complete(USER)
    await lm.aclose()


async def test_the_sdk_does_not_retry_on_its_own() -> None:
    async with FakeOpenAIServer([Fault.server_error(500), "x"]) as server:
        lm = openai_lm(server, retry=fast_retry(max_retries=0))
        with pytest.raises(ProviderResponseError):
            await lm.complete(USER)
        await lm.aclose()
    assert len(server.completion_requests) == 1


async def test_reasoning_models_get_max_completion_tokens_and_no_temperature() -> None:
    async with FakeOpenAIServer(default="ok") as server:
        for model in ("openai/gpt-5-mini", "openai/o3", "openai/o4-mini"):
            lm = openai_lm(server, model, temperature=0.7)
            await lm.complete(USER, max_tokens=64)
            await lm.aclose()
            assert lm.temperature is None
    for request in server.completion_requests:
        assert request.body["max_completion_tokens"] == 64
        assert "max_tokens" not in request.body
        assert "temperature" not in request.body


async def test_chat_models_get_max_tokens_and_temperature() -> None:
    async with FakeOpenAIServer(default="ok") as server:
        lm = openai_lm(server, "openai/gpt-4.1-mini", temperature=0.2)
        await lm.complete(USER, max_tokens=64)
        await lm.aclose()
    body = server.completion_requests[0].body
    assert body["max_tokens"] == 64 and body["temperature"] == 0.2
    assert body["model"] == "gpt-4.1-mini"
    assert "max_completion_tokens" not in body


async def test_a_cost_reported_by_the_provider_is_kept() -> None:
    async with FakeOpenAIServer([FakeReply("x", cost=0.0123)]) as server:
        lm = openai_lm(server, "openai/gpt-4.1")
        assert (await lm.complete(USER)).cost_usd == pytest.approx(0.0123)
        await lm.aclose()


def test_one_provider_survives_several_event_loops() -> None:
    """RLM.completion() twice means two asyncio.run calls: the peers' "Event loop is closed"."""
    with FakeOpenAIServer(default="again") as server:
        lm = openai_lm(server)
        answers = [asyncio.run(lm.complete(USER)).text for _ in range(3)]
    assert answers == ["again"] * 3


async def test_no_hidden_concurrency_limit_below_the_engines_default() -> None:
    """64 calls at once all reach the server (the SDK pool is not a second limiter)."""
    async with FakeOpenAIServer(default="ok", hold_until_in_flight=64) as server:
        lm = openai_lm(server)
        results = await asyncio.gather(*(lm.complete(USER) for _ in range(64)))
        await lm.aclose()
    assert len(results) == 64
    assert server.max_in_flight == 64


async def test_an_engine_style_semaphore_bounds_what_the_server_sees() -> None:
    limit = asyncio.Semaphore(8)
    async with FakeOpenAIServer(default="ok", latency_s=0.01, hold_until_in_flight=8) as server:
        lm = openai_lm(server)

        async def gated() -> str:
            async with limit:
                return (await lm.complete(USER)).text

        assert await asyncio.gather(*(gated() for _ in range(40))) == ["ok"] * 40
        await lm.aclose()
    assert server.max_in_flight == 8


def test_the_fake_streams_with_a_final_usage_chunk_through_the_sdk() -> None:
    text = "a streamed answer that spans several chunks"
    with FakeOpenAIServer([text]) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        stream = client.chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        client.close()
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == (len(text) + 3) // 4


def test_the_fake_lists_models_through_the_sdk() -> None:
    with FakeOpenAIServer(model_ids=["a", "b"]) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        assert [m.id for m in client.models.list()] == ["a", "b"]
        client.close()


def _body(choices: object, usage: object = None) -> str:
    import json

    body: dict[str, object] = {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage
    return json.dumps(body)


MESSAGE = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "fine"}}


@pytest.mark.parametrize(
    ("body", "text", "estimated"),
    [
        (_body([MESSAGE], {"prompt_tokens": "12", "completion_tokens": None}), "fine", True),
        (
            _body(
                [MESSAGE],
                {"prompt_tokens": 9, "completion_tokens": "x", "prompt_tokens_details": None},
            ),
            "fine",
            False,
        ),
        (
            _body(
                [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {
                            "role": "assistant",
                            "content": [
                                {"type": "text", "text": "in "},
                                {"type": "text", "text": "parts"},
                            ],
                        },
                    }
                ]
            ),
            "in parts",
            True,
        ),
        (
            _body(
                [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": None,
                            "refusal": "I can't help with that",
                        },
                    }
                ]
            ),
            "I can't help with that",
            True,
        ),
    ],
)
async def test_odd_but_valid_json_is_read_or_estimated_never_a_crash(
    body: str, text: str, estimated: bool
) -> None:
    async with FakeOpenAIServer([Fault.raw(body)]) as server:
        lm = openai_lm(server)
        response = await lm.complete(USER)
        await lm.aclose()
    assert response.text == text
    assert response.usage.estimated is estimated


@pytest.mark.parametrize(
    "body", ['"just a string"', "[]", _body("not a list"), _body(None), _body([{"index": 0}])]
)
async def test_unusable_json_is_a_response_error(body: str) -> None:
    async with FakeOpenAIServer(default=Fault.raw(body)) as server:
        lm = openai_lm(server, retry=fast_retry(max_retries=1))
        with pytest.raises(ProviderResponseError):
            await lm.complete(USER)
        await lm.aclose()
