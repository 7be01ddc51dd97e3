"""The Ray backend: one Ray task per job, one coordinator actor for the whole cluster.

Imported only for ``backend="ray"`` (``pip install 'fastrlm[ray]'``). The driver joins the
cluster at ``address`` (else ``RAY_ADDRESS``, else a local Ray it starts and stops itself;
a Ray the caller already initialised is used as it is and left running).

Each job runs as a task (``num_cpus=cpus_per_job``) that loads its context on the worker, so
context paths must be readable there (a shared filesystem, or inline contexts). Its models are
:class:`~fastrlm.jobs._limiter.LimitedLM` wrappers whose slots come from one async actor
(:class:`_CoordinatorActor`): the per-provider limit holds across every worker. A task whose
worker dies is re-run by Ray (``max_retries=worker_retries``); each run has its own attempt id,
the job is settled once from the attempt whose result arrives, and what the other attempts
spent (metered call by call in the actor) is reported as ``lost_usd``.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from typing import Any

from .._exceptions import ConfigurationError, MissingExtraError
from ._jobs import Job, JobResult
from ._limiter import SlotPool, SpendMeter
from ._run import Finished, Models, RunSpec, run_job


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingExtraError("ray", "ray", "the Ray backend (--backend ray)") from None
    return ray


class _CoordinatorActor:
    """The cluster's slot pools and spend meter (run as an async Ray actor)."""

    def __init__(self, limits: dict[str, int], default: int | None, lease_s: float) -> None:
        self.pool = SlotPool(limits, default, lease_s)
        self.meter = SpendMeter()

    async def acquire(self, provider: str) -> int:
        return await self.pool.acquire(provider)

    async def release(self, lease: int) -> None:
        self.pool.release(lease)

    async def settle(self, lease: int, job_id: str, attempt: str, usd: float) -> None:
        self.pool.release(lease)
        self.meter.add(job_id, attempt, usd)

    async def lost(self, job_id: str, kept: str | None) -> float:
        """What the attempts of ``job_id`` other than ``kept`` spent; forgets the job."""
        usd = self.meter.lost(job_id, kept)
        self.meter.forget(job_id)
        return usd

    async def peak(self) -> dict[str, int]:
        return dict(self.pool.peak)


class RayCoordinator:
    """The worker side of the coordinator actor (the :class:`Coordinator` protocol)."""

    def __init__(self, actor: Any) -> None:
        self._actor = actor

    async def acquire(self, provider: str) -> int:
        ref = self._actor.acquire.remote(provider)
        try:
            return int(await ref)
        except asyncio.CancelledError:
            # The actor may still grant the slot: release it once granted (Ray resolves the
            # reference before running release).
            self._actor.release.remote(ref)
            raise

    def release(self, lease: int) -> None:
        self._actor.release.remote(lease)

    async def settle(self, lease: int, job_id: str, attempt: str, usd: float) -> None:
        await self._actor.settle.remote(lease, job_id, attempt, usd)


def run_remote(job: Job, spec: RunSpec, actor: Any, cap_usd: float | None) -> dict[str, Any]:
    """The body of a job's Ray task: run it on this worker's event loop (one per worker
    process, so its HTTP clients are reused by the jobs that land there). Ray's cancel (a
    KeyboardInterrupt here) cancels the run."""
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


#: Per worker process: its event loop (in a daemon thread) and its models by connection.
_WORKER: dict[str, Any] = {}


def _worker_state(spec: RunSpec) -> tuple[Models, asyncio.AbstractEventLoop]:
    loop = _WORKER.get("loop")
    if loop is None:
        loop = _WORKER["loop"] = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True, name="fastrlm-batch").start()
    key = (spec.base_url, spec.api_key, spec.limits)
    shared = _WORKER.setdefault("models", {})
    if key not in shared:
        shared[key] = Models(spec)
    models = Models(spec)
    models.share(shared[key])
    return models, loop

class RayBackend:
    """Jobs as Ray tasks; results come back to the driver as they finish."""

    def __init__(
        self, spec: RunSpec, limits: dict[str, int], default: int | None, *, lease_s: float,
        address: str | None, worker_retries: int, cpus_per_job: float,
    ) -> None:
        self._spec = spec
        self._limits = (limits, default, lease_s)
        self._address = address or os.environ.get("RAY_ADDRESS") or None
        self._retries = worker_retries
        self._cpus = cpus_per_job
        self._ray: Any = None
        self._actor: Any = None
        self._task: Any = None
        self._started_ray = False
        self._running: dict[asyncio.Future[Any], tuple[Job, Any]] = {}

    @property
    def running(self) -> int:
        return len(self._running)

    async def start(self) -> None:
        ray = self._ray = import_ray()
        if not ray.is_initialized():
            try:
                # "local": a new Ray of our own, never a cluster that happens to run here
                ray.init(address=self._address or "local", include_dashboard=False,
                         log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"the Ray cluster at {self._address}" if self._address else "a local Ray"
                raise ConfigurationError(f"cannot start or join {where}: {exc}") from exc
            self._started_ray = True
        actor_cls = ray.remote(num_cpus=0, max_concurrency=100_000)(_CoordinatorActor)
        self._actor = actor_cls.remote(*self._limits)
        self._task = ray.remote(max_retries=self._retries, retry_exceptions=False,
                                num_cpus=self._cpus)(run_remote)

    def submit(self, job: Job, cap_usd: float | None) -> None:
        ref = self._task.remote(job, self._spec, self._actor, cap_usd)
        self._running[asyncio.ensure_future(_awaited(ref))] = (job, ref)

    async def next_finished(self) -> Finished:
        done, _ = await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
        future = next(iter(done))
        job, _ref = self._running.pop(future)
        try:
            reply = future.result()
        except Exception as exc:  # noqa: BLE001 - Ray's errors: the task is lost, not the line
            lost = float(await self._actor.lost.remote(job.id, None))
            kind = "lost" if _worker_died(self._ray, exc) else "crash"
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            result = JobResult(job.id, error=f"{type(exc).__name__}: {message}",
                               error_kind=kind)
            return Finished(job, result, lost)
        lost = float(await self._actor.lost.remote(job.id, reply["attempt"]))
        return Finished(job, JobResult.from_dict(reply["result"]), lost)

    async def close(self) -> dict[str, int]:
        ray = self._ray
        peak: dict[str, int] = {}
        if ray is None:
            return peak
        for future, (_job, ref) in self._running.items():
            ray.cancel(ref)
            future.cancel()
        if self._running:
            await asyncio.wait(self._running)
        self._running.clear()
        if self._actor is not None:
            try:
                peak = dict(await self._actor.peak.remote())
            finally:
                ray.kill(self._actor)
                self._actor = None
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False
        return peak


async def _awaited(ref: Any) -> Any:
    return await ref


def _worker_died(ray: Any, exc: BaseException) -> bool:
    exceptions = ray.exceptions
    return isinstance(exc, (exceptions.WorkerCrashedError, exceptions.NodeDiedError,
                            exceptions.OwnerDiedError, exceptions.TaskUnschedulableError))
