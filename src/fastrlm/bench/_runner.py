"""Running a benchmark: instances x methods under one concurrency limit, resumable, as JSONL.

``results.jsonl`` in ``out`` gets one line per (instance, method) as soon as it finishes; a rerun
skips every (task, method, model, sub-model, seed, length, index) already there, and with a
sub-call cache repeats no sub-call it already paid for. At most ``concurrency`` instances are alive
at once (generation included, which bounds memory at full BrowseComp size) and at most
``concurrency`` method runs are in flight; the baselines' LM calls share a limit of
``4 x concurrency`` (each RLM run has an engine limit of the same size). A method's own failure
(an ``RLMError``) is recorded as ``stop_reason="error"``; anything else is a bug and propagates.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .._budget import Budget
from .._config import Limits
from .._exceptions import ConfigurationError, RLMError
from ..lm._base import LM
from ._baselines import BaseModel, SimpleRLM, SummaryAgent
from ._codeact import CodeActBM25
from ._instance import Instance, Task
from ._meter import Cache, Meter, MethodResult
from ._rlm_method import RLMMethod
from ._tasks import get_task

METHODS: tuple[str, ...] = (
    "rlm",
    "rlm-no-subcalls",
    "base",
    "summary",
    "codeact-bm25",
    "simple-rlm",
    "shortcut",
    "oracle",
)
#: ``shortcut`` (a model-free program) and ``oracle`` (the rlm method with a root that writes the
#: right program and a sub-model that knows the hidden truth) are controls: no LM is called.
CONTROLS = ("shortcut", "oracle")
#: Table 1's sub-model for a root model (the paper: GPT-5 -> GPT-5-mini, summary with GPT-5-nano).
DEFAULT_SUB = {"openai/gpt-5": "openai/gpt-5-mini"}
DEFAULT_SUMMARIZER = {"openai/gpt-5": "openai/gpt-5-nano"}


class Method(Protocol):
    name: str

    async def run(
        self, question: str, context: str | list[str], meter: Meter | None = None
    ) -> MethodResult: ...


@runtime_checkable
class InstanceMethod(Protocol):
    """A control that needs the whole instance (the oracle: its hidden truth)."""

    name: str

    async def run_instance(self, inst: Instance, meter: Meter | None = None) -> MethodResult: ...


@dataclass(frozen=True)
class BenchConfig:
    """Everything one ``fastrlm bench`` invocation needs. ``lengths``/``n`` default to the task's
    paper setting; ``scripted`` swaps in offline scripted models (``model`` is then ignored)."""

    task: str
    methods: tuple[str, ...] = ("rlm",)
    model: str = "openai/gpt-5"
    sub_model: str | None = None
    summarizer: str | None = None
    lengths: tuple[int, ...] | None = None
    n: int | None = None
    seed: int = 0
    out: Path = Path("bench-results")
    concurrency: int = 8
    base_url: str | None = None
    scripted: bool = False
    cache: Path | None = None
    sandbox: str = "auto"
    max_iterations: int = 30
    max_usd: float | None = None
    max_subcalls: int | None = None
    batch_hint: bool = False
    window: int | None = None
    data: Path | None = None
    corpus: Path | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ConfigurationError(
                f"unknown method(s) {', '.join(unknown)}; expected {', '.join(METHODS)}"
            )
        if self.concurrency < 1:
            raise ConfigurationError("concurrency must be at least 1")


@dataclass
class Models:
    root: LM
    sub: LM
    summarizer: LM

    @property
    def names(self) -> tuple[str, str]:
        return self.root.model, self.sub.model


def resolve_models(config: BenchConfig) -> Models:
    """The root, sub and summariser LMs (scripted ones with ``config.scripted``)."""
    if config.scripted:
        from ._scripted import scripted_models

        scripted_root, scripted_sub = scripted_models(config.task)
        return Models(scripted_root, scripted_sub, scripted_sub)
    from ..lm import resolve

    sub_spec = config.sub_model or DEFAULT_SUB.get(config.model, config.model)
    summ_spec = config.summarizer or DEFAULT_SUMMARIZER.get(config.model, sub_spec)
    root = resolve(config.model, base_url=config.base_url)
    sub = root if sub_spec == config.model else resolve(sub_spec, base_url=config.base_url)
    summ = sub if summ_spec == sub_spec else resolve(summ_spec, base_url=config.base_url)
    return Models(root, sub, summ)


#: The paper's extra line for Qwen3-Coder (P2 App. C): batch sub-calls by about 200K characters.
BATCH_HINT = (
    "batch your sub-calls: put about 200,000 characters of context into each llm_query call "
    "rather than making many small calls; "
)


def make_method(name: str, models: Models, config: BenchConfig) -> Method:
    """The method ``name`` over ``models``, configured from ``config``."""
    if name in ("rlm", "rlm-no-subcalls"):
        from .._prompts import STRATEGY_SUBCALLS, Prompts

        prompts = (
            Prompts(strategy_subcalls=STRATEGY_SUBCALLS + BATCH_HINT) if config.batch_hint else None
        )
        budget = Budget(
            max_iterations=config.max_iterations,
            max_usd=config.max_usd,
            max_subcalls=config.max_subcalls,
        )
        return RLMMethod(
            models.root,
            models.sub,
            subcalls=name == "rlm",
            budget=budget,
            limits=Limits(max_concurrency=max(config.concurrency, 1) * 4),
            sandbox=config.sandbox,
            prompts=prompts,
            name=name,
        )
    if name == "base":
        return BaseModel(models.root, window=config.window)
    if name == "summary":
        return SummaryAgent(models.root, models.summarizer, window=config.window)
    if name == "codeact-bm25":
        return CodeActBM25(
            models.root,
            max_iterations=config.max_iterations,
            sandbox=config.sandbox,
            window=config.window,
        )
    if name == "shortcut":
        from ._shortcut import Shortcut

        return Shortcut(config.task)
    if name == "oracle":
        from ._oracle_method import Oracle

        return Oracle(config.task, sandbox=config.sandbox)
    return SimpleRLM(models.root, models.sub)


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
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


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
) -> dict[str, Any]:
    """The JSONL line for one (instance, method) result."""
    usage = res.usage
    meta = {k: v for k, v in inst.meta.items() if k not in ("choices",)}
    return {
        "task": config.task,
        "method": method,
        "model": models.root.model,
        "sub_model": models.sub.model,
        "seed": config.seed,
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
        "subcalls": res.subcalls,
        "iterations": res.iterations,
        "duration_s": round(res.duration_s, 4),
        "truncated": res.truncated,
        "error": res.error,
        "context_tokens": inst.meta.get("tokens"),
        "meta": _short(meta, 4000),
        "extra": _short(res.extra, 2000),
        "usage": usage,
    }


async def run_bench(
    config: BenchConfig,
    *,
    task: Task | None = None,
    models: Models | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``config``; returns every record in the results file (old and new)."""
    task = task or get_task(config.task, config.data, config.corpus)
    models = models or resolve_models(config)
    lengths = config.lengths or task.default_lengths
    n = config.n if config.n is not None else task.default_n
    config.out.mkdir(parents=True, exist_ok=True)
    path = config.out / "results.jsonl"
    done = {result_key(r) for r in load_results(path)}
    root_name, sub_name = models.names
    todo: list[tuple[int, int, list[str]]] = []
    for length in lengths:
        available = _available(task, config.seed, length)
        for index in range(n if available is None else min(n, available)):
            pending = [
                m
                for m in config.methods
                if (config.task, m, root_name, sub_name, config.seed, length, index) not in done
            ]
            if pending:
                todo.append((length, index, pending))
    cache: Cache | None = None
    if config.cache is not None:
        from ..lm import SubcallCache

        cache = SubcallCache(config.cache)
    methods = {m: make_method(m, models, config) for m in config.methods}
    instances_alive = asyncio.Semaphore(config.concurrency)
    runs = asyncio.Semaphore(config.concurrency)
    # LM calls of the baselines (simple-rlm fans out one call per chunk); each RLM run has its
    # own engine limiter of the same size
    lm_calls = asyncio.Semaphore(config.concurrency * 4)
    progress = _Progress(
        sum(len(p) for _, _, p in todo),
        config.progress,
        f"{config.task} ({', '.join(config.methods)})",
    )

    with path.open("a", encoding="utf-8") as fh:

        async def one(length: int, index: int, method: str, inst: Instance) -> None:
            async with runs:
                evidence = inst.meta.get("evidence_docids")
                meter = Meter(cache=cache, limiter=lm_calls, track_docids=bool(evidence))
                runner = methods[method]
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
            score = task.score(res.answer, inst)
            rec = record(config, models, method, length, index, inst, res, score)
            if evidence:
                hit = meter.touched & {str(d) for d in evidence}
                rec["evidence_recall"] = round(len(hit) / len(evidence), 4)
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            progress.advance()
            if on_record is not None:
                on_record(rec)

        async def instance_job(length: int, index: int, pending: list[str]) -> None:
            async with instances_alive:
                inst = await asyncio.to_thread(task.instance, config.seed, length, index)
                await asyncio.gather(*(one(length, index, m, inst) for m in pending))

        try:
            await asyncio.gather(*(instance_job(*job) for job in todo))
        finally:
            progress.close()
            if cache is not None and hasattr(cache, "aclose"):
                await cache.aclose()
    return load_results(path)


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
