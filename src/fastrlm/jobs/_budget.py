"""The batch's money and standing: :class:`BatchBudget` (the dollar total, settled once per
job id) and :class:`BatchSummary` (done, failed, running, spend, ETA: live, then final). The
rules they keep are in :mod:`fastrlm.jobs._run`'s docstring."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any


class BatchBudget:
    """The batch's dollar total: settled once per job id, plus estimates of lost attempts."""

    def __init__(self, max_usd: float | None) -> None:
        self.max_usd = max_usd
        self._settled: dict[str, float] = {}
        self._retried = 0.0  # attempts that returned and were run again
        self._interrupted = 0.0  # jobs cancelled while running, as metered
        self.lost_usd = 0.0

    @property
    def spent(self) -> float:
        return (math.fsum(self._settled.values()) + self._retried + self._interrupted
                + self.lost_usd)

    @property
    def exhausted(self) -> bool:
        return self.max_usd is not None and self.spent >= self.max_usd

    def cap(self) -> float | None:
        """The most a job starting now may spend (None: no batch limit)."""
        return None if self.max_usd is None else max(self.max_usd - self.spent, 0.0)

    def settle(self, job_id: str, usd: float) -> bool:
        """Book ``job_id``'s spend; a second settlement of the same id is ignored (False)."""
        if job_id in self._settled:
            return False
        self._settled[job_id] = usd
        return True

    def add_retried(self, usd: float) -> None:
        """An attempt that returned with a provider error and will run again."""
        self._retried += usd

    def add_interrupted(self, usd: float) -> None:
        """What a job cancelled while running had spent (metered call by call)."""
        self._interrupted += usd

    def add_lost(self, usd: float) -> None:
        """The estimated spend of an attempt lost with its worker."""
        self.lost_usd += usd


@dataclass(slots=True)
class BatchSummary:
    """Where a batch stands (live, while it runs) and how it ended."""

    total: int = 0
    skipped: int = 0  # already in the results file (resume)
    done: int = 0
    failed: int = 0
    running: int = 0
    not_started: int = 0  # left when the batch budget ran out, or cancelled
    spent_usd: float = 0.0
    lost_usd: float = 0.0
    retried: int = 0
    budget_exhausted: bool = False
    cancelled: bool = False
    started_at: float = field(default_factory=time.monotonic)
    peak_slots: dict[str, int] = field(default_factory=dict)

    @property
    def pending(self) -> int:
        return self.total - self.skipped - self.done - self.failed - self.running

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_at

    def eta_s(self) -> float | None:
        finished = self.done + self.failed
        left = self.pending + self.running
        if not finished or self.budget_exhausted:
            return None
        return self.elapsed_s / finished * left

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "skipped": self.skipped, "done": self.done,
                "failed": self.failed, "not_started": self.not_started,
                "spent_usd": round(self.spent_usd, 8), "lost_usd": round(self.lost_usd, 8),
                "retried": self.retried, "budget_exhausted": self.budget_exhausted,
                "cancelled": self.cancelled, "elapsed_s": round(self.elapsed_s, 3),
                "peak_slots": dict(self.peak_slots)}
