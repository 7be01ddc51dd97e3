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

Kept sessions (``keep=DIR``, ``fastrlm serve --keep-sessions DIR``) survive a restart of the
server, SIGKILL included. :class:`KeptSessions` writes, as it goes, what the run records beside
the traces do not hold: which fastrlm session a (key, id) is and the context each of its
questions brought (``DIR/<key digest>/<id digest>/``, files 0600 in folders 0700, each written
whole then renamed into place). The first request for such a session after a restart rebuilds
it with :meth:`~fastrlm.Session.aresume` (REPL and conversation as they were; recorded turns
sent to no model, paid for once); a question the restart cut off is finished from its record
first. Only the same key finds it: the folder is named by the key's digest. A session closed
for a reason (idle, evicted, its REPL stopped) is forgotten on disk too; one the shutdown
closed is kept. One whose last request began ``idle_s`` or more before the server starts is
forgotten then, and its next request gets 410 as an idle one's would. A session that cannot be
rebuilt (its records gone, a cell that prints something else on replay) gets 410
``session_lost`` saying why, and starts anew after.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import RLM, Session
from .._core.prompts import shown_whole
from .._foundation.errors import ConfigurationError, RLMError
from .._foundation.text import json_text
from ..context import describe_shape
from ._http import HTTPError

log = logging.getLogger("fastrlm.server")

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
    kept: _Kept | None = None  # its state on disk (with keep=), once set up
    unkept: bool = False  # its state could not be written: served, no longer kept


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _write_whole(path: Path, text: str) -> None:
    """``text`` into ``path`` all or nothing (a reader never sees half a file), durably."""
    part = path.with_name(path.name + ".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        data = text.encode("utf-8")
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(part, path)


@dataclass
class _Kept:
    """One kept session's folder: ``session.json`` (the client's id, the fastrlm session it
    is, the questions that brought a context, when last used) and ``context_<q>.json``."""

    folder: Path
    client_id: str
    session: str = ""
    contexts: list[int] = field(default_factory=list)
    used: float = 0.0  # time.time() of its last request

    def save(self) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_whole(self.folder / "session.json", json_text(
            {"id": self.client_id, "session": self.session, "contexts": self.contexts,
             "used": self.used}))

    def asking(self, question: int, context: object) -> None:
        """Before question ``question`` (from 0) is asked: keep the context it brings (None:
        none) and the time."""
        self.used = time.time()
        if context is not None:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write_whole(self.folder / f"context_{question}.json", json_text(context))
            if question not in self.contexts:
                self.contexts.append(question)
        self.save()

    def load_contexts(self) -> dict[int, object]:
        return {q: json.loads((self.folder / f"context_{q}.json").read_text("utf-8"))
                for q in self.contexts}


class KeptSessions:
    """The sessions a server keeps on disk under ``root``, one folder per (key digest, id)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(f"cannot keep sessions in {self.root}: {exc} (choose "
                                     "another folder: --keep-sessions DIR)") from exc

    def folder(self, owner: str, session_id: str) -> Path:
        return self.root / owner / _digest(session_id)

    def new(self, owner: str, session_id: str, session: str) -> _Kept:
        """The state of a session kept from now (written by its ``save``)."""
        return _Kept(self.folder(owner, session_id), session_id, session, used=time.time())

    def find(self, owner: str, session_id: str) -> _Kept | None:
        """The kept state of ``owner``'s session ``session_id``, or None when there is none.
        Raises ValueError saying why when it cannot be read or is not one this server wrote."""
        folder = self.folder(owner, session_id)
        path = folder / "session.json"
        try:
            state = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ValueError(f"its kept state {path} cannot be read ({exc})") from exc
        if (not isinstance(state, dict) or state.get("id") != session_id
                or not isinstance(session := state.get("session"), str)
                or not isinstance(contexts := state.get("contexts"), list)
                or not all(type(q) is int for q in contexts)
                or not isinstance(used := state.get("used"), int | float)):
            raise ValueError(f"its kept state {path} is not one this server wrote")
        return _Kept(folder, session_id, session, contexts, float(used))

    def prune(self, idle_s: float, live: set[Path]) -> list[tuple[str, str]]:
        """Forget the kept sessions not in ``live`` whose last request is ``idle_s`` old;
        returns their (owner, id). One whose state cannot be read is left for its request
        to be told so."""
        gone = []
        for state in self.root.glob("*/*/session.json"):
            if state.parent in live:
                continue
            try:
                kept = json.loads(state.read_text("utf-8"))
                used, client_id = kept["used"], kept["id"]
            except (OSError, ValueError, TypeError, KeyError):
                continue
            if isinstance(used, int | float) and time.time() - used >= idle_s:
                shutil.rmtree(state.parent, ignore_errors=True)
                gone.append((state.parent.parent.name, str(client_id)))
        return gone

    def forget(self, owner: str, session_id: str) -> None:
        shutil.rmtree(self.folder(owner, session_id), ignore_errors=True)


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
                 max_per_owner: int | None = None, keep: str | Path | None = None) -> None:
        self._rlm = rlm
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._ended: OrderedDict[str, OrderedDict[str, str]] = OrderedDict()
        self.kept: KeptSessions | None = None
        if keep is not None:
            trace = rlm.trace
            if trace is not True and not isinstance(trace, str | Path):
                raise ConfigurationError(
                    "kept sessions are rebuilt from their runs' records, which are written "
                    "beside traces kept on disk: give the RLM trace=True (or a folder), or "
                    "drop --no-trace, to keep sessions")
            self.kept = KeptSessions(keep)
            # before any request (nothing else touches the folder yet): forget what was idle
            # too long while the server was down, so what nobody comes back for does not pile
            # up; its next request is told, as an idle one's would be
            for key in self.kept.prune(idle_s, set()):
                self._remember(key, f"after {idle_s:g} s idle (--session-idle-s), while the "
                                    "server was down")
        self.max_sessions = max_sessions
        self.max_per_owner = min(max_per_owner or max_sessions, max_sessions)
        self.idle_s = idle_s
        self.max_chars = max_chars
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
                if self.kept is not None and entry.kept is None and not entry.unkept:
                    await self._restore_or_keep(key, entry)
                if drop_in and entry.session.state.messages:
                    context = (None if shown_whole(question, self._rlm.limits.question_chars)
                               else question)
                added = 0 if context is None else describe_shape(context).total_chars
                closing = self._make_room(owner, added, new=False) if added else []
                entry.chars += added
                await _close_sessions(closing)
                if entry.kept is not None:
                    await self._write(key, entry, entry.kept.asking,
                                      entry.session.state.questions, context)
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

    async def _restore_or_keep(self, key: tuple[str, str], entry: _Entry) -> None:
        """Start keeping a new session on disk, or first rebuild one kept before a restart
        from its records (its contexts count against the pool's bound). A kept session that
        cannot be rebuilt is forgotten and its request gets 410 ``session_lost``; one idle
        past the idle limit gets 410 ``session_closed``, as if the server had stayed up to
        close it."""
        assert self.kept is not None
        owner, session_id = key
        if self._entries.get(key) is not entry:  # waited while another request failed to
            raise HTTPError(                       # rebuild it (and was told why)
                410, f"session {session_id!r} could not be rebuilt after the server "
                "restarted. Send the request again to start the session anew (with its "
                "context), or use another session id", code="session_lost")
        why, code = None, "session_lost"
        try:
            kept = await asyncio.to_thread(self.kept.find, owner, session_id)
        except ValueError as exc:
            kept, why = None, f"and {exc}"
        if kept is None and why is None:
            entry.kept = self.kept.new(owner, session_id, entry.session.id)
            await self._write(key, entry, entry.kept.save)
            return
        if kept is not None and time.time() - kept.used >= self.idle_s:
            why, code = (f"after {self.idle_s:g} s idle (--session-idle-s), while the "
                         "server was down"), "session_closed"
        elif kept is not None:
            try:
                contexts = await asyncio.to_thread(kept.load_contexts)
                chars = sum(describe_shape(c).total_chars for c in contexts.values())
                await _close_sessions(self._make_room(owner, chars, new=False))
                entry.chars += chars
                await entry.session.aresume(kept.session, contexts=contexts)
            except (OSError, ValueError, RLMError) as exc:
                why = f"and could not be rebuilt after the server restarted: {exc}"
        if why is not None:
            await asyncio.to_thread(self.kept.forget, owner, session_id)
            if self._entries.get(key) is entry:
                del self._entries[key]
            await entry.session.aclose()
            raise HTTPError(
                410, f"session {session_id!r} was closed {why}. Send the request again to "
                "start the session anew (with its context), or use another session id",
                code=code)
        assert kept is not None
        kept.session = entry.session.id  # its questions are recorded anew under this id
        entry.kept = kept
        await self._write(key, entry, kept.save)

    async def _write(self, key: tuple[str, str], entry: _Entry,
                     write: Callable[..., None], *args: object) -> None:
        """Write a kept session's state; one that cannot be written (a full disk) stops
        being kept, never served: its folder is forgotten (a restart would find it
        incomplete) and the server's log says so once."""
        try:
            await asyncio.to_thread(write, *args)
        except OSError as exc:
            assert self.kept is not None
            entry.kept, entry.unkept = None, True
            await asyncio.to_thread(self.kept.forget, *key)
            log.warning("session %s is no longer kept on disk (%s): it goes on, but will "
                        "not survive a restart of the server", entry.session.id, exc)

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
        if self.kept is not None:
            self.kept.forget(owner, session_id)
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
