"""Running a batch: one job, the batch budget, and the driver loop both backends share.

:func:`run_job` runs one job where it lands (the driver's event loop, or a Ray worker):
load its context, build its RLM over :class:`~fastrlm.jobs._limiter.LimitedLM` models, run,
and turn whatever happened into a :class:`JobResult` (a failure is an error line, never a
raise). :class:`Batch` is what :func:`batch` returns: the driver loop, an async iterator of
results in the order they finish.

The batch budget (``max_usd``) is settled from each job's own ledger (``RLMResult.cost_usd``)
once per job id when its result arrives; no job starts once the settled total reaches the
limit, and each job's own ``max_usd`` is capped by what was left when it started. So the total
passes the limit by at most what the jobs already running spend. A capped job stopped by that
cap also ends the starting of new jobs (what is left does not cover a job); one refused before
its first call is not written (it counts as not started, so a re-run with more budget runs it).
A retried job (``retries``, for provider errors) adds each returned attempt's spend; an attempt
lost with its worker (Ray) left no ledger: its spend is estimated from the calls it made (the
coordinator's meter), counted, and reported (``JobResult.lost_usd``, ``BatchSummary.lost_usd``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .._core.budget import Budget
from .._core.limits import Limits
from .._core.stop import StopReason
from .._exceptions import ConfigurationError, ContextError, RLMError
from .._pricing import PriceTable
from ..lm._base import LM
from ._budget import BatchBudget, BatchSummary
from ._jobs import Job, JobResult, check_unique
from ._limiter import DEFAULT_LEASE_S, Coordinator, LimitedLM, LocalCoordinator, SlotPool

if TYPE_CHECKING:
    from ..context import LoadLimits

BACKENDS = ("local", "ray")


@dataclass(frozen=True, slots=True)
class RunSpec:
    """The batch's settings, as every job runs with them (picklable: it travels to workers).
    A job's own ``model`` / ``sub_model`` / ``budget`` override these."""

    model: str
    sub_model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    sandbox: str = "auto"
    budget: Budget = field(default_factory=Budget)
    limits: Limits = field(default_factory=Limits)
    prices: PriceTable | None = None
    trace: bool = True
    load_limits: LoadLimits | None = None  # for context_path; None: the defaults

    def budget_for(self, job: Job, cap_usd: float | None) -> Budget:
        """The job's budget: the batch's, the job's fields on top, ``max_usd`` capped."""
        budget = dataclasses.replace(self.budget, **dict(job.budget))
        if cap_usd is not None and (budget.max_usd is None or budget.max_usd > cap_usd):
            budget = dataclasses.replace(budget, max_usd=cap_usd)
        return budget


class Models:
    """The LMs of one event loop, resolved once per model string and shared by its jobs."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self._lms: dict[str, LM] = {}

    def share(self, other: Models) -> None:
        """Use (and add to) ``other``'s LMs: same endpoint, key and limits, another spec."""
        self._lms = other._lms

    def get(self, name: str) -> LM:
        if name not in self._lms:
            from ..lm import resolve

            self._lms[name] = resolve(name, base_url=self.spec.base_url,
                                      api_key=self.spec.api_key, limits=self.spec.limits)
        return self._lms[name]

    async def aclose(self) -> None:
        for lm in self._lms.values():
            await lm.aclose()
        self._lms.clear()


async def run_job(
    job: Job, models: Models, coordinator: Coordinator, *, attempt: str,
    cap_usd: float | None,
) -> JobResult:
    """Run ``job`` once. Never raises for the job's own failure (the result says it)."""
    from .. import RLM

    spec = models.spec
    started = time.monotonic()

    def failed(kind: str, message: str) -> JobResult:
        return JobResult(job.id, error=message, error_kind=kind,
                         duration_s=time.monotonic() - started)

    try:
        if job.context is not None:
            context: object = job.context
        else:
            from ..context import load_context

            context = (await asyncio.to_thread(
                load_context, list(job.context_paths), limits=models.spec.load_limits)).value
    except (ContextError, ConfigurationError) as exc:
        return failed("context", str(exc))
    try:
        root = models.get(job.model or spec.model)
        sub = models.get(job.sub_model or spec.sub_model or job.model or spec.model)

        def limited(lm: LM) -> LimitedLM:
            return LimitedLM(lm, coordinator, job_id=job.id, attempt=attempt, prices=spec.prices)

        limited_root = limited(root)
        limited_sub = limited_root if sub is root else limited(sub)
        budget = spec.budget_for(job, cap_usd)
        rlm = RLM(model=limited_root, sub_model=limited_sub, budget=budget, limits=spec.limits,
                  sandbox=spec.sandbox, prices=spec.prices, trace=spec.trace)
    except (ConfigurationError, ValueError) as exc:
        return failed("config", str(exc))
    try:  # a schema is the engine's typed answer: told to the model, checked, sent back
        result = await rlm.acompletion(job.question, context, output=job.schema)
    except RLMError as exc:
        if exc.result is None:
            kind = "context" if isinstance(exc, ContextError) else "config"
            return failed(kind, f"{type(exc).__name__}: {exc}")
        result = exc.result
    except Exception as exc:  # noqa: BLE001 - a crashing job is an error line, never a lost one
        return failed("crash", f"{type(exc).__name__}: {exc}")
    line = JobResult(
        id=job.id,
        answer=result.answer,
        stop_reason=result.stop_reason.value,
        partial=result.partial,
        cost_usd=result.cost_usd,
        usage=result.usage.to_dict(),
        iterations=result.iterations,
        subcalls=result.subcalls,
        requests=result.requests,
        limited_by=result.limited_by.value if result.limited_by else None,
        trace_id=result.trace_id,
        trace_path=result.trace_path,
        duration_s=result.duration_s,
        error=result.error,
        error_kind=result.error_kind,
    )
    if job.schema is not None:
        if result.stop_reason is StopReason.INVALID_OUTPUT:
            return dataclasses.replace(line, error=f"schema: {result.error}",
                                       error_kind="schema")
        if result.value is not None:
            line = dataclasses.replace(line, output=result.value)
    return line


@dataclass(frozen=True, slots=True)
class Finished:
    """A backend's report of one run of a job: its result, and what lost attempts spent."""

    job: Job
    result: JobResult
    lost_usd: float = 0.0


class Backend(Protocol):
    """Where jobs run. ``submit`` starts one; ``next_finished`` waits for any to end."""

    @property
    def running(self) -> int: ...

    async def start(self) -> None: ...

    def submit(self, job: Job, cap_usd: float | None) -> None: ...

    async def next_finished(self) -> Finished: ...

    async def close(self) -> dict[str, int]:
        """Cancel what still runs; returns the peak slots in use per provider."""
        ...


class LocalBackend:
    """Jobs as tasks of the driver's event loop, one coordinator in process."""

    def __init__(self, spec: RunSpec, pool: SlotPool) -> None:
        self._models = Models(spec)
        self._coordinator = LocalCoordinator(pool)
        self._tasks: dict[asyncio.Task[JobResult], tuple[Job, str]] = {}

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def start(self) -> None:
        return None

    def submit(self, job: Job, cap_usd: float | None) -> None:
        attempt = uuid.uuid4().hex
        task = asyncio.ensure_future(run_job(job, self._models, self._coordinator,
                                             attempt=attempt, cap_usd=cap_usd))
        self._tasks[task] = (job, attempt)

    async def next_finished(self) -> Finished:
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        task = next(iter(done))
        job, attempt = self._tasks.pop(task)
        meter = self._coordinator.meter
        meter.forget(job.id)
        return Finished(job, task.result())

    async def close(self) -> dict[str, int]:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        self._tasks.clear()
        await self._models.aclose()
        return dict(self._coordinator.pool.peak)


ProgressCallback = Callable[[BatchSummary], object]


class Batch:
    """The results of a batch as they finish: ``async for result in batch(...)``.
    :attr:`summary` is live while it runs and final once the iteration ends. To stop early,
    break and ``await batch.aclose()`` (or iterate inside ``async with batch(...) as run``):
    the running jobs are cancelled."""

    def __init__(
        self, jobs: list[Job], backend: Backend, spec: RunSpec, *, max_usd: float | None,
        concurrency: int,
        retries: int, skip: Iterable[str], on_progress: ProgressCallback | None,
    ) -> None:
        skipped = set(skip)
        self._todo = deque(job for job in jobs if job.id not in skipped)
        self._backend = backend
        self._spec = spec
        self._budget = BatchBudget(max_usd)
        self._concurrency = concurrency
        self._retries = retries
        self._on_progress = on_progress
        self.summary = BatchSummary(total=len(jobs), skipped=len(jobs) - len(self._todo))
        self._iterator: AsyncIterator[JobResult] | None = None

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
        self.summary.running = self._backend.running
        self.summary.spent_usd = self._budget.spent
        self.summary.lost_usd = self._budget.lost_usd
        if self._on_progress is not None:
            self._on_progress(self.summary)

    async def _drive(self) -> AsyncIterator[JobResult]:
        backend, budget, summary = self._backend, self._budget, self.summary
        tries: dict[str, int] = {}
        spent_before: dict[str, float] = {}  # returned attempts that were retried
        lost: dict[str, float] = {}
        capped: set[str] = set()  # running with max_usd capped by what is left of the batch's
        if self._todo:  # all done already (resume): no Ray to start
            await backend.start()
        try:
            while self._todo or backend.running:
                while self._todo and backend.running < self._concurrency:
                    if budget.exhausted or summary.budget_exhausted:
                        summary.budget_exhausted = True
                        break
                    job = self._todo.popleft()
                    tries[job.id] = tries.get(job.id, 0) + 1
                    cap = budget.cap()
                    own = self._spec.budget_for(job, None).max_usd
                    if cap is not None and (own is None or cap < own):
                        capped.add(job.id)
                    backend.submit(job, cap)
                self._progress()
                if not backend.running:
                    break
                finished = await backend.next_finished()
                job, result = finished.job, finished.result
                if finished.lost_usd:
                    budget.add_lost(finished.lost_usd)
                    lost[job.id] = lost.get(job.id, 0.0) + finished.lost_usd
                if (result.error_kind == "provider" and tries[job.id] <= self._retries
                        and not budget.exhausted):
                    spent_before[job.id] = spent_before.get(job.id, 0.0) + result.cost_usd
                    budget.add_retried(result.cost_usd)
                    summary.retried += 1
                    self._todo.appendleft(job)
                    self._progress()
                    continue
                if job.id in capped and result.limited_by == "budget_usd":
                    # what was left of the batch budget did not cover this job's calls
                    summary.budget_exhausted = True
                    if not result.cost_usd and not spent_before.get(job.id):
                        self._todo.appendleft(job)  # refused before any call: not started
                        tries[job.id] -= 1
                        continue
                capped.discard(job.id)
                if not budget.settle(job.id, result.cost_usd):
                    continue  # already settled: a duplicate report of the same job
                cost = spent_before.pop(job.id, 0.0) + result.cost_usd
                result = dataclasses.replace(result, cost_usd=cost, attempts=tries[job.id],
                                             lost_usd=lost.pop(job.id, 0.0))
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
            summary.not_started = len(self._todo)
            summary.budget_exhausted = summary.budget_exhausted or (
                bool(self._todo) and budget.exhausted)
            summary.peak_slots = await backend.close()
            self._progress()


def batch(
    jobs: Iterable[Job | Mapping[str, Any]],
    *,
    model: str,
    sub_model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    budget: Budget | None = None,
    limits: Limits | None = None,
    sandbox: str = "auto",
    prices: PriceTable | None = None,
    trace: bool = True,
    max_usd: float | None = None,
    concurrency: int = 8,
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
) -> Batch:
    """Run many jobs (a question over a context each) and yield each :class:`JobResult` as it
    finishes::

        async for result in fastrlm.batch(jobs, model="openai/gpt-5-mini", max_usd=20):
            print(result.id, result.answer)

    ``jobs``: :class:`Job` objects or job dicts (the JSONL line format of ``fastrlm batch``).
    ``budget`` is each job's (a job's own ``budget`` fields win); ``max_usd`` is the whole
    batch's total: no job starts once it is spent, and each job's ``max_usd`` is capped by what
    is left. At most ``concurrency`` jobs run at once, and at most ``provider_concurrency`` LM
    calls per provider are in flight across all of them (an int for every provider, or a
    mapping such as ``{"openai": 8, "*": 16}``, ``"*"`` for the providers it does not name;
    ``None``: no limit). ``retries`` re-runs a job that
    ended with a provider error. ``backend="ray"`` runs each job as a Ray task (joining
    ``ray_address`` or ``RAY_ADDRESS``, else a local Ray started for the batch), re-run up to
    ``worker_retries`` times when its worker dies; ``skip`` lists ids already done.
    ``load_limits`` (:class:`~fastrlm.context.LoadLimits`) bounds loading each job's
    ``context_path`` (file size, files walked, time).

    Raises :class:`~fastrlm.ConfigurationError` for bad settings or jobs (before any job runs).
    Breaking out of the loop (or cancelling it) cancels the running jobs.
    """
    if backend not in BACKENDS:
        raise ConfigurationError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if not isinstance(model, str) or not model.strip():
        raise ConfigurationError("batch() needs model='provider/name', e.g. openai/gpt-5-mini")
    for name, value, least in (("concurrency", concurrency, 1), ("retries", retries, 0),
                               ("worker_retries", worker_retries, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ConfigurationError(f"{name} must be a whole number >= {least}, not {value!r}")
    if max_usd is not None and not (isinstance(max_usd, (int, float)) and math.isfinite(max_usd)
                                    and max_usd >= 0):
        raise ConfigurationError(f"max_usd must be a finite number >= 0, not {max_usd!r}")
    pool_limits, default = _provider_limits(provider_concurrency)
    checked = [job if isinstance(job, Job) else Job.from_dict(job, where=f"jobs[{i}]")
               for i, job in enumerate(jobs)]
    check_unique(checked)
    if max_usd is not None and prices is None:
        prices = PriceTable.default()
    spec = RunSpec(model=model, sub_model=sub_model, base_url=base_url, api_key=api_key,
                   sandbox=sandbox, budget=budget or Budget(), limits=limits or Limits(),
                   prices=prices, trace=trace, load_limits=load_limits)
    if max_usd is not None:
        _check_priced(checked, spec)
    runner: Backend
    if backend == "ray":
        from ._ray import RayBackend

        runner = RayBackend(spec, pool_limits, default, lease_s=lease_s, address=ray_address,
                            worker_retries=worker_retries, cpus_per_job=cpus_per_job)
    else:
        runner = LocalBackend(spec, SlotPool(pool_limits, default, lease_s))
    return Batch(checked, runner, spec, max_usd=max_usd, concurrency=concurrency, retries=retries,
                 skip=skip, on_progress=on_progress)


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
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigurationError(f"provider_concurrency for {name}: a whole number >= 1, "
                                     f"not {n!r}")
    return items, default


def _check_priced(jobs: list[Job], spec: RunSpec) -> None:
    """A batch dollar limit needs a price for every model a job may call."""
    assert spec.prices is not None
    names = {spec.model, spec.sub_model}
    for job in jobs:
        names.update((job.model, job.sub_model))
    missing = sorted(n for n in names if n is not None and spec.prices.price(n) is None)
    if missing:
        raise ConfigurationError(
            f"max_usd is set, but no price is known for {', '.join(missing)}, so the batch's "
            "dollar limit cannot be enforced: give prices (PriceTable / --price MODEL=IN,OUT) "
            "or leave out max_usd")
