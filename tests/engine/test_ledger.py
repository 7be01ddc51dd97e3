"""Pricing and the budget ledger as pure values (no event loop)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastrlm import Budget, BudgetExceededError, Price, PriceTable, StopReason, TokenUsage
from fastrlm._budget import BudgetLedger


def test_price_lookup_strips_provider_prefix_tags_and_dates() -> None:
    table = PriceTable()
    assert table.price("openai/gpt-5-mini-2025-08-07") == table.price("gpt-5-mini")
    assert table.price("openrouter/openai/gpt-5") == table.price("gpt-5")
    assert table.price("anthropic/claude-sonnet-4-5-20250929") == table.price("claude-sonnet-4-5")
    assert table.price("ollama/qwen2.5-coder:32b") == Price(0, 0, 0, 0)
    assert table.price("acme/unknown-model") is None


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


def test_reservations_in_flight_count_against_the_cap() -> None:
    ledger = BudgetLedger(Budget(max_usd=1.0))
    price = Price(input=0.0, output=1_000_000.0 / 400_000)  # 400k output tokens = $1
    first = ledger.reserve(subcall=True, input_tokens=0, max_tokens=200_000, price=price)
    second = ledger.reserve(subcall=True, input_tokens=0, max_tokens=200_000, price=price)
    with pytest.raises(BudgetExceededError) as info:
        ledger.reserve(subcall=True, input_tokens=0, max_tokens=200_000, price=price)
    assert info.value.reason is StopReason.BUDGET_USD
    ledger.settle(first, TokenUsage(output_tokens=1000), price.cost(TokenUsage(output_tokens=1000)))
    third = ledger.reserve(subcall=True, input_tokens=0, max_tokens=200_000, price=price)
    assert third.max_tokens == 199_000  # $0.0025 already spent
    ledger.settle(second, None, 0.0)
    ledger.settle(third, None, 0.0)
    assert ledger.usd == pytest.approx(0.0025)


def test_reservation_shrinks_max_tokens_to_what_the_money_buys() -> None:
    ledger = BudgetLedger(Budget(max_usd=0.01))
    price = Price(input=0.0, output=10.0)  # $10 per 1M output tokens: $0.01 = 1000 tokens
    reservation = ledger.reserve(subcall=True, input_tokens=0, max_tokens=50_000, price=price)
    assert reservation.max_tokens == 1000


def test_subcall_slots_include_calls_in_flight() -> None:
    ledger = BudgetLedger(Budget(max_subcalls=2))
    a = ledger.reserve(subcall=True, input_tokens=1, max_tokens=10, price=None)
    ledger.reserve(subcall=True, input_tokens=1, max_tokens=10, price=None)
    with pytest.raises(BudgetExceededError):
        ledger.check_subcall_slot()
    ledger.settle(a, None, 0.0)  # a failed call gives its slot back
    ledger.check_subcall_slot()


def test_root_calls_are_not_subcalls() -> None:
    ledger = BudgetLedger(Budget(max_subcalls=0))
    ledger.reserve(subcall=False, input_tokens=1, max_tokens=10, price=None)
    with pytest.raises(BudgetExceededError):
        ledger.reserve(subcall=True, input_tokens=1, max_tokens=10, price=None)


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
