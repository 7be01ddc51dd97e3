"""The runner's Ray backend: one Ray task per work item (``pip install 'fastrlm[ray]'``).

``ray`` is imported here only, when the backend starts. The driver joins the cluster at
``address`` (else ``RAY_ADDRESS``, else a local Ray it starts and stops itself; a Ray the
caller already initialised is used as it is and left running). Each item runs
``function(*bound, *args)`` as a task (``num_cpus`` each); ``bound`` is what ``setup(ray)``
returned when the backend started (an actor handle the tasks share, say). A task whose worker
dies is re-run by Ray up to ``max_retries`` times; one that still fails comes back as a
:class:`~fastrlm.jobs._runner.Finished` with its error, ``lost`` when the worker died.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any, Generic

from .._foundation.errors import ConfigurationError, MissingExtraError
from ._runner import Finished, K, V


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingExtraError("ray", "ray", "the Ray backend (--backend ray)") from None
    return ray


class RayBackend(Generic[K, V]):
    """Items as Ray tasks of ``function`` (a picklable, module-level callable); results come
    back to the driver as they finish. ``teardown(ray)`` runs at close, before a Ray this
    backend started is shut down."""

    def __init__(
        self, function: Callable[..., V], *, address: str | None = None, max_retries: int = 3,
        num_cpus: float = 1.0, setup: Callable[[Any], tuple[Any, ...]] | None = None,
        teardown: Callable[[Any], Awaitable[None]] | None = None,
    ) -> None:
        self._function = function
        self._address = address or os.environ.get("RAY_ADDRESS") or None
        self._max_retries = max_retries
        self._num_cpus = num_cpus
        self._setup = setup
        self._teardown = teardown
        self._ray: Any = None
        self._remote: Any = None
        self._bound: tuple[Any, ...] = ()
        self._started_ray = False
        self._running: dict[asyncio.Future[Any], tuple[K, Any]] = {}
        #: The items still running when :meth:`close` cancelled them.
        self.cancelled: list[K] = []

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
        self._remote = ray.remote(max_retries=self._max_retries, retry_exceptions=False,
                                  num_cpus=self._num_cpus)(self._function)
        if self._setup is not None:
            self._bound = self._setup(ray)

    def submit(self, key: K, *args: Any) -> None:
        ref = self._remote.remote(*self._bound, *args)
        self._running[asyncio.ensure_future(_awaited(ref))] = (key, ref)

    async def next_finished(self) -> Finished[K, V]:
        done, _ = await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
        future = next(iter(done))
        key, _ref = self._running.pop(future)
        error = future.exception()
        if error is not None:
            return Finished(key, error=error, lost=_worker_died(self._ray, error))
        return Finished(key, future.result())

    async def close(self) -> None:
        ray = self._ray
        if ray is None:
            return
        for future, (key, ref) in self._running.items():
            self.cancelled.append(key)
            ray.cancel(ref)
            future.cancel()
        if self._running:
            await asyncio.wait(self._running)
        self._running.clear()
        try:
            if self._teardown is not None and self._remote is not None:
                await self._teardown(ray)
        finally:
            self._remote = None
            if self._started_ray:
                ray.shutdown()
                self._started_ray = False


async def _awaited(ref: Any) -> Any:
    return await ref


def _worker_died(ray: Any, exc: BaseException) -> bool:
    exceptions = ray.exceptions
    return isinstance(exc, (exceptions.WorkerCrashedError, exceptions.NodeDiedError,
                            exceptions.OwnerDiedError, exceptions.TaskUnschedulableError))
