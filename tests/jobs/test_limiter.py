"""The per-provider slot pools: the limit holds under contention, a waiter that gives up passes
its turn on, a lease whose holder died is taken back, and LimitedLM is its inner LM to the
engine (model, temperature, cache key)."""

from __future__ import annotations

import asyncio

from fastrlm.jobs._limiter import LimitedLM, LocalCoordinator, SlotPool, provider_of
from fastrlm.testing import ScriptedLM


async def test_the_limit_holds_per_provider_and_is_reached() -> None:
    pool = SlotPool({"openai": 3}, default=1)
    inside = {"openai": 0, "anthropic": 0}
    most = dict(inside)
    gate = asyncio.Event()

    async def call(provider: str) -> None:
        lease = await pool.acquire(provider)
        inside[provider] += 1
        most[provider] = max(most[provider], inside[provider])
        if most["openai"] == 3:
            gate.set()
        await gate.wait()
        await asyncio.sleep(0)
        inside[provider] -= 1
        pool.release(lease)

    await asyncio.wait_for(asyncio.gather(*(call("openai") for _ in range(20)),
                                          *(call("anthropic") for _ in range(5))), 30)
    assert most == {"openai": 3, "anthropic": 1}
    assert pool.peak == {"openai": 3, "anthropic": 1} and pool.in_use("openai") == 0


async def test_a_cancelled_waiter_passes_its_turn_on() -> None:
    pool = SlotPool(default=1)
    held = await pool.acquire("p")
    first = asyncio.ensure_future(pool.acquire("p"))
    second = asyncio.ensure_future(pool.acquire("p"))
    await asyncio.sleep(0)
    pool.release(held)  # wakes `first` ...
    first.cancel()      # ... which leaves before taking the slot
    lease = await asyncio.wait_for(second, 30)
    assert pool.in_use("p") == 1
    pool.release(lease)
    assert pool.in_use("p") == 0


async def test_a_lease_nobody_releases_is_taken_back() -> None:
    pool = SlotPool(default=1, lease_s=0.05)
    await pool.acquire("p")  # its holder "dies": never released
    lease = await asyncio.wait_for(pool.acquire("p"), 30)
    assert pool.reclaimed == 1
    pool.release(lease)
    pool.release(lease)  # a second release is ignored
    assert pool.in_use("p") == 0


async def test_limited_lm_is_its_inner_lm_to_the_engine_and_meters_spend() -> None:
    inner = ScriptedLM(["one"], model="openai/x")
    coordinator = LocalCoordinator(SlotPool(default=1))
    from fastrlm import Price, PriceTable

    prices = PriceTable({"openai/x": Price(1e5, 1e5)}, include_defaults=False)
    lm = LimitedLM(inner, coordinator, job_id="j", attempt="a1", prices=prices)
    assert (lm.model, lm.temperature, lm.cache_key()) == (
        inner.model, inner.temperature, inner.cache_key())
    assert provider_of(lm) == "openai"
    response = await lm.complete([{"role": "user", "content": "hi"}])
    assert response.text == "one" and coordinator.pool.in_use("openai") == 0
    assert coordinator.meter.lost("j", None) > 0 and coordinator.meter.lost("j", "a1") == 0
