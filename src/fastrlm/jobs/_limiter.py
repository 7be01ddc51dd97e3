"""One concurrency limit per provider, shared by every job of a batch, and the spend meter.

:class:`LimitedLM` wraps any :class:`~fastrlm.lm._base.LM`: each ``complete()`` holds a slot
of its provider's pool for the length of the call (retries included), so the engine needs no
change. The pool lives in a :class:`Coordinator`: in-process for the local backend
(:class:`LocalCoordinator`), an async Ray actor for the Ray backend (:class:`CoordinatorActor`,
reached from workers through :class:`RayCoordinator`), so the limit holds across every worker
of a cluster.

A slot is a lease: one that is not released within ``lease_s`` (its holder's process died
mid-call) is taken back, so a killed worker cannot shrink the pool for good.

The coordinator also meters what each attempt of a job spends, call by call (priced with the
batch's price table). The batch budget settles a job from its own ledger (``RLMResult``) when
its result arrives; the meter only estimates what a lost attempt (a worker that died) spent.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .._foundation.pricing import PriceTable, call_cost
from ..lm import LM, ChatMessage, LMResponse

#: A lease nobody released in this long is taken back (its holder is presumed dead).
DEFAULT_LEASE_S = 3600.0


def provider_of(lm: LM) -> str:
    """The pool an LM's calls count against: the provider prefix of ``provider/model``."""
    return lm.model.split("/", 1)[0] if "/" in lm.model else lm.model


class SlotPool:
    """Per-provider counting semaphores with leases. ``limits`` maps a provider to its slots;
    ``default`` applies to every other provider (``None``: unlimited, counted only)."""

    def __init__(
        self, limits: Mapping[str, int] | None = None, default: int | None = None,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        self._limits = dict(limits or {})
        self._default = default
        self._lease_s = lease_s
        self._held: dict[str, dict[int, float]] = {}
        self._owner: dict[int, str] = {}
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}
        self._next = 0
        self.peak: dict[str, int] = {}
        self.reclaimed = 0

    def limit(self, provider: str) -> int | None:
        return self._limits.get(provider, self._default)

    async def acquire(self, provider: str) -> int:
        """Wait for a slot of ``provider``; returns its lease number."""
        limit = self.limit(provider)
        held = self._held.setdefault(provider, {})
        waiters = self._waiters.setdefault(provider, deque())
        while True:
            self._reclaim(provider)
            if limit is None or (len(held) < limit and not _first_waiting(waiters)):
                break
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiters.append(waiter)
            expiry = min(held.values()) - time.monotonic() if held else None
            try:
                # asyncio.wait, not wait_for: it never swallows a cancellation
                await asyncio.wait({waiter}, timeout=expiry)
            except BaseException:
                if waiter.done():  # woken, but leaving: pass the wake-up on
                    self._wake(provider)
                raise
            finally:
                if waiter in waiters:
                    waiters.remove(waiter)
            if limit is not None and len(held) < limit:
                break
        lease = self._next
        self._next += 1
        held[lease] = time.monotonic() + self._lease_s
        self._owner[lease] = provider
        self.peak[provider] = max(self.peak.get(provider, 0), len(held))
        return lease

    def release(self, lease: int) -> None:
        """Give a slot back (a lease already released or taken back is ignored)."""
        provider = self._owner.pop(lease, None)
        if provider is None:
            return
        self._held[provider].pop(lease, None)
        self._wake(provider)

    def in_use(self, provider: str) -> int:
        return len(self._held.get(provider, {}))

    def _wake(self, provider: str) -> None:
        for waiter in self._waiters.get(provider, ()):
            if not waiter.done():
                waiter.set_result(None)
                return

    def _reclaim(self, provider: str) -> None:
        held = self._held[provider]
        now = time.monotonic()
        for lease in [lease for lease, until in held.items() if until <= now]:
            del held[lease]
            self._owner.pop(lease, None)
            self.reclaimed += 1


def _first_waiting(waiters: deque[asyncio.Future[None]]) -> bool:
    """Whether someone queued earlier still waits (newcomers do not jump the queue)."""
    return any(not w.done() for w in waiters)


class Coordinator(Protocol):
    """What a :class:`LimitedLM` talks to: the slot pools and the spend meter."""

    async def acquire(self, provider: str) -> int: ...

    def release(self, lease: int) -> None:
        """Give the slot back without waiting (a call that failed or was cancelled)."""

    async def settle(self, lease: int, job_id: str, attempt: str, usd: float) -> None:
        """Give the slot back and meter what the call cost, once both are recorded."""

    async def begin(self, job_id: str, attempt: str) -> None:
        """Record that an attempt of ``job_id`` started (a re-run counts as another)."""


class SpendMeter:
    """USD per (job, attempt), as the calls report it."""

    def __init__(self) -> None:
        self._usd: dict[str, dict[str, float]] = {}

    def begin(self, job_id: str, attempt: str) -> None:
        self._usd.setdefault(job_id, {}).setdefault(attempt, 0.0)

    def add(self, job_id: str, attempt: str, usd: float) -> None:
        attempts = self._usd.setdefault(job_id, {})
        attempts[attempt] = attempts.get(attempt, 0.0) + usd

    def attempts(self, job_id: str) -> int:
        """How many attempts of ``job_id`` started (or reported a call)."""
        return len(self._usd.get(job_id, {}))

    def lost(self, job_id: str, kept: str | None) -> float:
        """What the attempts of ``job_id`` other than ``kept`` spent (all of them: None)."""
        return sum(usd for attempt, usd in self._usd.get(job_id, {}).items() if attempt != kept)

    def forget(self, job_id: str) -> None:
        self._usd.pop(job_id, None)


class LocalCoordinator:
    """The in-process coordinator of the local backend."""

    def __init__(self, pool: SlotPool) -> None:
        self.pool = pool
        self.meter = SpendMeter()

    async def acquire(self, provider: str) -> int:
        return await self.pool.acquire(provider)

    def release(self, lease: int) -> None:
        self.pool.release(lease)

    async def settle(self, lease: int, job_id: str, attempt: str, usd: float) -> None:
        self.pool.release(lease)
        self.meter.add(job_id, attempt, usd)

    async def begin(self, job_id: str, attempt: str) -> None:
        self.meter.begin(job_id, attempt)


class LimitedLM:
    """``inner`` with each call holding a slot of its provider's pool, and metered.

    ``model``, ``temperature`` and ``cache_key()`` are the inner LM's, so prices, usage and the
    sub-call cache see no difference."""

    def __init__(
        self, inner: LM, coordinator: Coordinator, *, job_id: str, attempt: str,
        prices: PriceTable | None = None,
    ) -> None:
        self.inner = inner
        self.provider = provider_of(inner)
        self._coordinator = coordinator
        self._job_id = job_id
        self._attempt = attempt
        self._price = prices.price(inner.model) if prices is not None else None

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def temperature(self) -> float | None:
        return self.inner.temperature

    def cache_key(self) -> str:
        return self.inner.cache_key()

    async def complete(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None
    ) -> LMResponse:
        lease = await self._coordinator.acquire(self.provider)
        try:
            response = await self.inner.complete(messages, max_tokens=max_tokens)
        except BaseException:
            self._coordinator.release(lease)
            raise
        usd, _ = call_cost(self._price, response.usage, response.cost_usd)
        # awaited: the meter has the call before the job goes on, so a worker that dies later
        # cannot take the record of what it spent with it
        await self._coordinator.settle(lease, self._job_id, self._attempt, usd)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class CoordinatorActor:
    """The cluster's slot pools and spend meter, run as an async Ray actor (the Ray backend
    makes it with ``ray.remote``; this module does not import ray)."""

    def __init__(self, limits: dict[str, int], default: int | None, lease_s: float) -> None:
        self.pool = SlotPool(limits, default, lease_s)
        self.meter = SpendMeter()

    async def acquire(self, provider: str) -> int:
        return await self.pool.acquire(provider)

    async def release(self, lease: int) -> None:
        self.pool.release(lease)

    async def settle(self, lease: int, job_id: str, attempt: str, usd: float) -> None:
        self.pool.release(lease)
        self.meter.add(job_id, attempt, usd)

    async def begin(self, job_id: str, attempt: str) -> None:
        self.meter.begin(job_id, attempt)

    async def lost(self, job_id: str, kept: str | None) -> float:
        """What the attempts of ``job_id`` other than ``kept`` spent; forgets the job."""
        usd = self.meter.lost(job_id, kept)
        self.meter.forget(job_id)
        return usd

    async def settle_job(self, job_id: str, kept: str | None) -> tuple[float, int]:
        """(what the attempts other than ``kept`` spent, how many attempts started); forgets
        the job."""
        attempts = max(1, self.meter.attempts(job_id))
        return await self.lost(job_id, kept), attempts

    async def peak(self) -> dict[str, int]:
        return dict(self.pool.peak)


class RayCoordinator:
    """The worker side of the coordinator actor (the :class:`Coordinator` protocol)."""

    def __init__(self, actor: Any) -> None:
        self._actor = actor

    async def acquire(self, provider: str) -> int:
        ref = self._actor.acquire.remote(provider)
        try:
            return int(await ref)
        except asyncio.CancelledError:
            # The actor may still grant the slot: release it once granted (Ray resolves the
            # reference before running release).
            self._actor.release.remote(ref)
            raise

    def release(self, lease: int) -> None:
        self._actor.release.remote(lease)

    async def settle(self, lease: int, job_id: str, attempt: str, usd: float) -> None:
        await self._actor.settle.remote(lease, job_id, attempt, usd)

    async def begin(self, job_id: str, attempt: str) -> None:
        await self._actor.begin.remote(job_id, attempt)
