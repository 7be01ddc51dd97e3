"""Every LM call of a run tree passes here: budget gate, cache, one concurrency limit, pricing.

A :class:`CallTree` is shared by the root run, every sub-call and every child RLM. Sub-calls that
fail or are refused become ``"[error: ...]"`` strings, so a batch always keeps its arity.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ._budget import BudgetLedger, StopReason, input_token_bound
from ._config import Limits
from ._events import (
    BudgetWarning,
    Event,
    SubcallFinished,
    SubcallsRefused,
    SubcallStarted,
    preview,
)
from ._exceptions import BudgetExceededError, ProviderError
from ._pricing import PriceTable
from ._usage import UsageSummary
from ._windows import subcall_window_chars
from .lm._base import LM, ChatMessage, LMResponse

log = logging.getLogger("fastrlm")


class ResponseCache(Protocol):
    """What the engine needs of a sub-call cache (``fastrlm.lm.SubcallCache`` implements it)."""

    def key_for(self, lm: LM, messages: Sequence[ChatMessage], max_tokens: int | None) -> str: ...

    async def get(self, key: str) -> LMResponse | None: ...

    async def put(self, key: str, response: LMResponse) -> None: ...


@dataclass
class RunAccount:
    """Spend of one run and, through ``parent``, of every run above it."""

    parent: RunAccount | None = None
    cost_usd: float = 0.0
    subcalls: int = 0

    def add(self, cost: float, subcall: bool) -> None:
        account: RunAccount | None = self
        while account is not None:
            account.cost_usd += cost
            account.subcalls += int(subcall)
            account = account.parent


@dataclass
class SubcallOutcome:
    text: str
    refused: StopReason | None = None
    refusal: str = ""


@dataclass
class CallTree:
    """Shared state of one call tree. Single event loop: plain attributes, no locks."""

    ledger: BudgetLedger
    limits: Limits
    prices: PriceTable
    emit: Callable[[Event], None]
    cache: ResponseCache | None = None
    cache_sampled: bool = False
    usage: UsageSummary = field(default_factory=UsageSummary)
    limiter: asyncio.Semaphore = field(init=False)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    child_limiters: dict[int, asyncio.Semaphore] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.limiter = asyncio.Semaphore(self.limits.max_concurrency)

    def child_limiter(self, depth: int) -> asyncio.Semaphore:
        """One limiter per depth, so parents waiting on children can never starve them."""
        if depth not in self.child_limiters:
            self.child_limiters[depth] = asyncio.Semaphore(self.limits.max_concurrent_children)
        return self.child_limiters[depth]

    async def call(
        self,
        lm: LM,
        messages: Sequence[ChatMessage],
        *,
        subcall: bool,
        max_tokens: int,
        account: RunAccount,
        on_admitted: Callable[[], None] | None = None,
    ) -> LMResponse:
        """Send one call through the gate. Raises BudgetExceededError (never sent) or
        ProviderError (sent, failed). ``on_admitted`` runs once the gate let the call through."""
        size = sum(len(m["content"].encode("utf-8", "surrogatepass")) for m in messages)
        bound = input_token_bound(0, size, len(messages))
        price = self.prices.price(lm.model)
        async with self.limiter:
            reservation = self.ledger.reserve(
                subcall=subcall, input_tokens=bound, max_tokens=max_tokens, price=price
            )
            if on_admitted is not None:
                on_admitted()
            try:
                response = await lm.complete(messages, max_tokens=reservation.max_tokens)
            except BaseException:
                self.ledger.settle(reservation, None, 0.0)
                raise
        cost = price.cost(response.usage) if price is not None else (response.cost_usd or 0.0)
        priced = price is not None or response.cost_usd is not None
        self.ledger.settle(reservation, response.usage, cost)
        self.usage.record(lm.model, response.usage, cost, response.latency_s, response.cached,
                          priced)
        account.add(cost, subcall)
        for resource, fraction in self.ledger.new_warnings():
            self.emit(BudgetWarning(run_id="tree", resource=resource, fraction=fraction))
        return response

    async def subcall(
        self, lm: LM, prompt: str, *, run_id: str, depth: int, account: RunAccount
    ) -> SubcallOutcome:
        """One ``llm_query``: never raises; failures and refusals come back as error text."""
        window = subcall_window_chars(
            lm.model, self.limits.sub_max_tokens, self.limits.subcall_window_chars
        )
        if len(prompt) > window:
            return SubcallOutcome(
                f"[error: prompt too long for sub-model {lm.model}: {len(prompt):,} characters, "
                f"over its window of {window:,} characters; split it into smaller prompts]"
            )
        try:
            self.ledger.check_subcall_slot()
        except BudgetExceededError as exc:
            return SubcallOutcome(f"[error: {exc.reason.value}: {exc}]", exc.reason, str(exc))
        messages: list[ChatMessage] = [{"role": "user", "content": prompt}]
        max_tokens = self.limits.sub_max_tokens
        key, hit = await self._lookup(lm, messages, max_tokens, subcall=True, account=account)
        if hit is not None:
            return SubcallOutcome(hit.text)
        call_id = f"c{next(self._ids)}"
        digest = hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()
        started = False

        def admitted() -> None:
            nonlocal started
            started = True
            self.emit(
                SubcallStarted(
                    run_id=run_id,
                    depth=depth,
                    call_id=call_id,
                    model=lm.model,
                    prompt_chars=len(prompt),
                    prompt_sha256=digest,
                    prompt_preview=preview(prompt),
                    prompt=prompt if self.limits.trace_full_prompts else None,
                )
            )

        try:
            response = await self.call(
                lm,
                messages,
                subcall=True,
                max_tokens=max_tokens,
                account=account,
                on_admitted=admitted,
            )
        except BudgetExceededError as exc:
            return SubcallOutcome(f"[error: {exc.reason.value}: {exc}]", exc.reason, str(exc))
        except ProviderError as exc:
            self._finished(call_id, lm, run_id, depth, None, f"{type(exc).__name__}: {exc}")
            return SubcallOutcome(f"[error: sub-call failed: {type(exc).__name__}: {exc}]")
        except asyncio.CancelledError:
            if started:
                self._finished(call_id, lm, run_id, depth, None, "cancelled")
            raise
        self._finished(call_id, lm, run_id, depth, response, None)
        if key is not None and self.cache is not None:
            await self.cache.put(key, response)
        return SubcallOutcome(response.text)

    async def root_call(
        self, lm: LM, messages: Sequence[ChatMessage], *, subcall: bool, max_tokens: int,
        account: RunAccount,
    ) -> LMResponse:
        """A root turn through the gate, answered from the cache when this exact conversation
        was answered before (deterministic models only): a re-run replays the turns an
        interrupted run already paid for, then goes on live."""
        key, hit = await self._lookup(lm, messages, max_tokens, subcall=subcall, account=account)
        if hit is not None:
            return hit
        response = await self.call(lm, messages, subcall=subcall, max_tokens=max_tokens,
                                   account=account)
        if key is not None and self.cache is not None:
            await self.cache.put(key, response)
        return response

    async def _lookup(
        self, lm: LM, messages: Sequence[ChatMessage], max_tokens: int, *, subcall: bool,
        account: RunAccount,
    ) -> tuple[str | None, LMResponse | None]:
        """The cache key for this call (None when caching does not apply) and a hit, if any.
        A hit costs nothing but still counts as a sub-call, so a resumed run behaves as the
        first one did."""
        if self.cache is None or (lm.temperature and not self.cache_sampled):
            return None, None
        key = self.cache.key_for(lm, messages, max_tokens)
        hit = await self.cache.get(key)
        if hit is not None:
            self.ledger.subcalls += int(subcall)
            account.add(0.0, subcall)
            self.usage.record(lm.model, hit.usage, 0.0, 0.0, True)
        return key, hit

    def _finished(
        self,
        call_id: str,
        lm: LM,
        run_id: str,
        depth: int,
        response: LMResponse | None,
        error: str | None,
    ) -> None:
        price = self.prices.price(lm.model)
        cost = price.cost(response.usage) if (price and response) else 0.0
        self.emit(
            SubcallFinished(
                run_id=run_id,
                depth=depth,
                call_id=call_id,
                model=lm.model,
                input_tokens=response.usage.input_tokens if response else 0,
                output_tokens=response.usage.output_tokens if response else 0,
                cost_usd=cost,
                latency_s=response.latency_s if response else 0.0,
                cached=bool(response and response.cached),
                error=error,
                response_chars=len(response.text) if response else 0,
                response_preview=preview(response.text) if response else "",
            )
        )

    async def batch(
        self, lm: LM, prompts: list[str], *, run_id: str, depth: int, account: RunAccount
    ) -> tuple[list[str], StopReason | None]:
        """``llm_query_batched``: all prompts concurrently under the tree's limit, answers in
        order, exactly one per prompt. Returns the refusal reason if the gate refused any."""
        outcomes = await asyncio.gather(
            *(
                self.subcall(lm, p, run_id=run_id, depth=depth, account=account)
                for p in prompts
            )
        )
        refused = [o for o in outcomes if o.refused is not None]
        reason = refused[0].refused if refused else None
        if refused and reason is not None:
            self.emit(
                SubcallsRefused(
                    run_id=run_id,
                    depth=depth,
                    count=len(refused),
                    reason=reason.value,
                    message=refused[0].refusal,
                )
            )
        return [o.text for o in outcomes], reason
