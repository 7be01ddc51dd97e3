"""The public facade: :class:`RLM`. ``completion()`` is a thin wrapper over ``acompletion()``."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ._budget import Budget, StopReason
from ._calls import CallTree, ResponseCache
from ._config import Limits
from ._events import Event, EventCallback
from ._exceptions import ConfigurationError, ContextError, RLMError
from ._ledger import BudgetLedger
from ._outcome import Outcome, RunConfig, new_run_id
from ._pricing import PriceTable
from ._prompts import Prompts
from ._result import RLMResult
from ._run import Run
from ._validate import DEPTH_RULE, check_choice, check_flag
from .lm._base import LM

log = logging.getLogger("fastrlm")

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

_MISSING: Any = object()
_T = TypeVar("_T")


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
    ) -> None:
        self.budget = _instance("budget", budget, Budget, "Budget(max_usd=1.0)")
        self.limits = _instance("limits", limits, Limits, "Limits(max_concurrency=16)")
        from .sandbox._layers import KINDS

        check_choice("sandbox", sandbox, KINDS)
        check_flag("subcalls", subcalls)
        check_flag("cache_sampled", cache_sampled)
        for depth in child_models or {}:
            DEPTH_RULE.check("child_models depth", depth)
        self._base_url = base_url
        self._api_key = api_key
        spec = model if model is not None else os.environ.get("FASTRLM_MODEL")
        sub_spec = sub_model if sub_model is not None else os.environ.get("FASTRLM_SUB_MODEL")
        if spec is None:
            from .lm._registry import KEY_DEFAULTS

            for key_var, root_default, sub_default in KEY_DEFAULTS:
                if os.environ.get(key_var):
                    spec = root_default
                    sub_spec = sub_spec if sub_spec is not None else sub_default
                    break
        if spec is None:
            raise ConfigurationError(NO_MODEL_HELP)
        self.root_lm = self._lm(spec)
        self.sub_lm = self._lm(sub_spec) if sub_spec is not None else self.root_lm
        self.child_lms = {d: self._lm(m) for d, m in (child_models or {}).items()}
        named = {lm.model: lm for lm in (self.root_lm, self.sub_lm, *self.child_lms.values())}
        named.update({name: self._lm(m) for name, m in (models or {}).items()})
        self.sandbox = sandbox
        if sandbox == "none":
            _warn_unsafe_once()
        self.prompts = prompts or Prompts()
        self.prices = prices or PriceTable.default()
        if self.budget.max_usd is not None:
            unpriced = sorted({m for m in named if self.prices.price(m) is None})
            if unpriced:
                raise ConfigurationError(
                    f"max_usd is set, but no price is known for {', '.join(unpriced)}, so the "
                    "budget could not be enforced. Add them: RLM(..., prices=PriceTable("
                    "{'name': {'input': USD_per_1M, 'output': USD_per_1M}})) or "
                    "$FASTRLM_HOME/prices.json"
                )
        self.subcalls = subcalls
        self.cache = cache
        self.cache_sampled = cache_sampled
        self.trace = trace
        if on_event is None:
            self._callbacks: list[EventCallback] = []
        elif callable(on_event):
            self._callbacks = [on_event]
        else:
            self._callbacks = list(on_event)
        self._config = RunConfig(
            root_lm=self.root_lm,
            sub_lm=self.sub_lm,
            child_lms=self.child_lms,
            named_lms=named,
            budget=self.budget,
            limits=self.limits,
            prompts=self.prompts,
            sandbox_kind=sandbox,
            subcalls=subcalls,
        )

    def _lm(self, spec: str | LM) -> LM:
        if not isinstance(spec, str):
            return spec
        from .lm import resolve

        return resolve(spec, base_url=self._base_url, api_key=self._api_key, limits=self.limits)

    # ------------------------------------------------------------------ public API
    def completion(self, prompt: str, context: object = _MISSING) -> RLMResult:
        """Blocking form of :meth:`acompletion`. Not for use inside a running event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.acompletion(prompt, context))
        raise RuntimeError(
            "RLM.completion() was called from a running event loop; use "
            "`await rlm.acompletion(...)` there"
        )

    async def acompletion(
        self,
        prompt: str,
        context: object = _MISSING,
        *,
        on_event: EventCallback | None = None,
    ) -> RLMResult:
        """Answer ``prompt`` about ``context`` (a str, a list of str, or a JSON-able value).

        With no ``context`` the prompt itself becomes the context (drop-in use).

        Returns an :class:`RLMResult` when the run answered with ``FINAL`` (``partial=False``)
        or was stopped by a budget, the iteration cap or the time limit (``partial=True``,
        ``stop_reason`` says which limit, ``answer`` is the best the run got, maybe empty).

        Raises the typed error when the run failed and so has no answer: a
        :class:`ProviderError` subclass (``AuthenticationError``, ``RateLimitError``,
        ``ProviderConnectionError``, ``ProviderTimeoutError``, ``ProviderResponseError``) when the
        root model's calls failed after their retries, :class:`SandboxError` when the REPL
        worker could not start or run, :class:`ContextError` for an unusable context. When the
        run had started, the error's ``result`` attribute holds the partial :class:`RLMResult`
        (``stop_reason="error"``, usage and cost so far, trace path). A failed *sub-call* never
        raises: the REPL code gets an ``"[error: ...]"`` string in its place. Cancelling the
        task cancels in-flight sub-calls and stops the worker.
        """
        drop_in = context is _MISSING
        if drop_in:
            context = prompt
        _check_context(context)
        callbacks = list(self._callbacks) + ([on_event] if on_event else [])
        run_id = new_run_id()
        writer = self._trace_writer()
        if writer is not None:
            callbacks.append(writer)
        ledger = BudgetLedger(self.budget)
        tree = CallTree(
            ledger=ledger,
            limits=self.limits,
            prices=self.prices,
            emit=_dispatcher(callbacks),
            cache=self.cache,
            cache_sampled=self.cache_sampled,
        )
        run = Run(
            config=self._config,
            tree=tree,
            question=prompt,
            context=context,
            run_id=run_id,
            drop_in=drop_in,
        )
        started = time.monotonic()
        outcome = await _within_limits(run, ledger)
        trace_path = _trace_path(writer, run_id)
        result = RLMResult(
            answer=outcome.answer,
            stop_reason=outcome.stop_reason,
            usage=ledger.usage.snapshot(),
            cost_usd=ledger.usd,
            trace_id=run_id,
            trace_path=trace_path,
            iterations=outcome.iterations,
            subcalls=ledger.subcalls,
            sandbox=outcome.sandbox,
            duration_s=time.monotonic() - started,
            error=outcome.error,
            partial=outcome.partial or ledger.limited_by is not None,
            error_kind=outcome.error_kind,
            subcalls_refused=ledger.subcalls_refused,
            subcalls_failed=ledger.subcalls_failed,
            limited_by=ledger.limited_by,
            requests=ledger.requests,
        )
        if outcome.stop_reason is StopReason.ERROR:
            error = outcome.exception or RLMError(outcome.error or "the run failed")
            error.result = result
            raise error
        return result

    async def stream(self, prompt: str, context: object = _MISSING) -> AsyncIterator[Event]:
        """Run and yield every event as it happens; the last one is the root ``RunFinished``.

        It ends as :meth:`acompletion` does: after a failed run's ``RunFinished`` (its
        ``stop_reason`` is ``"error"``) the iteration raises the same typed error, with the
        partial result on its ``result`` attribute. Leaving the loop early cancels the run."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        task = asyncio.create_task(self.acompletion(prompt, context, on_event=queue.put_nowait))
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (event := await queue.get()) is not None:
                yield event
            await task  # re-raise a ContextError or the like
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def _trace_writer(self) -> Callable[[Event], object] | None:
        if self.trace is False or self.trace is None:
            return None
        if callable(self.trace):
            return self.trace
        from .trace import TraceWriter

        home = None if self.trace is True else Path(str(self.trace))
        return TraceWriter(home, full_prompts=self.limits.trace_full_prompts)

    async def aclose(self) -> None:
        """Close the HTTP clients of every model this RLM holds."""
        for lm in {id(x): x for x in self._config.named_lms.values()}.values():
            await lm.aclose()


def _instance(name: str, value: _T | None, cls: type[_T], example: str) -> _T:
    if value is None:
        return cls()
    if not isinstance(value, cls):
        raise ConfigurationError(f"{name} must be a fastrlm.{cls.__name__} (e.g. {example}), "
                                 f"not {type(value).__name__}")
    return value


_unsafe_warned = False


def _warn_unsafe_once() -> None:
    global _unsafe_warned
    if not _unsafe_warned:
        _unsafe_warned = True
        log.warning("fastrlm: sandbox='none' runs model-written code inside this process, "
                    "with access to its memory, files, network and API keys (UNSAFE)")


async def _within_limits(run: Run, ledger: BudgetLedger) -> Outcome:
    """Run until the answer, the tree's deadline, or an overrun: a provider reported more usage
    than was reserved and a limit is passed, so the whole tree stops at once (one scope for
    both, so in-flight calls and the worker are cancelled the same way)."""
    loop = asyncio.get_running_loop()
    deadline = ledger.deadline
    # The ledger's deadline is on time.monotonic(), the loop's default clock.
    scope = asyncio.timeout_at(
        None if deadline is None else deadline - time.monotonic() + loop.time()
    )
    ledger.on_overrun = lambda _reason: scope.reschedule(loop.time())
    try:
        async with scope:
            return await run.execute()
    except TimeoutError:
        if not scope.expired():
            raise
        answer = run.last_answer_content or ""
        sandbox = run._sandbox.layer if run._sandbox else ""
        if ledger.overrun is not None:
            error = (f"the {ledger.overrun.value} limit was passed: a provider reported more "
                     "usage than the call reserved (see the anomaly in the trace)")
            return Outcome(answer, ledger.overrun, run.iterations, error=error, sandbox=sandbox)
        return Outcome(answer, StopReason.TIMEOUT, run.iterations, error="time limit reached",
                       sandbox=sandbox)
    finally:
        ledger.on_overrun = None


def _check_context(context: object) -> None:
    if context is None:
        raise ContextError("context is None: pass a str, a list of str, or a JSON-able value")
    if isinstance(context, (str, list, tuple, dict)) and len(context) == 0:
        raise ContextError("context is empty: there is nothing to answer from")
    if isinstance(context, bytes):
        raise ContextError("context is bytes: decode it to str first (e.g. data.decode('utf-8', "
                           "'replace'))")


def _dispatcher(callbacks: list[EventCallback]) -> Callable[[Event], None]:
    def emit(event: Event) -> None:
        for callback in callbacks:
            try:
                callback(event)
            except Exception:  # a broken display must never break a run
                log.exception("fastrlm event callback %r failed", callback)

    return emit


def _trace_path(writer: object, run_id: str) -> str | None:
    path_for = getattr(writer, "path_for", None)
    return str(path_for(run_id)) if path_for is not None else None
