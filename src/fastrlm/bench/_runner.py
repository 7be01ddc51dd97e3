"""Running a benchmark: instances x methods on the runner that ``fastrlm batch`` uses, as JSONL.

Each (instance, method) is one work item of :func:`fastrlm.jobs.drive`, on its local backend
(tasks of this event loop) or its Ray backend (``--backend ray``: one Ray task per item, which
regenerates its instance from (seed, length, index) on the worker, so no context crosses the
network, and runs :func:`run_method`, the same code the local backend runs). ``results.jsonl``
in ``out`` (a :class:`fastrlm.jobs.ResultsLog`) gets one line per item as soon as it finishes;
a rerun skips every (task, method, model, sub-model, seed, length, index) already there, and
with a sub-call cache repeats no sub-call it already paid for. At most ``concurrency`` items
run at once; locally an instance is generated once for its methods and dropped after its last
one, and since an instance's items are queued together at most ``concurrency`` instances are
alive (which bounds memory at full BrowseComp size). The baselines' LM calls share a limit of
``4 x concurrency`` (each RLM run has an engine limit of the same size). A method's own failure
(an ``RLMError``) is recorded as ``stop_reason="error"``; locally anything else is a bug and
propagates; on Ray an item whose task still fails after its retries writes no line (a re-run
resumes it) and is reported once the others are done.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import ConfigurationError, PriceTable, RLMError
from ..jobs import Backend, LocalBackend, RayBackend, ResultsLog, drive
from ..lm import LM
from ._config import (
    COST_MATCHED,
    BenchConfig,
    InstanceMethod,
    Method,
    Models,
    make_method,
    resolve_models,
)
from ._instance import Instance, Task
from ._meter import Cache, Meter, MethodResult
from ._score import error_answer, is_error_only
from ._tasks import get_task
from ._tokens import PROXY, context_tokens, tokenizer


def result_key(rec: dict[str, Any]) -> tuple[Any, ...]:
    return (
        rec["task"],
        rec["method"],
        rec["model"],
        rec["sub_model"],
        rec["seed"],
        rec["length"],
        rec["index"],
    )


def load_results(path: Path) -> list[dict[str, Any]]:
    """Records of a results file (a torn last line, from a crash, is skipped)."""
    return [rec for rec in ResultsLog(path).records() if isinstance(rec, dict)]


def _short(value: Any, limit: int = 2000) -> Any:
    text = json.dumps(value)
    return value if len(text) <= limit else text[:limit] + "..."


def record(
    config: BenchConfig,
    models: Models,
    method: str,
    length: int,
    index: int,
    inst: Instance,
    res: MethodResult,
    score: float,
    tokens: int | None = None,
    tokenizer_name: str | None = None,
) -> dict[str, Any]:
    """The JSONL line for one (instance, method) result. ``tokens``: the prompt's length as
    counted by ``tokenizer_name`` (o200k_base or the proxy, :mod:`fastrlm.bench._tokens`)."""
    usage = res.usage
    meta = {k: v for k, v in inst.meta.items() if k not in ("choices",)}
    root_tokens, sub_tokens = split_tokens(usage, models.root.model, models.sub.model,
                                           res.sub_tokens)
    return {
        "task": config.task,
        "method": method,
        "model": models.root.model,
        "sub_model": models.sub.model,
        "seed": _seed(config),
        "length": length,
        "index": index,
        "id": inst.id,
        "score": score,
        "answer": res.answer[:4000],
        "gold": _short(inst.gold),
        "answer_type": inst.answer_type,
        "stop_reason": res.stop_reason,
        "cost_usd": round(res.cost_usd, 8),
        "input_tokens": usage.get("input_tokens", 0),
        "output_tokens": usage.get("output_tokens", 0),
        "root_tokens": root_tokens,
        "sub_tokens": sub_tokens,
        "subcalls": res.subcalls,
        "iterations": res.iterations,
        "duration_s": round(res.duration_s, 4),
        "truncated": res.truncated,
        "exceeded": res.exceeded,
        "error": res.error,
        "context_tokens": tokens if tokens is not None else inst.meta.get("tokens"),
        "tokenizer": tokenizer_name or PROXY,
        "proxy_tokens": inst.meta.get("tokens"),
        "meta": _short(meta, 4000),
        "extra": _short(res.extra, 2000),
        "usage": usage,
    }


def resolve_seed(config: BenchConfig) -> BenchConfig:
    """``config`` with its seed fixed: the one given; else the seed of the last run of this task
    already recorded in ``out/results.jsonl`` (a rerun resumes it); else a fresh random one. A
    fixed default (seed 0) would let model code that knows the generators rebuild the very
    instance it is asked about, gold included; a fresh seed, recorded in every results line,
    keeps the run reproducible without that."""
    if config.seed is not None:
        return config
    recorded = [r.get("seed") for r in load_results(config.out / "results.jsonl")
                if r.get("task") == config.task and isinstance(r.get("seed"), int)]
    seed = recorded[-1] if recorded else secrets.randbits(63)
    return replace(config, seed=seed)


def _seed(config: BenchConfig) -> int:
    if config.seed is None:
        raise ConfigurationError("the config's seed is not resolved: call resolve_seed first")
    return config.seed


def split_tokens(
    usage: dict[str, Any], root: str, sub: str, sub_by_role: int | None = None
) -> tuple[int | None, int | None]:
    """Tokens (in + out) of the root and of sub-work (sub-calls, child runs, the summariser)
    in a result's usage: by model when root and sub are two models, else by role from
    ``sub_by_role`` (the method's own count, :attr:`MethodResult.sub_tokens`); (None, None)
    when they are one model and the method counted no roles."""
    if root == sub:
        if sub_by_role is None:
            return None, None
        total = int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0))
        return total - sub_by_role, sub_by_role
    by_model = usage.get("by_model") or {}
    total = sum(int(u.get("input_tokens", 0)) + int(u.get("output_tokens", 0))
                for u in by_model.values())
    mine = by_model.get(root) or {}
    root_tokens = int(mine.get("input_tokens", 0)) + int(mine.get("output_tokens", 0))
    return root_tokens, total - root_tokens


#: Re-runs of a Ray task whose worker died.
WORKER_RETRIES = 3

#: A work item: (length, index, method).
Item = tuple[int, int, str]


async def run_bench(
    config: BenchConfig,
    *,
    task: Task | None = None,
    models: Models | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``config``; returns every record in the results file (old and new). Raises
    :class:`~fastrlm.RLMError` when items failed on Ray (the others are written).

    The cost-matched control (``base-sc``) runs after the other methods, with its target cost
    the RLM's mean cost per task in the results (:func:`rlm_mean_cost`) unless
    ``config.match_cost_usd`` gives one."""
    config = resolve_seed(config)
    task = task or get_task(config.task, config.data, config.corpus)
    models = models or resolve_models(config)
    others = tuple(m for m in config.methods if m != COST_MATCHED)
    if others:
        await _run_phase(replace(config, methods=others), task, models, on_record)
    if COST_MATCHED in config.methods:
        target = config.match_cost_usd
        if target is None:
            target = rlm_mean_cost(load_results(config.out / "results.jsonl"), config.task,
                                   models.root.model, _seed(config))
        await _run_phase(replace(config, methods=(COST_MATCHED,), match_cost_usd=target),
                         task, models, on_record)
    return load_results(config.out / "results.jsonl")


#: The RLM rows whose mean cost the cost-matched control spends, in order of preference.
RLM_ROWS = ("rlm", "rlm-depth-2", "rlm-depth-3", "rlm-no-subcalls")


def rlm_mean_cost(records: list[dict[str, Any]], task: str, model: str, seed: int) -> float | None:
    """The mean cost per task of the first RLM row in :data:`RLM_ROWS` with results for
    ``task``, ``model`` and ``seed`` (None: no RLM has run)."""
    for method in RLM_ROWS:
        costs = [float(r["cost_usd"]) for r in records
                 if r.get("method") == method and r.get("task") == task
                 and r.get("model") == model and r.get("seed") == seed]
        if costs:
            return sum(costs) / len(costs)
    return None


async def _run_phase(
    config: BenchConfig,
    task: Task,
    models: Models,
    on_record: Callable[[dict[str, Any]], None] | None,
) -> None:
    seed = _seed(config)
    lengths = config.lengths or task.default_lengths
    check = getattr(task, "check_lengths", None)
    if callable(check):
        check(seed, tuple(lengths), str(config.data or config.task))
    n = config.n if config.n is not None else task.default_n
    log = ResultsLog(config.out / "results.jsonl")
    done = {result_key(r) for r in load_results(log.path)}
    root_name, sub_name = models.names
    todo: deque[Item] = deque()
    for length in lengths:
        available = _available(task, seed, length)
        for index in range(n if available is None else min(n, available)):
            todo.extend(
                (length, index, m)
                for m in config.methods
                if (config.task, m, root_name, sub_name, seed, length, index) not in done
            )
    progress = _Progress(len(todo), config.progress,
                         f"{config.task} ({', '.join(config.methods)})")
    backend: Backend[Item, dict[str, Any]]
    local: _LocalRuns | None = None
    if config.backend == "ray":
        backend = RayBackend(run_remote, address=config.ray_address,
                             max_retries=WORKER_RETRIES)

        def arguments(item: Item) -> tuple[Any, ...]:
            return (config, *item)
    else:
        local = _LocalRuns(config, task, models, todo)
        backend = LocalBackend(local.run)

        def arguments(item: Item) -> tuple[Any, ...]:
            return item

    failures: list[str] = []
    log.open()
    try:
        async with contextlib.aclosing(
                drive(backend, todo, config.concurrency, arguments)) as runs:
            async for finished in runs:
                if finished.error is not None:
                    if local is not None:
                        raise finished.error
                    error = finished.error
                    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
                    failures.append(f"{finished.key}: {type(error).__name__}: {first}")
                    continue
                rec = finished.value
                assert rec is not None
                log.append(rec)
                progress.advance()
                if on_record is not None:
                    on_record(rec)
    finally:
        log.close()
        progress.close()
        if local is not None:
            await local.aclose()
    if failures:
        raise RLMError(f"{len(failures)} run(s) failed on Ray (first: {failures[0]}); the "
                       "results file has the others: run the same command again to resume")


class _LocalRuns:
    """The local backend's item function: what the items of one run share (the methods, the
    sub-call cache, the baselines' call limit, the prices) and the instances, each generated
    once and dropped after the last of its items."""

    def __init__(self, config: BenchConfig, task: Task, models: Models,
                 todo: deque[Item]) -> None:
        self._config, self._task, self._models = config, task, models
        self._methods = {m: make_method(m, models, config) for m in config.methods}
        self._cache: Cache | None = None
        if config.cache is not None:
            from ..lm import SubcallCache

            self._cache = SubcallCache(config.cache)
        # LM calls of the baselines (simple-rlm fans out one call per chunk); each RLM run has
        # its own engine limiter of the same size
        self._lm_calls = asyncio.Semaphore(config.concurrency * 4)
        self._prices = PriceTable.default(dict(config.prices))
        self._tokenizer = tokenizer().name
        self._left = Counter((length, index) for length, index, _ in todo)
        self._instances: dict[tuple[int, int], asyncio.Future[tuple[Instance, int]]] = {}

    async def run(self, length: int, index: int, method: str) -> dict[str, Any]:
        key = (length, index)
        try:
            made = self._instances.get(key)
            if made is None:
                made = self._instances[key] = asyncio.ensure_future(self._instance(length, index))
            inst, tokens = await asyncio.shield(made)
            return await run_method(
                self._config, self._task, self._models, self._methods[method], method, length,
                index, inst, tokens, cache=self._cache, limiter=self._lm_calls,
                prices=self._prices, tokenizer_name=self._tokenizer)
        finally:
            self._left[key] -= 1
            if not self._left[key]:
                self._instances.pop(key, None)

    async def _instance(self, length: int, index: int) -> tuple[Instance, int]:
        inst = await asyncio.to_thread(self._task.instance, _seed(self._config), length, index)
        tokens = await asyncio.to_thread(context_tokens, inst.context, inst.query)
        return inst, tokens

    async def aclose(self) -> None:
        if self._cache is not None and hasattr(self._cache, "aclose"):
            await self._cache.aclose()


def run_remote(config: BenchConfig, length: int, index: int, method: str) -> dict[str, Any]:
    """The body of one Ray task: one method on one instance, on this worker (the task's own
    event loop: a Ray task is an entry point)."""

    async def go() -> dict[str, Any]:
        task = get_task(config.task, config.data, config.corpus)
        models = resolve_models(config)
        runs = _LocalRuns(config, task, models, deque([(length, index, method)]))
        try:
            return await runs.run(length, index, method)
        finally:
            await runs.aclose()

    return asyncio.run(go())


async def run_method(
    config: BenchConfig, task: Task, models: Models, runner: Method, method: str, length: int,
    index: int, inst: Instance, tokens: int, *, cache: Cache | None,
    limiter: asyncio.Semaphore | None, prices: PriceTable, tokenizer_name: str,
) -> dict[str, Any]:
    """Run one method on one instance and score it: the results line (a method's own
    failure, an ``RLMError``, is a line with ``stop_reason="error"``)."""
    evidence = inst.meta.get("evidence_docids")
    meter = Meter(cache=cache, limiter=limiter, track_docids=bool(evidence), prices=prices)
    if isinstance(runner, InstanceMethod) and (why := runner.not_applicable(inst)):
        res = MethodResult("", NOT_APPLICABLE, 0.0, {}, 0, 0, 0.0)
        rec = record(config, models, method, length, index, inst, res, 0.0, tokens,
                     tokenizer_name)
        rec["not_applicable"] = why
        return rec
    try:
        if isinstance(runner, InstanceMethod):  # the oracle reads hidden truth
            res = await runner.run_instance(inst, meter)
        else:
            res = await runner.run(inst.query, inst.context, meter)
    except RLMError as exc:
        res = MethodResult(
            "",
            "error",
            meter.cost_usd,
            meter.usage.to_dict(),
            meter.subcalls,
            0,
            0.0,
            error=f"{type(exc).__name__}: {exc}",
        )
    failed_kind = error_answer(res.answer)
    # an answer that is only a failed call's text is no answer, whatever it happens to contain
    failed_only = failed_kind is not None and is_error_only(res.answer)
    score = 0.0 if failed_only else task.score(res.answer, inst)
    verdict: dict[str, Any] | None = None
    if models.judge is not None and inst.task in JUDGED_TASKS and not failed_only:
        verdict = await judge_answer(models.judge, inst, res.answer, limiter,
                                     models.judge_template)
    # the official accuracy: only a "yes" verdict is correct (no verdict, or no reply, is not)
    final = float(verdict["correct"] is True) if verdict is not None else score
    if verdict is None and failed_only and models.judge is not None and inst.task in JUDGED_TASKS:
        verdict = {"model": models.judge.model, "correct": False, "parse_error": False,
                   "error": "not judged: the answer is a failed call's error text"}
    rec = record(config, models, method, length, index, inst, res, final, tokens,
                 tokenizer_name)
    if failed_kind is not None:
        rec["error_answer"] = failed_kind
        rec["error_answer_only"] = failed_only
    if verdict is not None:
        rec["score_exact_match"] = score
        rec["judge"] = verdict
    if evidence:
        hit = meter.touched & {str(d) for d in evidence}
        rec["evidence_recall"] = round(len(hit) / len(evidence), 4)
    return rec


#: The ``stop_reason`` of a control that cannot run on an instance (the oracle on real data):
#: the report shows N/A, and leaves it out of the score.
NOT_APPLICABLE = "not_applicable"

#: Tasks whose official metric is an LLM judge (BrowseComp-Plus); with a judge model configured
#: their score is the judge's verdict, and the exact-match score is kept beside it.
JUDGED_TASKS = frozenset({"browsecomp"})


async def judge_answer(
    judge: LM, inst: Instance, answer: str, limiter: asyncio.Semaphore | None = None,
    template: str | None = None,
) -> dict[str, Any]:
    """Ask ``judge`` whether ``answer`` matches the gold with BrowseComp-Plus's grader prompt
    (``template``; :func:`fastrlm.bench._judge.load_grader_template` when None). Returns
    ``correct`` (None when the reply had no verdict, ``parse_error``, or the call failed,
    ``error``: both graded not correct, as the official accuracy counts them), the judge's
    extracted answer, confidence, reasoning and cost."""
    from ._browsecomp import FORMAT
    from ._judge import judge_prompt, load_grader_template, parse_judgement

    template = template if template is not None else load_grader_template()
    # the bare question, as the official grader is given it (without the answer-format lines)
    question = str(inst.meta.get("question") or inst.query.split("\n\n" + FORMAT, 1)[0])
    gold = inst.gold[0] if isinstance(inst.gold, list) and inst.gold else inst.gold
    meter = Meter(limiter=limiter)
    try:
        reply = await meter.complete(
            judge,
            [{"role": "user", "content": judge_prompt(template, question, answer, str(gold))}],
        )
    except RLMError as exc:
        return {"model": judge.model, "correct": None, "parse_error": False,
                "error": f"{type(exc).__name__}: {exc}", "cost_usd": meter.cost_usd}
    verdict = parse_judgement(reply)
    return {
        "model": judge.model,
        "correct": verdict.correct,
        "extracted": verdict.extracted,
        "confidence": verdict.confidence,
        "reasoning": _short(verdict.reasoning, 2000),
        "parse_error": verdict.parse_error,
        "cost_usd": round(meter.cost_usd, 8),
        "error": None if not verdict.parse_error else "no yes/no verdict in the judge's reply",
    }


def _available(task: Task, seed: int, length: int) -> int | None:
    """How many instances a task loaded from disk has (None: generated, unbounded)."""
    instances = getattr(task, "instances", None)
    return len(instances(seed, length)) if callable(instances) else None


class _Progress:
    """A rich progress bar on stderr (nothing when disabled)."""

    def __init__(self, total: int, enabled: bool, label: str) -> None:
        self._bar: Any = None
        if enabled and total:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self._bar = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self._bar.start()
            self._id = self._bar.add_task(label, total=total)

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.advance(self._id)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
