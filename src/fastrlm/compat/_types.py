"""The official package's result types (``RLMChatCompletion``, ``UsageSummary``,
``ModelUsageSummary``), its ``RLMLogger``, and the warning the compat layer gives for an argument
it cannot honour as written (once per argument and process)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._foundation.events import Event
from .._foundation.result import RLMResult


class RLMCompatWarning(UserWarning):
    """An argument of the official package that fastrlm cannot honour as written (the warning
    says what happens instead). Emitted once per argument per process."""


_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RLMCompatWarning, stacklevel=4)


@dataclass(slots=True)
class ModelUsageSummary:
    """One model's calls, tokens and cost in a completion."""

    total_calls: int
    total_input_tokens: int
    total_output_tokens: int
    total_cost: float

    def to_dict(self) -> dict[str, Any]:
        return {"total_calls": self.total_calls, "total_input_tokens": self.total_input_tokens,
                "total_output_tokens": self.total_output_tokens, "total_cost": self.total_cost}


@dataclass(slots=True)
class UsageSummary:
    """Usage of a completion, per model (``model_usage_summaries``) and in total."""

    model_usage_summaries: dict[str, ModelUsageSummary] = field(default_factory=dict)

    @property
    def total_cost(self) -> float:
        return sum(m.total_cost for m in self.model_usage_summaries.values())

    @property
    def total_input_tokens(self) -> int:
        return sum(m.total_input_tokens for m in self.model_usage_summaries.values())

    @property
    def total_output_tokens(self) -> int:
        return sum(m.total_output_tokens for m in self.model_usage_summaries.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_usage_summaries": {k: v.to_dict()
                                      for k, v in self.model_usage_summaries.items()},
            "total_cost": self.total_cost,
            "total_input_tokens": self.total_input_tokens,
            "total_output_tokens": self.total_output_tokens,
        }


@dataclass(slots=True)
class RLMChatCompletion:
    """What :meth:`RLM.completion` returns, with the official package's fields.

    ``error`` is set (and ``response`` is the best partial answer, maybe empty) when the run
    failed; ``metadata`` holds the trajectory when a logger is attached. ``result`` is
    fastrlm's own :class:`~fastrlm.RLMResult` (stop reason, sub-call counts, trace id ...).
    """

    root_model: str
    prompt: object
    response: str
    usage_summary: UsageSummary
    execution_time: float
    metadata: dict[str, Any] | None = None
    error: str | None = None
    result: RLMResult | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"root_model": self.root_model, "prompt": self.prompt, "response": self.response,
                "usage_summary": self.usage_summary.to_dict(),
                "execution_time": self.execution_time, "metadata": self.metadata,
                "error": self.error}


class RLMLogger:
    """``RLMLogger(log_dir)``: attach to ``RLM(logger=...)`` to keep every run's trajectory.

    Each completion's ``metadata`` holds it as the official package does (``run_metadata`` and
    ``iterations``), plus fastrlm's ``run_id``, ``trace_path``, ``stop_reason`` and ``events``.
    With a ``log_dir`` fastrlm also writes its own trace format there
    (``log_dir/traces/<run_id>.jsonl``, one event per line, the context recorded once as a
    digest, plus ``log_dir/index.sqlite``); ``fastrlm show`` / ``fastrlm view`` read it with
    ``FASTRLM_HOME=log_dir``. ``RLMLogger()`` keeps the trajectory in memory only."""

    def __init__(self, log_dir: str | Path | None = None, file_name: str = "rlm") -> None:
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.file_name = file_name

    def writer(self) -> Callable[[Event], object] | bool:
        """The trace writer for ``log_dir`` (False: in memory only)."""
        if self.log_dir is None:
            return False
        from ..trace import TraceWriter

        return TraceWriter(self.log_dir)
