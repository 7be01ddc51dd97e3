"""The typed result of a run."""

from __future__ import annotations

import json
from dataclasses import dataclass

from .stop import StopReason
from .usage import UsageSummary


@dataclass(frozen=True, slots=True)
class CandidateResult:
    """One trajectory of a program search (``RLM(candidates=k)``): its ``index`` (0..k-1),
    ``run_id`` (its ``run.started`` carries ``candidate=index``), its ``answer`` and
    ``stop_reason``, what it spent (``cost_usd``, ``subcalls``: its own, out of the one
    budget), its ``iterations``, its ``error`` (a failed candidate does not fail the search)
    and whether it was ``selected``."""

    index: int
    run_id: str
    answer: str
    stop_reason: StopReason
    cost_usd: float
    subcalls: int
    iterations: int
    error: str | None = None
    selected: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"index": self.index, "run_id": self.run_id, "answer": self.answer,
                "stop_reason": self.stop_reason.value, "cost_usd": round(self.cost_usd, 8),
                "subcalls": self.subcalls, "iterations": self.iterations, "error": self.error,
                "selected": self.selected}


@dataclass(frozen=True, slots=True)
class RLMResult:
    """What :meth:`RLM.acompletion` returns.

    ``answer`` is the delivered answer; when ``partial`` is true the run stopped without a clean
    ``FINAL`` (``stop_reason`` says why) and ``answer`` is the best the engine could give (it may
    be empty). ``usage`` and ``cost_usd`` cover the whole call tree (sub-calls and child RLMs);
    ``cost_usd`` includes ``usage.failed_usd``, what failed requests booked: a worst-case
    reservation kept for the budget (they may never have reached the provider), not a charge.
    With ``completion(output=T)``, ``value`` is the answer as a ``T`` (``answer`` is its JSON);
    when no answer matched ``T`` within ``Limits.max_output_retries`` retries, ``stop_reason``
    is ``invalid_output``, ``value`` is None and ``error`` says what did not match.
    ``error_kind`` classifies an ``error`` stop: ``"provider"`` (the model's API failed),
    ``"sandbox"`` (the REPL worker could not start or run) or ``"context"``.

    Every figure comes from the run tree's budget ledger. ``subcalls`` counts sub-calls sent or
    answered from the cache (failed and timed-out ones included); ``subcalls_failed`` those that
    got no answer; ``subcalls_refused`` those a budget refused (never sent); ``requests`` the
    HTTP attempts sent, retries included; ``tool_calls`` the host tool calls made (root code and
    sub-agents, failed ones included). ``limited_by`` is the first budget limit that refused
    a call (or that an over-reporting provider passed): a run that answered after any refusal
    is ``partial`` even when the model called ``FINAL`` (``stop_reason`` stays ``final``).
    """

    answer: str
    stop_reason: StopReason
    usage: UsageSummary
    cost_usd: float
    trace_id: str
    trace_path: str | None
    iterations: int
    subcalls: int
    sandbox: str
    duration_s: float
    error: str | None = None
    partial: bool = False
    error_kind: str | None = None
    subcalls_refused: int = 0
    subcalls_failed: int = 0
    limited_by: StopReason | None = None
    requests: int = 0
    tool_calls: int = 0
    value: object = None
    #: ``RLM(candidates=k)``: every candidate, in order (empty for a single trajectory).
    candidates: tuple[CandidateResult, ...] = ()

    def __str__(self) -> str:
        return self.answer

    def to_dict(self) -> dict[str, object]:
        return {
            "answer": self.answer,
            "stop_reason": self.stop_reason.value,
            "partial": self.partial,
            "cost_usd": round(self.cost_usd, 8),
            "usage": self.usage.to_dict(),
            "iterations": self.iterations,
            "subcalls": self.subcalls,
            "subcalls_failed": self.subcalls_failed,
            "subcalls_refused": self.subcalls_refused,
            "requests": self.requests,
            "tool_calls": self.tool_calls,
            "limited_by": self.limited_by.value if self.limited_by else None,
            "sandbox": self.sandbox,
            "duration_s": round(self.duration_s, 4),
            "trace_id": self.trace_id,
            "trace_path": self.trace_path,
            "error": self.error,
            "error_kind": self.error_kind,
            "value": json.loads(self.answer) if self.value is not None else None,
            **({"candidates": [c.to_dict() for c in self.candidates]}
               if self.candidates else {}),
        }
