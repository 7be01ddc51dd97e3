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
