"""The one ledger that accounts for every LM request of a call tree.

:class:`BudgetLedger` is shared by the root, every sub-call and every child RLM of a run: it alone
counts sub-calls, requests, tokens and dollars, and prices calls (through
:func:`fastrlm._foundation.pricing.call_cost`). Events, the result, the trace and the server
read their figures from the :class:`Booking` and :class:`Account` values it writes.

A call *reserves* its worst case (input bytes as an upper bound on input tokens, its
``max_tokens`` as the bound on output, their price) before it is sent. A reservation that does not
fit while others are in flight *waits* for them to settle; it is refused only when nothing pending
could free room. Every HTTP attempt is booked: a reply at the usage the provider reports, a failed
attempt at a conservative estimate; a provider's retry loop asks the ledger (through
:data:`current_gate`) before each retry. See docs/architecture.md, "The ledger".

A :class:`Grant` (:meth:`BudgetLedger.carve` / :meth:`~BudgetLedger.close`) is a share of the
budget carved out for one part of the tree (a child RLM given ``budget={...}``, one combinator
call): held where it was carved from while open, checked for every call drawing on it.

Why over 500 lines: reservation, waiting, booking, grants and the overrun stop are one invariant
(what is reserved is what may be spent); split, each half would need the other's counts.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict

from .._foundation.budget import Budget
from .._foundation.errors import BudgetExceededError
from .._foundation.gate import current_gate as current_gate  # the engine sets it; providers read it
from .._foundation.pricing import Price, call_cost
from .._foundation.stop import StopReason
from .._foundation.usage import TokenUsage, UsageSummary
from .grants import (
    DIMENSION_REASONS,
    GRANT_DIMENSIONS,
    Grant,
    grant_expired,
    limiting_grant,
    short_of,
)

if TYPE_CHECKING:
    from ..lm import LMResponse

log = logging.getLogger("fastrlm")


#: Reserved per message for role markers and framing, on top of the content's bytes.
MESSAGE_OVERHEAD_TOKENS = 8
#: A call is refused rather than sent with fewer output tokens than this.
MIN_OUTPUT_TOKENS = 256
#: Reported input tokens above ``INPUT_ANOMALY_FACTOR * bound + INPUT_ANOMALY_SLACK`` (the bound
#: being the request's own byte count) are a provider anomaly: no tokenizer makes that many.
INPUT_ANOMALY_FACTOR = 2
INPUT_ANOMALY_SLACK = 1024
#: Settled spend may pass a limit by float rounding only; beyond this it is an overrun.
_EPSILON = 1e-9


def input_token_bound(messages_chars: int, messages_bytes: int, n_messages: int) -> int:
    """An upper bound on input tokens: byte-level BPE never makes more tokens than bytes."""
    del messages_chars
    return messages_bytes + MESSAGE_OVERHEAD_TOKENS * n_messages


@dataclass(slots=True)
class Account:
    """Spend of one run and, through ``parent``, of every run above it. Written by the ledger
    only; a run's ``run.finished`` event reads it. ``grant``: the :class:`Grant` its calls draw
    on (an account under a granted one inherits it; ``None``: the tree's budget)."""

    parent: Account | None = None
    cost_usd: float = 0.0
    subcalls: int = 0
    grant: Grant | None = None

    def __post_init__(self) -> None:
        if self.grant is None and self.parent is not None:
            self.grant = self.parent.grant

    def _add(self, cost: float, subcalls: int) -> None:
        account: Account | None = self
        while account is not None:
            account.cost_usd += cost
            account.subcalls += subcalls
            account = account.parent


@dataclass(frozen=True, slots=True)
class Booking:
    """What the ledger booked for one call, all its attempts together: what its event reports.

    ``anomaly`` is set when the provider reported usage the request cannot have used (more
    completion tokens than ``max_tokens``, or input far above the request's size)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    attempts: int = 0
    anomaly: str | None = None

    def reported(self) -> Reported:
        """The booking as the fields of the event that reports its call (``model.response``,
        ``subcall.finished``)."""
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cost_usd": self.cost_usd, "attempts": self.attempts, "anomaly": self.anomaly}


class Reported(TypedDict):
    """A :class:`Booking` under the names its events give it."""

    input_tokens: int
    output_tokens: int
    cost_usd: float
    attempts: int
    anomaly: str | None


@dataclass(slots=True)
class Reservation:
    """One call's hold on the budget, from :meth:`BudgetLedger.reserve` until it is settled.

    ``held`` is true while an attempt is in flight (its worst case counts against the limits);
    the totals say what the call's attempts booked so far."""

    subcall: bool
    input_tokens: int
    max_tokens: int
    usd: float
    model: str = ""
    price: Price | None = None
    account: Account = field(default_factory=Account)
    attempts: int = 1
    held: bool = True
    settled: bool = False
    booked_input: int = 0
    booked_output: int = 0
    booked_usd: float = 0.0
    anomaly: str | None = None

    def booking(self) -> Booking:
        return Booking(self.booked_input, self.booked_output, self.booked_usd, self.attempts,
                       self.anomaly)


class _Short(Exception):
    """The worst case does not fit the room left (internal: wait, shrink or refuse)."""

    def __init__(self, reason: StopReason, message: str, *, tree_limit: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.tree_limit = tree_limit  # False: a grant's own limit, not the tree's


@dataclass(slots=True)
class BudgetLedger:
    """The one accountant of a call tree. Single event loop: no locks needed.

    Counters (read them, never write them): ``subcalls`` (sub-calls admitted: answered, cached,
    failed or timed out alike), ``requests`` (HTTP attempts admitted), ``input_tokens``,
    ``output_tokens``, ``usd`` (settled spend, failed attempts at their estimate),
    ``subcalls_refused`` (never sent), ``subcalls_failed`` (sent, no answer), ``anomalies``,
    ``limited_by`` (the first limit that refused a call or was overrun) and ``overrun`` (a limit
    the settled spend went past: a provider over-reported; nothing is admitted after it).
    ``usage`` is the per-model roll-up that :class:`fastrlm.RLMResult` carries.
    """

    budget: Budget
    started_at: float = field(default_factory=time.monotonic)
    subcalls: int = 0
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float = 0.0
    subcalls_refused: int = 0
    subcalls_failed: int = 0
    anomalies: int = 0
    limited_by: StopReason | None = None
    overrun: StopReason | None = None
    usage: UsageSummary = field(default_factory=UsageSummary)
    on_overrun: Callable[[StopReason], None] | None = None
    _held_input: int = 0
    _held_output: int = 0
    _held_usd: float = 0.0
    _in_flight: int = 0
    _settled: asyncio.Event | None = None
    _warned: set[str] = field(default_factory=set)
    #: What open grants carved from the tree's budget have not used yet, by dimension.
    _carved: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(GRANT_DIMENSIONS, 0))

    @property
    def deadline(self) -> float | None:
        """``time.monotonic()`` value at which the tree runs out of time."""
        if self.budget.max_seconds is None:
            return None
        return self.started_at + self.budget.max_seconds

    @property
    def in_flight(self) -> int:
        """Attempts holding a reservation now."""
        return self._in_flight

    @property
    def held_usd(self) -> float:
        """Worst-case USD of the attempts in flight."""
        return self._held_usd

    @property
    def held_output_tokens(self) -> int:
        """Worst-case output tokens of the attempts in flight."""
        return self._held_output

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def seconds_left(self) -> float | None:
        deadline = self.deadline
        return None if deadline is None else deadline - time.monotonic()

    # ------------------------------------------------------------------ admission
    def check_subcall_slot(self, grant: Grant | None = None) -> None:
        """Cheap pre-check before queueing: refuse at once when nothing more may be sent (for
        a call drawing on ``grant``)."""
        self._check_hard(subcall=True, grant=grant)

    async def reserve(
        self,
        *,
        subcall: bool,
        input_tokens: int,
        max_tokens: int,
        price: Price | None,
        model: str = "",
        account: Account | None = None,
    ) -> Reservation:
        """Admit one call's first attempt and hold its worst case, or raise
        :class:`BudgetExceededError` (the call must not be sent).

        A worst case that does not fit while other attempts are in flight waits for them to
        settle (until the tree's deadline). With nothing in flight it takes the room left:
        ``max_tokens`` may come back smaller than asked (never below ``MIN_OUTPUT_TOKENS``),
        and the caller must send the call with the reservation's ``max_tokens``.
        """
        account = account or Account()
        grant = account.grant
        while True:
            self._check_hard(subcall=subcall, grant=grant)
            try:
                tokens, usd = self._fit(input_tokens, max_tokens, price,
                                        shrink=self._in_flight == 0, grant=grant)
                break
            except _Short as short:
                if self._in_flight == 0:
                    self._refuse(short.reason, str(short), subcall, tree_limit=short.tree_limit)
                await self._wait_for_settle()
        reservation = Reservation(subcall, input_tokens, tokens, usd, model, price, account)
        self._count_subcall(subcall, account)
        self._hold(reservation)
        return reservation

    async def readmit(self, reservation: Reservation) -> None:
        """Admit another attempt of a call whose last attempt failed (a retry): the request cap
        and every limit are checked again and the same worst case is held (waiting as
        :meth:`reserve` does). Raises :class:`BudgetExceededError` when it may not be sent."""
        if reservation.held or reservation.settled:
            raise RuntimeError("readmit() is for a call whose last attempt was booked as failed")
        grant = reservation.account.grant
        while True:
            self._check_hard(subcall=False, grant=grant)
            try:
                self._fit(reservation.input_tokens, reservation.max_tokens, reservation.price,
                          shrink=False, grant=grant)
                break
            except _Short as short:
                if self._in_flight == 0:
                    self._refuse(short.reason, str(short), False, tree_limit=short.tree_limit)
                await self._wait_for_settle()
        reservation.attempts += 1
        self._hold(reservation)

    def _check_hard(self, *, subcall: bool, grant: Grant | None = None) -> None:
        """Refusals that waiting cannot cure: an overrun, time, the sub-call and request caps
        (the tree's, or those of the grant the call draws on)."""
        b = self.budget
        if self.overrun is not None:
            self._refuse(self.overrun, f"a {self.overrun.value} limit was already exceeded "
                                       "(the provider reported more usage than reserved)",
                         subcall)
        left = self.seconds_left()
        if left is not None and left <= 0:
            self._refuse(StopReason.TIMEOUT, f"time limit reached ({b.max_seconds} s)", subcall)
        if grant_expired(grant):
            self._refuse(StopReason.TIMEOUT, "the time granted to this part of the run is up",
                         subcall, tree_limit=False)
        if subcall and short_of(self.room("subcalls", grant), 1):
            self._refuse(StopReason.BUDGET_SUBCALLS,
                         f"sub-call limit reached ({self._limit_text('subcalls', grant)} "
                         "sub-calls)", subcall,
                         tree_limit=limiting_grant(grant, "subcalls") is None)
        if short_of(self.room("requests", grant), 1):
            self._refuse(StopReason.BUDGET_REQUESTS,
                         f"request limit reached ({self._limit_text('requests', grant)} "
                         "requests, retries included)", subcall,
                         tree_limit=limiting_grant(grant, "requests") is None)

    def _fit(self, input_tokens: int, max_tokens: int, price: Price | None, *,
             shrink: bool, grant: Grant | None = None) -> tuple[int, float]:
        """``(max_tokens, usd)`` the room left allows, or :class:`_Short`. Pure."""
        wanted = max_tokens
        room = self.room("input_tokens", grant)
        if room is not None and input_tokens > room:
            raise _Short(StopReason.BUDGET_TOKENS,
                         f"input-token limit: this call may need {input_tokens:,} tokens, "
                         f"{max(int(room), 0):,} left of "
                         f"{self._limit_text('input_tokens', grant)}",
                         tree_limit=limiting_grant(grant, "input_tokens") is None)
        room = self.room("output_tokens", grant)
        if room is not None:
            limit = int(self._limit_of("output_tokens", grant))
            max_tokens = min(max_tokens, int(room))
            least = min(MIN_OUTPUT_TOKENS, limit, wanted) if shrink else wanted
            if max_tokens < least:
                raise _Short(StopReason.BUDGET_TOKENS,
                             f"output-token limit: this call needs {least:,} output tokens, "
                             f"{max(int(room), 0):,} left of "
                             f"{self._limit_text('output_tokens', grant)}",
                             tree_limit=limiting_grant(grant, "output_tokens") is None)
        usd = 0.0
        room_usd = self.room("usd", grant)
        if room_usd is not None:
            if price is None:
                self._refuse(
                    StopReason.BUDGET_USD,
                    "max_usd is set but this model has no known price; add it to the price "
                    "table (fastrlm.PriceTable) so the budget can be enforced",
                    False,
                )
                raise AssertionError("unreachable")
            max_tokens = min(max_tokens, price.output_tokens_affordable(room_usd, input_tokens))
            least = min(MIN_OUTPUT_TOKENS, wanted) if shrink else wanted
            if max_tokens < least:
                needed = price.worst_case(input_tokens, least)
                raise _Short(StopReason.BUDGET_USD,
                             f"USD limit: this call needs up to ${needed:.4f} (its worst case: "
                             f"{input_tokens:,} input and {least:,} output tokens), "
                             f"${max(room_usd, 0):.4f} left of ${self._limit_text('usd', grant)}",
                             tree_limit=limiting_grant(grant, "usd") is None)
            usd = price.worst_case(input_tokens, max_tokens)
        return max_tokens, usd

    def _hold(self, reservation: Reservation) -> None:
        """The attempt is admitted: it is a request from now on, whatever happens to it."""
        self.requests += 1
        self._use("requests", reservation.account.grant, 1)
        reservation.held = True
        self._in_flight += 1
        self._held_change(reservation, 1)

    def _release(self, reservation: Reservation) -> bool:
        if not reservation.held:
            return False
        reservation.held = False
        self._in_flight -= 1
        self._held_change(reservation, -1)
        if self._in_flight == 0:  # no drift from float sums once nothing is held
            self._held_usd = 0.0
        return True

    def _held_change(self, reservation: Reservation, sign: int) -> None:
        """Add (``sign`` 1) or take away (-1) an attempt's worst case where it is held: on the
        first grant up its chain that limits each dimension, else on the tree's budget."""
        grant = reservation.account.grant
        for dimension, amount in (("input_tokens", reservation.input_tokens),
                                  ("output_tokens", reservation.max_tokens),
                                  ("usd", reservation.usd)):
            level = limiting_grant(grant, dimension)
            if level is not None:
                level.held[dimension] += sign * amount
            elif dimension == "usd":
                self._held_usd += sign * amount
            elif dimension == "input_tokens":
                self._held_input += sign * int(amount)
            else:
                self._held_output += sign * int(amount)

    def _count_subcall(self, subcall: bool, account: Account) -> None:
        if subcall:
            self.subcalls += 1
            account._add(0.0, 1)
            self._use("subcalls", account.grant, 1)

    # ------------------------------------------------------------------ grants
    def room(self, dimension: str, grant: Grant | None = None) -> float | None:
        """What a call drawing on ``grant`` (``None``: the tree's budget) may still use of
        ``dimension`` (:data:`GRANT_DIMENSIONS`): the first limit up the grant's chain, less
        what is used, held by calls in flight and carved out for open grants; ``None`` when
        nothing limits it. May be negative after an overrun."""
        level = limiting_grant(grant, dimension)
        if level is not None:
            return (level.limits[dimension] - level.used[dimension] - level.held[dimension]
                    - level.carved[dimension])
        b = self.budget
        limit: float | None
        if dimension == "usd":
            limit, used = b.max_usd, self.usd + self._held_usd
        elif dimension == "subcalls":
            limit, used = b.max_subcalls, self.subcalls
        elif dimension == "requests":
            limit, used = b.request_cap, self.requests
        elif dimension == "input_tokens":
            limit, used = b.max_input_tokens, self.input_tokens + self._held_input
        else:
            limit, used = b.max_output_tokens, self.output_tokens + self._held_output
        if limit is None:
            return None
        return limit - used - self._carved[dimension]

    def _limit_of(self, dimension: str, grant: Grant | None) -> float:
        """The limit :meth:`room` measures against (``inf``: none)."""
        level = limiting_grant(grant, dimension)
        if level is not None:
            return level.limits[dimension]
        b = self.budget
        limit = {"usd": b.max_usd, "subcalls": b.max_subcalls, "requests": b.request_cap,
                 "input_tokens": b.max_input_tokens,
                 "output_tokens": b.max_output_tokens}[dimension]
        return math.inf if limit is None else limit

    def _limit_text(self, dimension: str, grant: Grant | None) -> str:
        limit = self._limit_of(dimension, grant)
        shown = f"{limit:g}" if dimension == "usd" else f"{int(limit):,}"
        return shown if limiting_grant(grant, dimension) is None else f"{shown} granted"

    def carve(self, limits: dict[str, float], *, parent: Grant | None = None,
              seconds: float | None = None) -> Grant:
        """Carve a :class:`Grant` of ``limits`` out of what is left to ``parent`` (``None``:
        the tree's budget) and hold it there until :meth:`close`. ``seconds``: its time, within
        the tree's and the parent's. Raises :class:`BudgetExceededError` (reason: the first
        limit short), saying what was asked and what is left, when a limit does not fit; that
        refuses nothing else and spends nothing."""
        for dimension, amount in limits.items():
            room = self.room(dimension, parent)
            if room is not None and amount > room + _EPSILON:
                left = f"{max(room, 0):.4f}" if dimension == "usd" else f"{max(int(room), 0):,}"
                asked = f"{amount:.4f}" if dimension == "usd" else f"{int(amount):,}"
                raise BudgetExceededError(
                    DIMENSION_REASONS[dimension],
                    f"{dimension}: {asked} asked, {left} left")
        deadline = None if seconds is None else time.monotonic() + seconds
        for above in (parent.deadline if parent is not None else None, self.deadline):
            if above is not None:
                deadline = above if deadline is None else min(deadline, above)
        grant = Grant(dict(limits), parent, deadline, seconds)
        for dimension, amount in limits.items():
            self._carve_add(parent, dimension, amount)
        return grant

    def close(self, grant: Grant) -> None:
        """Close ``grant``: what it did not use returns to where it was carved from (waiting
        calls re-check). Idempotent."""
        if not grant.open:
            return
        grant.open = False
        for dimension in grant.limits:
            self._carve_add(grant.parent, dimension, -grant.unused(dimension))
        self._signal()

    def _carve_add(self, start: Grant | None, dimension: str, amount: float) -> None:
        level = limiting_grant(start, dimension)
        (self._carved if level is None else level.carved)[dimension] += amount

    def _use(self, dimension: str, grant: Grant | None, amount: float) -> None:
        """Count ``amount`` of ``dimension`` as used by every grant up ``grant``'s chain; an
        open grant's share held where it was carved shrinks by as much (never below 0)."""
        while grant is not None:
            if dimension in grant.limits and grant.open:
                before = grant.unused(dimension)
                grant.used[dimension] += amount
                self._carve_add(grant.parent, dimension, grant.unused(dimension) - before)
            else:
                grant.used[dimension] += amount
            grant = grant.parent

    def _refuse(self, reason: StopReason, message: str, subcall: bool, *,
                tree_limit: bool = True) -> None:
        """Raise the refusal; a limit of the tree's own (not a grant's) is ``limited_by``."""
        self.subcalls_refused += int(subcall)
        if self.limited_by is None and tree_limit:
            self.limited_by = reason
        raise BudgetExceededError(reason, message)

    async def _wait_for_settle(self) -> None:
        """Wait until some attempt settles (a condition the ledger signals), at most until the
        deadline; the caller re-checks everything afterwards."""
        if self._settled is None:
            self._settled = asyncio.Event()
        settled = self._settled
        left = self.seconds_left()
        if left is None:
            await settled.wait()
            return
        try:
            async with asyncio.timeout(max(left, 0.0)):
                await settled.wait()
        except TimeoutError:
            pass  # the caller's next check refuses with TIMEOUT

    def _signal(self) -> None:
        if self._settled is not None:
            self._settled.set()
            self._settled = None

    # ------------------------------------------------------------------ booking
    def attempt_failed(self, reservation: Reservation, error: BaseException | None) -> None:
        """Book an attempt that got no usable reply (an error status, a timeout, a dropped
        connection, a reply that cannot be read, a cancellation) and release its hold (no-op
        when it holds none). Whether the provider bills it cannot be known, so it is booked
        conservatively: its prompt (the reserved input bound, which no tokenizer exceeds) at
        the input price, no output. ``error`` is kept for the log only."""
        if not self._release(reservation):
            return
        tokens = reservation.input_tokens
        price = reservation.price
        cost = price.worst_case(tokens, 0) if price is not None else 0.0
        log.debug("fastrlm: failed attempt of %s booked at $%.6f: %r", reservation.model, cost,
                  error)
        self._book(reservation, TokenUsage(tokens, 0, estimated=True), cost,
                   priced=price is not None, latency_s=0.0, failed=True)
        self._signal()

    def settle(self, reservation: Reservation, response: LMResponse) -> Booking:
        """Book the reply of the attempt in flight at the usage the provider reported (an
        anomaly is booked as reported, flagged, and stops the tree if it passes a limit)."""
        if reservation.settled:
            return reservation.booking()
        self._release(reservation)
        reservation.settled = True
        usage = response.usage
        reservation.anomaly = self._anomaly(reservation, usage)
        if min(usage.input_tokens, usage.output_tokens) < 0:  # spend is never given back
            usage = TokenUsage(max(usage.input_tokens, 0), max(usage.output_tokens, 0),
                               estimated=usage.estimated)
        cost, priced = call_cost(reservation.price, usage, response.cost_usd)
        self._book(reservation, usage, cost, priced=priced, latency_s=response.latency_s,
                   failed=False)
        if reservation.anomaly is not None:
            self.anomalies += 1
            log.warning("fastrlm: provider anomaly (%s): %s", reservation.model,
                        reservation.anomaly)
        self._signal()
        self._check_overrun()
        return reservation.booking()

    def fail(self, reservation: Reservation, error: BaseException | None) -> Booking:
        """The call ends without an answer (after its retries, or cancelled): its attempt in
        flight, if any, is booked as failed, and a sub-call counts as failed."""
        if reservation.settled:
            return reservation.booking()
        self.attempt_failed(reservation, error)
        reservation.settled = True
        self.subcalls_failed += int(reservation.subcall)
        self._check_overrun()
        return reservation.booking()

    def book_cache_hit(self, *, subcall: bool, model: str, usage: TokenUsage,
                       account: Account) -> Booking:
        """A cache hit: nothing sent or spent, but it counts as a sub-call made, so it is
        refused (:class:`BudgetExceededError`) past ``max_subcalls`` like a call that is sent."""
        if subcall and short_of(self.room("subcalls", account.grant), 1):
            self._refuse(StopReason.BUDGET_SUBCALLS,
                         f"sub-call limit reached ({self._limit_text('subcalls', account.grant)}"
                         " sub-calls)", subcall,
                         tree_limit=limiting_grant(account.grant, "subcalls") is None)
        self._count_subcall(subcall, account)
        self.usage.record(model, usage, 0.0, 0.0, True)
        return Booking(usage.input_tokens, usage.output_tokens, 0.0, 0)

    def carry(self, model: str, usage: TokenUsage, cost_usd: float, *, subcalls: int,
              requests: int, account: Account) -> None:
        """Book what an earlier process of this run already spent on ``model`` (a resumed or
        forked run's recorded calls, answered again from the record and never sent): counted
        once, here, against every limit, so the run goes on with what is left."""
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.usd += cost_usd
        self.subcalls += subcalls
        self.requests += requests
        account._add(cost_usd, subcalls)
        self.usage.record(model, usage, cost_usd, 0.0, False)

    def carry_seconds(self, seconds: float) -> None:
        """Count ``seconds`` an earlier process of this run already ran against ``max_seconds``."""
        self.started_at -= max(seconds, 0.0)

    def _book(self, reservation: Reservation, usage: TokenUsage, cost: float, *, priced: bool,
              latency_s: float, failed: bool) -> None:
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.usd += cost
        reservation.booked_input += usage.input_tokens
        reservation.booked_output += usage.output_tokens
        reservation.booked_usd += cost
        reservation.account._add(cost, 0)
        grant = reservation.account.grant
        self._use("usd", grant, cost)
        self._use("input_tokens", grant, usage.input_tokens)
        self._use("output_tokens", grant, usage.output_tokens)
        self.usage.record(reservation.model, usage, cost, latency_s, False, priced, failed)

    @staticmethod
    def _anomaly(reservation: Reservation, usage: TokenUsage) -> str | None:
        if min(usage.input_tokens, usage.output_tokens) < 0:
            return (f"reported negative usage ({usage.input_tokens} in, "
                    f"{usage.output_tokens} out); booked as 0")
        if usage.estimated:  # estimated from characters by fastrlm, not reported
            return None
        if usage.output_tokens > reservation.max_tokens:
            return (f"reported {usage.output_tokens} completion tokens for a request capped at "
                    f"max_tokens={reservation.max_tokens}")
        bound = reservation.input_tokens
        if usage.input_tokens > INPUT_ANOMALY_FACTOR * bound + INPUT_ANOMALY_SLACK:
            return (f"reported {usage.input_tokens} prompt tokens for a request of at most "
                    f"{bound} tokens")
        return None

    def _check_overrun(self) -> None:
        if self.overrun is not None:
            return
        b = self.budget
        reason: StopReason | None = None
        if b.max_usd is not None and self.usd > b.max_usd + _EPSILON:
            reason = StopReason.BUDGET_USD
        elif (b.max_input_tokens is not None and self.input_tokens > b.max_input_tokens) or (
                b.max_output_tokens is not None and self.output_tokens > b.max_output_tokens):
            reason = StopReason.BUDGET_TOKENS
        if reason is None:
            return
        self.overrun = reason
        if self.limited_by is None:
            self.limited_by = reason
        if self.on_overrun is not None:
            self.on_overrun(reason)

    # ------------------------------------------------------------------ reading
    def exhausted(self) -> StopReason | None:
        """The first limit that is used up (nothing more could be sent), else ``None``."""
        b = self.budget
        if self.overrun is not None:
            return self.overrun
        left = self.seconds_left()
        if left is not None and left <= 0:
            return StopReason.TIMEOUT
        if b.max_usd is not None and self.usd >= b.max_usd * 0.999:
            return StopReason.BUDGET_USD
        if b.max_input_tokens is not None and self.input_tokens >= b.max_input_tokens:
            return StopReason.BUDGET_TOKENS
        if b.max_output_tokens is not None and self.output_tokens >= b.max_output_tokens:
            return StopReason.BUDGET_TOKENS
        cap = b.request_cap
        if cap is not None and self.requests >= cap:
            return StopReason.BUDGET_REQUESTS
        return None

    def fractions(self) -> dict[str, float]:
        """Share of each configured limit used so far (settled spend only)."""
        b = self.budget
        out: dict[str, float] = {}
        if b.max_usd:
            out["usd"] = self.usd / b.max_usd
        if b.max_subcalls:
            out["subcalls"] = self.subcalls / b.max_subcalls
        cap = b.request_cap
        if cap:
            out["requests"] = self.requests / cap
        if b.max_input_tokens:
            out["input_tokens"] = self.input_tokens / b.max_input_tokens
        if b.max_output_tokens:
            out["output_tokens"] = self.output_tokens / b.max_output_tokens
        if b.max_seconds:
            out["seconds"] = self.elapsed() / b.max_seconds
        return out

    def new_warnings(self, threshold: float = 0.8) -> list[tuple[str, float]]:
        """Limits that crossed ``threshold`` since the last call, each reported once."""
        fresh = []
        for name, fraction in self.fractions().items():
            if fraction >= threshold and name not in self._warned:
                self._warned.add(name)
                fresh.append((name, fraction))
        return fresh

    def view(self, grant: Grant | None = None) -> tuple[dict[str, float | None],
                                                        dict[str, float | None]]:
        """``(left, limits)`` for a run drawing on ``grant`` (``None``: the tree's budget): per
        dimension of :data:`GRANT_DIMENSIONS` and ``seconds``, what it may still use (settled
        spend, calls in flight and other grants' shares taken off) and the limit that binds
        it, ``None`` where nothing limits it. Reads only."""
        left: dict[str, float | None] = {}
        limits: dict[str, float | None] = {}
        for dimension in GRANT_DIMENSIONS:
            room = self.room(dimension, grant)
            limit = self._limit_of(dimension, grant)
            limits[dimension] = None if limit == math.inf else limit
            if room is None:
                left[dimension] = None
            else:
                left[dimension] = max(room, 0.0) if dimension == "usd" else max(int(room), 0)
        seconds, limit_s = self.seconds_left(), self.budget.max_seconds
        chain = grant
        while chain is not None:
            if chain.deadline is not None:
                own = chain.deadline - time.monotonic()
                seconds = own if seconds is None else min(seconds, own)
                if chain.seconds is not None:
                    limit_s = chain.seconds if limit_s is None else min(limit_s, chain.seconds)
            chain = chain.parent
        left["seconds"] = None if seconds is None else max(round(seconds, 1), 0.0)
        limits["seconds"] = limit_s
        return left, limits

    def remaining(self, grant: Grant | None = None) -> dict[str, float | int]:
        """What is left of each configured limit, for the model's prompt (of a run drawing on
        ``grant``: as :meth:`view` says)."""
        if grant is not None:
            return {name: value for name, value in self.view(grant)[0].items()
                    if value is not None}
        b = self.budget
        out: dict[str, float | int] = {}
        if b.max_usd is not None:
            out["usd"] = max(b.max_usd - self.usd - self._held_usd, 0.0)
        if b.max_subcalls is not None:
            out["subcalls"] = max(b.max_subcalls - self.subcalls, 0)
        if b.max_input_tokens is not None:
            out["input_tokens"] = max(b.max_input_tokens - self.input_tokens, 0)
        if b.max_output_tokens is not None:
            out["output_tokens"] = max(b.max_output_tokens - self.output_tokens, 0)
        left = self.seconds_left()
        if left is not None:
            out["seconds"] = max(math.floor(left), 0)
        return out


class AttemptGate:
    """The ledger's :class:`~fastrlm._foundation.gate.RetryGate`: what a provider's retry loop
    asks before each retry of the call in flight (found through :data:`current_gate`): the failed
    attempt is booked, and the next one must be admitted by the ledger, which may wait for room
    or refuse (:class:`BudgetExceededError`). ``on_retry`` hears of each retry as it is decided
    (the failed attempt's number, its error, the wait before the next): the engine turns it
    into a ``call.retrying`` event."""

    def __init__(
        self, ledger: BudgetLedger, reservation: Reservation,
        on_retry: Callable[[int, BaseException, float | None], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.reservation = reservation
        self.on_retry = on_retry

    def failed(self, error: BaseException, retry_in_s: float | None = None) -> None:
        """The attempt in flight failed and will be retried after a backoff of
        ``retry_in_s`` seconds."""
        self.ledger.attempt_failed(self.reservation, error)
        if self.on_retry is not None:
            self.on_retry(self.reservation.attempts, error, retry_in_s)

    async def admit_retry(self) -> None:
        """Admit the next attempt, or raise :class:`BudgetExceededError`."""
        await self.ledger.readmit(self.reservation)
