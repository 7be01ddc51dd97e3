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

Why over 500 lines: reservation, waiting, booking and the overrun stop are one invariant (what is
reserved is what may be spent); split, each half would need the other's locks and counts.
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
    only; a run's ``run.finished`` event reads it."""

    parent: Account | None = None
    cost_usd: float = 0.0
    subcalls: int = 0

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

    def __init__(self, reason: StopReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


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
    def check_subcall_slot(self) -> None:
        """Cheap pre-check before queueing: refuse at once when nothing more may be sent."""
        self._check_hard(subcall=True)

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
        while True:
            self._check_hard(subcall=subcall)
            try:
                tokens, usd = self._fit(input_tokens, max_tokens, price,
                                        shrink=self._in_flight == 0)
                break
            except _Short as short:
                if self._in_flight == 0:
                    self._refuse(short.reason, str(short), subcall)
                await self._wait_for_settle()
        reservation = Reservation(subcall, input_tokens, tokens, usd, model, price,
                                  account or Account())
        self.subcalls += int(subcall)
        reservation.account._add(0.0, int(subcall))
        self._hold(reservation)
        return reservation

    async def readmit(self, reservation: Reservation) -> None:
        """Admit another attempt of a call whose last attempt failed (a retry): the request cap
        and every limit are checked again and the same worst case is held (waiting as
        :meth:`reserve` does). Raises :class:`BudgetExceededError` when it may not be sent."""
        if reservation.held or reservation.settled:
            raise RuntimeError("readmit() is for a call whose last attempt was booked as failed")
        while True:
            self._check_hard(subcall=False)
            try:
                self._fit(reservation.input_tokens, reservation.max_tokens, reservation.price,
                          shrink=False)
                break
            except _Short as short:
                if self._in_flight == 0:
                    self._refuse(short.reason, str(short), False)
                await self._wait_for_settle()
        reservation.attempts += 1
        self._hold(reservation)

    def _check_hard(self, *, subcall: bool) -> None:
        """Refusals that waiting cannot cure: an overrun, time, the sub-call and request caps."""
        b = self.budget
        if self.overrun is not None:
            self._refuse(self.overrun, f"a {self.overrun.value} limit was already exceeded "
                                       "(the provider reported more usage than reserved)",
                         subcall)
        left = self.seconds_left()
        if left is not None and left <= 0:
            self._refuse(StopReason.TIMEOUT, f"time limit reached ({b.max_seconds} s)", subcall)
        cap = b.max_subcalls
        if subcall and cap is not None and self.subcalls >= cap:
            self._refuse(StopReason.BUDGET_SUBCALLS, f"sub-call limit reached ({cap} sub-calls)",
                         subcall)
        requests = b.request_cap
        if requests is not None and self.requests >= requests:
            self._refuse(StopReason.BUDGET_REQUESTS,
                         f"request limit reached ({requests} requests, retries included)",
                         subcall)

    def _fit(self, input_tokens: int, max_tokens: int, price: Price | None, *,
             shrink: bool) -> tuple[int, float]:
        """``(max_tokens, usd)`` the room left allows, or :class:`_Short`. Pure."""
        b = self.budget
        wanted = max_tokens
        if b.max_input_tokens is not None:
            room = b.max_input_tokens - self.input_tokens - self._held_input
            if input_tokens > room:
                raise _Short(StopReason.BUDGET_TOKENS,
                             f"input-token limit: this call may need {input_tokens} tokens, "
                             f"{max(room, 0)} left of {b.max_input_tokens}")
        if b.max_output_tokens is not None:
            room = b.max_output_tokens - self.output_tokens - self._held_output
            max_tokens = min(max_tokens, room)
            least = min(MIN_OUTPUT_TOKENS, b.max_output_tokens, wanted) if shrink else wanted
            if max_tokens < least:
                raise _Short(StopReason.BUDGET_TOKENS,
                             f"output-token limit: this call needs {least:,} output tokens, "
                             f"{max(room, 0):,} left of {b.max_output_tokens:,}")
        usd = 0.0
        if b.max_usd is not None:
            if price is None:
                self._refuse(
                    StopReason.BUDGET_USD,
                    "max_usd is set but this model has no known price; add it to the price "
                    "table (fastrlm.PriceTable) so the budget can be enforced",
                    False,
                )
                raise AssertionError("unreachable")
            room_usd = b.max_usd - self.usd - self._held_usd
            max_tokens = min(max_tokens, price.output_tokens_affordable(room_usd, input_tokens))
            least = min(MIN_OUTPUT_TOKENS, wanted) if shrink else wanted
            if max_tokens < least:
                needed = price.worst_case(input_tokens, least)
                raise _Short(StopReason.BUDGET_USD,
                             f"USD limit: this call needs up to ${needed:.4f} (its worst case: "
                             f"{input_tokens:,} input and {least:,} output tokens), "
                             f"${max(room_usd, 0):.4f} left of ${b.max_usd:g}")
            usd = price.worst_case(input_tokens, max_tokens)
        return max_tokens, usd

    def _hold(self, reservation: Reservation) -> None:
        """The attempt is admitted: it is a request from now on, whatever happens to it."""
        self.requests += 1
        reservation.held = True
        self._in_flight += 1
        self._held_input += reservation.input_tokens
        self._held_output += reservation.max_tokens
        self._held_usd += reservation.usd

    def _release(self, reservation: Reservation) -> bool:
        if not reservation.held:
            return False
        reservation.held = False
        self._in_flight -= 1
        self._held_input -= reservation.input_tokens
        self._held_output -= reservation.max_tokens
        self._held_usd -= reservation.usd
        if self._in_flight == 0:  # no drift from float sums once nothing is held
            self._held_usd = 0.0
        return True

    def _refuse(self, reason: StopReason, message: str, subcall: bool) -> None:
        self.subcalls_refused += int(subcall)
        if self.limited_by is None:
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
        cap = self.budget.max_subcalls
        if subcall and cap is not None and self.subcalls >= cap:
            self._refuse(StopReason.BUDGET_SUBCALLS, f"sub-call limit reached ({cap} sub-calls)",
                         subcall)
        self.subcalls += int(subcall)
        account._add(0.0, int(subcall))
        self.usage.record(model, usage, 0.0, 0.0, True)
        return Booking(usage.input_tokens, usage.output_tokens, 0.0, 0)

    def _book(self, reservation: Reservation, usage: TokenUsage, cost: float, *, priced: bool,
              latency_s: float, failed: bool) -> None:
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.usd += cost
        reservation.booked_input += usage.input_tokens
        reservation.booked_output += usage.output_tokens
        reservation.booked_usd += cost
        reservation.account._add(cost, 0)
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

    def remaining(self) -> dict[str, float | int]:
        """What is left of each configured limit, for the model's prompt."""
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
