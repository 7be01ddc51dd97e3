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
``completion()`` calls) and ``custom_tools`` / ``custom_sub_tools`` are host tools (a
``custom_tools`` value that is not callable a REPL variable of its name). Unlike the
official ``local`` environment (``exec`` in the
host process), model code never runs inside your process unless you pass ``sandbox="none"``.

Why over 500 lines: it is the official class's whole public surface, argument by argument, with
the mapping of each (the client wrapper, types, backends and trajectory are modules of their own).
"""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._core.facade import RLM as FastRLM
from .._core.prompts import Prompts
from .._core.session import Session
from .._core.tools import as_variables
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
from .._foundation.pricing import PriceTable
from .._foundation.result import RLMResult
from ..lm import LM
from ._backends import _backend_lm, _backend_prefix, _budget_prices, _warn_sampling
from ._client import ClientLM
from ._trajectory import record_iteration, shown_kwargs
from ._types import (
    ModelUsageSummary,
    RLMChatCompletion,
    RLMCompatWarning,
    RLMLogger,
    UsageSummary,
    _warn_once,
)

__all__ = [
    "RLM",
    "ClientLM",
    "ModelUsageSummary",
    "RLMChatCompletion",
    "RLMCompatValueError",
    "RLMCompatWarning",
    "RLMLogger",
    "UsageSummary",
    "get_client",
]

#: environments that run code locally: fastrlm's sandbox takes their place without a warning
_LOCAL_ENVIRONMENTS = ("local", "ipython")
#: remote or container sandboxes: fastrlm's local sandbox is used instead, with a warning
_REMOTE_ENVIRONMENTS = ("docker", "modal", "prime", "e2b", "daytona")
#: environments the official package allows persistent=True for
_PERSISTENT_ENVIRONMENTS = ("local", "ipython", "docker")
#: the question asked when ``root_prompt`` is None and the prompt is not a str
DEFAULT_QUESTION = "Do what the context asks and answer it."


class RLMCompatValueError(ConfigurationError, ValueError):
    """An argument the official package refuses with ``ValueError`` (an unknown
    ``environment``, ``persistent=True`` for an environment without persistence): a
    ``ValueError`` as there, and a :class:`~fastrlm.ConfigurationError`."""


def get_client(backend: str, backend_kwargs: Mapping[str, Any]) -> Any:
    """The model client for ``backend`` (the official ``rlm.core.rlm.get_client``): a
    :class:`fastrlm.lm.LM` for ``backend_kwargs["model_name"]``.

    This is the seam the official package's tests patch to inject a mock model, and it works
    the same here after the import change::

        import fastrlm.compat.rlms as rlm_module          # was: import rlm.core.rlm as rlm_module
        with patch.object(rlm_module, "get_client") as get_client:
            get_client.return_value = mock_lm             # anything with completion(prompt)
            RLM(backend="openai", backend_kwargs={"model_name": "m"}).completion("...")

    :class:`RLM` calls it once per backend, when it is built. A replacement may return a
    :class:`fastrlm.lm.LM` or an official-style client (``completion(messages) -> str``,
    optionally ``async acompletion`` and ``get_last_usage()``), which :class:`ClientLM` wraps.
    Raises :class:`~fastrlm.ConfigurationError` for an unknown backend or no ``model_name``.
    """
    return _backend_lm(backend, backend_kwargs, None, Limits(), "backend")


class RLM:
    """The official ``rlm.RLM`` constructor, building a :class:`fastrlm.RLM`.

    ``sandbox`` and ``prices`` are fastrlm's own keywords (the official package has neither):
    ``sandbox`` is ``"auto"`` (the default: the best isolated worker), ``"bwrap"``,
    ``"landlock"``, ``"process"`` or ``"none"`` (in-process, unsafe); ``prices`` a
    :class:`~fastrlm.PriceTable` for ``max_budget`` (without it a model fastrlm has no price
    for counts $0, as the official package counts a backend that reports no cost).

    The models come from :func:`get_client` when the first completion needs them. Raises
    :class:`~fastrlm.ConfigurationError` for an unknown backend, a backend without
    ``model_name`` or a ``custom_tools`` entry it cannot offer, and
    :class:`RLMCompatValueError` (also a ``ValueError``) for an unknown environment or
    ``persistent=True`` for one the official package does not persist.
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
        prices: PriceTable | None = None,
    ) -> None:
        _ignored(depth=depth != 0, max_errors=max_errors is not None,
                 compaction_threshold_pct=compaction_threshold_pct != 0.85,
                 orchestrator=not orchestrator, user_prologue=user_prologue is not None)
        if persistent and environment not in _PERSISTENT_ENVIRONMENTS:
            raise RLMCompatValueError(
                f"persistent=True is not supported for environment type {environment!r} (the "
                f"official package supports it for {', '.join(_PERSISTENT_ENVIRONMENTS)})")
        _check_environment(environment, environment_kwargs)
        limits = Limits(max_concurrency=max_concurrent_subcalls)
        others = list(other_backends or ())
        other_kwargs = list(other_backend_kwargs or ())
        if other_kwargs and len(other_kwargs) != len(others):
            raise ConfigurationError(
                f"other_backend_kwargs has {len(other_kwargs)} entries for {len(others)} "
                "other_backends: give one dict per backend")
        _warn_sampling(sampling_args)
        _warn_sampling(sub_sampling_args)
        if get_client is _DEFAULT_GET_CLIENT:  # what fastrlm can check before any client
            _backend_prefix(backend, backend_kwargs, "backend")
            for i, name in enumerate(others):
                _backend_prefix(name, other_kwargs[i] if other_kwargs else None,
                                f"other_backends[{i}]")
        budget = Budget(max_iterations=max_iterations, max_depth=max_depth, max_usd=max_budget,
                        max_seconds=max_timeout, max_input_tokens=max_tokens,
                        max_output_tokens=max_tokens)
        prompts = None
        if custom_system_prompt is not None:
            # the official prompt is plain text: keep its braces literal in fastrlm's template
            prompts = Prompts(system=custom_system_prompt.replace("{", "{{").replace("}", "}}"))
        elif custom_tools is None:
            prompts = _official_turns()
        tools, values = _tools(custom_tools, "custom_tools")
        sub_tools, sub_values = _tools(custom_sub_tools, "custom_sub_tools")
        if sub_values:
            name = next(iter(sub_values))
            raise ConfigurationError(
                f"custom_sub_tools[{name!r}] is a {type(sub_values[name]).__name__}, not a "
                "function: fastrlm's sub-LLMs call tools and have no REPL to hold a value; give "
                "it to the root with custom_tools, or pass a function returning it")
        try:  # checked now, as the rest of the configuration, though the RLM is built later
            as_variables(values, ())
        except ConfigurationError as exc:
            raise ConfigurationError(f"custom_tools holds a value the REPL cannot take: {exc}"
                                     ) from None
        # the official RLM's public attributes
        self.backend, self.backend_kwargs = backend, backend_kwargs
        self.environment = self.environment_type = environment
        self.environment_kwargs = dict(environment_kwargs or {})
        self.other_backends, self.other_backend_kwargs = other_backends, other_backend_kwargs
        self.depth, self.max_depth, self.max_iterations = depth, max_depth, max_iterations
        self.max_budget, self.max_timeout, self.max_tokens = max_budget, max_timeout, max_tokens
        self.max_errors = max_errors
        self.custom_tools, self.custom_sub_tools = custom_tools, custom_sub_tools
        self.persistent = persistent
        self.logger = logger
        self.verbose = verbose
        self._callbacks = (on_subcall_start, on_subcall_complete, on_iteration_start,
                           on_iteration_complete)
        self._trajectory: list[dict[str, Any]] | None = None
        self._iterations: list[dict[str, Any]] = []
        self._run_metadata = {
            "root_model": backend_kwargs.get("model_name") if backend_kwargs else None,
            "max_depth": max_depth, "max_iterations": max_iterations,
            "backend": backend, "backend_kwargs": shown_kwargs(backend_kwargs),
            "environment_type": environment,
            "environment_kwargs": shown_kwargs(environment_kwargs),
            "other_backends": list(other_backends) if other_backends else None,
        }
        #: fastrlm's model string -> the official package's name for it (its usage key)
        self._model_names: dict[str, str] = {}
        self._session: Session | None = None
        self._built: FastRLM | None = None

        def build() -> FastRLM:
            # the clients come from get_client when the first completion needs them, as in
            # the official package (so a test may patch it around completion() alone)
            root, root_name = _client(backend, backend_kwargs, sampling_args, limits, "backend")
            named_subs = [_client(name, other_kwargs[i] if other_kwargs else None,
                                  sub_sampling_args or sampling_args, limits,
                                  f"other_backends[{i}]") for i, name in enumerate(others)]
            subs = [lm for lm, _ in named_subs]
            self._model_names = {root.model: root_name, **{lm.model: n for lm, n in named_subs}}
            self._run_metadata["root_model"] = root_name
            built = FastRLM(
                model=root,
                sub_model=subs[0] if subs else None,
                # REPL code names a model as the official package does (its model_name) or
                # as fastrlm does ("openai/<model_name>")
                models={name: lm for lm in subs
                        for name in (lm.model, lm.model.split("/", 1)[-1])},
                budget=budget,
                limits=limits,
                sandbox=sandbox,
                prompts=prompts,
                prices=_budget_prices(max_budget, [root, *subs], prices),
                trace=logger.writer() if logger is not None else False,
                on_event=self._on_event,
                tools=tools,
                sub_tools=sub_tools,
                variables=values,
            )
            # persistent=True: one REPL across completion() calls (context_0, context_1, ...)
            self._session = built.session() if persistent else None
            return built

        self._build = build

    @property
    def fastrlm(self) -> FastRLM:
        """The :class:`fastrlm.RLM` this one runs on (for ``stream()``, ``with_options()`` ...),
        built with the clients :func:`get_client` gives on first use."""
        if self._built is None:
            self._built = self._build()
        return self._built

    def completion(self, prompt: object, root_prompt: str | None = None) -> RLMChatCompletion:
        """Run over ``prompt`` (the context: a str, dict or list) answering ``root_prompt`` (the
        question; None: a str prompt is itself the request). Not for use inside a running event
        loop (use :meth:`acompletion` there)."""
        question, context = _question(prompt, root_prompt)
        started = self._start()
        try:
            fast = self.fastrlm
            if self._session is not None:
                result = self._session.ask(question, context)
            else:
                result = fast.completion(question, context)
        except RLMError as exc:
            return self._failed(prompt, exc, started)
        return self._completed(prompt, result, started)

    async def acompletion(self, prompt: object,
                          root_prompt: str | None = None) -> RLMChatCompletion:
        """:meth:`completion` for async code."""
        question, context = _question(prompt, root_prompt)
        started = self._start()
        try:
            fast = self.fastrlm
            if self._session is not None:
                result = await self._session.aask(question, context)
            else:
                result = await fast.acompletion(question, context)
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
        if self._built is not None:
            await self._built.aclose()

    def __enter__(self) -> RLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _start(self) -> float:
        self._trajectory = [] if self.logger is not None else None
        self._iterations = []
        return time.perf_counter()

    def _on_event(self, event: Event) -> None:
        if self._trajectory is not None:
            self._trajectory.append(event.to_dict())
            if event.depth == 0:
                record_iteration(self._iterations, event)
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
        summaries: dict[str, ModelUsageSummary] = {}
        for model, u in result.usage.by_model.items():
            # keyed by the model's name, as the official package keys it ("gpt-5-nano")
            name = self._model_names.get(model, model.split("/", 1)[-1])
            seen = summaries.get(name)
            summaries[name] = ModelUsageSummary(u.calls, u.input_tokens, u.output_tokens,
                                                u.cost_usd) if seen is None else ModelUsageSummary(
                seen.total_calls + u.calls, seen.total_input_tokens + u.input_tokens,
                seen.total_output_tokens + u.output_tokens, seen.total_cost + u.cost_usd)
        metadata = None
        if self._trajectory is not None:
            if self._iterations and not result.partial and result.error is None:
                self._iterations[-1]["final_answer"] = result.answer
            metadata = {"run_metadata": dict(self._run_metadata),
                        "iterations": list(self._iterations),
                        "run_id": result.trace_id, "trace_path": result.trace_path,
                        "stop_reason": result.stop_reason.value, "events": self._trajectory}
        return RLMChatCompletion(
            root_model=self._model_names.get(self.fastrlm.root_lm.model,
                                             self.fastrlm.root_lm.model.split("/", 1)[-1]),
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
        raise RLMCompatValueError(f"unknown environment {environment!r} (the official "
                                      f"package knows {known})")
    if kwargs:
        _warn_once("environment_kwargs",
                   f"rlms compat: environment_kwargs ({', '.join(sorted(kwargs))}) are ignored; "
                   "fastrlm's sandbox is set with RLM(..., sandbox=...) and its limits")


def _client(backend: str, kwargs: Mapping[str, Any] | None, sampling: Mapping[str, Any] | None,
            limits: Limits, where: str) -> tuple[LM, str]:
    """The model of one backend and its official name (the usage key): fastrlm's provider, or
    what a replaced :func:`get_client` returns (an official-style client wrapped in
    :class:`ClientLM`)."""
    options = dict(kwargs or {})
    given = options.get("model_name")
    if get_client is _DEFAULT_GET_CLIENT:
        lm = _backend_lm(backend, options, sampling, limits, where)
        return lm, str(given)
    client = get_client(backend, options)
    if inspect.iscoroutinefunction(getattr(type(client), "complete", None)):
        return client, str(given or client.model.split("/", 1)[-1])
    name = given if isinstance(given, str) and given else getattr(client, "model_name", None)
    name = name if isinstance(name, str) and name else "unknown"
    return ClientLM(client, f"{backend}/{name}"), name


_DEFAULT_GET_CLIENT = get_client


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


def _tools(value: Any, what: str) -> tuple[list[Any] | None, dict[str, object]]:
    """The official ``custom_tools`` / ``custom_sub_tools`` as fastrlm tools and REPL values: a
    dict of name -> function, ``fastrlm.Tool``, value or ``{"tool": function_or_value,
    "description": "..."}`` (the official format; a function's description is what the model
    is told), or a list of functions. A value that is not callable is a REPL variable of that
    name, as in the official package (``RLM(variables=...)``). Raises ConfigurationError for
    anything else, naming the entry."""
    if value is None:
        return None, {}
    from .. import Tool

    if isinstance(value, list | tuple):
        return list(value), {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{what} must be a dict of name -> function or value (or "
                                 '{"tool": function_or_value, "description": "..."}) or a list '
                                 f"of functions, not {type(value).__name__}")
    tools = []
    values: dict[str, object] = {}
    for name, item in value.items():
        description = ""
        if isinstance(item, Mapping) and "tool" in item:
            description = item.get("description") or ""
            if not isinstance(description, str):
                raise ConfigurationError(f"{what}[{name!r}]['description'] must be a str, not "
                                         f"{type(description).__name__}")
            item = item["tool"]
        if isinstance(item, Tool):
            tools.append(item)
        elif callable(item):
            tools.append(Tool(item, name=str(name), description=description))
        else:
            values[str(name)] = item
    return tools, values


def _official_turns() -> Prompts | None:
    """The official package's own prompts and turn format when it is installed (the profile
    reads them from it), so code written for it is driven as it was; else fastrlm's."""
    try:
        return Prompts.profile("rlms")
    except ConfigurationError:
        return None
