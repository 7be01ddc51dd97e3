"""Runs under load and interruption: the run limit, the queue bound, disconnects, shutdown."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

from fastrlm import Budget
from fastrlm.lm import ChatMessage
from fastrlm.testing import ScriptedLM
from fastrlm.trace import TraceWriter, read_trace

from .helpers import ECHO_SHAPE, QUESTION, root, serving


class HeldRoot:
    """A root reply function that blocks until released, and records cancellations."""

    def __init__(self, expect: int = 1) -> None:
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.inside = 0
        self.expect = expect
        self.all_inside = asyncio.Event()

    async def __call__(self, messages: list[ChatMessage]) -> str:
        self.entered.set()
        self.inside += 1
        if self.inside >= self.expect:
            self.all_inside.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return ECHO_SHAPE


def ask(client: openai.AsyncOpenAI, context: str = "abc", **kwargs: Any) -> Any:
    return client.chat.completions.create(model="rlm", messages=QUESTION,
                                          extra_body={"context": context}, **kwargs)


async def test_concurrent_requests_run_at_most_the_limit_and_the_rest_queue() -> None:
    held = HeldRoot(expect=2)
    root_lm = root(held)
    async with serving(root_lm, max_concurrent_runs=2) as (server, client):
        requests = [asyncio.create_task(ask(client, "x" * (i + 1))) for i in range(4)]
        await server.wait_until(lambda s: s.active_runs == 2 and s.queued_runs == 2)
        await held.all_inside.wait()  # both admitted runs are inside their root call
        held.release.set()
        replies = await asyncio.gather(*requests)
    assert sorted(r.choices[0].message.content for r in replies) == [
        "str:1", "str:2", "str:3", "str:4"]
    assert root_lm.max_in_flight == 2


async def test_past_the_queue_bound_a_request_gets_429_with_retry_after() -> None:
    held = HeldRoot()
    async with serving(root(held), max_concurrent_runs=1, max_queued_runs=0) as (server, client):
        first = asyncio.create_task(ask(client))
        await server.wait_until(lambda s: s.active_runs == 1)
        with pytest.raises(openai.RateLimitError) as caught:
            await ask(client)
        held.release.set()
        assert (await first).choices[0].message.content == "str:3"
    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.code == "server_busy"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_client_that_disconnects_cancels_its_run(stream: bool) -> None:
    held = HeldRoot()
    async with serving(root(held)) as (server, client):
        async def consume() -> None:
            reply = await ask(client, stream=stream)
            if stream:
                async for _ in reply:
                    pass

        request = asyncio.create_task(consume())
        await held.entered.wait()
        request.cancel()  # the SDK drops the connection
        await held.cancelled.wait()
        await server.wait_until(lambda s: s.active_runs == 0)
    [path] = TraceWriter().traces_dir.glob("*.jsonl")
    finished = read_trace(path).finished
    assert finished is not None and finished["stop_reason"] == "cancelled"


async def test_close_cancels_running_runs_and_their_clients_get_503() -> None:
    held = HeldRoot()
    async with serving(root(held)) as (server, client):
        request = asyncio.create_task(ask(client))
        await held.entered.wait()
        await server.close()
        with pytest.raises(openai.InternalServerError) as caught:
            await request
    assert caught.value.status_code == 503
    assert held.cancelled.is_set()


async def test_close_ends_a_stream_with_an_error_event() -> None:
    held = HeldRoot()
    async with serving(root(held)) as (server, client):
        stream = await ask(client, stream=True)
        await held.entered.wait()
        closing = asyncio.create_task(server.close())
        with pytest.raises(openai.APIError, match="shutting down"):
            async for _ in stream:
                pass
        await closing


async def test_sub_calls_use_the_sub_model() -> None:
    sub = ScriptedLM(lambda m: "S", model="scripted/sub")
    fan = '```repl\nFINAL("".join(llm_query_batched(["a", "b"])))\n```'
    async with serving(root(fan), sub) as (_, client):
        reply = await ask(client)
    assert reply.choices[0].message.content == "SS" and len(sub.calls) == 2


class SubBarrier:
    """A sub-model reply function that holds every call until ``expect`` calls are inside, so
    each run's calls settle only after every run has started."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.inside = 0
        self.all_inside = asyncio.Event()

    async def __call__(self, messages: list[ChatMessage]) -> str:
        self.inside += 1
        if self.inside >= self.expect:
            self.all_inside.set()
        await self.all_inside.wait()
        return "sub"


async def test_concurrent_requests_each_trace_holds_only_its_own_runs_events() -> None:
    # Every request's sub-calls take its tree past 80% of max_subcalls: a budget.warning each,
    # all emitted after all four runs started (the case a writer guessing the run got wrong).
    runs, calls = 4, 9
    code = f"```repl\nr = llm_query_batched(['p'] * {calls})\nFINAL(str(len(r)))\n```"
    sub = ScriptedLM(SubBarrier(runs * calls), model="scripted/sub")
    writer = TraceWriter()
    async with serving(root(code), sub, trace=writer, max_concurrent_runs=runs,
                       budget=Budget(max_subcalls=10, max_iterations=4)) as (_, client):
        replies = await asyncio.gather(*(ask(client, f"ctx {i}") for i in range(runs)))
    assert [r.choices[0].message.content for r in replies] == [str(calls)] * runs
    ids = {r.model_extra["fastrlm"]["trace_id"] for r in replies}
    paths = sorted(writer.traces_dir.glob("*.jsonl"))
    assert {p.stem for p in paths} == ids and len(ids) == runs
    for path in paths:
        events = read_trace(path).events
        assert {e["run_id"] for e in events} == {path.stem}
        warnings = [e for e in events if e["type"] == "budget.warning"]
        assert [w["resource"] for w in warnings] == ["subcalls"]
        assert [e["type"] for e in events][0] == "run.started"
