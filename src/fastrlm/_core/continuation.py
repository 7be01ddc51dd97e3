"""What a run continues from: nothing (a one-off run, or a child) or a session's earlier
questions. The root loop asks its :class:`Continuation` for the sandbox, the opening of the
conversation and what to keep at the end, instead of branching on whether it is in a session.

The engine side of sessions lives here too: :class:`SessionState` (what a session carries from
one question to the next), its forwarding :class:`SessionBridge`, and :func:`compact_questions`.
The public door, :class:`~fastrlm.Session`, is in :mod:`.session`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .._foundation.events import preview
from ..context import ContextInfo
from ..lm import ChatMessage
from ..sandbox import HostBridge, HostOpRequest, Sandbox, ThreeMethodFace
from .ledger import BudgetLedger
from .prompts import Prompts

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


class SessionBridge(ThreeMethodFace):
    """The session's REPL talks to the host through this: it forwards each host call to the
    bridge of the question being answered now (the worker outlives every run)."""

    def __init__(self) -> None:
        self.target: HostBridge | None = None

    def _bridge(self) -> HostBridge:
        assert self.target is not None, "a session's REPL calls the host only during a question"
        return self.target

    async def call(self, op: str, request: HostOpRequest) -> object:
        return await self._bridge().call(op, request)


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



class Continuation(Protocol):
    """The part of a run that depends on what came before it."""

    @property
    def session_id(self) -> str | None: ...

    @property
    def question_number(self) -> int:
        """1, 2, ... within a session; 0 outside one."""
        ...

    def kept_sandbox(self) -> Sandbox | None:
        """A worker that is already running (a session's later question), or None."""
        ...

    async def start(self, sandbox: Sandbox, context: object, bridge: HostBridge) -> None:
        """Start a new worker over ``context``, its host calls going to ``bridge``."""
        ...

    async def resume(self, sandbox: Sandbox, context: object, info: ContextInfo,
                     bridge: HostBridge) -> None:
        """Go on in the kept worker: its host calls go to ``bridge`` now, and this question's
        context (if it brought one) is bound."""
        ...

    def opening(self, prompts: Prompts, system: Callable[[], str], info: ContextInfo,
                question: str, max_chars: int) -> list[ChatMessage]:
        """The conversation the run goes on with, ending with ``question``'s message."""
        ...

    def compact(self, max_chars: int) -> None:
        """Make room before a root call (the run compacts its own turns after this)."""
        ...

    def restarted_note(self, prompts: Prompts, reason: str) -> str:
        """What the model is told when the worker restarted (its variables are gone)."""
        ...

    async def release(self, sandbox: Sandbox, kept: bool, usable: bool) -> None:
        """The run is over: close ``sandbox`` or keep it (only a ``usable`` one is kept)."""
        ...

    def record(self, question: ChatMessage, asked: str, answer: str) -> None:
        """Remember the finished question (``question`` is its message, its turns follow)."""
        ...


def first_message(prompts: Prompts, info: ContextInfo, question: str) -> str:
    return prompts.first_user.format(context_description=info.describe(), question=question)


def context_note(info: ContextInfo) -> str:
    """A context in a few words: ``str, 12,345 characters`` / ``list of 40, 9,000 characters``."""
    if info.type == "str":
        return f"str, {info.total_chars:,} characters"
    return f"{info.type} of {info.n_chunks:,}, {info.total_chars:,} characters"


class OneOff:
    """A run that starts from nothing and leaves nothing behind."""

    session_id = None
    question_number = 0

    def kept_sandbox(self) -> Sandbox | None:
        return None

    async def start(self, sandbox: Sandbox, context: object, bridge: HostBridge) -> None:
        await sandbox.start(context, bridge)

    async def resume(self, sandbox: Sandbox, context: object, info: ContextInfo,
                     bridge: HostBridge) -> None:
        raise AssertionError("a one-off run keeps no sandbox")

    def opening(self, prompts: Prompts, system: Callable[[], str], info: ContextInfo,
                question: str, max_chars: int) -> list[ChatMessage]:
        return [{"role": "system", "content": system()},
                {"role": "user", "content": first_message(prompts, info, question)}]

    def compact(self, max_chars: int) -> None:
        pass

    def restarted_note(self, prompts: Prompts, reason: str) -> str:
        return prompts.restarted.format(reason=reason)

    async def release(self, sandbox: Sandbox, kept: bool, usable: bool) -> None:
        await sandbox.close()

    def record(self, question: ChatMessage, asked: str, answer: str) -> None:
        pass


@dataclass
class SessionQuestion:
    """One question of a session: the REPL, the conversation and the contexts go on from the
    earlier questions. ``new_context``: this question brought a context of its own."""

    state: SessionState
    new_context: bool = True

    @property
    def session_id(self) -> str | None:
        return self.state.id

    @property
    def question_number(self) -> int:
        return self.state.questions + 1

    def kept_sandbox(self) -> Sandbox | None:
        return self.state.sandbox

    async def start(self, sandbox: Sandbox, context: object, bridge: HostBridge) -> None:
        # the worker outlives this run: its host calls go through the session's forwarder
        self.state.bridge.target = bridge
        await sandbox.start(context, self.state.bridge)
        await sandbox.define("context_0", alias="context")

    async def resume(self, sandbox: Sandbox, context: object, info: ContextInfo,
                     bridge: HostBridge) -> None:
        state = self.state
        state.bridge.target = bridge
        if self.new_context:
            name = f"context_{len(state.contexts)}"
            await sandbox.define(name, context)
            await sandbox.define("context", alias=name)
            state.contexts.append(context_note(info))

    def opening(self, prompts: Prompts, system: Callable[[], str], info: ContextInfo,
                question: str, max_chars: int) -> list[ChatMessage]:
        state = self.state
        if not state.messages:
            state.messages = OneOff().opening(prompts, system, info, question, max_chars)
            state.contexts.append(context_note(info))
            return state.messages
        compact_questions(state, max_chars)
        return self._next_question(prompts, info, question)

    def _next_question(self, prompts: Prompts, info: ContextInfo, question: str
                       ) -> list[ChatMessage]:
        """The conversation goes on with the next question: its number, its context if it
        brought one, the list of contexts (the new one is counted before :meth:`resume` binds
        it)."""
        state = self.state
        messages = state.messages
        new = ""
        names = [f"`context_{i}` ({text})" for i, text in enumerate(state.contexts)]
        if self.new_context:
            index = len(state.contexts)
            new = prompts.session_new_context.format(index=index, description=info.describe())
            names.append(f"`context_{index}` ({context_note(info)})")
        messages.append({"role": "user", "content": prompts.session_question.format(
            number=state.questions + 1, question=question, new_context=new,
            contexts="; ".join(names) + f"; `context` is `context_{len(names) - 1}`.",
        )})
        return messages

    def compact(self, max_chars: int) -> None:
        compact_questions(self.state, max_chars)  # whole earlier questions first

    def restarted_note(self, prompts: Prompts, reason: str) -> str:
        names = ", ".join(f"`context_{i}`" for i in range(len(self.state.contexts)))
        return prompts.session_restarted.format(reason=reason, names=names + ", `context`")

    async def release(self, sandbox: Sandbox, kept: bool, usable: bool) -> None:
        state = self.state
        if state.closed or not usable:
            await sandbox.close()  # a session keeps a worker that started
            state.sandbox = None
        elif not kept:
            state.sandbox = sandbox

    def record(self, question: ChatMessage, asked: str, answer: str) -> None:
        state = self.state
        # found by identity: compaction of earlier questions moves it
        start = next((i for i, m in enumerate(state.messages) if m is question), -1)
        if start >= 0:
            state.spans.append(QuestionSpan(number=state.questions + 1, start=start,
                                            end=len(state.messages), question=asked,
                                            answer=answer))
