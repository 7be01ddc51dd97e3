"""The official ``rlms`` package's public surface (v0.1.3), mapped onto :class:`fastrlm.RLM`.

Code written for it runs with one changed import::

    from fastrlm.compat.rlms import RLM          # was: from rlm import RLM

    rlm = RLM(backend="openai", backend_kwargs={"model_name": "gpt-5-mini"},
              other_backends=["openai"], other_backend_kwargs=[{"model_name": "gpt-5-nano"}],
              max_iterations=20, max_budget=0.5)
    completion = rlm.completion(huge_document, root_prompt="What changed in 2024?")
    print(completion.response, completion.usage_summary.total_cost)

What each argument becomes is tabled in docs/compat-rlms.md. Arguments that have no meaning
here (a remote sandbox such as ``modal``, ``max_errors``, ``orchestrator`` ...) emit one
:class:`RLMCompatWarning` per argument and process (a ``UserWarning`` subclass, so
``warnings.filterwarnings("ignore", category=RLMCompatWarning)`` silences them) and the run
uses fastrlm's own isolated sandbox. ``persistent=True`` is a fastrlm session (one REPL across
``completion()`` calls) and ``custom_tools`` / ``custom_sub_tools`` are host tools. Unlike the
official ``local`` environment (``exec`` in the
host process), model code never runs inside your process unless you pass ``sandbox="none"``.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._core.facade import RLM as FastRLM
from .._core.prompts import Prompts
from .._foundation.budget import Budget
from .._foundation.errors import ConfigurationError, RLMError
from .._foundation.events import (
    CodeExecuted,
    Event,
    IterationStarted,
    RunFinished,
    SubcallFinished,
    SubcallStarted,
)
from .._foundation.limits import Limits
from .._foundation.result import RLMResult
from ..lm import LM, resolve

__all__ = [
    "RLM",
    "ModelUsageSummary",
    "RLMChatCompletion",
    "RLMCompatWarning",
    "RLMLogger",
    "UsageSummary",
]

#: official backend -> fastrlm provider prefix
BACKENDS = {
    "openai": "openai",
    "vllm": "vllm",
    "openrouter": "openrouter",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "litellm": "litellm",
    "portkey": "openai",
}
#: base URL used when backend_kwargs has none (Portkey speaks the OpenAI API)
_BACKEND_URLS = {"portkey": "https://api.portkey.ai/v1"}
#: environments that run code locally: fastrlm's sandbox takes their place without a warning
_LOCAL_ENVIRONMENTS = ("local", "ipython")
#: remote or container sandboxes: fastrlm's local sandbox is used instead, with a warning
_REMOTE_ENVIRONMENTS = ("docker", "modal", "prime", "e2b", "daytona")
_BACKEND_KEYS = ("model_name", "api_key", "base_url")
#: the question asked when ``root_prompt`` is None and the prompt is not a str
DEFAULT_QUESTION = "Do what the context asks and answer it."


class RLMCompatWarning(UserWarning):
    """An argument of the official package that fastrlm cannot honour as written (the warning
    says what happens instead). Emitted once per argument per process."""


_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RLMCompatWarning, stacklevel=4)


@dataclass(slots=True)
class ModelUsageSummary:
    """One model's calls, tokens and cost in a completion."""

    total_calls: int
    total_input_tokens: int
    total_output_tokens: int
    total_cost: float

    def to_dict(self) -> dict[str, Any]:
        return {"total_calls": self.total_calls, "total_input_tokens": self.total_input_tokens,
                "total_output_tokens": self.total_output_tokens, "total_cost": self.total_cost}


@dataclass(slots=True)
class UsageSummary:
    """Usage of a completion, per model (``model_usage_summaries``) and in total."""

    model_usage_summaries: dict[str, ModelUsageSummary] = field(default_factory=dict)

    @property
    def total_cost(self) -> float:
        return sum(m.total_cost for m in self.model_usage_summaries.values())

    @property
    def total_input_tokens(self) -> int:
        return sum(m.total_input_tokens for m in self.model_usage_summaries.values())

    @property
    def total_output_tokens(self) -> int:
        return sum(m.total_output_tokens for m in self.model_usage_summaries.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_usage_summaries": {k: v.to_dict()
                                      for k, v in self.model_usage_summaries.items()},
            "total_cost": self.total_cost,
            "total_input_tokens": self.total_input_tokens,
            "total_output_tokens": self.total_output_tokens,
        }


@dataclass(slots=True)
class RLMChatCompletion:
    """What :meth:`RLM.completion` returns, with the official package's fields.

    ``error`` is set (and ``response`` is the best partial answer, maybe empty) when the run
    failed; ``metadata`` holds the trajectory when a logger is attached. ``result`` is
    fastrlm's own :class:`~fastrlm.RLMResult` (stop reason, sub-call counts, trace id ...).
    """

    root_model: str
    prompt: object
    response: str
    usage_summary: UsageSummary
    execution_time: float
    metadata: dict[str, Any] | None = None
    error: str | None = None
    result: RLMResult | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"root_model": self.root_model, "prompt": self.prompt, "response": self.response,
                "usage_summary": self.usage_summary.to_dict(),
                "execution_time": self.execution_time, "metadata": self.metadata,
                "error": self.error}


class RLMLogger:
    """``RLMLogger(log_dir)``: attach to ``RLM(logger=...)`` to keep every run's trajectory.

    fastrlm writes its own trace format there (``log_dir/traces/<run_id>.jsonl``, one event
    per line, the context recorded once as a digest, plus ``log_dir/index.sqlite``); ``fastrlm
    show`` / ``fastrlm view`` read it with ``FASTRLM_HOME=log_dir``. The completion's
    ``metadata`` carries the run's events."""

    def __init__(self, log_dir: str | Path, file_name: str = "rlm") -> None:
        self.log_dir = Path(log_dir)
        self.file_name = file_name

    def writer(self) -> Callable[[Event], object]:
        from ..trace import TraceWriter

        return TraceWriter(self.log_dir)


class RLM:
    """The official ``rlm.RLM`` constructor, building a :class:`fastrlm.RLM`.

    ``sandbox`` is fastrlm's own keyword (the official package has none): ``"auto"`` (the
    default: the best isolated worker), ``"bwrap"``, ``"landlock"``, ``"process"`` or ``"none"``
    (in-process, unsafe). Raises :class:`~fastrlm.ConfigurationError` for an unknown backend or
    environment, a backend without ``model_name``, or ``max_budget`` for a model with no known
    price.
    """

    def __init__(
        self,
        backend: str = "openai",
        backend_kwargs: Mapping[str, Any] | None = None,
        environment: str = "local",
        environment_kwargs: Mapping[str, Any] | None = None,
        depth: int = 0,
        max_depth: int = 1,
        max_iterations: int = 30,
        max_budget: float | None = None,
        max_timeout: float | None = None,
        max_tokens: int | None = None,
        max_errors: int | None = None,
        custom_system_prompt: str | None = None,
        other_backends: Sequence[str] | None = None,
        other_backend_kwargs: Sequence[Mapping[str, Any]] | None = None,
        logger: RLMLogger | None = None,
        verbose: bool = False,
        persistent: bool = False,
        custom_tools: Any = None,
        custom_sub_tools: Any = None,
        compaction: bool = False,
        compaction_threshold_pct: float = 0.85,
        max_concurrent_subcalls: int = 4,
        on_subcall_start: Callable[[int, str, str], Any] | None = None,
        on_subcall_complete: Callable[[int, str, float, str | None], Any] | None = None,
        on_iteration_start: Callable[[int, int], Any] | None = None,
        on_iteration_complete: Callable[[int, int, float], Any] | None = None,
        sampling_args: Mapping[str, Any] | None = None,
        sub_sampling_args: Mapping[str, Any] | None = None,
        orchestrator: bool = True,
        user_prologue: str | None = None,
        *,
        sandbox: str = "auto",
    ) -> None:
        _ignored(depth=depth != 0, max_errors=max_errors is not None,
                 compaction_threshold_pct=compaction_threshold_pct != 0.85,
                 orchestrator=not orchestrator, user_prologue=user_prologue is not None)
        _check_environment(environment, environment_kwargs)
        limits = Limits(max_concurrency=max_concurrent_subcalls)
        root = _backend_lm(backend, backend_kwargs, sampling_args, limits, "backend")
        others = list(other_backends or ())
        other_kwargs = list(other_backend_kwargs or ())
        if other_kwargs and len(other_kwargs) != len(others):
            raise ConfigurationError(
                f"other_backend_kwargs has {len(other_kwargs)} entries for {len(others)} "
                "other_backends: give one dict per backend")
        subs = [_backend_lm(name, other_kwargs[i] if other_kwargs else None,
                            sub_sampling_args or sampling_args, limits, f"other_backends[{i}]")
                for i, name in enumerate(others)]
        budget = Budget(max_iterations=max_iterations, max_depth=max_depth, max_usd=max_budget,
                        max_seconds=max_timeout, max_input_tokens=max_tokens,
                        max_output_tokens=max_tokens)
        prompts = None
        if custom_system_prompt is not None:
            # the official prompt is plain text: keep its braces literal in fastrlm's template
            prompts = Prompts(system=custom_system_prompt.replace("{", "{{").replace("}", "}}"))
        elif custom_tools is None:
            prompts = _official_turns()
        self.logger = logger
        self.verbose = verbose
        self.backend = backend
        self.environment = environment
        self._callbacks = (on_subcall_start, on_subcall_complete, on_iteration_start,
                           on_iteration_complete)
        self._trajectory: list[dict[str, Any]] | None = None
        self._rlm = FastRLM(
            model=root,
            sub_model=subs[0] if subs else None,
            # REPL code names a model as the official package does (its model_name) or as
            # fastrlm does ("openai/<model_name>")
            models={name: lm for lm in subs for name in (lm.model, lm.model.split("/", 1)[-1])},
            budget=budget,
            limits=limits,
            sandbox=sandbox,
            prompts=prompts,
            trace=logger.writer() if logger is not None else False,
            on_event=self._on_event,
            tools=_tools(custom_tools, "custom_tools"),
            sub_tools=_tools(custom_sub_tools, "custom_sub_tools"),
        )
        # persistent=True: one REPL across completion() calls (context_0, context_1, ...)
        self._session = self._rlm.session() if persistent else None

    @property
    def fastrlm(self) -> FastRLM:
        """The :class:`fastrlm.RLM` this one runs on (for ``stream()``, ``with_options()`` ...)."""
        return self._rlm

    def completion(self, prompt: object, root_prompt: str | None = None) -> RLMChatCompletion:
        """Run over ``prompt`` (the context: a str, dict or list) answering ``root_prompt`` (the
        question; None: a str prompt is itself the request). Not for use inside a running event
        loop (use :meth:`acompletion` there)."""
        question, context = _question(prompt, root_prompt)
        started = self._start()
        try:
            if self._session is not None:
                result = self._session.ask(question, context)
            else:
                result = self._rlm.completion(question, context)
        except RLMError as exc:
            return self._failed(prompt, exc, started)
        return self._completed(prompt, result, started)

    async def acompletion(self, prompt: object,
                          root_prompt: str | None = None) -> RLMChatCompletion:
        """:meth:`completion` for async code."""
        question, context = _question(prompt, root_prompt)
        started = self._start()
        try:
            if self._session is not None:
                result = await self._session.aask(question, context)
            else:
                result = await self._rlm.acompletion(question, context)
        except RLMError as exc:
            return self._failed(prompt, exc, started)
        return self._completed(prompt, result, started)

    def close(self) -> None:
        """With ``persistent=True``, stop the session's REPL worker; otherwise nothing to release
        (each ``completion()`` closes its HTTP clients and sandbox worker when it ends)."""
        if self._session is not None and self._session.state.sandbox is not None:
            self._session.close()

    async def aclose(self) -> None:
        """Close the HTTP clients of the running event loop (after :meth:`acompletion`), and the
        persistent session's worker."""
        if self._session is not None:
            await self._session.aclose()
        await self._rlm.aclose()

    def __enter__(self) -> RLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _start(self) -> float:
        self._trajectory = [] if self.logger is not None else None
        return time.perf_counter()

    def _on_event(self, event: Event) -> None:
        if self._trajectory is not None:
            self._trajectory.append(event.to_dict())
        if self.verbose:
            line = _verbose_line(event)
            if line:
                print(f"[fastrlm] {line}", file=sys.stderr)
        sub_start, sub_done, it_start, it_done = self._callbacks
        if isinstance(event, SubcallStarted) and sub_start is not None:
            sub_start(event.depth + 1, event.model, event.prompt_preview)
        elif isinstance(event, SubcallFinished) and sub_done is not None:
            sub_done(event.depth + 1, event.model, float(event.latency_s), event.error)
        elif isinstance(event, IterationStarted) and it_start is not None:
            it_start(event.depth, event.iteration)
        elif isinstance(event, CodeExecuted) and it_done is not None:
            it_done(event.depth, event.iteration, float(event.duration_s))

    def _completed(self, prompt: object, result: RLMResult, started: float,
                   error: str | None = None) -> RLMChatCompletion:
        summaries = {
            model: ModelUsageSummary(u.calls, u.input_tokens, u.output_tokens, u.cost_usd)
            for model, u in result.usage.by_model.items()
        }
        metadata = None
        if self._trajectory is not None:
            metadata = {"run_id": result.trace_id, "trace_path": result.trace_path,
                        "stop_reason": result.stop_reason.value, "events": self._trajectory}
        return RLMChatCompletion(
            root_model=self._rlm.root_lm.model.split("/", 1)[-1],
            prompt=prompt,
            response=result.answer,
            usage_summary=UsageSummary(summaries),
            execution_time=time.perf_counter() - started,
            metadata=metadata,
            error=error if error is not None else result.error,
            result=result,
        )

    def _failed(self, prompt: object, exc: RLMError, started: float) -> RLMChatCompletion:
        """A run that started and failed is a completion with ``error`` set; an error before
        any run (configuration, an unusable context) is raised."""
        if exc.result is None:
            raise exc
        return self._completed(prompt, exc.result, started, error=str(exc))


def _question(prompt: object, root_prompt: str | None) -> tuple[str, object]:
    """(question, context) for fastrlm. The prompt is always the context, as in the official
    package (so ``persistent=True`` binds each one as the next ``context_<n>``); a str prompt
    with no root_prompt is also the question, shown to the root whole or, past
    ``Limits.question_chars``, read in the REPL (drop-in use)."""
    if root_prompt is not None:
        if not isinstance(root_prompt, str):
            raise ConfigurationError(f"root_prompt must be a str, not {type(root_prompt).__name__}")
        return root_prompt, prompt
    if isinstance(prompt, str):
        return prompt, prompt
    return DEFAULT_QUESTION, prompt


def _ignored(**given: bool) -> None:
    for name, used in given.items():
        if used:
            _warn_once(name, f"rlms compat: {name} has no equivalent in fastrlm and is ignored "
                             "(see docs/compat-rlms.md)")


def _check_environment(environment: str, kwargs: Mapping[str, Any] | None) -> None:
    if environment in _REMOTE_ENVIRONMENTS:
        _warn_once(f"environment={environment}",
                   f"rlms compat: environment={environment!r} is not available in fastrlm; "
                   "the run uses fastrlm's local isolated sandbox instead")
    elif environment not in _LOCAL_ENVIRONMENTS:
        known = ", ".join((*_LOCAL_ENVIRONMENTS, *_REMOTE_ENVIRONMENTS))
        raise ConfigurationError(f"unknown environment {environment!r} (the official package "
                                 f"knows {known})")
    if kwargs:
        _warn_once("environment_kwargs",
                   f"rlms compat: environment_kwargs ({', '.join(sorted(kwargs))}) are ignored; "
                   "fastrlm's sandbox is set with RLM(..., sandbox=...) and its limits")


def _backend_lm(backend: str, kwargs: Mapping[str, Any] | None,
                sampling: Mapping[str, Any] | None, limits: Limits, where: str) -> LM:
    if backend == "azure_openai":
        raise ConfigurationError(
            "backend='azure_openai' is not mapped by fastrlm's compat layer; use "
            "backend='litellm' with backend_kwargs={'model_name': 'azure/<deployment>'} "
            "(and LiteLLM's AZURE_* variables), or backend='openai' with Azure's "
            "OpenAI-compatible base_url")
    prefix = BACKENDS.get(backend)
    if prefix is None:
        raise ConfigurationError(f"{where}: unknown backend {backend!r} (known: "
                                 f"{', '.join(sorted([*BACKENDS, 'azure_openai']))})")
    options = dict(kwargs or {})
    model_name = options.get("model_name")
    if not isinstance(model_name, str) or not model_name:
        raise ConfigurationError(f"{where}: backend_kwargs needs 'model_name', e.g. "
                                 "{'model_name': 'gpt-5-mini'}")
    extra = sorted(set(options) - set(_BACKEND_KEYS))
    if extra:
        _warn_once(f"backend_kwargs:{','.join(extra)}",
                   f"rlms compat: backend_kwargs {', '.join(extra)} are ignored (fastrlm uses "
                   "model_name, api_key and base_url; timeouts and retries are Limits)")
    temperature = None
    for key, value in (sampling or {}).items():
        if key == "temperature":
            temperature = float(value)
        else:
            _warn_once(f"sampling_args:{key}", f"rlms compat: sampling argument {key!r} is "
                       "ignored (fastrlm sets temperature only; max tokens are Limits)")
    return resolve(f"{prefix}/{model_name}",
                   base_url=options.get("base_url") or _BACKEND_URLS.get(backend),
                   api_key=options.get("api_key"), temperature=temperature, limits=limits)


def _verbose_line(event: Event) -> str | None:
    pad = "  " * int(event.depth)
    if isinstance(event, IterationStarted):
        return f"{pad}iteration {event.iteration}/{event.max_iterations}"
    if isinstance(event, CodeExecuted):
        error = " (error)" if event.error else ""
        return f"{pad}ran code block {event.block} in {float(event.duration_s):.2f}s{error}"
    if isinstance(event, SubcallFinished):
        return f"{pad}sub-call {event.call_id} {'failed' if event.error else 'answered'}"
    if isinstance(event, RunFinished) and event.depth == 0:
        return f"finished: {event.stop_reason}, ${float(event.cost_usd):.4f}"
    return None


def _tools(value: Any, what: str) -> list[Any] | None:
    """The official ``custom_tools`` / ``custom_sub_tools``: a dict of name -> function (or
    ``fastrlm.Tool``), or a list of functions. Raises ConfigurationError for anything else."""
    if value is None:
        return None
    from .. import Tool

    if isinstance(value, Mapping):
        return [item if isinstance(item, Tool) else Tool(item, name=str(name))
                for name, item in value.items()]
    if isinstance(value, list | tuple):
        return list(value)
    raise ConfigurationError(f"{what} must be a dict of name -> function or a list of "
                             f"functions, not {type(value).__name__}")


def _official_turns() -> Prompts | None:
    """The official package's own prompts and turn format when it is installed (the profile
    reads them from it), so code written for it is driven as it was; else fastrlm's."""
    try:
        return Prompts.profile("rlms")
    except ConfigurationError:
        return None
