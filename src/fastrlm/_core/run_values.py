"""Values shared by the engine facade and the run loop: configuration, outcome, run ids."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

from .._foundation.budget import Budget
from .._foundation.errors import RLMError
from .._foundation.events import EventCallback
from .._foundation.limits import Limits
from .._foundation.pricing import PriceTable
from .._foundation.stop import StopReason
from ..lm import LM
from .call_tree import ResponseCache
from .output import OutputSpec
from .prompts import Prompts
from .tools import Tool


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(4)


@dataclass(frozen=True)
class RunConfig:
    """An RLM's one configuration, built and checked once by :class:`~fastrlm.RLM`; a run uses
    it as it is, or a copy with the per-call ``budget`` / ``limits`` put in."""

    root_lm: LM
    sub_lm: LM
    child_lms: Mapping[int, LM]
    named_lms: Mapping[str, LM]
    budget: Budget
    limits: Limits
    prompts: Prompts
    sandbox_kind: str
    subcalls: bool
    prices: PriceTable
    cache: ResponseCache | None = None
    cache_sampled: bool = False
    trace: bool | str | Path | EventCallback = False
    callbacks: tuple[EventCallback, ...] = ()
    tools: tuple[Tool, ...] = ()
    sub_tools: tuple[Tool, ...] = ()
    # RLM(variables=): (name, JSON text, type name), a fresh copy bound before the first cell
    variables: tuple[tuple[str, str, str], ...] = ()
    sub_tool_protocol: str = "auto"
    output: OutputSpec | None = None  # completion(output=T), per call; the root run only
    telemetry: Callable[[], EventCallback] | None = None  # makes a run's span recorder
    candidates: int = 1  # RLM(candidates=k): root trajectories per question (program search)
    select: str | Callable[..., int] = "vote"  # "vote" | "judge" | select(question, candidates)


@runtime_checkable
class RunScoped(Protocol):
    """An event callback that also scopes the run as it runs: ``current(run_id)`` is entered
    around the whole run in the caller's task (the span recorder makes the run's span the
    current OpenTelemetry context there, so spans other libraries open nest under it)."""

    def current(self, run_id: str) -> AbstractContextManager[None]: ...


@dataclass(frozen=True)
class Outcome:
    """How one run ended (made once, by the part of the engine that ends it)."""

    answer: str
    stop_reason: StopReason
    iterations: int
    error: str | None = None
    source: str = ""
    sandbox: str = ""
    error_kind: str | None = None  # "provider" | "sandbox" | "context" | None
    exception: RLMError | None = None  # what ended an ``error`` stop; raised by the facade
    value: object = None  # the typed answer, with completion(output=T)
    refused: StopReason | None = None  # the first limit that refused the run's sub-calls

    def with_stop(self, reason: StopReason) -> Outcome:
        return replace(self, stop_reason=reason)

    @property
    def partial(self) -> bool:
        return self.stop_reason is not StopReason.FINAL
