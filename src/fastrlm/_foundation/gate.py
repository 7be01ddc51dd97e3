"""The attempt gate: how a provider's retry loop asks the run's budget before each retry.

The protocol and its context variable live here, below both sides: providers
(:mod:`fastrlm.lm`) read :data:`current_gate` around each retry, and the engine's ledger
(``fastrlm._core.ledger.AttemptGate``) implements it and sets it around each ``LM.complete``.
A custom LM that retries by itself should do the same, or its extra attempts are not booked.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Protocol


class RetryGate(Protocol):
    """What a retry loop asks before each retry of the call in flight."""

    def failed(self, error: BaseException, retry_in_s: float | None = None) -> None:
        """The attempt in flight failed and will be retried after a backoff of ``retry_in_s``
        seconds (book it, and say so)."""

    async def admit_retry(self) -> None:
        """Admit the next attempt, or raise :class:`fastrlm.BudgetExceededError`."""


#: The gate of the LM call running in this task; ``None`` outside an engine call.
current_gate: ContextVar[RetryGate | None] = ContextVar("fastrlm_attempt_gate", default=None)
