"""Values shared by the engine facade and the run loop: configuration, outcome, run ids."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from ._budget import Budget, StopReason
from ._config import Limits
from ._exceptions import RLMError
from ._prompts import Prompts
from .lm._base import LM


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(4)


@dataclass(frozen=True)
class RunConfig:
    """What every run of a tree is configured with (the RLM's settings)."""

    root_lm: LM
    sub_lm: LM
    child_lms: Mapping[int, LM]
    named_lms: Mapping[str, LM]
    budget: Budget
    limits: Limits
    prompts: Prompts
    sandbox_kind: str
    subcalls: bool


@dataclass
class Outcome:
    answer: str
    stop_reason: StopReason
    iterations: int
    error: str | None = None
    source: str = ""
    sandbox: str = ""
    error_kind: str | None = None  # "provider" | "sandbox" | "context" | None
    exception: RLMError | None = None  # what ended an ``error`` stop; raised by the facade

    @property
    def partial(self) -> bool:
        return self.stop_reason is not StopReason.FINAL
