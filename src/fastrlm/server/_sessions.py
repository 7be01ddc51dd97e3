"""Sessions over HTTP: ``extra_body={"fastrlm": {"session": "<id>"}}`` keeps one
:class:`~fastrlm.Session` (one REPL, one conversation) across requests.

A session belongs to the API key that made it (the sha256 of the request's bearer token, so the
key itself is never kept): the same id under another key is another session. The pool is
bounded: at most ``max_sessions`` at once and ``max_chars`` of contexts in all (the oldest idle
session is closed to make room; if none is idle the request gets 429), and a session idle for
``idle_s`` seconds is closed (its worker stopped) by a sweeper task.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from .. import RLM, Session
from .._core.prompts import shown_whole
from ..context._info import describe_shape
from ._http import HTTPError


@dataclass
class _Entry:
    session: Session
    owner: str
    chars: int = 0
    last_used: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def owner_of(authorization: str) -> str:
    """Who a request's session belongs to: a digest of its bearer token (never the token)."""
    _, _, token = authorization.partition(" ")
    return hashlib.sha256(token.strip().encode()).hexdigest()


class SessionPool:
    """The server's live sessions, keyed by (owner, session id)."""

    def __init__(self, rlm: RLM, *, max_sessions: int, idle_s: float, max_chars: int) -> None:
        self._rlm = rlm
        self.max_sessions = max_sessions
        self.idle_s = idle_s
        self.max_chars = max_chars
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def chars(self) -> int:
        return sum(entry.chars for entry in self._entries.values())

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep())

    @contextlib.asynccontextmanager
    async def use(self, owner: str, session_id: str, context: object, *, drop_in: bool,
                  question: str = "") -> AsyncIterator[tuple[Session, object]]:
        """The session ``session_id`` of ``owner`` (made if new), held for one request (a second
        request to the same session waits), and the context the request adds to it: its own,
        or in drop-in mode (``drop_in``: the context is the conversation) the first request's
        and, on a later request, its ``question`` when too long to show the root (the session
        makes it the next context). That context counts against the pool's bound. Raises
        HTTPError 429 (413 for one context over the bound) when the pool cannot make room."""
        key = (owner, session_id)
        entry = self._entries.get(key)
        if entry is None:
            await self._make_room(0, new=True)
            # another request may have made it while room was made: never two of one session
            entry = self._entries.get(key) or self._entries.setdefault(
                key, _Entry(self._rlm.session(), owner))
        async with entry.lock:
            if drop_in and entry.session.state.messages:
                context = (None if shown_whole(question, self._rlm.limits.question_chars)
                           else question)
            added = 0 if context is None else describe_shape(context).total_chars
            if added:
                await self._make_room(added, new=False)
            entry.chars += added
            entry.last_used = time.monotonic()
            try:
                yield entry.session, context
            finally:
                entry.last_used = time.monotonic()
                if entry.session.closed:
                    self._entries.pop(key, None)

    async def _make_room(self, chars: int, *, new: bool) -> None:
        """Close the oldest idle sessions until one more (``new``) with ``chars`` fits."""
        if chars > self.max_chars:
            raise HTTPError(413, f"the context has {chars:,} characters, more than a session "
                            f"may hold ({self.max_chars:,})", code="session_too_large")
        def over() -> bool:
            return (len(self._entries) + int(new) > self.max_sessions
                    or self.chars + chars > self.max_chars)

        idle = sorted((e.last_used, k) for k, e in self._entries.items() if not e.lock.locked())
        while over() and idle:
            _, key = idle.pop(0)
            await self._close(key)
        if over():
            raise HTTPError(429, f"the server holds its most sessions ({self.max_sessions}) or "
                            "session memory, all busy: retry later, or end a session",
                            type="rate_limit_error", code="sessions_full",
                            headers={"Retry-After": "5"})

    async def _close(self, key: tuple[str, str]) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            await entry.session.aclose()

    async def _sweep(self) -> None:
        """Close sessions idle for ``idle_s`` (checked a few times per idle period)."""
        period = max(min(self.idle_s / 4, 30.0), 0.05)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for key, entry in list(self._entries.items()):
                if not entry.lock.locked() and now - entry.last_used >= self.idle_s:
                    await self._close(key)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        for key in list(self._entries):
            await self._close(key)
