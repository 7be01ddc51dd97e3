"""The fan-out warm-up on the wire: Anthropic marks a batch's shared prefix, and against a fake
that models Anthropic's prompt cache (an entry exists once its writing request finished) a
20-prompt batch pays one cache write and 19 reads with the warm-up, 20 writes without; an
OpenAI-compatible batch is not delayed."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from fastrlm import RLM, Budget, Limits, PriceTable
from fastrlm.lm import ChatMessage, OpenAIChatLM
from fastrlm.testing import FakeAnthropicServer, FakeOpenAIServer, FakeReply, ScriptedLM

from .helpers import fast_retry

anthropic = pytest.importorskip("anthropic")

from fastrlm.lm._anthropic import AnthropicLM, min_cached_tokens  # noqa: E402

SHARED = "Shared document. " * 2000  # ~8.5K tokens
BATCH = ("prefix = " + repr(SHARED) + "\n"
         "r = llm_query_batched([prefix + f'Question {i}?' for i in range(20)])\n"
         "import json\nFINAL(json.dumps(r))")
PRICES = PriceTable()


def _lm(server: FakeAnthropicServer, model: str = "anthropic/claude-sonnet-4-5",
        **kw: Any) -> AnthropicLM:
    kw.setdefault("retry", fast_retry())
    return AnthropicLM(model, base_url=server.base_url, api_key="k", **kw)


def _root(code: str) -> ScriptedLM:
    return ScriptedLM([f"```repl\n{code}\n```"], model="scripted/root")


# ----------------------------------------------------------------------------- the request
def test_a_cache_prefix_is_a_marked_block_of_its_own() -> None:
    lm = AnthropicLM("anthropic/claude-sonnet-4-5", api_key="k")
    message: ChatMessage = {"role": "user", "content": "ABCDEFxyz", "cache_prefix": 6}
    blocks = lm.request_params([message], None)["messages"][0]["content"]
    assert blocks == [{"type": "text", "text": "ABCDEF", "cache_control": {"type": "ephemeral"}},
                      {"type": "text", "text": "xyz"}]
    whole: ChatMessage = {"role": "user", "content": "ABC", "cache_prefix": 3}
    assert lm.request_params([whole], None)["messages"][0]["content"] == [
        {"type": "text", "text": "ABC", "cache_control": {"type": "ephemeral"}}]  # no empty
    off = AnthropicLM("anthropic/claude-sonnet-4-5", api_key="k", prompt_caching=False)
    assert off.request_params([message], None)["messages"][0]["content"] == [
        {"type": "text", "text": "ABCDEFxyz"}]
    assert off.warmup_prefix_tokens is None and lm.warmup_prefix_tokens == 1024


def test_a_marked_prefix_keeps_the_request_within_four_breakpoints() -> None:
    lm = AnthropicLM("anthropic/claude-sonnet-4-5", api_key="k")
    history: list[ChatMessage] = [
        {"role": "system", "content": "system"},
        {"role": "user", "content": "shared prefix, then the question", "cache_prefix": 14},
        {"role": "assistant", "content": "reply"},
        {"role": "user", "content": "more"},
        {"role": "assistant", "content": "reply 2"},
        {"role": "user", "content": "last"},
    ]
    params = lm.request_params(history, None)
    marks = sum("cache_control" in block for turn in params["messages"]
                for block in turn["content"]) + len(params["system"])
    assert marks == 4
    assert "cache_control" in params["messages"][0]["content"][0]  # the prefix
    assert "cache_control" in params["messages"][-1]["content"][-1]  # the last message


def test_the_warmup_minimum_follows_anthropics_smallest_cached_prompt() -> None:
    assert min_cached_tokens("anthropic/claude-sonnet-4-5") == 1024
    assert min_cached_tokens("anthropic/claude-3-5-haiku") == 2048
    assert min_cached_tokens("anthropic/claude-haiku-4-5") == 4096


# ----------------------------------------------------------------------------- the fake
async def test_the_fake_bills_a_read_only_after_the_writer_finished() -> None:
    async with FakeAnthropicServer(default="ok", prefix_cache=True) as server:
        lm = _lm(server)
        prompt: ChatMessage = {"role": "user", "content": SHARED + "a", "cache_prefix": 34_000}
        first = await lm.complete([prompt])
        second = await lm.complete([{**prompt, "content": SHARED + "b"}])
        plain = await lm.complete([{"role": "user", "content": SHARED + "c"}])  # unmarked
        await lm.aclose()
    assert first.usage.cache_write_tokens == 8500 and first.usage.cached_input_tokens == 0
    assert second.usage.cached_input_tokens == 8500 and second.usage.cache_write_tokens == 0
    assert plain.usage.cached_input_tokens == plain.usage.cache_write_tokens == 0
    assert (server.cache_writes, server.cache_reads) == (1, 1)


# ----------------------------------------------------------------------------- the batch
async def _batch(warmup: bool) -> tuple[Any, FakeAnthropicServer]:
    server = FakeAnthropicServer(default=FakeReply("fine"), prefix_cache=True)
    async with server:
        sub = _lm(server)
        rlm = RLM(_root(BATCH), sub, sandbox="none", prices=PRICES,
                  limits=Limits(warmup_prefix_tokens=None if warmup else 0))
        out = await rlm.acompletion("q", context="c")
        await sub.aclose()
    assert json.loads(out.answer) == ["fine"] * 20
    return out, server


async def _marked_at_once() -> tuple[float, FakeAnthropicServer]:
    """The batch's 20 prompts marked but sent at once: each request waits until all 20 are in
    flight, so none finished before another arrived, whatever the machine's load."""
    server = FakeAnthropicServer(default=FakeReply("fine"), prefix_cache=True,
                                 hold_until_in_flight=20)
    async with server:
        sub = _lm(server)
        replies = await asyncio.gather(*(sub.complete(
            [{"role": "user", "content": f"{SHARED}Question {i}?",
              "cache_prefix": len(SHARED) + len("Question ")}]) for i in range(20)))
        await sub.aclose()
    return sum(PRICES.cost(sub.model, r.usage) or 0.0 for r in replies), server


def _cost(out: Any) -> float:
    return float(out.usage.by_model["anthropic/claude-sonnet-4-5"].cost_usd)


async def test_a_shared_prefix_batch_pays_one_cache_write_with_the_warmup_and_20_without(
) -> None:
    warm, warm_server = await _batch(warmup=True)
    cold_cost, cold_server = await _marked_at_once()
    assert (warm_server.cache_writes, warm_server.cache_reads) == (1, 19)
    assert (cold_server.cache_writes, cold_server.cache_reads) == (20, 0)
    usage = warm.usage.by_model["anthropic/claude-sonnet-4-5"]
    shared = (len(SHARED) + len("Question ") + 3) // 4  # the fake's estimate, 4 chars a token
    assert usage.cache_write_tokens == shared and usage.cached_input_tokens == 19 * shared
    # the ledger prices them: writes at 1.25x the input price, reads at 0.1x
    price = PRICES.price("anthropic/claude-sonnet-4-5")
    assert price is not None
    assert price.cache_write == pytest.approx(1.25 * price.input)
    assert price.cached_input == pytest.approx(0.1 * price.input)
    # 1 write + 19 reads of the prefix against 20 writes
    assert _cost(warm) / cold_cost == pytest.approx((1.25 + 19 * 0.1) / (20 * 1.25), rel=0.05)


async def test_with_the_warmup_off_nothing_is_marked_and_every_prompt_pays_full_input() -> None:
    warm, _ = await _batch(warmup=True)
    off, off_server = await _batch(warmup=False)
    assert (off_server.cache_writes, off_server.cache_reads) == (0, 0)
    assert all("cache_control" not in json.dumps(r.body["messages"])
               for r in off_server.completion_requests if not r.is_root)
    assert _cost(warm) / _cost(off) == pytest.approx((1.25 + 19 * 0.1) / 20, rel=0.05)


async def test_an_openai_compatible_batch_is_not_delayed() -> None:
    # every request waits until 20 are in flight: with a warm-up the first would stand alone
    async with FakeOpenAIServer(default="fine", hold_until_in_flight=20) as server:
        sub = OpenAIChatLM("openai/gpt-4.1-mini", base_url=server.base_url, api_key="k",
                           retry=fast_retry())
        rlm = RLM(_root(BATCH), sub, sandbox="none")
        out = await rlm.acompletion("q", context="c")
        await sub.aclose()
    assert json.loads(out.answer) == ["fine"] * 20
    assert server.max_in_flight == 20
    assert all("cache_control" not in json.dumps(r.body) for r in server.completion_requests)


async def test_the_dollar_budget_holds_with_and_without_the_warmup() -> None:
    # a call's worst case is ~34K tokens (a token a byte) at the write price, ~$0.13, reserved
    # before it is sent; its real cost ~8.5K tokens: $0.032 a write, $0.0026 a read, $0.0255
    # plain. The warmed batch (~$0.08) fits the cap whole; the plain one (~$0.51) is refused
    # partway, never over the cap, every prompt keeping its place
    cap = 0.3
    runs = {}
    for warmup in (True, False):
        async with FakeAnthropicServer(default=FakeReply("fine"), prefix_cache=True) as server:
            sub = _lm(server)
            rlm = RLM(_root(BATCH), sub, sandbox="none", prices=PRICES,
                      budget=Budget(max_usd=cap), limits=Limits(
                          sub_max_tokens=100, warmup_prefix_tokens=None if warmup else 0))
            out = await rlm.acompletion("q", context="c")
            await sub.aclose()
        answers = json.loads(out.answer)
        assert out.cost_usd <= cap and len(answers) == 20
        assert all(a == "fine" or a.startswith("[error: budget_usd") for a in answers)
        runs[warmup] = answers.count("fine")
    assert runs[True] == 20 and 1 <= runs[False] < 20
