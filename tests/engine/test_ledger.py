"""Pricing and the budget ledger as pure values (no event loop)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from fastrlm import Budget, BudgetExceededError, Price, PriceTable, StopReason, TokenUsage
from fastrlm._core.ledger import BudgetLedger
from fastrlm.lm import LMResponse


def test_price_lookup_strips_provider_prefix_tags_and_dates() -> None:
    table = PriceTable()
    assert table.price("openai/gpt-5-mini-2025-08-07") == table.price("gpt-5-mini")
    assert table.price("openrouter/openai/gpt-5") == table.price("gpt-5")
    assert table.price("anthropic/claude-sonnet-4-5-20250929") == table.price("claude-sonnet-4-5")
    assert table.price("ollama/qwen2.5-coder:32b") == Price(0, 0, 0, 0)
    assert table.price("acme/unknown-model") is None


@pytest.mark.parametrize(("bedrock_id", "priced_as"), [
    ("litellm/bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet"),
    ("litellm/bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
    ("litellm/bedrock/converse/eu.anthropic.claude-haiku-4-5-20251001-v1:0",
     "claude-haiku-4-5"),
    ("litellm/bedrock/anthropic.claude-3-haiku-20240307-v1:0", "claude-3-haiku"),
    ("litellm/bedrock/amazon.nova-pro-v1:0", "amazon.nova-pro"),
    ("litellm/bedrock/us.amazon.nova-lite-v1:0", "amazon.nova-lite"),
    ("litellm/bedrock/meta.llama3-3-70b-instruct-v1:0", "meta.llama3-3-70b-instruct"),
    ("litellm/bedrock/us.meta.llama4-maverick-17b-instruct-v1:0",
     "meta.llama4-maverick-17b-instruct"),
    ("litellm/bedrock/mistral.mistral-large-2407-v1:0", "mistral.mistral-large-2407"),
    ("litellm/bedrock/cohere.command-r-plus-v1:0", "cohere.command-r-plus"),
    ("litellm/bedrock/us.deepseek.r1-v1:0", "deepseek.r1"),
    ("litellm/bedrock/openai.gpt-oss-120b-1:0", "openai.gpt-oss-120b-1"),
])
def test_bedrock_models_the_litellm_path_serves_have_prices(bedrock_id: str,
                                                              priced_as: str) -> None:
    table = PriceTable()
    price = table.price(bedrock_id)
    assert price is not None and price == table.price(priced_as)
    assert price.input > 0 and price.output > 0
    assert not table.unpriced([bedrock_id])  # so max_usd can be enforced over it


def test_a_bedrock_looking_id_of_an_unknown_model_stays_unpriced() -> None:
    table = PriceTable()
    assert table.price("litellm/bedrock/amazon.unknown-model-v1:0") is None
    assert table.price("litellm/bedrock/us.anthropic.claude-9-20990101-v1:0") is None


def test_cost_uses_cached_and_cache_write_prices() -> None:
    price = Price(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75)
    usage = TokenUsage(input_tokens=1_000_000, cached_input_tokens=600_000,
                       cache_write_tokens=100_000, output_tokens=10_000)
    expected = (300_000 * 3.0 + 600_000 * 0.3 + 100_000 * 3.75 + 10_000 * 15.0) / 1e6
    assert price.cost(usage) == pytest.approx(expected)


def test_gpt5_mini_cost_matches_the_hand_computed_figure() -> None:
    usage = TokenUsage(input_tokens=12_000, cached_input_tokens=2_000, output_tokens=800)
    cost = PriceTable().cost("openai/gpt-5-mini", usage)
    assert cost == pytest.approx((10_000 * 0.25 + 2_000 * 0.025 + 800 * 2.0) / 1e6)


def test_user_overrides_and_fastrlm_home_prices(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert PriceTable({"my-model": {"input": 1, "output": 2}}).price("x/my-model") == Price(1, 2)
    (tmp_path / "prices.json").write_text(json.dumps({"models": {"house": {"input": 9,
                                                                            "output": 9}}}))
    monkeypatch.setenv("FASTRLM_HOME", str(tmp_path))
    assert PriceTable.default().price("house") == Price(9, 9)


def _reply(output_tokens: int, input_tokens: int = 0) -> LMResponse:
    return LMResponse("x", TokenUsage(input_tokens, output_tokens), "m")


async def test_a_reservation_that_does_not_fit_waits_for_the_ones_in_flight() -> None:
    ledger = BudgetLedger(Budget(max_usd=1.0))
    price = Price(input=0.0, output=1_000_000.0 / 400_000)  # 400k output tokens = $1
    first = await ledger.reserve(subcall=True, input_tokens=0, max_tokens=200_000, price=price)
    second = await ledger.reserve(subcall=True, input_tokens=0, max_tokens=200_000, price=price)
    third = asyncio.create_task(
        ledger.reserve(subcall=True, input_tokens=0, max_tokens=200_000, price=price))
    await asyncio.sleep(0)
    assert not third.done()  # queued, not refused: what is in flight may cost far less
    ledger.settle(first, _reply(1000))
    await asyncio.sleep(0)
    assert not third.done()  # $0.4975 free: still short of its $0.5 worst case
    ledger.settle(second, _reply(1000))
    admitted = await asyncio.wait_for(third, timeout=30)
    assert admitted.max_tokens == 200_000  # the whole worst case, not a shrunk one
    ledger.settle(admitted, _reply(1000))
    assert ledger.usd == pytest.approx(0.0075)
    assert ledger.subcalls_refused == 0


async def test_with_nothing_in_flight_a_short_room_shrinks_max_tokens_or_refuses() -> None:
    ledger = BudgetLedger(Budget(max_usd=0.01))
    price = Price(input=0.0, output=10.0)  # $10 per 1M output tokens: $0.01 = 1000 tokens
    reservation = await ledger.reserve(subcall=True, input_tokens=0, max_tokens=50_000,
                                       price=price)
    assert reservation.max_tokens == 1000
    ledger.settle(reservation, _reply(1000))
    with pytest.raises(BudgetExceededError) as info:
        await ledger.reserve(subcall=True, input_tokens=0, max_tokens=50_000, price=price)
    assert info.value.reason is StopReason.BUDGET_USD
    assert ledger.subcalls_refused == 1 and ledger.limited_by is StopReason.BUDGET_USD


async def test_a_failed_subcall_still_uses_its_slot() -> None:
    ledger = BudgetLedger(Budget(max_subcalls=2))
    a = await ledger.reserve(subcall=True, input_tokens=1, max_tokens=10, price=None)
    await ledger.reserve(subcall=True, input_tokens=1, max_tokens=10, price=None)
    with pytest.raises(BudgetExceededError):
        ledger.check_subcall_slot()
    ledger.fail(a, None)  # failing does not give the slot back: it was sent
    with pytest.raises(BudgetExceededError):
        ledger.check_subcall_slot()
    assert ledger.subcalls == 2 and ledger.subcalls_failed == 1


async def test_root_calls_are_not_subcalls() -> None:
    ledger = BudgetLedger(Budget(max_subcalls=0))
    await ledger.reserve(subcall=False, input_tokens=1, max_tokens=10, price=None)
    with pytest.raises(BudgetExceededError):
        await ledger.reserve(subcall=True, input_tokens=1, max_tokens=10, price=None)


async def test_every_failed_attempt_costs_its_prompt_at_the_input_price() -> None:
    from fastrlm import ProviderResponseError, RateLimitError

    ledger = BudgetLedger(Budget())
    price = Price(input=2.0, output=8.0)
    call = await ledger.reserve(subcall=True, input_tokens=1000, max_tokens=100, price=price)
    ledger.attempt_failed(call, ProviderResponseError("500", status=500))
    assert ledger.usd == pytest.approx(1000 * 2.0 / 1e6)
    await ledger.readmit(call)
    ledger.attempt_failed(call, RateLimitError("429", status=429))
    await ledger.readmit(call)
    booking = ledger.settle(call, _reply(50, 900))
    assert booking.attempts == 3 and ledger.requests == 3
    assert booking.cost_usd == pytest.approx((2 * 1000 * 2.0 + 900 * 2.0 + 50 * 8.0) / 1e6)
    assert booking.input_tokens == 2 * 1000 + 900
    assert ledger.usd == pytest.approx(booking.cost_usd)
    assert ledger.usage.by_model[""].failed_requests == 2


async def test_over_reported_usage_is_booked_flagged_and_stops_everything_after_it() -> None:
    crossed: list[StopReason] = []
    ledger = BudgetLedger(Budget(max_usd=0.5), on_overrun=crossed.append)
    price = Price(input=1.0, output=32.0)
    other = await ledger.reserve(subcall=True, input_tokens=100, max_tokens=1000, price=price)
    call = await ledger.reserve(subcall=True, input_tokens=100, max_tokens=1000, price=price)
    booking = ledger.settle(call, _reply(2_000_000, 100))
    assert booking.anomaly is not None and "max_tokens=1000" in booking.anomaly
    assert ledger.usd == pytest.approx(price.cost(TokenUsage(100, 2_000_000)))  # as reported
    assert ledger.overrun is StopReason.BUDGET_USD and crossed == [StopReason.BUDGET_USD]
    # refused at once, not queued behind the call still in flight
    later = asyncio.create_task(
        ledger.reserve(subcall=False, input_tokens=1, max_tokens=10, price=price))
    await asyncio.sleep(0)
    assert later.done()
    with pytest.raises(BudgetExceededError) as info:
        await later
    assert info.value.reason is StopReason.BUDGET_USD
    ledger.fail(other, None)


async def test_the_request_cap_defaults_to_three_per_allowed_call_and_bounds_retries() -> None:
    budget = Budget(max_subcalls=10, max_iterations=4)
    assert budget.request_cap == 3 * (10 + 4 + 1)
    assert Budget(max_requests=7, max_subcalls=10).request_cap == 7
    assert Budget().request_cap is None
    ledger = BudgetLedger(Budget(max_requests=2))
    call = await ledger.reserve(subcall=True, input_tokens=1, max_tokens=10, price=None)
    ledger.attempt_failed(call, None)
    await ledger.readmit(call)
    ledger.attempt_failed(call, None)
    with pytest.raises(BudgetExceededError) as info:
        await ledger.readmit(call)
    assert info.value.reason is StopReason.BUDGET_REQUESTS
    assert ledger.requests == 2


@pytest.mark.parametrize("kwargs", [{"max_iterations": 0}, {"max_depth": 0},
                                    {"max_usd": 0}, {"max_subcalls": -1},
                                    {"exec_timeout_s": 0}])
def test_nonsense_budgets_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Budget(**kwargs)  # type: ignore[arg-type]


async def test_calls_without_a_known_price_are_flagged_not_silently_free() -> None:
    from fastrlm import RLM
    from fastrlm.testing import ScriptedLM

    rlm = RLM(ScriptedLM(["```repl\nFINAL(llm_query('x'))\n```"], model="acme/root"),
              ScriptedLM(["s"], model="acme/sub"), sandbox="none",
              prices=PriceTable({"acme/root": {"input": 1, "output": 1}},
                                include_defaults=False))
    out = await rlm.acompletion("q", context="c")
    assert out.usage.unpriced_models == ["acme/sub"]
    assert out.usage.to_dict()["unpriced_models"] == ["acme/sub"]


async def test_a_queued_reservation_waits_no_longer_than_the_deadline() -> None:
    import time

    # 0.2 s left of the tree's time; the call in flight never settles
    ledger = BudgetLedger(Budget(max_usd=1.0, max_seconds=1000.0),
                          started_at=time.monotonic() - 999.8)
    price = Price(input=0.0, output=1_000_000.0 / 400_000)
    await ledger.reserve(subcall=True, input_tokens=0, max_tokens=400_000, price=price)
    with pytest.raises(BudgetExceededError) as info:
        await ledger.reserve(subcall=True, input_tokens=0, max_tokens=400_000, price=price)
    assert info.value.reason is StopReason.TIMEOUT
    assert ledger.subcalls_refused == 1


async def test_failed_reservations_wake_waiters_too() -> None:
    from fastrlm import ProviderResponseError

    ledger = BudgetLedger(Budget(max_usd=1.0))
    price = Price(input=0.0, output=1_000_000.0 / 400_000)
    first = await ledger.reserve(subcall=True, input_tokens=0, max_tokens=400_000, price=price)
    waiting = asyncio.create_task(
        ledger.reserve(subcall=True, input_tokens=0, max_tokens=400_000, price=price))
    await asyncio.sleep(0)
    assert not waiting.done()
    ledger.fail(first, ProviderResponseError("HTTP 500", status=500))
    admitted = await asyncio.wait_for(waiting, timeout=30)
    assert admitted.max_tokens == 400_000 and ledger.subcalls_failed == 1


async def test_negative_usage_or_cost_never_gives_budget_back() -> None:
    from fastrlm._foundation.pricing import call_cost

    ledger = BudgetLedger(Budget(max_usd=1.0))
    price = Price(input=1.0, output=1.0)
    spent = await ledger.reserve(subcall=True, input_tokens=10, max_tokens=300, price=price)
    ledger.settle(spent, _reply(200, 10))
    before = ledger.usd
    liar = await ledger.reserve(subcall=True, input_tokens=10, max_tokens=300, price=price)
    booking = ledger.settle(liar, _reply(-1_000_000, 10))
    assert booking.anomaly is not None and "negative" in booking.anomaly
    assert ledger.usd >= before and ledger.output_tokens == 200
    assert call_cost(None, TokenUsage(), -5.0) == (0.0, False)
    assert call_cost(None, TokenUsage(), float("nan")) == (0.0, False)
    assert call_cost(None, TokenUsage(), 0.25) == (0.25, True)
