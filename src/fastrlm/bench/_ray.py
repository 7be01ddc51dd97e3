"""``fastrlm bench --backend ray``: each (instance, method) run as one Ray task.

The driver keeps the results file, the resume and the summary exactly as the local runner
does; a worker builds the task, regenerates its instance from (seed, length, index) (so no
context crosses the network), resolves the models and runs the method through
:func:`~fastrlm.bench._runner.run_method`, the same code the local runner uses. A task whose
worker dies is re-run by Ray (three times); one that still fails writes no line (a re-run
resumes it) and is reported once the others are done.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._exceptions import RLMError

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._runner import BenchConfig, _Progress

#: Re-runs of a task whose worker died.
WORKER_RETRIES = 3


def _run_one(config: BenchConfig, length: int, index: int, method: str) -> dict[str, Any]:
    """The body of one Ray task: one method on one instance, on this worker."""
    from .._pricing import PriceTable
    from ._runner import make_method, resolve_models, run_method
    from ._tasks import get_task
    from ._tokens import context_tokens, tokenizer

    async def go() -> dict[str, Any]:
        task = get_task(config.task, config.data, config.corpus)
        models = resolve_models(config)
        inst = await asyncio.to_thread(task.instance, config.seed, length, index)
        tokens = await asyncio.to_thread(context_tokens, inst.context, inst.query)
        cache = None
        if config.cache is not None:
            from ..lm import SubcallCache

            cache = SubcallCache(config.cache)
        try:
            return await run_method(
                config, task, models, make_method(method, models, config), method, length,
                index, inst, tokens, cache=cache,
                limiter=asyncio.Semaphore(config.concurrency * 4),
                prices=PriceTable.default(dict(config.prices)), tokenizer_name=tokenizer().name)
        finally:
            if cache is not None:
                await cache.aclose()

    return asyncio.run(go())


async def run_on_ray(
    config: BenchConfig, todo: list[tuple[int, int, list[str]]], path: Path,
    progress: _Progress, on_record: Callable[[dict[str, Any]], None] | None,
) -> None:
    """Run every pending (instance, method) of ``todo`` on Ray, at most ``config.concurrency``
    at once, appending each record to ``path`` as it arrives."""
    from ..jobs._ray import import_ray

    ray = import_ray()
    started = False
    if not ray.is_initialized():
        address = config.ray_address or os.environ.get("RAY_ADDRESS") or "local"
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
        started = True
    remote = ray.remote(max_retries=WORKER_RETRIES, retry_exceptions=False)(_run_one)
    queue = [(length, index, m) for length, index, pending in todo for m in pending]
    running: dict[asyncio.Future[Any], tuple[tuple[int, int, str], Any]] = {}
    failures: list[str] = []

    async def awaited(ref: Any) -> Any:
        return await ref

    try:
        with path.open("a", encoding="utf-8") as fh:
            while queue or running:
                while queue and len(running) < config.concurrency:
                    item = queue.pop(0)
                    ref = remote.remote(config, *item)
                    running[asyncio.ensure_future(awaited(ref))] = (item, ref)
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    item, _ref = running.pop(future)
                    try:
                        rec = future.result()
                    except Exception as exc:  # noqa: BLE001 - Ray's errors: reported below
                        failures.append(f"{item}: {type(exc).__name__}: "
                                        f"{str(exc).strip().splitlines()[0] if str(exc) else ''}")
                        continue
                    fh.write(json.dumps(rec) + "\n")
                    fh.flush()
                    progress.advance()
                    if on_record is not None:
                        on_record(rec)
    finally:
        for future, (_item, ref) in running.items():
            ray.cancel(ref)
            future.cancel()
        if running:
            await asyncio.wait(running)
        progress.close()
        if started:
            ray.shutdown()
    if failures:
        raise RLMError(f"{len(failures)} run(s) failed on Ray (first: {failures[0]}); the "
                       "results file has the others: run the same command again to resume")
