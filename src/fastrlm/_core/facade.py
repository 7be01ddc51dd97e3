"""The public facade: :class:`RLM`. ``completion()`` is a thin wrapper over ``acompletion()``.

Why over 500 lines: it is the whole public surface of one class (each entry point's blocking and
async forms, with the docstrings users read: run, stream, session, resume, fork); the work each
does lives elsewhere (:mod:`.engine`, :mod:`.replay`, :mod:`.candidates`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, overload

from .._foundation.budget import Budget
from .._foundation.errors import ConfigurationError
from .._foundation.events import Event, EventCallback
from .._foundation.limits import Limits
from .._foundation.pricing import Price, PriceTable
from .._foundation.result import RLMResult
from .._foundation.validate import DEPTH_RULE, check_choice, check_flag
from ..lm import LM
from .call_tree import ResponseCache
from .candidates import check_candidates
from .engine import MISSING, answer, check_priced, configure, instance
from .prompts import Prompts
from .run_values import RunConfig
from .session import Session
from .sub_agent import PROTOCOLS
from .sync import SyncRunner
from .tools import Tool, as_tools, as_variables

if TYPE_CHECKING:
    from ..sandbox import WarmWorkers
    from ..telemetry import Telemetry

log = logging.getLogger("fastrlm")
_T = TypeVar("_T")

NO_MODEL_HELP = """\
No model is configured. Pick one of:
  1. OpenAI:     export OPENAI_API_KEY=sk-...
                 (default model openai/gpt-5; FASTRLM_SUB_MODEL=openai/gpt-5-mini)
  2. A local OpenAI-compatible server (Ollama, llama.cpp, vLLM, LM Studio):
                 export FASTRLM_MODEL=ollama/qwen2.5-coder:32b     (Ollama on :11434)
                 export FASTRLM_MODEL=openai/<name> OPENAI_BASE_URL=http://localhost:8080/v1
                 (llama.cpp's server on :8080, vLLM on :8000/v1)
  3. Anthropic:  export ANTHROPIC_API_KEY=sk-ant-...
                 export FASTRLM_MODEL=anthropic/claude-sonnet-4-5
Or pass model=... to RLM() (a model string or an LM object such as fastrlm.testing.ScriptedLM)."""



class SettingsLike(Protocol):
    """What :meth:`RLM.from_settings` reads (the CLI's ``Settings`` has these fields)."""

    @property
    def sub_model(self) -> str | None: ...

    @property
    def base_url(self) -> str | None: ...

    @property
    def api_key(self) -> str | None: ...

    @property
    def sandbox(self) -> str: ...

    @property
    def prices(self) -> tuple[tuple[str, Price], ...]: ...

    def require_model(self) -> str: ...

    def make_budget(self) -> Budget: ...

    def make_limits(self) -> Limits: ...


class _Setting(Generic[_T]):
    """A read-only view of one field of an :class:`RLM`'s frozen :class:`RunConfig`; setting it
    is refused by ``RLM.__setattr__``, which says what to do instead."""

    def __init__(self, field: str, doc: str | None = None) -> None:
        self._field = field
        self.__doc__ = doc

    @overload
    def __get__(self, rlm: None, owner: type) -> _Setting[_T]: ...
    @overload
    def __get__(self, rlm: RLM, owner: type) -> _T: ...
    def __get__(self, rlm: RLM | None, owner: type) -> _T | _Setting[_T]:
        if rlm is None:
            return self
        value: _T = getattr(rlm._config, self._field)
        return value


class RLM:
    """A Recursive Language Model: any chat model, over a context of any size.

    ``model`` drives the root loop; ``sub_model`` (default: ``model``) answers ``llm_query``;
    ``child_models`` maps a depth to the model of ``rlm_query`` children at that depth (default:
    ``model``); ``models`` names extra models the REPL code may ask for by name. Each may be a
    string such as ``"openai/gpt-5-mini"`` or an :class:`~fastrlm.lm.LM` object.

    ``sandbox`` picks the REPL isolation: ``"auto"`` (the best isolated worker this machine
    allows), ``"bwrap"``, ``"landlock"``, ``"process"`` or ``"none"`` (in-process, unsafe).
    ``trace=True`` writes a JSONL trace under ``$FASTRLM_HOME/traces`` (a path or a TraceWriter
    also work). ``cache`` is a sub-call cache such as :class:`fastrlm.lm.SubcallCache`.
    ``subcalls=False`` removes ``llm_query``/``rlm_query`` (the paper's ablation).
    ``telemetry=True`` (or a :class:`fastrlm.telemetry.Telemetry`) makes OpenTelemetry spans of
    every run (the ``otel`` extra); ``None`` leaves it to ``FASTRLM_OTEL`` and the standard
    ``OTEL_EXPORTER_OTLP_*`` variables.

    ``tools`` (plain or async functions, or :class:`~fastrlm.Tool`) appear in the REPL as
    functions with their signatures and run on the host, each call under its timeout; the
    system prompt lists them. ``sub_tools`` make every ``llm_query`` a small tool-calling agent
    on the sub-model (at most ``Limits.max_tool_rounds`` rounds, each one sub-call through the
    budget): natively for providers with tool calling, else by the JSON fallback
    (``sub_tool_protocol``: ``"auto"``, ``"native"`` or ``"json"``). ``variables`` (name ->
    JSON value) are REPL variables of every run, bound before its first cell through the
    sandbox's ``define`` and named with their types in the system prompt.

    ``candidates=k`` runs k root trajectories of each question over the one context and the
    one budget and picks an answer: ``select="vote"`` (majority over normalised answers),
    ``"judge"`` (one sub-call picks) or ``select(question, candidates) -> index``; the result
    lists every candidate (``RLMResult.candidates``). A session's questions run one trajectory.

    The configuration is built and checked once, here, and never changes: ``budget``,
    ``limits``, ``sandbox`` and the other settings are read-only. One run takes its own
    ``budget=`` / ``limits=`` (:meth:`acompletion`); :meth:`with_options` makes a new RLM.
    """

    def __init__(
        self,
        model: str | LM | None = None,
        sub_model: str | LM | None = None,
        *,
        budget: Budget | None = None,
        limits: Limits | None = None,
        sandbox: str = "auto",
        child_models: Mapping[int, str | LM] | None = None,
        models: Mapping[str, str | LM] | None = None,
        prompts: Prompts | None = None,
        prices: PriceTable | None = None,
        on_event: EventCallback | Sequence[EventCallback] | None = None,
        trace: bool | str | Path | EventCallback = False,
        cache: ResponseCache | None = None,
        cache_sampled: bool = False,
        subcalls: bool = True,
        base_url: str | None = None,
        api_key: str | None = None,
        tools: Sequence[Callable[..., Any] | Tool] | None = None,
        sub_tools: Sequence[Callable[..., Any] | Tool] | None = None,
        sub_tool_protocol: str = "auto",
        telemetry: bool | Telemetry | None = None,
        candidates: int = 1,
        select: str | Callable[..., int] = "vote",
        variables: Mapping[str, object] | None = None,
    ) -> None:
        budget = instance("budget", budget, Budget, "Budget(max_usd=1.0)")
        root_tools = as_tools(tools, "tools")
        agent_tools = as_tools(sub_tools, "sub_tools")
        repl_values = as_variables(variables, root_tools)
        check_choice("sub_tool_protocol", sub_tool_protocol, PROTOCOLS)
        limits = instance("limits", limits, Limits, "Limits(max_concurrency=16)")
        from ..sandbox import KINDS

        check_choice("sandbox", sandbox, KINDS)
        check_flag("subcalls", subcalls)
        check_flag("cache_sampled", cache_sampled)
        check_candidates(candidates, select)
        for depth in child_models or {}:
            DEPTH_RULE.check("child_models depth", depth)
        spec = model if model is not None else os.environ.get("FASTRLM_MODEL")
        sub_spec = sub_model if sub_model is not None else os.environ.get("FASTRLM_SUB_MODEL")
        if spec is None:
            from ..lm import KEY_DEFAULTS

            for key_var, root_default, sub_default in KEY_DEFAULTS:
                if os.environ.get(key_var):
                    spec = root_default
                    sub_spec = sub_spec if sub_spec is not None else sub_default
                    break
        if spec is None:
            raise ConfigurationError(NO_MODEL_HELP)

        def lm_of(item: str | LM) -> LM:
            if not isinstance(item, str):
                return item
            from ..lm import resolve

            return resolve(item, base_url=base_url, api_key=api_key, limits=limits)

        root_lm = lm_of(spec)
        sub_lm = lm_of(sub_spec) if sub_spec is not None else root_lm
        child_lms = {d: lm_of(m) for d, m in (child_models or {}).items()}
        named = {lm.model: lm for lm in (root_lm, sub_lm, *child_lms.values())}
        named.update({name: lm_of(m) for name, m in (models or {}).items()})
        if sandbox == "none":
            _warn_unsafe_once()
        prices = (PriceTable.default() if prices is None else instance(
            "prices", prices, PriceTable, 'PriceTable({"my/model": {"input": 1, "output": 4}})'))
        check_priced(budget, named, prices)
        if on_event is None:
            callbacks: tuple[EventCallback, ...] = ()
        elif callable(on_event):
            callbacks = (on_event,)
        else:
            callbacks = tuple(on_event)
        self._arguments: dict[str, Any] = dict(
            model=spec, sub_model=sub_spec, budget=budget, limits=limits, sandbox=sandbox,
            child_models=child_models, models=models, prompts=prompts, prices=prices,
            on_event=on_event, trace=trace, cache=cache, cache_sampled=cache_sampled,
            subcalls=subcalls, base_url=base_url, api_key=api_key, tools=tools,
            sub_tools=sub_tools, sub_tool_protocol=sub_tool_protocol, telemetry=telemetry,
            candidates=candidates, select=select,
            variables=variables,
        )
        from ..telemetry import span_recorder_factory  # imports OpenTelemetry only when on

        self._config = RunConfig(
            root_lm=root_lm,
            sub_lm=sub_lm,
            child_lms=child_lms,
            named_lms=named,
            budget=budget,
            limits=limits,
            prompts=prompts or Prompts(),
            sandbox_kind=sandbox,
            subcalls=subcalls,
            prices=prices,
            cache=cache,
            cache_sampled=cache_sampled,
            trace=trace,
            callbacks=callbacks,
            tools=root_tools,
            sub_tools=agent_tools,
            sub_tool_protocol=sub_tool_protocol,
            telemetry=span_recorder_factory(telemetry),
            candidates=candidates,
            select=select,
            variables=repl_values,
        )

    # ------------------------------------------------------------------ configuration
    # Read-only views of the one frozen configuration (RLM.__setattr__ says what to do instead).
    budget = _Setting[Budget](
        "budget",
        "The default budget of every run (a run may pass its own: ``completion(budget=)``).")
    limits = _Setting[Limits](
        "limits",
        "The default limits of every run (a run may pass its own: ``completion(limits=)``).")
    sandbox = _Setting[str]("sandbox_kind")
    prompts = _Setting[Prompts]("prompts")
    prices = _Setting[PriceTable]("prices")
    subcalls = _Setting[bool]("subcalls")
    cache = _Setting[ResponseCache | None]("cache")
    cache_sampled = _Setting[bool]("cache_sampled")
    trace = _Setting[bool | str | Path | EventCallback]("trace")
    tools = _Setting[tuple[Tool, ...]](
        "tools", "Host tools the root's REPL offers as functions (``RLM(tools=...)``).")
    sub_tools = _Setting[tuple[Tool, ...]](
        "sub_tools", "Host tools a sub-LLM may call from ``llm_query`` (``RLM(sub_tools=...)``).")
    root_lm = _Setting[LM]("root_lm")
    sub_lm = _Setting[LM]("sub_lm")
    child_lms = _Setting[Mapping[int, LM]]("child_lms")

    @property
    def telemetry(self) -> bool:
        """Whether runs make OpenTelemetry spans (``RLM(telemetry=...)`` or the environment)."""
        return self._config.telemetry is not None

    def __setattr__(self, name: str, value: object) -> None:
        if name in _SETTINGS:
            per_call = ("pass it to completion()/acompletion()/stream() for one run "
                        f"({name}=...), or " if name in _PER_CALL else "")
            raise AttributeError(
                f"RLM.{name} is read-only: an RLM's configuration is built once. To change it, "
                f"{per_call}make a new RLM with rlm.with_options({_ARGUMENT.get(name, name)}=...)"
            )
        super().__setattr__(name, value)

    @classmethod
    def from_settings(cls, settings: SettingsLike, **options: Any) -> RLM:
        """The RLM that resolved settings describe (the CLI's flags > environment >
        ``config.toml``: :class:`fastrlm.cli._config.Settings`, or any object with the same
        fields): its model, sub-model, base URL, key, sandbox, budget, limits and ``--price``
        entries over the default price table. ``options`` are further ``RLM(...)`` keywords
        (``trace``, ``tools``, ``limits`` to replace the settings' own, ...). Every command
        that runs an RLM builds it here, so a setting means the same in each. Raises what
        ``RLM(...)`` raises (:class:`ConfigurationError`, :class:`InvalidSettingError`)."""
        built: dict[str, Any] = {
            "model": settings.require_model(),
            "sub_model": settings.sub_model,
            "base_url": settings.base_url,
            "api_key": settings.api_key,
            "sandbox": settings.sandbox,
        }
        if "budget" not in options:
            built["budget"] = settings.make_budget()
        if "limits" not in options:
            built["limits"] = settings.make_limits()
        if "prices" not in options:
            built["prices"] = PriceTable.default(dict(settings.prices))
        return cls(**built, **options)

    def with_options(self, **changes: Any) -> RLM:
        """A new RLM with this one's arguments, ``changes`` put in (any keyword of
        :class:`RLM`, e.g. ``rlm.with_options(budget=Budget(max_usd=0.5), sandbox="process")``).
        It is checked as a new ``RLM(...)`` is; model strings are resolved again, so it has its
        own HTTP clients (close it with :meth:`aclose` too). Raises ``TypeError`` for a name
        ``RLM`` does not take."""
        unknown = sorted(set(changes) - set(self._arguments))
        if unknown:
            raise TypeError(f"RLM.with_options() got unknown option(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(self._arguments))}")
        return RLM(**{**self._arguments, **changes})

    def _run_config(self, budget: Budget | None, limits: Limits | None,
                    output: object = None) -> RunConfig:
        """This RLM's configuration with one run's overrides (see :func:`configure`)."""
        return configure(self._config, budget, limits, output)

    # ------------------------------------------------------------------ public API
    def completion(
        self,
        prompt: str,
        context: object = MISSING,
        *,
        budget: Budget | None = None,
        limits: Limits | None = None,
        output: object = None,
    ) -> RLMResult:
        """Blocking form of :meth:`acompletion`. Not for use inside a running event loop."""
        with SyncRunner("fastrlm-completion", what="RLM.completion()",
                        instead="await rlm.acompletion(...)") as runner:
            return runner.run(self.acompletion(prompt, context, budget=budget, limits=limits,
                                               output=output))

    async def acompletion(
        self,
        prompt: str,
        context: object = MISSING,
        *,
        budget: Budget | None = None,
        limits: Limits | None = None,
        on_event: EventCallback | None = None,
        output: object = None,
    ) -> RLMResult:
        """Answer ``prompt`` about ``context`` (a str, a list of str, or a JSON-able value).

        With no ``context`` the prompt itself becomes the context (drop-in use). A prompt longer
        than ``Limits.question_chars`` is not shown to the root model whole: it reads it in the
        REPL (its size, head and tail are shown), so it must be the context or in it. ``budget``
        and ``limits`` replace the RLM's for this run only (the documented way to change one run;
        the RLM itself never changes); ``on_event`` gets this run's events besides the RLM's
        callbacks. ``output`` asks for a typed answer (a pydantic model, dataclass, TypedDict,
        builtin type or JSON schema dict): the model is told the schema, answers that do not
        match are sent back (``Limits.max_output_retries``), and ``result.value`` is the typed
        value (``result.answer`` its JSON). A wrong override raises
        :class:`ConfigurationError` (a ``max_usd`` for a model without a price;
        ``request_timeout_s`` / ``max_retries``, which the model clients were built with; an
        ``output`` that cannot be validated) or :class:`InvalidSettingError` (from ``Budget`` /
        ``Limits``).

        Returns an :class:`RLMResult` when the run answered with ``FINAL`` (``partial=False``)
        or was stopped by a budget, the iteration cap or the time limit (``partial=True``,
        ``stop_reason`` says which limit, ``answer`` is the best the run got, maybe empty).

        Raises the typed error when the run failed and so has no answer: a
        :class:`ProviderError` subclass (``AuthenticationError``, ``RateLimitError``,
        ``ProviderConnectionError``, ``ProviderTimeoutError``, ``ProviderResponseError``) when the
        root model's calls failed after their retries, :class:`SandboxError` when the REPL
        worker could not start or run, :class:`ContextError` for an unusable context or a prompt
        over ``Limits.question_chars`` beside a context that does not hold it. When the
        run had started, the error's ``result`` attribute holds the partial :class:`RLMResult`
        (``stop_reason="error"``, usage and cost so far, trace path). A failed *sub-call* never
        raises: the REPL code gets an ``"[error: ...]"`` string in its place. Cancelling the
        task cancels in-flight sub-calls and stops the worker.
        """
        return await self._acompletion(prompt, context, budget=budget, limits=limits,
                                       on_event=on_event, output=output)

    def resume(self, run: str, context: object = MISSING, **options: Any) -> RLMResult:
        """Blocking form of :meth:`aresume` (the same keywords)."""
        with SyncRunner("fastrlm-resume", what="RLM.resume()",
                        instead="await rlm.aresume(...)") as runner:
            return runner.run(self.aresume(run, context, **options))

    async def aresume(self, run: str, context: object = MISSING, *,
                      budget: Budget | None = None, limits: Limits | None = None,
                      home: str | Path | None = None, on_event: EventCallback | None = None,
                      output: object = None) -> RLMResult:
        """Go on with the run ``run`` (its id, a unique prefix, ``last`` or its trace's path,
        under ``home`` or this RLM's trace home) however it stopped (a killed process, Ctrl-C,
        a limit, a provider outage): a fresh REPL runs its recorded cells again, every host
        call and root reply answered from its record (nothing sent, nothing paid), each
        cell's output checked against the record, then the run goes on live. The recorded
        spend counts once against ``budget`` (default: the run's own). ``context`` is the
        run's context again (traces keep only its sha256); leave it out for a run asked
        without one. It is a new run (its own id and trace, the old one named in its record),
        ending as :meth:`acompletion` does. Raises :class:`~fastrlm.trace.ReplayError`
        before it starts (no record, another context or root model, a budget already spent)
        or as the run's error at the first cell that prints something else than it did."""
        return await self._replay(run, context, budget=budget, limits=limits, home=home,
                                  on_event=on_event, output=output)

    def fork(self, run: str, *, at_turn: int, **options: Any) -> RLMResult:
        """Blocking form of :meth:`afork` (the same keywords)."""
        with SyncRunner("fastrlm-fork", what="RLM.fork()",
                        instead="await rlm.afork(...)") as runner:
            return runner.run(self.afork(run, at_turn=at_turn, **options))

    async def afork(self, run: str, *, at_turn: int, context: object = MISSING,
                    reply: str | None = None, budget: Budget | None = None,
                    limits: Limits | None = None, home: str | Path | None = None,
                    on_event: EventCallback | None = None, output: object = None,
                    **changes: Any) -> RLMResult:
        """Replay the run ``run`` up to its top-level turn ``at_turn`` (turns before it answered
        from the record, as :meth:`aresume` does), then go on differently: with ``reply`` as
        the root's reply of turn ``at_turn``, and/or with ``changes`` (any :class:`RLM`
        keyword: ``model``, ``sub_model``, ``prompts``, ...: an RLM made by
        :meth:`with_options`) and this run's ``budget`` / ``limits``. What the recorded run
        did from ``at_turn`` on is not reused. A new run; raises as :meth:`aresume` does."""
        rlm = self.with_options(**changes) if changes else self
        return await rlm._replay(run, context, budget=budget, limits=limits, home=home,
                                 on_event=on_event, at_turn=at_turn, reply=reply,
                                 output=output)

    async def _replay(self, run: str, context: object, *, budget: Budget | None,
                      limits: Limits | None, home: str | Path | None,
                      on_event: EventCallback | None, at_turn: int | None = None,
                      reply: str | None = None, output: object = None) -> RLMResult:
        from .replay import prepare

        # reading the record and the trace, and hashing the context, are off the event loop
        ready = await asyncio.to_thread(
            prepare, run, context, missing=MISSING, home=home, trace=self._config.trace,
            model=self._config.root_lm.model, sub_model=self._config.sub_lm.model,
            budget=budget, at_turn=at_turn, reply=reply)
        config = replace(self._run_config(ready.budget, limits, output), trace=ready.trace)
        return await answer(config, ready.question, ready.context, on_event=on_event,
                            replay=ready.recorded, origin=ready.origin)

    def session(self, *, budget: Budget | None = None, limits: Limits | None = None) -> Session:
        """A session: many questions over one REPL and one conversation (see
        :class:`~fastrlm.Session`). ``budget`` makes one budget for the whole session (else
        each question has the RLM's, or its own ``ask(budget=...)``); ``limits`` are every
        question's. Use as ``with rlm.session() as s: s.ask(q, context=...)`` or ``async
        with``."""
        return Session(self._config, budget=budget, limits=limits)

    async def _acompletion(
        self, prompt: str, context: object = MISSING, *, budget: Budget | None,
        limits: Limits | None, on_event: EventCallback | None, output: object,
    ) -> RLMResult:
        return await answer(self._run_config(budget, limits, output), prompt, context,
                            on_event=on_event)

    async def stream(
        self,
        prompt: str,
        context: object = MISSING,
        *,
        budget: Budget | None = None,
        limits: Limits | None = None,
        output: object = None,
    ) -> AsyncIterator[Event]:
        """Run and yield every event as it happens; the last one is the root ``RunFinished``.
        ``budget`` / ``limits`` are this run's, as for :meth:`acompletion`.

        It ends as :meth:`acompletion` does: after a failed run's ``RunFinished`` (its
        ``stop_reason`` is ``"error"``) the iteration raises the same typed error, with the
        partial result on its ``result`` attribute. Leaving the loop early cancels the run."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        task = asyncio.create_task(self.acompletion(prompt, context, budget=budget,
                                                    limits=limits, on_event=queue.put_nowait,
                                                    output=output))
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (event := await queue.get()) is not None:
                yield event
            await task  # re-raise a ContextError or the like
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def awarm_workers(self, slots: int = 4) -> WarmWorkers:
        """Keep a warm sandbox worker for this RLM's runs until the returned holder is closed
        (``holder.close()``): each run's worker is then forked from it in a few milliseconds
        instead of started (a fresh interpreter: about 60 ms of CPU). Every run still gets a
        fresh process that no earlier run touched. ``slots``: how many workers may be alive at
        once (runs and sessions): under bubblewrap they share the warm process's ``/tmp``,
        sized to hold each one's whole scratch quota (and as many again of workers still
        ending after their run). Worth it for many runs in one process
        (``fastrlm serve`` does it); never raises: where the sandbox cannot be warmed
        (containers, no seccomp, bubblewrap without Landlock, ``sandbox="none"``)
        ``holder.problem`` says why and runs start their worker as before."""
        from ..sandbox import warm_workers
        from .run_loop import sandbox_limits

        return await warm_workers(self._config.sandbox_kind, sandbox_limits(self._config),
                                  slots)

    async def aclose(self) -> None:
        """Close the HTTP clients of every model this RLM holds."""
        for lm in {id(x): x for x in self._config.named_lms.values()}.values():
            await lm.aclose()


#: The RLM's read-only settings, and the RLM() keyword each one comes from.
_SETTINGS = frozenset({
    "budget", "limits", "sandbox", "prompts", "prices", "subcalls", "cache", "cache_sampled",
    "trace", "root_lm", "sub_lm", "child_lms", "tools", "sub_tools", "telemetry",
})
_ARGUMENT = {"root_lm": "model", "sub_lm": "sub_model", "child_lms": "child_models"}
#: Settings a single run may override.
_PER_CALL = frozenset({"budget", "limits"})
_unsafe_warned = False


def _warn_unsafe_once() -> None:
    global _unsafe_warned
    if not _unsafe_warned:
        _unsafe_warned = True
        log.warning("fastrlm: sandbox='none' runs model-written code inside this process, "
                    "with access to its memory, files, network and API keys (UNSAFE)")
