"""The cost-matched control: the base model with self-consistency (``k`` samples, majority vote),
with ``k`` set so the run costs what the RLM's mean run cost.

A reader of Table 1 wants to know whether an RLM beats spending the same money plainly. This
method answers that: it sends the same prompt as ``base`` ``k`` times and returns the answer
most samples agree on (answers compared after folding case, whitespace and trailing punctuation;
a tie goes to the earliest). ``k`` is ``target_usd / (cost of the first sample)``, rounded down,
between 1 and ``max_k``; ``target_usd`` is the RLM's mean cost per task on this task (read from
the results file by the runner, or given). With no target, or a free first sample (scripted
models), ``k`` is ``default_k``. An input over the window is not sent (N/A, as ``base``).
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from dataclasses import dataclass

from .. import ProviderError
from ..lm import LM
from ._baselines import ANSWER_RESERVE_TOKENS, _user, fits, full_prompt
from ._meter import Meter, MethodResult, as_text, finish, window_tokens

_SPACE = re.compile(r"\s+")


def vote_key(answer: str) -> str:
    """What two samples must share to count as the same answer."""
    return _SPACE.sub(" ", answer.strip().lower()).rstrip(".!;:, ")


def majority(answers: list[str]) -> tuple[str, int]:
    """The answer most samples agree on (the earliest of the tied), and its vote count."""
    keys = [vote_key(a) for a in answers]
    counts = Counter(k for k in keys if k)
    if not counts:
        return (answers[0] if answers else ""), 0
    best = max(counts.values())
    for answer, key in zip(answers, keys, strict=True):
        if key and counts[key] == best:
            return answer, best
    raise AssertionError("unreachable: a counted key has an answer")


def samples_for(target_usd: float | None, first_usd: float, default_k: int, max_k: int) -> int:
    """How many samples in all match ``target_usd`` given the first sample's cost."""
    if target_usd is None or first_usd <= 0:
        return default_k
    # a hair of slack: 1.0 / 0.1 is 9.999... in binary floating point
    return max(1, min(max_k, int(target_usd / first_usd * (1 + 1e-9))))


@dataclass
class SelfConsistency:
    """``k`` base-model samples and a majority vote, at the RLM's cost (see the module)."""

    model: LM
    target_usd: float | None = None
    default_k: int = 5
    max_k: int = 32
    window: int | None = None
    name: str = "base-sc"

    async def run(
        self, question: str, context: str | list[str], meter: Meter | None = None
    ) -> MethodResult:
        meter = meter or Meter()
        prompt = full_prompt(question, as_text(context))
        window = self.window or window_tokens(self.model.model)
        if not fits(prompt, window, ANSWER_RESERVE_TOKENS):
            return finish(meter, "", "context_exceeded", iterations=0, exceeded=True)
        messages = _user(prompt)
        try:
            first = await meter.complete(self.model, messages)
            k = samples_for(self.target_usd, meter.cost_usd, self.default_k, self.max_k)
            rest = await asyncio.gather(*(meter.complete(self.model, messages)
                                          for _ in range(k - 1)))
        except ProviderError as exc:
            return finish(meter, "", "error", error=str(exc))
        answers = [first, *rest]
        answer, votes = majority(answers)
        return finish(meter, answer, iterations=k, samples=k, votes=votes,
                      target_usd=self.target_usd)
