"""Budgets over a whole call tree, enforced by a gate that every LM call passes before it is sent.

:class:`Budget` is the user's configuration (a frozen value). :class:`BudgetLedger` is the one
mutable ledger shared by the root, every sub-call and every child RLM of a run. A call first
*reserves* its worst case (input bytes as an upper bound on input tokens, its ``max_tokens`` as the
bound on output, their price), is refused if the reservation does not fit, and *settles* with the
real usage afterwards. Reservations in flight count against the limits, so concurrent calls can
never jointly overshoot a cap.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from ._exceptions import BudgetExceededError
from ._pricing import Price
from ._usage import TokenUsage
from ._validate import BUDGET_RULES, check_fields


class StopReason(StrEnum):
    """Why a run ended. Stable public values (they appear in traces and JSON output)."""

    FINAL = "final"
    MAX_ITERATIONS = "max_iterations"
    BUDGET_USD = "budget_usd"
    BUDGET_SUBCALLS = "budget_subcalls"
    BUDGET_TOKENS = "budget_tokens"
    TIMEOUT = "timeout"
    ERROR = "error"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Budget:
    """Limits for one run and everything it spawns. ``None`` means unlimited.

    - ``max_iterations``: root turns per RLM (each child RLM gets the same allowance).
    - ``max_subcalls``: LM calls made from inside the REPL, at any depth (child RLMs' own turns
      included). Root turns of the top-level run do not count.
    - ``max_depth``: 1 means ``rlm_query`` falls back to a plain ``llm_query`` (the paper's
      setting); 2 lets the root spawn child RLMs whose sub-calls are plain LMs; and so on.
    - ``max_input_tokens`` / ``max_output_tokens`` / ``max_usd``: summed over every call.
    - ``max_seconds``: wall time of the whole tree.
    - ``exec_timeout_s``: per code cell, counting only the worker's own time (waiting on sub-calls
      is not counted). Past it the cell gets an exception and the REPL keeps its state.

    Accepted ranges are in :data:`fastrlm._validate.BUDGET_RULES` (counts are whole numbers;
    no NaN or infinity: leave a limit ``None`` for no limit).
    """

    max_iterations: int = 30
    max_subcalls: int | None = None
    max_depth: int = 1
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    max_usd: float | None = None
    max_seconds: float | None = None
    exec_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        """Raises :class:`~fastrlm.InvalidSettingError` (a ``ValueError``) naming the field and
        its accepted range for NaN, infinite, negative, zero-where-meaningless, fractional or
        boolean values."""
        check_fields(self, BUDGET_RULES, "Budget")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


#: Reserved per message for role markers and framing, on top of the content's bytes.
MESSAGE_OVERHEAD_TOKENS = 8
#: A call is refused rather than sent with fewer output tokens than this.
MIN_OUTPUT_TOKENS = 256


def input_token_bound(messages_chars: int, messages_bytes: int, n_messages: int) -> int:
    """An upper bound on input tokens: byte-level BPE never makes more tokens than bytes."""
    del messages_chars
    return messages_bytes + MESSAGE_OVERHEAD_TOKENS * n_messages


@dataclass(slots=True)
class Reservation:
    """What a call holds against the budget between :meth:`BudgetLedger.reserve` and settling."""

    subcall: bool
    input_tokens: int
    max_tokens: int
    usd: float
    settled: bool = False


@dataclass(slots=True)
class BudgetLedger:
    """The shared, mutable account of one call tree. Single event loop: no locks needed."""

    budget: Budget
    started_at: float = field(default_factory=time.monotonic)
    subcalls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float = 0.0
    refused: int = 0
    _held_subcalls: int = 0
    _held_input: int = 0
    _held_output: int = 0
    _held_usd: float = 0.0
    _warned: set[str] = field(default_factory=set)

    @property
    def deadline(self) -> float | None:
        """``time.monotonic()`` value at which the tree runs out of time."""
        if self.budget.max_seconds is None:
            return None
        return self.started_at + self.budget.max_seconds

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def seconds_left(self) -> float | None:
        deadline = self.deadline
        return None if deadline is None else deadline - time.monotonic()

    def check_subcall_slot(self) -> None:
        """Cheap pre-check before queueing: refuse at once when the sub-call cap is reached."""
        cap = self.budget.max_subcalls
        if cap is not None and self.subcalls + self._held_subcalls >= cap:
            self.refused += 1
            raise BudgetExceededError(
                StopReason.BUDGET_SUBCALLS, f"sub-call limit reached ({cap} sub-calls)"
            )

    def reserve(
        self, *, subcall: bool, input_tokens: int, max_tokens: int, price: Price | None
    ) -> Reservation:
        """Hold the worst case of one call, or raise :class:`BudgetExceededError`.

        ``max_tokens`` may come back smaller than asked when the USD or output-token budget
        cannot cover it; the caller must send the call with the reservation's ``max_tokens``.
        """
        b = self.budget
        left = self.seconds_left()
        if left is not None and left <= 0:
            self._refuse(StopReason.TIMEOUT, f"time limit reached ({b.max_seconds} s)")
        if subcall:
            self.check_subcall_slot()
        if b.max_input_tokens is not None:
            room = b.max_input_tokens - self.input_tokens - self._held_input
            if input_tokens > room:
                self._refuse(
                    StopReason.BUDGET_TOKENS,
                    f"input-token limit: this call may need {input_tokens} tokens, "
                    f"{max(room, 0)} left of {b.max_input_tokens}",
                )
        if b.max_output_tokens is not None:
            room = b.max_output_tokens - self.output_tokens - self._held_output
            max_tokens = min(max_tokens, room)
            if max_tokens < min(MIN_OUTPUT_TOKENS, b.max_output_tokens):
                self._refuse(
                    StopReason.BUDGET_TOKENS,
                    f"output-token limit reached ({b.max_output_tokens} tokens)",
                )
        usd = 0.0
        if b.max_usd is not None:
            if price is None:
                self._refuse(
                    StopReason.BUDGET_USD,
                    "max_usd is set but this model has no known price; add it to the price "
                    "table (fastrlm.PriceTable) so the budget can be enforced",
                )
                raise AssertionError("unreachable")
            room_usd = b.max_usd - self.usd - self._held_usd
            affordable = price.output_tokens_affordable(room_usd, input_tokens)
            max_tokens = min(max_tokens, affordable)
            if max_tokens < MIN_OUTPUT_TOKENS:
                self._refuse(
                    StopReason.BUDGET_USD,
                    f"USD limit: ${max(room_usd, 0):.4f} left of ${b.max_usd}, not enough for "
                    f"this call's worst case",
                )
            usd = price.worst_case(input_tokens, max_tokens)
        reservation = Reservation(subcall, input_tokens, max_tokens, usd)
        self._held_subcalls += int(subcall)
        self._held_input += input_tokens
        self._held_output += max_tokens
        self._held_usd += usd
        return reservation

    def settle(self, reservation: Reservation, usage: TokenUsage | None, cost_usd: float) -> None:
        """Replace a reservation by what the call really used (``usage=None``: it failed)."""
        if reservation.settled:
            return
        reservation.settled = True
        self._held_subcalls -= int(reservation.subcall)
        self._held_input -= reservation.input_tokens
        self._held_output -= reservation.max_tokens
        self._held_usd -= reservation.usd
        if usage is None:
            return
        self.subcalls += int(reservation.subcall)
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.usd += cost_usd

    def count_cached_subcall(self, reservation: Reservation) -> None:
        """A cache hit: nothing spent, but it still counts as a sub-call made."""
        self.settle(reservation, TokenUsage(), 0.0)

    def _refuse(self, reason: StopReason, message: str) -> None:
        self.refused += 1
        raise BudgetExceededError(reason, message)

    def exhausted(self) -> StopReason | None:
        """The first limit that is used up (nothing more could be sent), else ``None``."""
        b = self.budget
        left = self.seconds_left()
        if left is not None and left <= 0:
            return StopReason.TIMEOUT
        if b.max_usd is not None and self.usd >= b.max_usd * 0.999:
            return StopReason.BUDGET_USD
        if b.max_input_tokens is not None and self.input_tokens >= b.max_input_tokens:
            return StopReason.BUDGET_TOKENS
        if b.max_output_tokens is not None and self.output_tokens >= b.max_output_tokens:
            return StopReason.BUDGET_TOKENS
        return None

    def fractions(self) -> dict[str, float]:
        """Share of each configured limit used so far (settled spend only)."""
        b = self.budget
        out: dict[str, float] = {}
        if b.max_usd:
            out["usd"] = self.usd / b.max_usd
        if b.max_subcalls:
            out["subcalls"] = self.subcalls / b.max_subcalls
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
            out["subcalls"] = max(b.max_subcalls - self.subcalls - self._held_subcalls, 0)
        if b.max_input_tokens is not None:
            out["input_tokens"] = max(b.max_input_tokens - self.input_tokens, 0)
        if b.max_output_tokens is not None:
            out["output_tokens"] = max(b.max_output_tokens - self.output_tokens, 0)
        left = self.seconds_left()
        if left is not None:
            out["seconds"] = max(math.floor(left), 0)
        return out
