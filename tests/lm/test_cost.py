"""Cost of a scripted call sequence, through the wire, equals the hand-computed figure."""

from __future__ import annotations

import pytest

from fastrlm import PriceTable, UsageSummary
from fastrlm.testing import FakeOpenAIServer, FakeReply

from .helpers import USER, openai_lm


async def test_cost_of_a_scripted_sequence_matches_the_price_table_by_hand() -> None:
    root_replies = [
        FakeReply(
            "plan",
            prompt_tokens=50_000,
            cached_tokens=40_000,
            completion_tokens=3_000,
            reasoning_tokens=2_000,
        ),
    ]
    sub_replies = [
        FakeReply("a", prompt_tokens=10_000, completion_tokens=2_000, reasoning_tokens=1_500),
        FakeReply("b", prompt_tokens=12_000, cached_tokens=10_000, completion_tokens=1_000),
    ]
    table = PriceTable()
    summary = UsageSummary()
    async with FakeOpenAIServer(root_replies + sub_replies) as server:
        root = openai_lm(server, "openai/gpt-5")
        sub = openai_lm(server, "openai/gpt-5-mini")
        for lm, n in ((root, 1), (sub, 2)):
            for _ in range(n):
                response = await lm.complete(USER)
                cost = table.cost(lm.model, response.usage)
                assert cost is not None
                summary.record(lm.model, response.usage, cost, response.latency_s, False)
        await root.aclose()
        await sub.aclose()
    # gpt-5: 1.25 in / 0.125 cached / 10.0 out; gpt-5-mini: 0.25 / 0.025 / 2.0 (USD per 1M)
    root_cost = (10_000 * 1.25 + 40_000 * 0.125 + 3_000 * 10.0) / 1e6  # 0.0475
    sub_cost = (10_000 * 0.25 + 2_000 * 2.0) / 1e6 + (
        2_000 * 0.25 + 10_000 * 0.025 + 1_000 * 2.0
    ) / 1e6  # 0.0065 + 0.00275
    assert summary.by_model["openai/gpt-5"].cost_usd == pytest.approx(0.0475)
    assert summary.by_model["openai/gpt-5-mini"].cost_usd == pytest.approx(0.00925)
    assert summary.cost_usd == pytest.approx(root_cost + sub_cost) == pytest.approx(0.05675)
    mini = summary.by_model["openai/gpt-5-mini"]
    assert (mini.calls, mini.input_tokens, mini.cached_input_tokens) == (2, 22_000, 10_000)
    assert (mini.output_tokens, mini.reasoning_tokens) == (3_000, 1_500)
