"""Sessions: many questions over one REPL and one conversation (``rlm.session()``).

A session keeps, between questions, the REPL (its namespace: every variable the model made),
the root conversation, and the contexts: the first question's context is ``context_0`` (and
``context``); each later question may bring another, bound as ``context_1``, ``context_2``, ...
with ``context`` the latest. The model is told which exist. The conversation is compacted as it
grows: whole earlier questions collapse to their question and answer
(:func:`~fastrlm._core.continuation.compact_questions`), then the usual elision of old REPL
outputs applies. What the engine keeps between questions (``SessionState``) and how a run goes
on from it (``SessionQuestion``) live in :mod:`.continuation`; this module is the public door.

Budgets are per question (each ``ask`` gets the RLM's budget, or its own ``budget=``) unless
the session is given one (``rlm.session(budget=...)``): then one ledger covers every question,
``max_seconds`` included, and a spent limit refuses later questions.
"""

from __future__ import annotations

import asyncio
import warnings
import weakref
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from .._foundation.budget import Budget
from .._foundation.errors import ConfigurationError
from .._foundation.events import EventCallback
from .._foundation.limits import Limits
from .._foundation.result import RLMResult
from .continuation import SessionState
from .engine import answer, configure
from .ledger import BudgetLedger
from .run_values import RunConfig
from .sync import SyncRunner, refuse_running_loop

_T = TypeVar("_T")


@dataclass
class _Held:
    """What a session holds that outlives a question: released by ``close()``, or by
    :func:`_reclaim` when the session is dropped or left open at interpreter exit."""

    state: SessionState
    runner: SyncRunner | None = None


def _reclaim(held: _Held) -> None:
    """A session garbage-collected or still open at interpreter exit: kill its worker and drop
    its event loop now, without waiting for anything (no event loop runs here, nothing joins a
    thread), and say so with a :class:`ResourceWarning`. A session that holds nothing (never
    asked, or closed) is left alone."""
    state = held.state
    sandbox, state.sandbox = state.sandbox, None
    runner, held.runner = held.runner, None
    state.closed = True
    if sandbox is None and runner is None:
        return
    warnings.warn(
        f"fastrlm session {state.id} was never closed; its REPL worker was killed. Close it "
        "with `with rlm.session() as s:` (`async with` for aask) or session.close()",
        ResourceWarning, stacklevel=2,
    )
    if sandbox is not None:
        sandbox.discard()
    if runner is not None:
        runner.abandon()


async def _check_context(given: object, asked_about: str, number: int, session: str) -> None:
    """Refuse a context other than the one question ``number`` was asked about (its cells
    would replay over other data, and a cell that only ends with FINAL would not notice)."""
    from ..context import context_digest
    from ..trace import ReplayError

    digest, _ = await asyncio.to_thread(context_digest, given)
    if digest != asked_about:
        raise ReplayError(
            f"the context given for question {number + 1} of session {session} is not the one "
            f"it was asked about (sha256 {digest[:12]}..., the question's is "
            f"{asked_about[:12]}...): pass the same context again")


class Session:
    """Many questions over one REPL: ``session.ask(question, context=...)``.

    Made by :meth:`fastrlm.RLM.session`. Use it as a context manager (``with`` for the
    blocking :meth:`ask`, ``async with`` for :meth:`aask`); one question at a time. Closing it
    stops the REPL worker. The two forms do not mix: a blocking session runs on an event loop
    of its own, which its worker is bound to. A session never closed is not waited on: when
    it is garbage-collected, or at interpreter exit, its worker is killed and a
    :class:`ResourceWarning` says so."""

    def __init__(self, config: RunConfig, *, budget: Budget | None = None,
                 limits: Limits | None = None) -> None:
        self._config = config
        self._limits = limits
        self.state = SessionState()
        if budget is not None:
            if not isinstance(budget, Budget):
                raise ConfigurationError("budget must be a fastrlm.Budget")
            configure(config, budget, limits)  # checked as a per-call budget is
            self.state.ledger = BudgetLedger(budget)
        self._held = _Held(self.state)
        weakref.finalize(self, _reclaim, self._held)
        self.results: list[RLMResult] = []

    @property
    def id(self) -> str:
        """The session's id: every run's ``run.started`` event carries it (``session_id``)."""
        return self.state.id

    @property
    def closed(self) -> bool:
        return self.state.closed

    async def aask(self, question: str, context: object = None, *,
                   budget: Budget | None = None, limits: Limits | None = None,
                   output: object = None, on_event: EventCallback | None = None) -> RLMResult:
        """Ask the next question; ``context`` (optional after the first question) is bound as
        the next ``context_<n>``. Without one, a question longer than ``Limits.question_chars``
        is itself the next context (read in the REPL, as in drop-in use). Returns and raises as
        :meth:`RLM.acompletion` does. ``budget`` is this question's (refused when the session
        has its own budget)."""
        state = self.state
        if state.closed:
            raise ConfigurationError("this session is closed: start a new one with rlm.session()")
        if state.busy:
            raise ConfigurationError("one question at a time: await the previous ask() first")
        if budget is not None and state.ledger is not None:
            raise ConfigurationError(
                "this session has a session-wide budget (rlm.session(budget=...)); a question "
                "cannot take its own: use a session without one for per-question budgets"
            )
        state.busy = True
        try:
            result = await answer(
                configure(self._config, budget, limits or self._limits, output), question,
                context, on_event=on_event, session=state,
            )
        finally:
            state.busy = False
        self.results.append(result)
        return result

    async def aresume(self, session: str, context: object = None, *,
                      contexts: Mapping[int, object] | None = None,
                      home: str | Path | None = None,
                      on_event: EventCallback | None = None) -> list[RLMResult]:
        """Replay the questions of the recorded session ``session`` (its id or a unique
        prefix) into this new one, in order: each from its record, as
        :meth:`RLM.aresume` replays a run (nothing sent or paid again; each cell's output
        checked), so the REPL and the conversation are as they were, and the next
        :meth:`aask` goes on live. ``context`` is the session's first context again; a later
        question that brought its own context cannot be replayed (``ReplayError``) unless
        ``contexts`` is given: the contexts the questions were asked with, by question number
        from 0 (a question missing from it is replayed without one, as it was asked; the
        server keeps them so for ``fastrlm serve --keep-sessions``). Returns the replayed
        questions' results; raises :class:`~fastrlm.trace.ReplayError` as
        :meth:`RLM.aresume` does."""
        from ..trace import ReplayError
        from .replay import session_records

        if self.state.questions or self.results:
            raise ConfigurationError("resume a session into a new one, before its first ask()")
        recorded = await asyncio.to_thread(session_records, session, home, self._config.trace)
        replayed: list[RLMResult] = []
        for number, (record, asked_about) in enumerate(recorded):
            given: object = None
            if contexts is not None:
                given = contexts.get(number)
            elif record.head.get("own_context"):
                if number > 0:
                    raise ReplayError(
                        f"question {number + 1} of session {session} brought a context of its "
                        "own, which traces do not keep: the session can be resumed only up "
                        f"to question {number}")
                if context is None:
                    raise ReplayError(f"session {session} was asked about a context: pass "
                                      "it again (session.resume(id, context=...), `fastrlm "
                                      "chat --resume ID -c PATH`)")
                given = context
            if given is not None and asked_about is not None:
                await _check_context(given, asked_about, number, session)
            origin = {"run": record.head.get("run"), "session": session}
            self.state.busy = True
            try:
                result = await answer(self._config, str(record.head.get("question", "")),
                                      given, on_event=on_event, session=self.state,
                                      replay=record, origin=origin)
            finally:
                self.state.busy = False
            self.results.append(result)
            replayed.append(result)
        return replayed

    def resume(self, session: str, context: object = None, **kwargs: Any) -> list[RLMResult]:
        """Blocking form of :meth:`aresume`."""
        return self._blocking(lambda: self.aresume(session, context, **kwargs))

    def ask(self, question: str, context: object = None, **kwargs: Any) -> RLMResult:
        """Blocking form of :meth:`aask` (its own event loop, kept for the session, in a daemon
        thread: see :class:`~fastrlm._core.sync.SyncRunner`)."""
        return self._blocking(lambda: self.aask(question, context, **kwargs))

    async def aclose(self) -> None:
        """Stop the REPL worker; the session cannot be used after. Idempotent."""
        state = self.state
        state.closed = True
        sandbox, state.sandbox = state.sandbox, None
        if sandbox is not None:
            await sandbox.close()

    def close(self) -> None:
        runner = self._held.runner
        if runner is None:
            if self.state.sandbox is not None:
                raise ConfigurationError("an async session is closed with `await aclose()`")
            self.state.closed = True
            return
        try:
            runner.run(self.aclose())
        finally:
            self._held.runner = None
            runner.close()

    def _blocking(self, make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
        refuse_running_loop("Session.ask()", "await session.aask(...)")
        if self._held.runner is None:
            if self.state.sandbox is not None:
                raise ConfigurationError("this session was used with aask(); keep using it")
            self._held.runner = SyncRunner("fastrlm-session")
        return self._held.runner.run(make())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, value: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()
