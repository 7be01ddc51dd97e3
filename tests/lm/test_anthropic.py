"""AnthropicLM through the real ``anthropic`` SDK against the Anthropic-shaped fake."""

from __future__ import annotations

from typing import Any

import pytest

anthropic = pytest.importorskip("anthropic")

from fastrlm import AuthenticationError, PriceTable, ProviderResponseError  # noqa: E402
from fastrlm.lm import AnthropicLM, ChatMessage, OpenAIChatLM  # noqa: E402
from fastrlm.testing import FakeAnthropicServer, FakeReply, Fault  # noqa: E402

from .helpers import fast_retry  # noqa: E402

HISTORY: list[ChatMessage] = [
    {"role": "system", "content": "You are the root of an RLM."},
    {"role": "user", "content": "question"},
    {"role": "assistant", "content": "```repl\nprint(1)\n```"},
    {"role": "user", "content": "output: 1"},
]


def _lm(server: FakeAnthropicServer, **kw: Any) -> AnthropicLM:
    kw.setdefault("retry", fast_retry())
    return AnthropicLM("anthropic/claude-haiku-4-5", base_url=server.base_url, api_key="k", **kw)


async def test_system_is_split_out_and_the_prefix_is_marked_for_caching() -> None:
    async with FakeAnthropicServer(["ok"]) as server:
        lm = _lm(server)
        await lm.complete(HISTORY, max_tokens=100)
        await lm.aclose()
    body = server.completion_requests[0].body
    assert body["system"] == [
        {
            "type": "text",
            "text": "You are the root of an RLM.",
            "cache_control": {"type": "ephemeral"},
        }
    ]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    marked = [i for i, m in enumerate(body["messages"]) if "cache_control" in m["content"][-1]]
    assert marked == [0, 1, 2]  # the question, the latest reply, the last message
    assert body["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["max_tokens"] == 100 and body["model"] == "claude-haiku-4-5"


async def test_a_one_off_prompt_is_not_written_to_the_cache() -> None:
    async with FakeAnthropicServer(["ok"]) as server:
        lm = _lm(server)
        await lm.complete([{"role": "user", "content": "a sub-call"}])
        await lm.aclose()
    body = server.completion_requests[0].body
    assert "system" not in body
    assert "cache_control" not in body["messages"][0]["content"][0]
    assert body["max_tokens"] == 8192  # the Messages API requires one


async def test_thinking_blocks_are_skipped_and_thinking_drops_temperature() -> None:
    async with FakeAnthropicServer([FakeReply("the answer", thinking="let me think")]) as server:
        lm = _lm(server, thinking_budget=2048, temperature=0.5)
        response = await lm.complete(HISTORY, max_tokens=4096)
        await lm.aclose()
    assert response.text == "the answer"
    body = server.completion_requests[0].body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert "temperature" not in body and lm.temperature is None


async def test_cache_tokens_are_read_and_priced_cache_aware() -> None:
    reply = FakeReply(
        "x",
        prompt_tokens=10_000,
        cached_tokens=8_000,
        cache_write_tokens=1_500,
        completion_tokens=400,
    )
    async with FakeAnthropicServer([reply]) as server:
        lm = _lm(server)
        usage = (await lm.complete(HISTORY)).usage
        await lm.aclose()
    assert (usage.input_tokens, usage.cached_input_tokens, usage.cache_write_tokens) == (
        10_000,
        8_000,
        1_500,
    )
    # claude-haiku-4-5: input 1.0, cache read 0.1, cache write 1.25, output 5.0 USD per 1M
    expected = (500 * 1.0 + 8_000 * 0.1 + 1_500 * 1.25 + 400 * 5.0) / 1_000_000
    assert expected == pytest.approx(0.005175)
    assert PriceTable().cost(lm.model, usage) == pytest.approx(expected)


@pytest.mark.parametrize(
    "fault",
    [
        Fault.rate_limit(retry_after="0"),
        Fault.server_error(529),
        Fault.malformed_json(),
        Fault.stall(30),
    ],
)
async def test_transient_faults_are_retried(fault: Fault) -> None:
    stall = fault.kind == "stall"
    # Only the stall needs a short timeout; the retry after it is answered by `default`, so a
    # slow machine that times out the good attempt too still converges.
    async with FakeAnthropicServer([fault], default="recovered") as server:
        lm = _lm(server, retry=fast_retry(timeout_s=0.3 if stall else 10))
        assert (await lm.complete(HISTORY)).text == "recovered"
        await lm.aclose()
    assert len(server.completion_requests) >= 2 if stall else len(server.completion_requests) == 2


async def test_a_bad_key_is_not_retried() -> None:
    async with FakeAnthropicServer([Fault.http_status(401, "invalid x-api-key"), "x"]) as server:
        lm = _lm(server)
        with pytest.raises(AuthenticationError, match="invalid x-api-key"):
            await lm.complete(HISTORY)
        await lm.aclose()
    assert len(server.completion_requests) == 1


async def test_a_reply_with_only_thinking_and_max_tokens_is_a_response_error() -> None:
    reply = FakeReply(None, thinking="...", finish_reason="length")
    async with FakeAnthropicServer([reply, "never"]) as server:
        lm = _lm(server)
        with pytest.raises(ProviderResponseError, match="max_tokens"):
            await lm.complete(HISTORY)
        await lm.aclose()
    assert len(server.completion_requests) == 1


async def test_missing_usage_is_estimated() -> None:
    async with FakeAnthropicServer([Fault.missing_usage("abcdefgh")]) as server:
        lm = _lm(server)
        response = await lm.complete(HISTORY)
        await lm.aclose()
    assert response.usage.estimated and response.usage.output_tokens == 2


def test_the_fake_streams_the_messages_api_through_the_sdk() -> None:
    with FakeAnthropicServer([FakeReply("streamed text", thinking="hm")]) as server:
        client = anthropic.Anthropic(base_url=server.base_url, api_key="k", max_retries=0)
        with client.messages.stream(
            model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        client.close()
    assert text == "streamed text"
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.usage.output_tokens > 0


async def test_the_ledger_counts_and_bounds_anthropic_retries_too() -> None:
    from fastrlm import RLM, Budget
    from fastrlm.testing import ScriptedLM

    greedy = "```repl\nr = llm_query_batched([f'p{i}' for i in range(20)])\nprint(len(r))\n```"
    root = ScriptedLM(lambda _m: greedy, model="scripted/root")
    async with FakeAnthropicServer(default=Fault.server_error(529)) as server:
        rlm = RLM(root, _lm(server, retry=fast_retry(2)), sandbox="none",
                  budget=Budget(max_subcalls=4))
        result = await rlm.acompletion("q", context="c")
        sent = server.request_count
    assert sent == 4 * 3 and result.subcalls == 4 and result.subcalls_failed == 4
    assert result.requests == sent + len(root.calls)
    assert result.usage.by_model["anthropic/claude-haiku-4-5"].failed_requests == sent


def test_breakpoints_move_forward_with_the_history_and_stay_within_the_apis_four() -> None:
    from fastrlm.lm._anthropic import cache_breakpoints

    assert cache_breakpoints(["user"]) == []
    roles = ["user"] + ["assistant", "user"] * 12
    assert cache_breakpoints(roles) == [0, 23, 24]
    assert cache_breakpoints(roles + ["assistant", "user"]) == [0, 25, 26]
    assert cache_breakpoints(["user", "assistant", "user", "user"]) == [0, 1, 3]


async def test_a_long_history_sends_no_more_than_four_breakpoints() -> None:
    history: list[ChatMessage] = [HISTORY[0], HISTORY[1]]
    for i in range(10):
        history += [{"role": "assistant", "content": f"reply {i}"},
                    {"role": "user", "content": f"output {i}"}]
    async with FakeAnthropicServer(["ok"]) as server:
        lm = _lm(server)
        await lm.complete(history, max_tokens=100)
        await lm.aclose()
    body = server.completion_requests[0].body
    marks = sum("cache_control" in m["content"][-1] for m in body["messages"])
    marks += sum("cache_control" in b for b in body["system"])
    assert marks == 4


@pytest.mark.parametrize("build", [AnthropicLM, OpenAIChatLM])
def test_a_misspelt_provider_option_is_a_type_error_not_ignored(build: type[Any]) -> None:
    with pytest.raises(TypeError, match="temprature"):
        build("x/y", temprature=0.1)
    built = build("x/y", api_model="wire", base_url="http://h/v1/", api_key="k", temperature=0.5)
    assert (built.model, built.api_model, built.base_url, built.temperature) == (
        "x/y", "wire", "http://h/v1", 0.5)
