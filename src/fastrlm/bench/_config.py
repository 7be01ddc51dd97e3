"""What one ``fastrlm bench`` invocation runs: :class:`BenchConfig`, the methods by name
(:data:`METHODS`, :func:`make_method`) and the models they use (:func:`resolve_models`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

from .. import Budget, ConfigurationError, Limits, Price, Prompts
from ..lm import LM
from ._baselines import BaseModel, SimpleRLM, SummaryAgent
from ._codeact import CodeActBM25
from ._instance import Instance
from ._meter import Meter, MethodResult
from ._rlm_method import RLMMethod

METHODS: tuple[str, ...] = (
    "rlm",
    "rlm-no-subcalls",
    "rlm-depth-2",
    "rlm-depth-3",
    "base",
    "base-truncated",
    "base-sc",
    "summary",
    "codeact",
    "codeact-bm25",
    "codeact-subcalls",
    "coding-agent",
    "simple-rlm",
    "shortcut",
    "oracle",
)
#: RLM recursion depth by method (arXiv 2512.24601v3, Table 1): 0 = no sub-calls, 1 = sub-calls
#: to plain LMs (the v1/v2 RLM), 2 and 3 = sub-calls may be RLMs themselves (``rlm_query``).
RLM_DEPTH = {"rlm-no-subcalls": 0, "rlm": 1, "rlm-depth-2": 2, "rlm-depth-3": 3}
#: The cost-matched control: the base model with self-consistency at the RLM's mean cost.
COST_MATCHED = "base-sc"
#: The tasks on which the paper gives CodeAct its BM25 retriever (``codeact``); ``codeact-bm25``
#: has it everywhere.
CODEACT_SEARCH_TASKS = frozenset({"browsecomp"})
#: ``shortcut`` (a model-free program) and ``oracle`` (the rlm method with a root that writes the
#: right program and a sub-model that knows the hidden truth) are controls: no LM is called.
CONTROLS = ("shortcut", "oracle")
#: Table 1's sub-model for a root model (the paper: GPT-5 -> GPT-5-mini, summary with GPT-5-nano).
DEFAULT_SUB = {"openai/gpt-5": "openai/gpt-5-mini"}
#: ``--prompt``: fastrlm's default system prompt, or the paper's preset for the root model.
PROMPT_CHOICES = ("default", "paper")
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

    def not_applicable(self, inst: Instance) -> str | None:
        """Why this control cannot run on ``inst`` (a real data set has no hidden truth), or
        None. The runner records such an instance as N/A, never as a scored 0."""
        ...

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
    #: None: a fresh random seed for a new run, or the seed of the run already in ``out``
    #: (:func:`fastrlm.bench._runner.resolve_seed`), so model code cannot re-derive an instance.
    seed: int | None = None
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
    prompt: str = "default"
    judge: str | None = None
    #: BrowseComp-Plus's grader prompt: a clone of the benchmark, a .py file or a text file
    #: (:func:`fastrlm.bench._judge.load_grader_template`; None: ``FASTRLM_JUDGE_TEMPLATE``).
    judge_template: Path | None = None
    window: int | None = None
    data: Path | None = None
    corpus: Path | None = None
    progress: bool = True
    prices: tuple[tuple[str, Price], ...] = ()  # on top of PriceTable.default()
    backend: str = "local"  # "ray": one Ray task per (instance, method)
    ray_address: str | None = None
    #: ``base-sc``'s target cost per task (None: the RLM's mean cost in the results).
    match_cost_usd: float | None = None
    #: ``base-sc``'s sample count when no target cost is known.
    sc_samples: int = 5

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ConfigurationError(
                f"unknown method(s) {', '.join(unknown)}; expected {', '.join(METHODS)}"
            )
        if self.concurrency < 1:
            raise ConfigurationError("concurrency must be at least 1")
        if self.backend not in ("local", "ray"):
            raise ConfigurationError(f"backend must be local or ray, not {self.backend!r}")
        if self.sc_samples < 1:
            raise ConfigurationError(f"sc_samples must be at least 1, not {self.sc_samples}")
        if self.match_cost_usd is not None and not self.match_cost_usd >= 0:
            raise ConfigurationError(
                f"match_cost_usd must be a cost in USD (0 or more), not {self.match_cost_usd}"
            )
        if self.prompt not in PROMPT_CHOICES:
            raise ConfigurationError(
                f"unknown prompt {self.prompt!r}; expected one of {', '.join(PROMPT_CHOICES)}"
            )


@dataclass
class Models:
    root: LM
    sub: LM
    summarizer: LM
    judge: LM | None = None
    #: The official grader prompt the judge is asked with (read when a judge is configured).
    judge_template: str | None = None

    @property
    def names(self) -> tuple[str, str]:
        return self.root.model, self.sub.model


def model_names(config: BenchConfig) -> tuple[str, str, str]:
    """The (root, sub, summariser) model names ``config`` asks for, defaults applied (Table 1:
    GPT-5 roots get GPT-5-mini sub-calls and a GPT-5-nano summariser)."""
    sub = config.sub_model or DEFAULT_SUB.get(config.model, config.model)
    return config.model, sub, config.summarizer or DEFAULT_SUMMARIZER.get(config.model, sub)


def resolve_models(config: BenchConfig) -> Models:
    """The root, sub and summariser LMs (scripted ones with ``config.scripted``)."""
    if config.scripted:
        from ._scripted import scripted_models

        if config.judge:
            raise ConfigurationError(
                "--judge grades real answers with a real model; drop it with --scripted"
            )

        scripted_root, scripted_sub = scripted_models(config.task)
        return Models(scripted_root, scripted_sub, scripted_sub)
    from ..lm import resolve

    template = None
    if config.judge:
        from ._judge import load_grader_template

        template = load_grader_template(config.judge_template)  # before any model is resolved
    _, sub_spec, summ_spec = model_names(config)
    root = resolve(config.model, base_url=config.base_url)
    sub = root if sub_spec == config.model else resolve(sub_spec, base_url=config.base_url)
    summ = sub if summ_spec == sub_spec else resolve(summ_spec, base_url=config.base_url)
    judge = resolve(config.judge, base_url=config.base_url) if config.judge else None
    return Models(root, sub, summ, judge, template)


#: The paper's extra line for Qwen3-Coder (P2 App. C): batch sub-calls by about 200K characters.
BATCH_HINT = (
    "batch your sub-calls: put about 200,000 characters of context into each llm_query call "
    "rather than making many small calls; "
)


def make_method(name: str, models: Models, config: BenchConfig) -> Method:
    """The method ``name`` over ``models``, configured from ``config``."""
    if name in RLM_DEPTH:
        prompts = Prompts.paper_for(models.root.model) if config.prompt == "paper" else Prompts()
        if config.batch_hint:
            # the paper's Qwen3-Coder paragraph has no public name (only the bench adds it to
            # another preset): the one private engine import left in the bench
            from .._core.paper_prompts import CODER_BATCHING

            extra = BATCH_HINT if config.prompt == "default" else CODER_BATCHING
            if extra not in prompts.strategy_subcalls:
                prompts = replace(prompts, strategy_subcalls=prompts.strategy_subcalls + extra)
        budget = Budget(
            max_iterations=config.max_iterations,
            max_usd=config.max_usd,
            max_subcalls=config.max_subcalls,
            max_depth=max(RLM_DEPTH[name], 1),
        )
        return RLMMethod(
            models.root,
            models.sub,
            subcalls=RLM_DEPTH[name] > 0,
            budget=budget,
            limits=Limits(max_concurrency=max(config.concurrency, 1) * 4),
            sandbox=config.sandbox,
            prompts=prompts,
            name=name,
        )
    if name in ("base", "base-truncated"):
        return BaseModel(
            models.root, window=config.window, truncate=name == "base-truncated", name=name
        )
    if name == COST_MATCHED:
        from ._consistency import SelfConsistency

        return SelfConsistency(models.root, target_usd=config.match_cost_usd,
                               default_k=config.sc_samples, window=config.window, name=name)
    if name == "coding-agent":
        from ._workspace_agent import WorkspaceAgent

        return WorkspaceAgent(models.root, max_iterations=config.max_iterations,
                              sandbox=config.sandbox, name=name)
    if name == "summary":
        return SummaryAgent(models.root, models.summarizer, window=config.window)
    if name in ("codeact", "codeact-bm25", "codeact-subcalls"):
        return CodeActBM25(
            models.root,
            search=name == "codeact-bm25" or config.task in CODEACT_SEARCH_TASKS,
            sub_model=models.sub if name == "codeact-subcalls" else None,
            max_iterations=config.max_iterations,
            sandbox=config.sandbox,
            window=config.window,
            name=name,
        )
    if name == "shortcut":
        from ._shortcut import Shortcut

        return Shortcut(config.task)
    if name == "oracle":
        from ._oracle_method import Oracle

        return Oracle(config.task, sandbox=config.sandbox)
    return SimpleRLM(models.root, models.sub)
