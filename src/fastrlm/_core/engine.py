"""One run, from a configuration to its result: what ``RLM.acompletion`` and a session's
``aask`` both do. :func:`configure` puts one run's overrides into an RLM's configuration;
:func:`answer` builds the call tree, runs the root loop within the tree's limits and makes the
:class:`RLMResult` (or raises the run's typed error).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from .._foundation.budget import Budget
from .._foundation.errors import ConfigurationError, ContextError, RLMError
from .._foundation.events import Event, EventCallback
from .._foundation.limits import Limits
from .._foundation.pricing import PriceTable, unpriced_message
from .._foundation.result import RLMResult
from .._foundation.stop import StopReason
from ..context import as_context, context_problem
from ..lm import LM, default_concurrency
from .call_tree import CallTree
from .candidates import Search
from .continuation import OneOff, SessionQuestion, SessionState
from .ledger import Account, BudgetLedger
from .output import output_spec
from .prompts import shown_whole
from .replay import Recorded, Recorder
from .run_loop import Run
from .run_values import Outcome, RunConfig, RunScoped, new_run_id

log = logging.getLogger("fastrlm")

#: ``context`` not given: the prompt is its own context (drop-in use).
MISSING: Any = object()
_T = TypeVar("_T")

#: Limits the model clients are built with, so a run cannot change them.
_CLIENT_LIMITS = ("request_timeout_s", "max_retries")



def configure(base: RunConfig, budget: Budget | None, limits: Limits | None,
          output: object = None) -> RunConfig:
    """The configuration of one run: ``base``, with a per-call budget, limits and output
    type put in. Raises ConfigurationError for a wrong type, an unpriced ``max_usd``, limits
    the model clients were built with (timeouts, retries), or an output type that cannot
    be validated."""
    config = base
    spec = output_spec(output)
    if spec is not None:
        config = replace(config, output=spec)
    if budget is None and limits is None:
        return config
    if budget is not None:
        budget = instance("budget", budget, Budget, "Budget(max_usd=1.0)")
        check_priced(budget, config.named_lms, config.prices)
    if limits is not None:
        limits = instance("limits", limits, Limits, "Limits(max_concurrency=16)")
        fixed = [name for name in _CLIENT_LIMITS
                 if getattr(limits, name) != getattr(config.limits, name)]
        if fixed:
            raise ConfigurationError(
                f"limits.{', limits.'.join(fixed)} cannot change per call: the model clients "
                "were built with them; use rlm.with_options(limits=...) for an RLM whose "
                "clients use other values"
            )
    return replace(config, budget=budget or config.budget, limits=limits or config.limits)


async def answer(
    config: RunConfig, prompt: str, context: object = MISSING, *,
    on_event: EventCallback | None, session: SessionState | None = None,
    replay: Recorded | None = None, origin: Mapping[str, object] | None = None,
) -> RLMResult:
    """One run of ``config`` (a session's next question with ``session``) to its
    :class:`RLMResult`, raising its typed error as :meth:`RLM.acompletion` documents.
    ``replay``: a recorded run this one resumes or forks (answered from it first, its spend
    carried once); ``origin`` says which, in the new run's record."""
    new_context = True
    context = as_context(context)  # a LoadedContext: its text may still be copying in
    drop_in = context is MISSING
    if session is not None and (context is None or context is MISSING):
        # a later question without a context of its own asks about the latest one, unless
        # it is too long to show: then, as on a first question, it is its own context
        if session.messages and shown_whole(prompt, config.limits.question_chars):
            context, new_context = session.latest, False
        else:
            context = prompt
    elif context is MISSING:
        context = prompt
    if new_context:
        _check_context(context, config)
    if session is not None and new_context:
        if session.messages and not isinstance(context, str | list | tuple | dict):
            raise ContextError(
                f"a later question's context is sent to the session's REPL as JSON, so it "
                f"must be a str, list or dict, not {type(context).__name__}; DataFrames, "
                "bytes, files and images can be a session's first context"
            )
        session.latest = context
    callbacks = list(config.callbacks) + ([on_event] if on_event else [])
    run_id = new_run_id()
    writer = _trace_writer(config)
    if writer is not None:
        callbacks.append(writer)
    scope: AbstractContextManager[None] = contextlib.nullcontext()
    if config.telemetry is not None:  # made here: the caller's current span is its parent
        spans = config.telemetry()
        callbacks.append(spans)
        if isinstance(spans, RunScoped):
            scope = spans.current(run_id)
    ledger = session.ledger if session is not None and session.ledger else BudgetLedger(
        config.budget)
    asked = None if session is None else {"session": session.id, "q": session.questions,
                                          "own_context": new_context}
    recorder = _recorder(writer, run_id, prompt, drop_in, config, replay, origin, asked)
    account = Account()
    if replay is not None:
        replay.carry(ledger, account)
    tree = CallTree(
        ledger=ledger,
        limits=config.limits,
        prices=config.prices,
        emit=_dispatcher(callbacks),
        cache=config.cache,
        cache_sampled=config.cache_sampled,
        concurrency=default_concurrency(config.sub_lm),
        recorder=recorder,
    )
    run: Run | Search
    if config.candidates > 1 and session is None:
        run = Search(config, tree, prompt, context, config.candidates, run_id=run_id,
                     account=account)
    else:
        run = Run(
            config=config,
            tree=tree,
            question=prompt,
            context=context,
            run_id=run_id,
            account=account,
            continuation=OneOff() if session is None else SessionQuestion(session, new_context),
        )
    started = time.monotonic()
    try:
        with scope:  # the run's span is the current context while it runs (telemetry)
            outcome = await _within_limits(run, ledger)
        recorder.close()
        await _trace_settled(writer, run_id, recorder)
    except BaseException:
        # cancelled or interrupted, while it ran or while its rows were written: it ends once
        # its trace and record hold what it wrote (they are made off the loop), as when they
        # were written on it; not its index rows (a busy index may hold those). Cancelled
        # again meanwhile, it still raises what ended it.
        recorder.close()
        with contextlib.suppress(asyncio.CancelledError):
            await _files_written(writer, run_id, recorder)
        raise
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
        tool_calls=tree.tool_counter.total,
        value=outcome.value,
        candidates=tuple(run.results) if isinstance(run, Search) else (),
    )
    if outcome.stop_reason is StopReason.ERROR:
        error = outcome.exception or RLMError(outcome.error or "the run failed")
        error.result = result
        raise error
    return result


def _recorder(writer: object, run_id: str, question: str, drop_in: bool, config: RunConfig,
              replay: Recorded | None, origin: Mapping[str, object] | None,
              asked: Mapping[str, object] | None) -> Recorder:
    """The run's recorder: its record beside the trace when the trace is written to a home
    (a callable of the user's own keeps none), answering from ``replay`` first. ``asked``:
    a session question's place (``session`` id, ``q`` its number from 0, ``own_context``)."""
    traces = getattr(writer, "traces_dir", None)
    if not isinstance(traces, Path):
        return Recorder(None, replay)
    from ..trace import RecordFile, record_path

    def failed(exc: OSError) -> None:  # now, or (made off the loop) on the trace's I/O thread
        log.warning("no replay record for run %s (%s): it cannot be resumed", run_id, exc)

    try:
        file = RecordFile(record_path(traces, run_id), failed)
    except OSError as exc:
        failed(exc)
        return Recorder(None, replay)
    recorder = Recorder(file, replay)
    recorder.write({"k": "head", "run": run_id, "question": question, "drop_in": drop_in,
                    "model": config.root_lm.model, "sub_model": config.sub_lm.model,
                    "from": dict(origin or {}), **(asked or {}),
                    "carried": replay.carried() if replay is not None else []}, durable=True)
    return recorder


def check_priced(budget: Budget, named: Mapping[str, LM], prices: PriceTable) -> None:
    if budget.max_usd is None:
        return
    missing = prices.unpriced(named)
    if missing:
        raise ConfigurationError(unpriced_message(
            missing, "max_usd",
            "Add them: RLM(..., prices=PriceTable({'name': {'input': USD_per_1M, 'output': "
            "USD_per_1M}})) or $FASTRLM_HOME/prices.json, or leave out max_usd."))


async def _trace_settled(writer: object, run_id: str, recorder: Recorder) -> None:
    """Wait until the trace writer's index rows for the run are written, and its trace file
    and replay record are whole (made off the event loop while it runs): nothing writes into
    the trace home after the run has returned, and a resume reads the whole record."""
    await recorder.settled()
    if writer is None:
        return
    from ..trace import TraceWriter

    if isinstance(writer, TraceWriter):
        await writer.settled(run_id)


async def _files_written(writer: object, run_id: str, recorder: Recorder) -> None:
    """Wait until the run's trace file and replay record hold every line written so far (made
    off the event loop while it runs); not its index rows (a busy index may hold them), which
    are written at once all the same (``TraceWriter.written``)."""
    await recorder.settled()
    from ..trace import TraceWriter

    if isinstance(writer, TraceWriter):
        await writer.written(run_id)


def _trace_writer(config: RunConfig) -> Callable[[Event], object] | None:
    trace = config.trace
    if trace is False or trace is None:
        return None
    if callable(trace):
        return trace
    from ..trace import TraceWriter

    home = None if trace is True else Path(str(trace))
    return TraceWriter(home, full_prompts=config.limits.trace_full_prompts)


def instance(name: str, value: _T | None, cls: type[_T], example: str) -> _T:
    if value is None:
        return cls()
    if not isinstance(value, cls):
        raise ConfigurationError(f"{name} must be a fastrlm.{cls.__name__} (e.g. {example}), "
                                 f"not {type(value).__name__}")
    return value


async def _within_limits(run: Run | Search, ledger: BudgetLedger) -> Outcome:
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
        if ledger.overrun is not None:
            error = (f"the {ledger.overrun.value} limit was passed: a provider reported more "
                     "usage than the call reserved (see the anomaly in the trace)")
            return run.stopped(ledger.overrun, error)
        return run.stopped(StopReason.TIMEOUT, "time limit reached")
    finally:
        ledger.on_overrun = None


def _check_context(context: object, config: RunConfig) -> None:
    problem = context_problem(context)
    if problem is not None:
        raise ContextError(f"context {problem[1]}")
    if isinstance(context, dict) and config.tools:
        from ..sandbox import kinds

        try:
            names = kinds.input_names(context) or ()
        except ValueError as exc:
            raise ContextError(str(exc)) from None
        taken = sorted(set(names) & {tool.name for tool in config.tools})
        if taken:  # the REPL name would be the tool's, the input only context[name]
            raise ContextError(
                f"named input(s) {', '.join(map(repr, taken))} have the name of a tool the "
                "REPL offers: rename the input or the tool")


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
