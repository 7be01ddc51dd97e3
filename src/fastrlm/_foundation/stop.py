"""Why a run ended: :class:`StopReason`, a leaf every layer may import (the exception tree,
the result, the ledger) without importing the budget or the engine."""

from __future__ import annotations

from enum import StrEnum


class StopReason(StrEnum):
    """Why a run ended. Stable public values (they appear in traces and JSON output)."""

    FINAL = "final"
    MAX_ITERATIONS = "max_iterations"
    BUDGET_USD = "budget_usd"
    BUDGET_SUBCALLS = "budget_subcalls"
    BUDGET_TOKENS = "budget_tokens"
    BUDGET_REQUESTS = "budget_requests"
    TIMEOUT = "timeout"
    INVALID_OUTPUT = "invalid_output"  # completion(output=T): no answer matched T in time
    ERROR = "error"
    CANCELLED = "cancelled"

    @property
    def is_limit(self) -> bool:
        """A limit ended the run (a budget, the iteration cap, the time limit, or no answer
        matching the requested output type): the run returns a partial result, it does not
        fail. ``final`` is not a limit; ``error`` and ``cancelled`` are failures."""
        return self in _LIMITS


_LIMITS = frozenset({
    StopReason.MAX_ITERATIONS, StopReason.BUDGET_USD, StopReason.BUDGET_SUBCALLS,
    StopReason.BUDGET_TOKENS, StopReason.BUDGET_REQUESTS, StopReason.TIMEOUT,
    StopReason.INVALID_OUTPUT,
})


def is_limit(stop_reason: str | None) -> bool:
    """:attr:`StopReason.is_limit` for a value read back from a trace or JSON (an unknown or
    missing value is not a limit)."""
    try:
        return StopReason(stop_reason or "").is_limit
    except ValueError:
        return False
