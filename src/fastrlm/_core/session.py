"""Sessions: many questions over one REPL and one conversation (``rlm.session()``).

A session keeps, between questions, the REPL (its namespace: every variable the model made),
the root conversation, and the contexts: the first question's context is ``context_0`` (and
``context``); each later question may bring another, bound as ``context_1``, ``context_2``, ...
with ``context`` the latest. The model is told which exist. The conversation is compacted as it
grows: whole earlier questions collapse to their question and answer
(:func:`compact_questions`), then the usual elision of old REPL outputs applies.

Budgets are per question (each ``ask`` gets the RLM's budget, or its own ``budget=``) unless
the session is given one (``rlm.session(budget=...)``): then one ledger covers every question,
``max_seconds`` included, and a spent limit refuses later questions.
"""

from __future__ import annotations

import secrets
import warnings
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

from .._exceptions import ConfigurationError
from ..lm._base import ChatMessage, ImagePart
from ..sandbox._base import Sandbox
from ..sandbox._hostcalls import HostBridge
from .budget import Budget
from .events import EventCallback, preview
from .ledger import BudgetLedger
from .limits import Limits
from .result import RLMResult
from .sync import SyncRunner, refuse_running_loop


class _Engine(Protocol):
    """What a session needs of its :class:`~fastrlm.RLM` (a protocol: the facade imports this
    module, so it cannot be imported back)."""

    def _run_config(self, budget: Budget | None, limits: Limits | None,
                    output: object = None) -> Any: ...

    async def _acompletion(self, prompt: str, context: object = ..., *,
                           budget: Budget | None, limits: Limits | None,
                           on_event: EventCallback | None, output: object,
                           session: SessionState | None = None) -> RLMResult: ...

_T = TypeVar("_T")
#: Characters of an earlier question and of its answer kept when it is collapsed.
KEPT_QUESTION_CHARS = 500
KEPT_ANSWER_CHARS = 2_000


@dataclass
class QuestionSpan:
    """Where one finished question's turns sit in the conversation, and what it gave."""

    number: int
    start: int  # index of its first message (the question itself)
    end: int  # one past its last message
    question: str
    answer: str
    collapsed: bool = False


class SessionBridge:
    """The session's REPL talks to the host through this: it forwards each host call to the
    bridge of the question being answered now (the worker outlives every run)."""

    def __init__(self) -> None:
        self.target: HostBridge | None = None

    def _bridge(self) -> HostBridge:
        assert self.target is not None, "a session's REPL calls the host only during a question"
        return self.target

    async def llm_query_batched(self, prompts: list[str], model: str | None,
                                images: list[list[ImagePart]] | None = None) -> list[str]:
        return await self._bridge().llm_query_batched(prompts, model, images)

    async def rlm_query_batched(self, prompts: list[str], contexts: list[object] | None,
                                model: str | None) -> list[str]:
        return await self._bridge().rlm_query_batched(prompts, contexts, model)

    async def call_tool(self, name: str, arguments: dict[str, object]) -> dict[str, object]:
        return await self._bridge().call_tool(name, arguments)


@dataclass
class SessionState:
    """What a session carries from one question to the next (engine side)."""

    id: str = field(default_factory=lambda: "s-" + secrets.token_hex(6))
    sandbox: Sandbox | None = None
    bridge: SessionBridge = field(default_factory=SessionBridge)
    messages: list[ChatMessage] = field(default_factory=list)
    contexts: list[str] = field(default_factory=list)  # one description per context_<n>
    spans: list[QuestionSpan] = field(default_factory=list)
    ledger: BudgetLedger | None = None
    latest: object = None  # the latest context (hashed for each run.started)
    closed: bool = False
    busy: bool = False

    @property
    def questions(self) -> int:
        return len(self.spans)

    def context_names(self) -> str:
        """``context_0`` ... as the model is told them, ``context`` being the latest."""
        names = [f"`context_{i}` ({text})" for i, text in enumerate(self.contexts)]
        return "; ".join(names) + f". `context` is `context_{len(self.contexts) - 1}`."


def compact_questions(state: SessionState, max_chars: int) -> int:
    """Collapse the oldest finished questions (not the first message, which holds the first
    context's description) to one short question/answer pair each, until the conversation is
    under ``max_chars`` or only the last question is whole. Returns how many were collapsed.
    Pure: edits ``state.messages`` and the spans in place."""
    collapsed = 0
    for index, span in enumerate(state.spans[:-1] if len(state.spans) > 1 else []):
        if sum(len(m["content"]) for m in state.messages) <= max_chars:
            break
        if span.collapsed:
            continue
        start = max(span.start, 2)  # the system prompt and the first message stay
        kept: list[ChatMessage] = [
            {"role": "user", "content": f"[Question {span.number}, earlier in this session: "
                                        f"{preview(span.question, KEPT_QUESTION_CHARS)}]"},
            {"role": "assistant", "content": f"[Its work is elided to save room; the answer "
                                             f"was: {preview(span.answer, KEPT_ANSWER_CHARS)}]"},
        ]
        removed = span.end - start
        if removed <= len(kept):
            continue
        state.messages[start:span.end] = kept
        shift = removed - len(kept)
        span.end = start + len(kept)
        span.collapsed = True
        for later in state.spans[index + 1:]:
            later.start -= shift
            later.end -= shift
        collapsed += 1
    return collapsed


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


class Session:
    """Many questions over one REPL: ``session.ask(question, context=...)``.

    Made by :meth:`fastrlm.RLM.session`. Use it as a context manager (``with`` for the
    blocking :meth:`ask`, ``async with`` for :meth:`aask`); one question at a time. Closing it
    stops the REPL worker. The two forms do not mix: a blocking session runs on an event loop
    of its own, which its worker is bound to. A session never closed is not waited on: when
    it is garbage-collected, or at interpreter exit, its worker is killed and a
    :class:`ResourceWarning` says so."""

    def __init__(self, rlm: _Engine, *, budget: Budget | None = None,
                 limits: Limits | None = None) -> None:
        self._rlm = rlm
        self._limits = limits
        self.state = SessionState()
        if budget is not None:
            if not isinstance(budget, Budget):
                raise ConfigurationError("budget must be a fastrlm.Budget")
            rlm._run_config(budget, limits)  # checked as a per-call budget is
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
            result: RLMResult = await self._rlm._acompletion(
                question, context, budget=budget, limits=limits or self._limits,
                on_event=on_event, output=output, session=state,
            )
        finally:
            state.busy = False
        self.results.append(result)
        return result

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
