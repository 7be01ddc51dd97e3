"""The fan-out warm-up: a batch whose prompts share a long prefix, on a provider whose prompt
cache holds an entry only once a response is under way, sends one prompt first and the rest
once it is done, each marked with the shared prefix. Through the one batched dispatch
(``CallTree.fan_out``): ``llm_query_batched``, ``llm_map``, ``llm_filter``, ``llm_reduce``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from fastrlm import Budget, InvalidSettingError, Limits, PriceTable, ProviderError
from fastrlm._core.call_tree import CHARS_PER_TOKEN, warmup_prefix
from fastrlm.events import Event, SubcallFinished
from fastrlm.lm import ChatMessage, warmup_prefix_tokens
from fastrlm.testing import ScriptedLM, prompt_of

from .helpers import make_rlm, repl

PREFIX_CODE = "prefix = 'Shared document. ' * 2000\n"  # ~8K tokens
PREFIX_CHARS = len("Shared document. ") * 2000


@dataclass
class CachingLM(ScriptedLM):
    """A scripted sub-model whose provider needs the warm-up (as Anthropic's does)."""

    warmup_prefix_tokens: int | None = 1024


class Order:
    """Answers each call with its prompt's tail, and records which calls had started while
    the first was still running (awaiting a release event, not a timer)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.first_done = False
        self.started_while_first_ran = 0
        self.seen = 0

    async def __call__(self, messages: list[ChatMessage]) -> str:
        self.seen += 1
        index = self.seen
        if index == 1:
            # let every other ready task run before the first one answers
            for _ in range(50):
                await asyncio.sleep(0)
            self.first_done = True
        else:
            self.started_while_first_ran += not self.first_done
            await asyncio.sleep(0)  # others run alongside
        return "a:" + prompt_of(messages)[-3:]


# ----------------------------------------------------------------------------- the decision
def test_warmup_prefix_is_the_shared_start_when_it_is_long_enough() -> None:
    shared = "x" * (100 * CHARS_PER_TOKEN)
    prompts = [shared + "one", shared + "two", shared + "three"]
    assert warmup_prefix(prompts, 100) == len(shared) + 0  # "one"/"two"/"three" share nothing
    assert warmup_prefix(prompts, 101) == 0  # below the provider's minimum
    assert warmup_prefix(prompts, None) == 0 and warmup_prefix(prompts, 0) == 0  # off
    assert warmup_prefix(prompts[:1], 100) == 0  # one prompt: nothing to share
    assert warmup_prefix([shared + "a", "y" + shared], 1) == 0  # no common start
    assert warmup_prefix([shared, shared], 100) == len(shared)  # identical prompts


def test_only_a_provider_that_needs_it_warms_up_by_default() -> None:
    assert warmup_prefix_tokens(ScriptedLM(["x"])) is None
    assert warmup_prefix_tokens(CachingLM(["x"])) == 1024
    for bad in (True, 0, -5, "1024"):
        assert warmup_prefix_tokens(CachingLM(["x"], warmup_prefix_tokens=bad)) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, True, 1.5, "1024"])
def test_limits_refuse_a_bad_warmup_setting_and_name_it(bad: object) -> None:
    with pytest.raises(InvalidSettingError, match="Limits.warmup_prefix_tokens"):
        Limits(warmup_prefix_tokens=bad)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the dispatch
async def test_a_batch_sharing_a_prefix_sends_one_first_and_marks_the_prefix() -> None:
    order = Order()
    sub = CachingLM(order, model="scripted/sub")
    code = PREFIX_CODE + "r = llm_query_batched([prefix + f'q{i:02d}' for i in range(20)])\n" \
        "FINAL(','.join(r))"
    rlm, _ = make_rlm([repl(code)], sub=sub)
    out = await rlm.acompletion("q", context="c")
    assert out.answer == ",".join(f"a:q{i:02d}" for i in range(20))  # in order, one each
    assert len(sub.calls) == 20 and order.started_while_first_ran == 0
    assert sub.max_in_flight > 1  # the rest still run concurrently
    marks = {call[0].get("cache_prefix") for call in sub.calls}
    assert marks == {PREFIX_CHARS + len("q")}  # 'q00' and 'q01' share the 'q' too


async def test_a_provider_that_caches_by_itself_is_not_delayed() -> None:
    order = Order()
    sub = ScriptedLM(order, model="scripted/sub")
    code = PREFIX_CODE + "r = llm_query_batched([prefix + str(i) for i in range(20)])\n" \
        "FINAL('done')"
    rlm, _ = make_rlm([repl(code)], sub=sub)
    await rlm.acompletion("q", context="c")
    assert order.started_while_first_ran == 19  # all sent at once
    assert all("cache_prefix" not in call[0] for call in sub.calls)


async def test_limits_turn_the_warmup_off_or_on_whatever_the_provider() -> None:
    code = PREFIX_CODE + "r = llm_query_batched([prefix + str(i) for i in range(8)])\n" \
        "FINAL('done')"
    off = Order()
    rlm, _ = make_rlm([repl(code)], sub=CachingLM(off, model="scripted/sub"),
                      limits=Limits(warmup_prefix_tokens=0))
    await rlm.acompletion("q", context="c")
    assert off.started_while_first_ran == 7
    on = Order()
    plain = ScriptedLM(on, model="scripted/sub")
    rlm, _ = make_rlm([repl(code)], sub=plain, limits=Limits(warmup_prefix_tokens=100))
    await rlm.acompletion("q", context="c")
    assert on.started_while_first_ran == 0
    assert plain.calls[0][0].get("cache_prefix") == PREFIX_CHARS


async def test_a_short_shared_prefix_is_not_worth_a_warmup() -> None:
    order = Order()
    sub = CachingLM(order, model="scripted/sub")
    code = "r = llm_query_batched(['Summarize: ' + str(i) for i in range(6)])\nFINAL('done')"
    rlm, _ = make_rlm([repl(code)], sub=sub)
    await rlm.acompletion("q", context="c")
    assert order.started_while_first_ran == 5


async def test_a_failing_first_call_lets_the_rest_run_and_is_reported() -> None:
    events: list[Event] = []

    def reply(messages: list[ChatMessage]) -> str | BaseException:
        if prompt_of(messages).endswith("q0"):
            return ProviderError("overloaded", provider="scripted", model="scripted/sub")
        return "fine"

    sub = CachingLM(reply, model="scripted/sub")
    code = PREFIX_CODE + "r = llm_query_batched([prefix + f'q{i}' for i in range(10)])\n" \
        "import json\nFINAL(json.dumps(r))"
    rlm, _ = make_rlm([repl(code)], sub=sub, events=events)
    out = await rlm.acompletion("q", context="c")
    answers = json.loads(out.answer)
    assert answers[0].startswith("[error: subcall_failed") and "overloaded" in answers[0]
    assert answers[1:] == ["fine"] * 9
    failed = [e for e in events if isinstance(e, SubcallFinished) and e.error]
    assert len(failed) == 1 and "overloaded" in (failed[0].error or "")


async def test_the_budget_still_holds_with_the_warmup() -> None:
    sub = CachingLM(lambda m: "fine", model="scripted/sub")
    code = PREFIX_CODE + "r = llm_query_batched([prefix + f'q{i}' for i in range(20)])\n" \
        "FINAL(str(sum(a == 'fine' for a in r)))"
    rlm, _ = make_rlm([repl(code)], sub=sub, budget=Budget(max_subcalls=5))
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "5" and len(sub.calls) == 5 and out.subcalls == 5
    prices = PriceTable({"scripted/root": {"input": 1.0, "output": 1.0},
                         "scripted/sub": {"input": 1.0, "output": 1.0}})
    # the dollar cap: ~8K input tokens a call at $1/M is about $0.008 a call
    sub = CachingLM(lambda m: "fine", model="scripted/sub")
    rlm, _ = make_rlm([repl(code)], sub=sub, prices=prices, budget=Budget(max_usd=0.05))
    out = await rlm.acompletion("q", context="c")
    assert out.cost_usd <= 0.05 and 0 < len(sub.calls) < 20


async def test_llm_map_filter_and_each_reduce_level_warm_up_too() -> None:
    order = Order()
    sub = CachingLM(order, model="scripted/sub")
    code = PREFIX_CODE + (
        "m = llm_map(prefix + ' Item: {item}', [str(i) for i in range(12)])\n"
        "FINAL(str(len(m)))")
    rlm, _ = make_rlm([repl(code)], sub=sub)
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "12" and order.started_while_first_ran == 0
    assert all(call[0].get("cache_prefix") for call in sub.calls)

    def judge(messages: Sequence[ChatMessage]) -> str:
        return "yes"

    sub = CachingLM(judge, model="scripted/sub")
    code = PREFIX_CODE + (
        "f = llm_filter(prefix + ' Keep {item}?', [str(i) for i in range(6)])\n"
        "FINAL(str(len(f)))")
    rlm, _ = make_rlm([repl(code)], sub=sub)
    assert (await rlm.acompletion("q", context="c")).answer == "6"
    assert len(sub.calls) == 6 and all(call[0].get("cache_prefix") for call in sub.calls)

    order = Order()
    sub = CachingLM(order, model="scripted/sub")
    code = PREFIX_CODE + (
        "r = llm_reduce(prefix + ' Combine: {items}', [f'part {i}' for i in range(8)], "
        "fanin=2)\nFINAL(r)")
    rlm, _ = make_rlm([repl(code)], sub=sub)
    await rlm.acompletion("q", context="c")
    assert len(sub.calls) == 4 + 2 + 1 and order.started_while_first_ran == 0
    assert all(call[0].get("cache_prefix") for call in sub.calls[:6])  # 1-call level: none


async def test_a_sub_agent_batch_warms_up_and_marks_its_first_message_every_round() -> None:
    from fastrlm import Tool
    from fastrlm.lm import ToolCall

    def lookup(key: str) -> str:
        """Look a key up."""
        return f"value of {key}"

    order = Order()

    async def reply(messages: list[ChatMessage]) -> str | ToolCall:
        if len(messages) == 1:  # round 1: ask for the tool
            await order(messages)
            return ToolCall("t1", "lookup", {"key": "k"})
        return "done"

    sub = CachingLM(reply, model="scripted/sub", supports_tools=True)
    code = PREFIX_CODE + "r = llm_query_batched([prefix + f'q{i}' for i in range(6)])\n" \
        "FINAL(','.join(r))"
    rlm, _ = make_rlm([repl(code)], sub=sub, sub_tools=[Tool(lookup)])
    out = await rlm.acompletion("q", context="c")
    assert out.answer == ",".join(["done"] * 6)
    assert len(sub.calls) == 12 and order.started_while_first_ran == 0
    assert all(call[0].get("cache_prefix") == PREFIX_CHARS + 1 for call in sub.calls)
