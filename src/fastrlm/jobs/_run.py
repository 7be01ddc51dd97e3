"""One job, where it lands: :func:`run_job` on the driver's event loop or on a Ray worker.

:func:`run_job` loads the job's context, builds its RLM from the batch's (:class:`RunSpec`:
one :class:`~fastrlm.RLM`, its models wrapped in :class:`~fastrlm.jobs._limiter.LimitedLM`),
runs it, and turns whatever happened into a :class:`JobResult` (a failure is an error line,
never a raise). :class:`LocalJobs` and :class:`RayJobs` put it on the runner's two backends
(:mod:`fastrlm.jobs._runner`, :mod:`fastrlm.jobs._ray`) and say what each run came to: its
result, and what attempts lost with their worker spent (metered call by call by the
coordinator; a lost attempt left no ledger).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._core.facade import RLM
from .._foundation.budget import Budget
from .._foundation.errors import ConfigurationError, ContextError, RLMError
from .._foundation.pricing import PriceTable
from .._foundation.stop import StopReason
from ..lm import LM
from ._jobs import Job, JobResult
from ._limiter import (
    Coordinator,
    CoordinatorActor,
    LimitedLM,
    LocalCoordinator,
    RayCoordinator,
    SlotPool,
)
from ._ray import RayBackend
from ._runner import Finished, LocalBackend

if TYPE_CHECKING:
    from ..context import LoadLimits


@dataclass(frozen=True, slots=True)
class RunSpec:
    """The batch's RLM, as every job runs with it (picklable: it travels to Ray workers, which
    share one set of model clients per ``key``). A job's own ``model`` / ``sub_model`` /
    ``budget`` override the RLM's."""

    rlm: RLM
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    load_limits: LoadLimits | None = None  # for context_path; None: the defaults

    @property
    def model(self) -> str:
        return self.rlm.root_lm.model

    @property
    def sub_model(self) -> str | None:
        """None when the RLM has no sub-model of its own (its root answers sub-calls)."""
        return None if self.rlm.sub_lm is self.rlm.root_lm else self.rlm.sub_lm.model

    @property
    def prices(self) -> PriceTable:
        return self.rlm.prices

    def budget_for(self, job: Job, cap_usd: float | None) -> Budget:
        """The job's budget: the batch's, the job's fields on top, ``max_usd`` capped."""
        budget = dataclasses.replace(self.rlm.budget, **dict(job.budget))
        if cap_usd is not None and (budget.max_usd is None or budget.max_usd > cap_usd):
            budget = dataclasses.replace(budget, max_usd=cap_usd)
        return budget


class Models:
    """The LMs of one event loop by model name: the batch RLM's own, and one per other model a
    job names (resolved once, as the RLM resolves its models, and shared by the jobs)."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        rlm = spec.rlm
        self._lms: dict[str, LM] = {rlm.root_lm.model: rlm.root_lm}
        self._lms.setdefault(rlm.sub_lm.model, rlm.sub_lm)
        self._made: list[LM] = []

    def get(self, name: str) -> LM:
        if name not in self._lms:
            lm = self.spec.rlm.with_options(model=name, sub_model=name, child_models=None,
                                            models=None).root_lm
            self._lms[name] = lm
            self._made.append(lm)
        return self._lms[name]

    async def aclose(self) -> None:
        """Close the clients of the models made here (the batch RLM's are its owner's)."""
        for lm in self._made:
            await lm.aclose()
        self._made.clear()


async def run_job(
    job: Job, models: Models, coordinator: Coordinator, *, attempt: str,
    cap_usd: float | None,
) -> JobResult:
    """Run ``job`` once. Never raises for the job's own failure (the result says it)."""
    spec = models.spec
    started = time.monotonic()
    await coordinator.begin(job.id, attempt)

    def failed(kind: str, message: str) -> JobResult:
        return JobResult(job.id, error=message, error_kind=kind,
                         duration_s=time.monotonic() - started)

    try:
        if job.context is not None:
            context: object = job.context
        else:
            from ..context import load_context

            context = (await asyncio.to_thread(
                load_context, list(job.context_paths), limits=spec.load_limits)).value
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
        # the RLM's own child models as built (not resolved again, with new clients, per job)
        rlm = spec.rlm.with_options(model=limited_root, sub_model=limited_sub, budget=budget,
                                    child_models=dict(spec.rlm.child_lms))
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


class LocalJobs:
    """Jobs as tasks of the driver's event loop, one coordinator in process."""

    def __init__(self, spec: RunSpec, pool: SlotPool) -> None:
        self._models = Models(spec)
        self._coordinator = LocalCoordinator(pool)
        self.backend: LocalBackend[Job, JobResult] = LocalBackend(self._run)
        self._interrupted: dict[str, float] = {}

    async def _run(self, job: Job, cap_usd: float | None) -> JobResult:
        try:
            return await run_job(job, self._models, self._coordinator,
                                 attempt=uuid.uuid4().hex, cap_usd=cap_usd)
        except asyncio.CancelledError:
            self._interrupted[job.id] = self._coordinator.meter.lost(job.id, None)
            raise
        finally:
            self._coordinator.meter.forget(job.id)

    def interrupted(self) -> dict[str, float]:
        """After :meth:`close`: the jobs cancelled while running, with what they had spent."""
        return dict(self._interrupted)

    async def outcome(self, finished: Finished[Job, JobResult]) -> tuple[JobResult, float]:
        """The run's result and the estimated spend of its lost attempts (none here)."""
        if finished.error is not None:
            raise finished.error  # run_job returns every failure of the job: this is a bug
        assert finished.value is not None
        return finished.value, 0.0

    async def close(self) -> dict[str, int]:
        """After the backend closed: the peak slots in use per provider."""
        await self._models.aclose()
        return dict(self._coordinator.pool.peak)


class RayJobs:
    """Jobs as Ray tasks (:func:`run_remote`), the slots in one coordinator actor for the
    whole cluster, so the per-provider limit holds across every worker. A task whose worker
    dies is re-run by Ray (``worker_retries``); each run has its own attempt id, the job is
    settled once from the attempt whose result arrives, and what the other attempts spent
    (metered in the actor) is reported as lost. Context paths must be readable on the
    workers (a shared filesystem, or inline contexts)."""

    def __init__(
        self, spec: RunSpec, limits: dict[str, int], default: int | None, *, lease_s: float,
        address: str | None, worker_retries: int, cpus_per_job: float,
    ) -> None:
        self._spec = spec
        self._limits = (limits, default, lease_s)
        self._actor: Any = None
        self._peak: dict[str, int] = {}
        self._interrupted: dict[str, float] = {}
        self.backend: RayBackend[Job, dict[str, Any]] = RayBackend(
            run_remote, address=address, max_retries=worker_retries, num_cpus=cpus_per_job,
            setup=self._setup, teardown=self._teardown)

    def _setup(self, ray: Any) -> tuple[Any, ...]:
        actor_cls = ray.remote(num_cpus=0, max_concurrency=100_000)(CoordinatorActor)
        self._actor = actor_cls.remote(*self._limits)
        return (self._spec, self._actor)

    async def _teardown(self, ray: Any) -> None:
        try:
            for job in self.backend.cancelled:  # what the jobs cancelled at close had spent
                self._interrupted[job.id] = float(await self._actor.lost.remote(job.id, None))
            self._peak = dict(await self._actor.peak.remote())
        finally:
            ray.kill(self._actor)
            self._actor = None

    async def outcome(self, finished: Finished[Job, dict[str, Any]]) -> tuple[JobResult, float]:
        job, error = finished.key, finished.error
        if error is not None:  # Ray's errors: the task is lost, not the line
            lost, attempts = await self._actor.settle_job.remote(job.id, None)
            message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            return JobResult(job.id, error=f"{type(error).__name__}: {message}",
                             error_kind="lost" if finished.lost else "crash",
                             attempts=int(attempts)), float(lost)
        assert finished.value is not None
        reply = finished.value
        # Ray re-runs a task whose worker died: each run began an attempt in the actor
        lost, attempts = await self._actor.settle_job.remote(job.id, reply["attempt"])
        result = dataclasses.replace(JobResult.from_dict(reply["result"]),
                                     attempts=int(attempts))
        return result, float(lost)

    def interrupted(self) -> dict[str, float]:
        """After :meth:`close`: the jobs cancelled while running, with what they had spent."""
        return dict(self._interrupted)

    async def close(self) -> dict[str, int]:
        return self._peak


def run_remote(spec: RunSpec, actor: Any, job: Job, cap_usd: float | None) -> dict[str, Any]:
    """The body of a job's Ray task: run it on this worker's event loop (one per worker
    process, so its HTTP clients are reused by the batch's jobs that land there). Ray's cancel
    (a KeyboardInterrupt here) cancels the run."""
    attempt = uuid.uuid4().hex
    models, loop = _worker_state(spec)
    future = asyncio.run_coroutine_threadsafe(
        run_job(job, models, RayCoordinator(actor), attempt=attempt, cap_usd=cap_usd), loop)
    try:
        result = future.result()
    except BaseException:
        future.cancel()
        raise
    return {"attempt": attempt, "result": result.to_dict()}


#: Per worker process: its event loop (in a daemon thread) and its models per batch.
_WORKER: dict[str, Any] = {}


def _worker_state(spec: RunSpec) -> tuple[Models, asyncio.AbstractEventLoop]:
    loop = _WORKER.get("loop")
    if loop is None:
        loop = _WORKER["loop"] = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True, name="fastrlm-batch").start()
    shared = _WORKER.setdefault("models", {})
    if spec.key not in shared:
        shared[spec.key] = Models(spec)
    return shared[spec.key], loop
