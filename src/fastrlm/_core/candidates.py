"""Program search, ``RLM(candidates=k, select=...)``: k root trajectories over the same context
under the one budget, and one answer picked.

:class:`Search` stands where a :class:`~fastrlm._core.run_loop.Run` stands for the engine
(``execute`` / ``stopped``): it opens a run of its own (its ``run.started`` is the trace's top),
runs k candidate runs at once on the same call tree (one ledger, one limiter: budgets hold over
all of them together), each a run whose parent is the search and whose ``run.started`` carries
its ``candidate`` index; candidate i > 0 is asked to take another approach (prompt variation:
:data:`~fastrlm._core.prompts.CANDIDATE_HINTS`; a sampled model varies by itself). A candidate
that fails (an error, a budget stop) is recorded and left out of the choice. The host holds the
context once; every candidate's REPL reads that object (a worker sandbox receives its own copy,
as any run's does).

Selection: ``"vote"`` (majority over normalised answers, :func:`normalised`; a tie goes to the
earliest candidate), ``"judge"`` (one sub-call through the budget asks the sub-model for the
best answer's number; an unusable verdict falls back to the vote) or a callable
``select(question, candidates) -> index``.
"""

from __future__ import annotations

import asyncio
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from .._foundation import events as evt
from .._foundation.errors import ConfigurationError
from .._foundation.events import preview
from .._foundation.result import CandidateResult
from .._foundation.stop import StopReason
from ..context import describe_shape
from .call_tree import CallTree
from .ledger import Account
from .prompts import CANDIDATE_HINTS, JUDGE_PROMPT
from .run_loop import Run
from .run_values import Outcome, RunConfig, new_run_id

#: What ``RLM(select=...)`` takes besides ``"vote"`` and ``"judge"``.
Selector = Callable[[str, Sequence[CandidateResult]], int]
#: The most of each answer the judge is shown.
JUDGE_ANSWER_CHARS = 4_000
#: The most candidates one search may run.
MAX_CANDIDATES = 64


def check_candidates(candidates: object, select: object) -> None:
    """Raises :class:`ConfigurationError` for a count or a selector ``RLM`` cannot use."""
    if isinstance(candidates, bool) or not isinstance(candidates, int) or not (
            1 <= candidates <= MAX_CANDIDATES):
        raise ConfigurationError(f"candidates must be a whole number from 1 to "
                                 f"{MAX_CANDIDATES}, not {candidates!r}")
    if select not in ("vote", "judge") and not callable(select):
        raise ConfigurationError(f"select must be 'vote', 'judge' or a function "
                                 f"(question, candidates) -> index, not {select!r}")


def normalised(answer: str) -> str:
    """The form answers are compared in by the vote: Unicode-normalised, case-folded, spaces
    collapsed, outer quotes and a final period dropped, a number as its value (``"1,000"`` and
    ``"1000.0"`` are ``"1000"``)."""
    text = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", answer).casefold()).strip()
    text = text.strip("\"'` ").rstrip(".").strip()
    number = text.replace(",", "")
    if re.fullmatch(r"[-+]?\d+(\.\d+)?", number):
        value = float(number)
        return str(int(value)) if value.is_integer() else repr(value)
    return text


def vote(candidates: Sequence[CandidateResult]) -> int | None:
    """The index of the majority answer's first candidate among those that answered (ended
    with FINAL, else any answer), or None when none did."""
    usable = [c for c in candidates if c.answer and c.stop_reason is StopReason.FINAL] or [
        c for c in candidates if c.answer and c.stop_reason is not StopReason.ERROR]
    if not usable:
        return None
    counts: dict[str, list[CandidateResult]] = {}
    for candidate in usable:
        counts.setdefault(normalised(candidate.answer), []).append(candidate)
    best = max(counts.values(), key=lambda group: (len(group), -group[0].index))
    return best[0].index


def judge_verdict(text: str, count: int) -> int | None:
    """The candidate a judge's reply names (``"2"``, ``"Answer 2"``: 1-based), or None."""
    found = re.search(r"\d+", text)
    if found is None:
        return None
    number = int(found.group())
    return number - 1 if 1 <= number <= count else None


@dataclass
class Search:
    """k candidate runs of one question and what was chosen (see the module)."""

    config: RunConfig
    tree: CallTree
    question: str
    context: object
    count: int
    run_id: str = field(default_factory=new_run_id)
    runs: list[Run] = field(init=False)
    results: list[CandidateResult] = field(default_factory=list, init=False)
    account: Account = field(default_factory=Account)

    def __post_init__(self) -> None:
        self.runs = [
            Run(config=self.config, tree=self.tree, question=_varied(self.question, index),
                context=self.context, parent_run_id=self.run_id, candidate=index,
                scope=f"candidate{index}")
            for index in range(self.count)
        ]

    async def execute(self) -> Outcome:
        """Run every candidate, pick one, and end the search's own run with its answer."""
        started = time.monotonic()
        self._start()
        outcomes = await asyncio.gather(*(self._candidate(run) for run in self.runs))
        self.results = [self._result(run, outcome) for run, outcome in zip(
            self.runs, outcomes, strict=True)]
        chosen = await self._choose()
        outcome = outcomes[0] if chosen is None else outcomes[chosen]
        return self._finish(outcome, chosen, started)

    def stopped(self, reason: StopReason, error: str | None = None) -> Outcome:
        """The search stopped from outside (deadline, overrun): the vote over what each
        candidate had so far."""
        outcomes = [run.stopped(reason, error) for run in self.runs]
        self.results = [self._result(run, outcome) for run, outcome in zip(
            self.runs, outcomes, strict=True)]
        chosen = vote(self.results)
        outcome = outcomes[0] if chosen is None else outcomes[chosen]
        return self._finish(outcome.with_stop(reason), chosen, time.monotonic())

    async def _candidate(self, run: Run) -> Outcome:
        try:
            return await run.execute()
        except Exception as exc:  # noqa: BLE001 - one candidate's failure is not the search's
            return Outcome("", StopReason.ERROR, run.iterations,
                           error=f"{type(exc).__name__}: {exc}")

    def _result(self, run: Run, outcome: Outcome) -> CandidateResult:
        return CandidateResult(
            index=run.candidate or 0, run_id=run.run_id, answer=outcome.answer,
            stop_reason=outcome.stop_reason, cost_usd=run.account.cost_usd,
            subcalls=run.account.subcalls, iterations=outcome.iterations, error=outcome.error)

    async def _choose(self) -> int | None:
        select = self.config.select
        if callable(select):
            index = select(self.question, tuple(self.results))
            if isinstance(index, bool) or not isinstance(index, int) or not (
                    0 <= index < self.count):
                raise ConfigurationError(f"select returned {index!r}; it must return the index "
                                         f"(0..{self.count - 1}) of the chosen candidate")
            return index
        voted = vote(self.results)
        if select != "judge" or voted is None:
            return voted
        answered = [c for c in self.results if c.answer and c.stop_reason is not
                    StopReason.ERROR]
        if len({normalised(c.answer) for c in answered}) < 2:
            return voted  # nothing to judge between
        listed = "\n\n".join(f"Answer {n}:\n{c.answer[:JUDGE_ANSWER_CHARS]}"
                             for n, c in enumerate(answered, 1))
        outcome = await self.tree.subcall(
            self.config.sub_lm, JUDGE_PROMPT.format(question=self.question, answers=listed,
                                                    count=len(answered)),
            run_id=self.run_id, depth=0, account=self.account)
        picked = judge_verdict(outcome.text, len(answered)) if outcome.answered else None
        return voted if picked is None else answered[picked].index

    def _start(self) -> None:
        cfg = self.config
        self.tree.emit(evt.RunStarted(
            run_id=self.run_id, depth=0, parent_run_id=None,
            question=preview(self.question, 2000), model=cfg.root_lm.model,
            sub_model=cfg.sub_lm.model if cfg.subcalls else "",
            context=describe_shape(self.context).to_dict(), sandbox=cfg.sandbox_kind,
            budget=cfg.budget.to_dict(),
        ))

    def _finish(self, outcome: Outcome, chosen: int | None, started: float) -> Outcome:
        if chosen is not None:
            self.results[chosen] = replace(self.results[chosen], selected=True)
        ledger = self.tree.ledger
        self.tree.emit(evt.RunFinished(
            run_id=self.run_id, depth=0, stop_reason=outcome.stop_reason.value,
            answer=outcome.answer, iterations=outcome.iterations, subcalls=ledger.subcalls,
            usage=ledger.usage.to_dict(), cost_usd=ledger.usd,
            duration_s=time.monotonic() - started, error=outcome.error,
            error_kind=outcome.error_kind, requests=ledger.requests,
            subcalls_refused=ledger.subcalls_refused, subcalls_failed=ledger.subcalls_failed,
            limited_by=ledger.limited_by.value if ledger.limited_by else None,
            tool_calls=self.tree.tool_counter.total,
        ))
        return outcome


def _varied(question: str, index: int) -> str:
    if index == 0:
        return question
    return f"{question}\n\n{CANDIDATE_HINTS[(index - 1) % len(CANDIDATE_HINTS)]}"
