"""The ledger against real HTTP: failing, stalling and over-reporting providers behind the openai
SDK and the fake server. Every request that reaches the server is one the ledger admitted and
booked, and the budget bounds how many there can be."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastrlm import RLM, Budget, Limits, PriceTable, ProviderResponseError, RLMResult, StopReason
from fastrlm.events import (
    CallRetrying,
    Event,
    ModelCallFailed,
    ModelResponse,
    RunFinished,
    SubcallFinished,
)
from fastrlm.lm import OpenAIChatLM, RetryPolicy
from fastrlm.testing import FakeOpenAIServer, ScriptedLM
from fastrlm.testing._fake_server import FakeReply, Fault, Reply

SUB = "openai/sub-model"
#: Dear on purpose: a failed attempt of a ~20-token prompt costs $0.02 at $1000 per 1M tokens.
PRICES = PriceTable({SUB: {"input": 1000.0, "output": 1000.0},
                     "scripted/root": {"input": 0.0, "output": 0.0}})
#: Forty sub-calls a turn, every turn, and never an answer: the budget alone must stop it.
GREEDY = "```repl\nr = llm_query_batched([f'chunk {i}' for i in range(40)])\nprint(len(r))\n```"


def sub_lm(srv: FakeOpenAIServer, *, retries: int = 2, timeout_s: float = 30.0) -> OpenAIChatLM:
    policy = RetryPolicy(max_retries=retries, timeout_s=timeout_s, base_delay_s=0.0,
                         max_delay_s=0.0)
    return OpenAIChatLM(SUB, base_url=srv.base_url, api_key="x", retry=policy)


def root_lm(reply: str = GREEDY) -> ScriptedLM:
    return ScriptedLM(lambda _messages: reply, model="scripted/root")


def agree(result: RLMResult, events: list[Event], root: ScriptedLM) -> None:
    """Events, the result and the ledger's own roll-up tell the same story, to the cent."""
    calls = [e for e in events if isinstance(e, SubcallFinished | ModelResponse)]
    [finished] = [e for e in events if isinstance(e, RunFinished) and e.depth == 0]
    assert sum(e.cost_usd for e in calls) == pytest.approx(result.cost_usd, abs=1e-9)
    assert finished.cost_usd == pytest.approx(result.cost_usd, abs=1e-9)
    assert result.usage.cost_usd == pytest.approx(result.cost_usd, abs=1e-9)
    assert finished.requests == result.requests
    sub_requests = sum(e.attempts for e in events if isinstance(e, SubcallFinished))
    assert result.requests == sub_requests + len(root.calls)


def trace_lines(path: str) -> list[dict[str, object]]:
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


FAULTS: dict[str, Reply] = {
    "500": Fault.server_error(),
    "429-forever": Fault.rate_limit(),
    "disconnect": Fault.disconnect(),
    "stall": Fault.stall(60.0),
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_failing_provider_gets_at_most_max_subcalls_times_the_attempts(
        fault: str) -> None:
    # The case: max_subcalls=10, two retries, a provider that always fails. Before the
    # ledger counted failures, 299 requests reached the provider.
    events: list[Event] = []
    timeout = 0.5 if fault == "stall" else 30.0
    with FakeOpenAIServer(default=FAULTS[fault]) as srv:
        root = root_lm()
        rlm = RLM(root, sub_lm(srv, timeout_s=timeout), sandbox="none", prices=PRICES,
                  budget=Budget(max_subcalls=10), on_event=events.append)
        result = await rlm.acompletion("q", context="c")
        sent = srv.request_count
    booked = result.usage.by_model[SUB].failed_requests
    assert booked == 10 * 3  # ten sub-calls, each one first attempt and two retries
    # every request that reached the server was booked; a stalled one's 0.5 s can run out
    # before a loaded machine's server has read it (under -n 2): booked, never arrived
    assert sent == booked if fault != "stall" else 0 < sent <= booked
    assert result.subcalls == 10 and result.subcalls_failed == 10
    assert result.subcalls_refused > 0 and result.limited_by is StopReason.BUDGET_SUBCALLS
    assert result.partial
    assert Budget(max_subcalls=10).request_cap is not None
    assert result.requests <= Budget(max_subcalls=10).request_cap  # type: ignore[operator]
    # every failed attempt was booked at its prompt's price
    assert result.cost_usd > 0
    agree(result, events, root)


async def test_failed_attempts_spend_the_dollar_budget_so_it_bounds_the_requests() -> None:
    events: list[Event] = []
    budget = Budget(max_usd=1.0)
    with FakeOpenAIServer(default=Fault.server_error()) as srv:
        root = root_lm()
        rlm = RLM(root, sub_lm(srv), sandbox="none", prices=PRICES, budget=budget,
                  limits=Limits(sub_max_tokens=256), on_event=events.append)
        result = await rlm.acompletion("q", context="c")
        sent = srv.request_count
    assert result.cost_usd <= budget.max_usd  # type: ignore[operator]
    assert result.limited_by is StopReason.BUDGET_USD and result.partial
    # each request that reached the server is booked: ~20 prompt tokens at $1000 per 1M
    per_attempt = result.cost_usd / sent
    assert 0.01 < per_attempt < 0.05
    assert sent < 1.0 / 0.01
    assert result.usage.by_model[SUB].failed_requests == sent
    agree(result, events, root)


async def test_a_max_requests_limit_caps_retries_across_the_tree() -> None:
    with FakeOpenAIServer(default=Fault.server_error()) as srv:
        root = root_lm()
        rlm = RLM(root, sub_lm(srv, retries=5), sandbox="none", prices=PRICES,
                  budget=Budget(max_requests=7, max_iterations=3))
        result = await rlm.acompletion("q", context="c")
        sent = srv.request_count
    assert result.requests == 7 == sent + len(root.calls)  # root turns count too
    assert result.stop_reason is StopReason.BUDGET_REQUESTS
    assert result.limited_by is StopReason.BUDGET_REQUESTS


LOOP = ("```repl\nfor i in range(10):\n    print(llm_query(f'question {i}'))\n"
        "FINAL('done')\n```")


@pytest.mark.parametrize("lie", ["completion", "prompt"])
async def test_an_over_reporting_provider_is_booked_flagged_and_stops_the_run(
        lie: str, tmp_path: Path) -> None:
    # The case: max_usd=0.50, a provider reporting 2M completion tokens booked $64 and
    # the run ended 'final'.
    reply = (FakeReply("fine", completion_tokens=2_000_000) if lie == "completion"
             else FakeReply("fine", prompt_tokens=10_000_000, completion_tokens=1))
    prices = PriceTable({SUB: {"input": 1.0, "output": 32.0},
                         "scripted/root": {"input": 0.0, "output": 0.0}})
    events: list[Event] = []
    with FakeOpenAIServer(default=reply) as srv:
        rlm = RLM(root_lm(LOOP), sub_lm(srv), sandbox="none", prices=prices,
                  budget=Budget(max_usd=0.5), limits=Limits(sub_max_tokens=1000),
                  on_event=events.append, trace=tmp_path)
        result = await rlm.acompletion("q", context="c")
        sent = srv.request_count
    assert sent == 1  # no call starts after the limit is passed
    assert result.stop_reason is StopReason.BUDGET_USD and result.partial
    assert result.limited_by is StopReason.BUDGET_USD
    assert result.cost_usd > 0.5  # booked as reported: the money is spent
    expected = 2_000_000 * 32 / 1e6 if lie == "completion" else 10_000_000 / 1e6
    assert result.cost_usd == pytest.approx(expected, rel=1e-3)
    [call] = [e for e in events if isinstance(e, SubcallFinished)]
    assert call.anomaly is not None and call.cost_usd == pytest.approx(result.cost_usd)
    assert result.trace_path is not None
    lines = trace_lines(result.trace_path)
    flagged = [x for x in lines if x.get("type") == "subcall.finished"]
    assert flagged and flagged[0]["anomaly"] == call.anomaly
    [done] = [x for x in lines if x.get("type") == "run.finished" and x.get("depth") == 0]
    assert done["stop_reason"] == "budget_usd"
    assert done["cost_usd"] == pytest.approx(result.cost_usd)


async def test_reservations_that_do_not_fit_queue_for_the_ones_in_flight() -> None:
    # The case: 20 concurrent calls worth $0.30 worst case and $0.13 real under $5.
    # Reserving all twenty at once would need $6; refusing the last four would be wrong.
    prices = PriceTable({SUB: {"input": 0.0, "output": 100.0},
                         "scripted/root": {"input": 0.0, "output": 0.0}})
    batch = ("```repl\nr = llm_query_batched([f'p{i}' for i in range(20)])\n"
             "FINAL(str(sum(x == 'fine' for x in r)))\n```")
    with FakeOpenAIServer(default=FakeReply("fine", completion_tokens=1300)) as srv:
        rlm = RLM(root_lm(batch), sub_lm(srv), sandbox="none", prices=prices,
                  budget=Budget(max_usd=5.0), limits=Limits(sub_max_tokens=3000))
        result = await rlm.acompletion("q", context="c")
        peak = srv.max_in_flight
    assert result.answer == "20"
    assert result.subcalls_refused == 0 and result.limited_by is None and not result.partial
    assert result.cost_usd == pytest.approx(20 * 0.13)
    assert peak <= 16  # never more in flight than $5 of worst cases


async def test_an_over_reporting_root_model_ends_the_run_at_its_first_turn() -> None:
    prices = PriceTable({SUB: {"input": 1.0, "output": 32.0}})
    events: list[Event] = []
    final = "```repl\nFINAL('paid for')\n```"
    with FakeOpenAIServer(default=FakeReply(final, completion_tokens=2_000_000)) as srv:
        root = OpenAIChatLM(SUB, base_url=srv.base_url, api_key="x")
        rlm = RLM(root, sandbox="none", prices=prices, budget=Budget(max_usd=0.5),
                  limits=Limits(root_max_tokens=1000), on_event=events.append)
        result = await rlm.acompletion("q", context="c")
        sent = srv.request_count
    assert sent == 1
    assert result.stop_reason is StopReason.BUDGET_USD and result.partial
    [turn] = [e for e in events if isinstance(e, ModelResponse)]
    assert turn.anomaly is not None and turn.cost_usd == pytest.approx(64.0, rel=1e-3)
    assert result.cost_usd == pytest.approx(turn.cost_usd)


async def test_a_provider_reported_cost_reaches_the_events_not_just_the_result() -> None:
    # Unpriced in the table, priced by the provider (OpenRouter-style usage.cost): events
    # used to say $0 while the result had the provider's figure.
    events: list[Event] = []
    with FakeOpenAIServer(default=FakeReply("fine", cost=0.0125)) as srv:
        root = root_lm("```repl\nr = llm_query_batched(['a', 'b'])\nFINAL('ok')\n```")
        rlm = RLM(root, sub_lm(srv), sandbox="none", prices=PriceTable(include_defaults=False),
                  on_event=events.append)
        result = await rlm.acompletion("q", context="c")
    subs = [e for e in events if isinstance(e, SubcallFinished)]
    assert [e.cost_usd for e in subs] == [0.0125, 0.0125]
    assert result.cost_usd == pytest.approx(0.025)
    assert result.usage.unpriced_models == ["scripted/root"]
    agree(result, events, root)


async def test_a_failing_root_turn_reports_every_booked_attempt() -> None:
    events: list[Event] = []
    with FakeOpenAIServer(default=Fault.server_error()) as srv:
        root = sub_lm(srv, retries=2)  # the same dear model, as the root this time
        rlm = RLM(root, sandbox="none", prices=PRICES, on_event=events.append)
        with pytest.raises(ProviderResponseError) as info:
            await rlm.acompletion("q", context="c")
        sent = srv.request_count
    result = info.value.result
    assert result is not None
    assert sent == 3 and result.requests == 3
    assert result.stop_reason is StopReason.ERROR and result.error_kind == "provider"
    [failed] = [e for e in events if isinstance(e, ModelCallFailed)]
    assert failed.attempts == 3 and failed.output_tokens == 0
    assert failed.cost_usd == pytest.approx(result.cost_usd) and result.cost_usd > 0
    assert failed.cost_usd == pytest.approx(failed.input_tokens * 1000.0 / 1e6)
    assert result.usage.by_model[SUB].failed_requests == 3


async def test_each_retry_is_announced_as_it_happens_and_its_booking_is_a_reservation() -> None:
    """A flaky provider: every retry is a ``call.retrying`` event before its wait, and what
    the failed attempts booked is reported apart (``failed_usd``) as a worst-case reservation,
    not as a charge."""
    events: list[Event] = []
    replies = iter([Fault.server_error(), Fault.server_error()])
    root = ScriptedLM(["```repl\nFINAL(llm_query('one'))\n```"], model="scripted/root")
    with FakeOpenAIServer(handler=lambda _r: next(replies, "fine")) as srv:
        rlm = RLM(root, sub_lm(srv), sandbox="none", prices=PRICES, on_event=events.append)
        result = await rlm.acompletion("q", context="c")
    assert result.answer == "fine"
    retrying = [e for e in events if isinstance(e, CallRetrying)]
    assert [(e.attempt, e.model, e.subcall) for e in retrying] == [(1, SUB, True), (2, SUB, True)]
    assert all("HTTP 500" in e.error and e.wait_s == 0.0 for e in retrying)
    [finished] = [e for e in events if isinstance(e, SubcallFinished)]
    assert events.index(retrying[-1]) < events.index(finished)
    usage = result.usage
    assert usage.failed_requests == 2 and usage.by_model[SUB].failed_requests == 2
    assert 0 < usage.failed_usd < result.cost_usd
    assert result.to_dict()["usage"]["failed_usd"] == pytest.approx(usage.failed_usd)
