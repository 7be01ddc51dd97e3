"""Typed outputs: an answer delivered under ``completion(output=T)`` checked against ``T``.

:class:`OutputCheck` owns the count of failed answers; what to parse and how lives in
:mod:`fastrlm._core.output`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .._foundation.stop import StopReason
from ..sandbox import FinalValue
from .output import OutputInvalid, OutputSpec
from .prompts import Prompts
from .run_values import Outcome


@dataclass
class OutputCheck:
    """Checks each delivered answer of one run; a mismatch goes back to the model until
    ``retries`` are spent, then the run stops with ``invalid_output``."""

    spec: OutputSpec
    retries: int
    max_answer_chars: int | None
    prompts: Prompts
    failures: int = field(default=0, init=False)

    def schema_note(self) -> str:
        """What the question says about the expected answer."""
        return self.prompts.output_format.format(name=self.spec.name,
                                                 schema=self.spec.schema_text())

    def check(self, final: FinalValue, reason: StopReason, iteration: int) -> Outcome | str:
        """The outcome (the typed value, or ``invalid_output`` once the retries are spent), or
        the note that sends the problem back to the model."""
        spec = self.spec
        try:
            value, text = spec.parse(final.text, self.max_answer_chars)
        except OutputInvalid as exc:
            self.failures += 1
            left = self.retries - self.failures + 1
            if left <= 0:
                return Outcome(final.text, StopReason.INVALID_OUTPUT, iteration,
                               error=f"the answer does not match {spec.name}: {exc}",
                               source=final.source)
            return self.prompts.output_invalid.format(name=spec.name, errors=exc,
                                                      tries_left=left)
        return Outcome(text, reason, iteration, source=final.source, value=value)

    def last(self, final: FinalValue, reason: StopReason, iteration: int) -> Outcome:
        """The last turn's answer: no turn is left to fix it, so it is taken or refused now,
        and the run stops for ``reason`` either way."""
        self.failures = self.retries
        outcome = self.check(final, reason, iteration)
        assert isinstance(outcome, Outcome)
        return outcome.with_stop(reason)
