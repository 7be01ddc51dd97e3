"""Sessions over HTTP: ``extra_body={"fastrlm": {"session": "<id>"}}`` keeps one
:class:`~fastrlm.Session` (one REPL, one conversation) across requests.

A session belongs to the API key that made it (the sha256 of the request's bearer token, so the
key itself is never kept): the same id under another key is another session. The pool is
bounded: at most ``max_per_owner`` sessions per key, ``max_sessions`` in all and ``max_chars``
of contexts in all. Room is only ever made from the requesting key's own sessions (its oldest
idle one is closed): one key never pushes out another's; when none of its own is idle the
request gets 429 naming the bound. A session idle for ``idle_s`` seconds is closed (its worker
stopped) by a sweeper task.

A closed session is remembered with why it ended (per key, the last :data:`REMEMBERED_PER_KEY`,
so one key closing many of its own cannot make the server forget another's; for the last
:data:`REMEMBERED_KEYS` keys): the next request for it gets 410 ``session_closed`` saying so,
never a silent fresh REPL; the request after that starts the id anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from .. import RLM, Session
from .._core.prompts import shown_whole
from ..context import describe_shape
from ._http import HTTPError

#: Closed sessions remembered per key (to tell their next request they are gone), and keys.
REMEMBERED_PER_KEY = 1024
REMEMBERED_KEYS = 1024


@dataclass
class _Entry:
    session: Session
    owner: str
    chars: int = 0
    last_used: float = field(default_factory=time.monotonic)
    users: int = 0  # requests holding or waiting for it
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def owner_of(authorization: str) -> str:
    """Who a request's session belongs to: a digest of its bearer token (never the token)."""
    _, _, token = authorization.partition(" ")
    return hashlib.sha256(token.strip().encode()).hexdigest()


async def _close_sessions(sessions: list[Session]) -> None:
    """Stop evicted sessions' workers; shielded, so a request cancelled meanwhile leaks none."""
    if sessions:
        await asyncio.shield(asyncio.gather(*(session.aclose() for session in sessions)))


class SessionPool:
    """The server's live sessions, keyed by (owner, session id)."""

    def __init__(self, rlm: RLM, *, max_sessions: int, idle_s: float, max_chars: int,
                 max_per_owner: int | None = None) -> None:
        self._rlm = rlm
        self.max_sessions = max_sessions
        self.max_per_owner = min(max_per_owner or max_sessions, max_sessions)
        self.idle_s = idle_s
        self.max_chars = max_chars
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._ended: OrderedDict[str, OrderedDict[str, str]] = OrderedDict()
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
        HTTPError 410 for a session closed since its last request, 429 (413 for one context
        over the bound) when the pool cannot make room from this owner's idle sessions."""
        key = (owner, session_id)
        entry = self._entries.get(key)
        if entry is None:
            ended = self._ended.get(owner, OrderedDict()).pop(session_id, None)
            if ended is not None:
                raise HTTPError(
                    410, f"session {session_id!r} was closed {ended}: its REPL variables and "
                    "conversation are gone. Send the request again to start the session anew "
                    "(with its context), or use another session id",
                    code="session_closed")
            # room is taken (the slot filled) before any eviction is awaited: a request of
            # another key arriving meanwhile never takes the slot this one's closes freed
            closing = self._make_room(owner, 0, new=True)
            entry = self._entries[key] = _Entry(self._rlm.session(), owner)
        else:
            closing = []
        # counted from here, not from taking the lock: a session with a request waiting for
        # it (even one woken but not yet running) is never idle, so never evicted under it
        entry.users += 1
        try:
            await _close_sessions(closing)
            async with entry.lock:
                if drop_in and entry.session.state.messages:
                    context = (None if shown_whole(question, self._rlm.limits.question_chars)
                               else question)
                added = 0 if context is None else describe_shape(context).total_chars
                closing = self._make_room(owner, added, new=False) if added else []
                entry.chars += added
                await _close_sessions(closing)
                entry.last_used = time.monotonic()
                try:
                    yield entry.session, context
                finally:
                    entry.last_used = time.monotonic()
                    if entry.session.closed and self._entries.get(key) is entry:
                        del self._entries[key]
                        self._remember(key, "when its REPL stopped")
        finally:
            entry.users -= 1

    def _bound_reached(self, owner: str, chars: int, new: bool) -> str | None:
        """The bound one more session (``new``) with ``chars`` more would break, or None."""
        if new and sum(o == owner for o, _ in self._entries) + 1 > self.max_per_owner:
            return (f"{self.max_per_owner} sessions per API key (--max-sessions-per-key, "
                    "RLMServer(max_sessions_per_key=))")
        if len(self._entries) + int(new) > self.max_sessions:
            return f"{self.max_sessions} sessions in all (--max-sessions)"
        if self.chars + chars > self.max_chars:
            return (f"{self.max_chars:,} characters of context in all sessions "
                    "(RLMServer(max_session_chars=))")
        return None

    def _make_room(self, owner: str, chars: int, *, new: bool) -> list[Session]:
        """Take ``owner``'s oldest idle sessions (never another owner's) out of the pool until
        one more (``new``) with ``chars`` fits every bound, and return them for the caller to
        close once it has taken the room (no await here, so nothing else can take it first).
        When even all its idle ones would not make room, none is taken out."""
        if chars > self.max_chars:
            raise HTTPError(413, f"the context has {chars:,} characters, more than a session "
                            f"may hold ({self.max_chars:,}; RLMServer(max_session_chars=...) "
                            "sets it)", code="session_too_large")
        idle = sorted((e.last_used, k) for k, e in self._entries.items()
                      if k[0] == owner and not e.users)
        taken: list[tuple[tuple[str, str], _Entry, str]] = []
        while (bound := self._bound_reached(owner, chars, new)) is not None and idle:
            _, key = idle.pop(0)
            taken.append((key, self._entries.pop(key), bound))
        bound = self._bound_reached(owner, chars, new)
        if bound is None:
            for key, _entry, freed_for in taken:
                self._remember(key, f"to make room for another of this API key's sessions "
                                    f"(the server holds at most {freed_for})")
            return [entry.session for _key, entry, _bound in taken]
        for key, entry, _bound in taken:
            self._entries[key] = entry
        raise HTTPError(429, f"the server holds at most {bound}, and none of this API "
                        "key's sessions is idle to make room (another key's never are "
                        "closed for you): retry later, or let one of your sessions end",
                        type="rate_limit_error", code="sessions_full",
                        headers={"Retry-After": "5"})

    def _remember(self, key: tuple[str, str], why: str) -> None:
        owner, session_id = key
        mine = self._ended.setdefault(owner, OrderedDict())
        self._ended.move_to_end(owner)
        mine[session_id] = why
        mine.move_to_end(session_id)
        while len(mine) > REMEMBERED_PER_KEY:
            mine.popitem(last=False)
        while len(self._ended) > REMEMBERED_KEYS:
            self._ended.popitem(last=False)

    async def _close(self, key: tuple[str, str], why: str | None = None) -> None:
        """Close a session; ``why`` (None at shutdown) is told to its next request."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            if why is not None:
                self._remember(key, why)
            await entry.session.aclose()

    async def _sweep(self) -> None:
        """Close sessions idle for ``idle_s`` (checked a few times per idle period)."""
        period = max(min(self.idle_s / 4, 30.0), 0.05)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for key, entry in list(self._entries.items()):
                if not entry.users and now - entry.last_used >= self.idle_s:
                    await self._close(key, f"after {self.idle_s:g} s idle (--session-idle-s)")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        for key in list(self._entries):
            await self._close(key)
