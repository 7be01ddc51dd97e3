"""A batch: :func:`batch` (the door) and :class:`Batch` (the batch's policy over the runner).

The runner (:func:`fastrlm.jobs._runner.drive`) starts jobs on a backend at most
``concurrency`` at once and reports each as it ends; :class:`Batch` decides what starts and
what a result means. The batch budget (``max_usd``) is settled from each job's own ledger
(``RLMResult.cost_usd``) once per job id when its result arrives; no job starts once the
settled total reaches the limit, and each job's own ``max_usd`` is capped by what was left when
it started. So the total passes the limit by at most what the jobs already running spend. A
capped job stopped by that cap also ends the starting of new jobs (what is left does not cover
a job); one refused before its first call is not written (it counts as not started, so a re-run
with more budget runs it). A retried job (``retries``, for provider errors) adds each returned
attempt's spend; an attempt lost with its worker (Ray) left no ledger: its spend is estimated
from the calls it made (the coordinator's meter), counted, and reported
(``JobResult.lost_usd``, ``BatchSummary.lost_usd``). ``attempts`` counts every run of a job:
driver retries and the re-runs Ray made after a worker died.

Jobs running when the batch is interrupted (Ctrl-C, ``aclose``, a cancelled task) are
cancelled; what each had spent (metered call by call, on either backend) is counted in the
summary and kept as a record, :attr:`Batch.interrupted` (``stop_reason`` ``cancelled``), which
``fastrlm batch`` writes to the results file.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import warnings
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .._core.facade import RLM
from .._foundation.budget import Budget
from .._foundation.errors import ConfigurationError
from .._foundation.limits import Limits
from .._foundation.pricing import PriceTable, unpriced_message
from .._foundation.validate import BATCH_RULES
from ._budget import BatchBudget, BatchSummary
from ._jobs import Job, JobResult, check_unique, interrupted
from ._limiter import DEFAULT_LEASE_S, SlotPool
from ._run import LocalJobs, RayJobs, RunSpec
from ._runner import Backend, drive

if TYPE_CHECKING:
    from ..context import LoadLimits

BACKENDS = ("local", "ray")

ProgressCallback = Callable[[BatchSummary], object]


log = logging.getLogger("fastrlm")

class Batch:
    """The results of a batch as they finish: ``async for result in batch(...)``.
    :attr:`summary` is live while it runs and final once the iteration ends. To stop early,
    break and ``await batch.aclose()`` (or iterate inside ``async with batch(...) as run``):
    the running jobs are cancelled, and :attr:`interrupted` then holds a record of each
    (what it had spent)."""

    def __init__(
        self, jobs: list[Job], site: LocalJobs | RayJobs, spec: RunSpec, *,
        max_usd: float | None, concurrency: int, retries: int, skip: Iterable[str],
        on_progress: ProgressCallback | None, owned: RLM | None = None,
    ) -> None:
        skipped = set(skip)
        self._jobs = jobs
        self._todo = deque(job for job in jobs if job.id not in skipped)
        self._site = site
        self._spec = spec
        self._owned = owned
        self._budget = BatchBudget(max_usd)
        self._concurrency = concurrency
        self._retries = retries
        self._on_progress = on_progress
        self.summary = BatchSummary(total=len(jobs), skipped=len(jobs) - len(self._todo))
        self._iterator: AsyncIterator[JobResult] | None = None
        self._tries: dict[str, int] = {}
        self._capped: set[str] = set()  # running with max_usd capped by what is left
        #: Once the batch ended: a ``cancelled`` record of each job it interrupted.
        self.interrupted: list[JobResult] = []

    def __aiter__(self) -> Batch:
        return self

    async def __anext__(self) -> JobResult:
        if self._iterator is None:
            self._iterator = self._drive()
        return await self._iterator.__anext__()

    async def aclose(self) -> None:
        """Stop: running jobs are cancelled (nothing is written for them)."""
        if self._iterator is not None:
            await self._iterator.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> Batch:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _progress(self) -> None:
        self.summary.running = self._site.backend.running
        self.summary.spent_usd = self._budget.spent
        self.summary.lost_usd = self._budget.lost_usd
        if self._on_progress is not None:
            try:
                self._on_progress(self.summary)
            except Exception:  # a broken progress display must never stop the batch
                log.exception("fastrlm batch on_progress callback %r failed",
                              self._on_progress)

    def _record_interrupted(self, attempts: dict[str, int], spent_before: dict[str, float]) -> None:
        """A record of each job cancelled while running, its metered spend counted."""
        jobs = {job.id: job for job in self._jobs}
        for job_id, usd in self._site.interrupted().items():
            self._budget.add_interrupted(usd)  # earlier attempts' spend is booked already
            spent = usd + spent_before.pop(job_id, 0.0)
            record = interrupted(job_id, spent, attempts.get(job_id, 0) + 1)
            job = jobs.get(job_id)
            if job is not None and job.metadata:
                record = dataclasses.replace(record, metadata=job.metadata)
            self.interrupted.append(record)

    def _arguments(self, job: Job) -> tuple[Any, ...] | None:
        """What ``job`` starts with (its dollar cap), or None: the batch budget is spent."""
        if self._budget.exhausted or self.summary.budget_exhausted:
            self.summary.budget_exhausted = True
            return None
        self._tries[job.id] = self._tries.get(job.id, 0) + 1
        cap = self._budget.cap()
        own = self._spec.budget_for(job, None).max_usd
        if cap is not None and (own is None or cap < own):
            self._capped.add(job.id)
        return (job, cap)

    async def _drive(self) -> AsyncIterator[JobResult]:
        budget, summary, tries, todo = self._budget, self.summary, self._tries, self._todo
        spent_before: dict[str, float] = {}  # returned attempts that were retried
        lost: dict[str, float] = {}
        attempts: dict[str, int] = {}  # runs of each job so far (Ray's re-runs included)
        backend: Backend[Job, Any] = self._site.backend
        runs = drive(backend, todo, self._concurrency, self._arguments,
                     self._progress)
        try:
            async with contextlib.aclosing(runs):
                async for finished in runs:
                    job = finished.key
                    result, lost_usd = await self._site.outcome(finished)
                    attempts[job.id] = attempts.get(job.id, 0) + result.attempts
                    if lost_usd:
                        budget.add_lost(lost_usd)
                        lost[job.id] = lost.get(job.id, 0.0) + lost_usd
                    if (result.error_kind == "provider" and tries[job.id] <= self._retries
                            and not budget.exhausted):
                        spent_before[job.id] = spent_before.get(job.id, 0.0) + result.cost_usd
                        budget.add_retried(result.cost_usd)
                        summary.retried += 1
                        todo.appendleft(job)
                        self._progress()
                        continue
                    if job.id in self._capped and result.limited_by == "budget_usd":
                        # what was left of the batch budget did not cover this job's calls
                        summary.budget_exhausted = True
                        if not result.cost_usd and not spent_before.get(job.id):
                            todo.appendleft(job)  # refused before any call: not started
                            tries[job.id] -= 1
                            attempts[job.id] -= result.attempts
                            continue
                    self._capped.discard(job.id)
                    if not budget.settle(job.id, result.cost_usd):
                        continue  # already settled: a duplicate report of the same job
                    cost = spent_before.pop(job.id, 0.0) + result.cost_usd
                    result = dataclasses.replace(result, cost_usd=cost,
                                                 attempts=attempts.pop(job.id),
                                                 lost_usd=lost.pop(job.id, 0.0),
                                                 metadata=job.metadata)
                    if result.ok:
                        summary.done += 1
                    else:
                        summary.failed += 1
                    self._progress()
                    yield result
        except (asyncio.CancelledError, GeneratorExit):
            summary.cancelled = True
            raise
        finally:
            summary.not_started = len(todo)
            summary.budget_exhausted = summary.budget_exhausted or (
                bool(todo) and budget.exhausted)
            summary.peak_slots = await self._site.close()
            self._record_interrupted(attempts, spent_before)
            if self._owned is not None:
                await self._owned.aclose()
            self._progress()


def batch(
    jobs: Iterable[Job | Mapping[str, Any]],
    rlm: RLM | None = None,
    *,
    max_usd: float | None = None,
    max_concurrent_runs: int = 8,
    provider_concurrency: int | Mapping[str, int] | None = 16,
    retries: int = 0,
    backend: str = "local",
    ray_address: str | None = None,
    worker_retries: int = 3,
    cpus_per_job: float = 1.0,
    lease_s: float = DEFAULT_LEASE_S,
    skip: Iterable[str] = (),
    on_progress: ProgressCallback | None = None,
    load_limits: LoadLimits | None = None,
    model: str | None = None,
    sub_model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    budget: Budget | None = None,
    limits: Limits | None = None,
    sandbox: str | None = None,
    prices: PriceTable | None = None,
    trace: bool | None = None,
    concurrency: int | None = None,
) -> Batch:
    """Run many jobs (a question over a context each) with one RLM, and yield each
    :class:`JobResult` as it finishes::

        rlm = fastrlm.RLM("openai/gpt-5-mini", trace=True)
        async for result in fastrlm.batch(jobs, rlm=rlm, max_usd=20):
            print(result.id, result.answer)

    ``jobs``: :class:`Job` objects or job dicts (the JSONL line format of ``fastrlm batch``).
    Every job runs with ``rlm``'s settings (models, budget, limits, sandbox, prices, trace,
    prompts, tools); a job's own ``model`` / ``sub_model`` / ``budget`` fields win.
    ``max_usd`` is the whole batch's total: no job starts once it is spent, and each job's
    ``max_usd`` is capped by what is left. At most ``max_concurrent_runs`` jobs run at once, and at
    most ``provider_concurrency`` LM calls per provider are in flight across all of them (an
    int for every provider, or a mapping such as ``{"openai": 8, "*": 16}``, ``"*"`` for the
    providers it does not name; ``None``: no limit). ``retries`` re-runs a job that ended with
    a provider error. ``backend="ray"`` runs each job as a Ray task (joining ``ray_address`` or
    ``RAY_ADDRESS``, else a local Ray started for the batch; the RLM travels to the workers, so
    give it model strings), re-run up to ``worker_retries`` times when its worker dies;
    ``skip`` lists ids already done. ``load_limits`` (:class:`~fastrlm.context.LoadLimits`)
    bounds loading each job's ``context_path`` (None: the defaults).

    Deprecated: ``concurrency=`` (now ``max_concurrent_runs``, the name the server and MCP use
    too), and the RLM's settings as keywords (``model=``, ``sub_model=``, ``base_url=``,
    ``api_key=``, ``budget=``, ``limits=``, ``sandbox=``, ``prices=``, ``trace=``) instead of
    ``rlm=`` still work for this release, with a ``DeprecationWarning``.

    Raises :class:`~fastrlm.ConfigurationError` for bad settings or jobs (before any job runs).
    Breaking out of the loop (or cancelling it) cancels the running jobs.
    """
    if backend not in BACKENDS:
        raise ConfigurationError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    keywords: dict[str, Any] = {name: value for name, value in (
        ("model", model), ("sub_model", sub_model), ("base_url", base_url),
        ("api_key", api_key), ("budget", budget), ("limits", limits), ("sandbox", sandbox),
        ("prices", prices), ("trace", trace)) if value is not None}
    owned: RLM | None = None
    if rlm is None:
        if not isinstance(model, str) or not model.strip():
            raise ConfigurationError("batch() needs rlm=RLM('provider/name', ...), e.g. "
                                     "rlm=fastrlm.RLM('openai/gpt-5-mini')")
        warnings.warn("batch(jobs, model=..., budget=..., ...) is deprecated: build one RLM "
                      f"and pass it, batch(jobs, rlm=RLM({', '.join(f'{k}=...' for k in keywords)}"
                      "))", DeprecationWarning, stacklevel=2)
        rlm = owned = RLM(model, sub_model, base_url=base_url, api_key=api_key, budget=budget,
                          limits=limits, sandbox=sandbox or "auto", prices=prices,
                          trace=True if trace is None else trace)
    elif keywords:
        raise ConfigurationError(
            f"batch() got rlm= and {', '.join(sorted(keywords))}: give those to RLM(...) "
            "(or rlm.with_options(...)), not to batch()")
    elif not isinstance(rlm, RLM):
        raise ConfigurationError(f"batch() needs rlm=RLM(...), not {type(rlm).__name__}")
    if concurrency is not None:
        warnings.warn("batch(concurrency=...) is deprecated: use max_concurrent_runs=...",
                      DeprecationWarning, stacklevel=2)
        max_concurrent_runs = concurrency
    for name, value in (("max_concurrent_runs", max_concurrent_runs), ("retries", retries),
                        ("worker_retries", worker_retries), ("max_usd", max_usd),
                        ("cpus_per_job", cpus_per_job), ("lease_s", lease_s)):
        BATCH_RULES[name].check(name, value)
    pool_limits, default = _provider_limits(provider_concurrency)
    checked = [job if isinstance(job, Job) else Job.from_dict(job, where=f"jobs[{i}]")
               for i, job in enumerate(jobs)]
    check_unique(checked)
    spec = RunSpec(rlm, load_limits=load_limits)
    if max_usd is not None:
        _check_priced(checked, spec)
    site: LocalJobs | RayJobs
    if backend == "ray":
        site = RayJobs(spec, pool_limits, default, lease_s=lease_s, address=ray_address,
                       worker_retries=worker_retries, cpus_per_job=cpus_per_job)
    else:
        site = LocalJobs(spec, SlotPool(pool_limits, default, lease_s))
    return Batch(checked, site, spec, max_usd=max_usd, concurrency=max_concurrent_runs,
                 retries=retries,
                 skip=skip, on_progress=on_progress, owned=owned)


def _provider_limits(
    value: int | Mapping[str, int] | None,
) -> tuple[dict[str, int], int | None]:
    if value is None:
        return {}, None
    if isinstance(value, int) and not isinstance(value, bool):
        items: dict[str, int] = {}
        default: int | None = value
    elif isinstance(value, Mapping):
        items = dict(value)
        default = items.pop("*", None)
    else:
        raise ConfigurationError("provider_concurrency must be an int, a {provider: int} "
                                 f"mapping or None, not {value!r}")
    for name, n in [*items.items(), *([("*", default)] if default is not None else [])]:
        BATCH_RULES["provider_concurrency"].check(f"provider_concurrency for {name}", n)
    return items, default


def _check_priced(jobs: list[Job], spec: RunSpec) -> None:
    """A batch dollar limit needs a price for every model a job may call."""
    names = {spec.model, spec.sub_model}
    for job in jobs:
        names.update((job.model, job.sub_model))
    missing = spec.prices.unpriced(names)
    if missing:
        raise ConfigurationError(unpriced_message(
            missing, "the batch's max_usd",
            "Give prices (PriceTable / --price MODEL=IN,OUT) or leave out max_usd."))
