"""A persistent sub-call cache: SQLite under ``$FASTRLM_HOME`` (default ``~/.fastrlm``).

A re-run of the same job costs nothing for what was already answered, and an interrupted run
resumes where it stopped. The engine decides when to consult it (sub-calls only; off for
temperature > 0 unless asked); this module only stores and finds replies.

Concurrency: one connection per cache, used from worker threads under a lock, so many tasks of
one event loop can share it without blocking the loop. Across processes the database runs in
WAL mode with a busy timeout, so several runs may share one file. The file carries a schema
version (:data:`SCHEMA`): an older cache is upgraded in place, one from a newer fastrlm is
refused with a clear error. A broken file (not a database, malformed) is moved aside and made
anew, and a lookup or store that still fails (locked past the busy timeout) is a miss or an
unsaved reply, logged once: the cache never fails a run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from .._foundation.home import cache_path
from .._foundation.schema import Schema, anew_if_unusable, ensure_schema
from .._foundation.usage import TokenUsage
from ._base import LM, ChatMessage, LMResponse

logger = logging.getLogger("fastrlm.cache")
_T = TypeVar("_T")

#: Version 1: the layout below. See :mod:`fastrlm._foundation.schema` for how to change it.
SCHEMA = Schema(
    name="sub-call cache",
    version=1,
    table="subcalls",
    columns=(
        ("key", "TEXT PRIMARY KEY"),
        ("model", "TEXT NOT NULL DEFAULT ''"),
        ("response", "TEXT NOT NULL DEFAULT ''"),
        ("created_at", "REAL NOT NULL DEFAULT 0"),
    ),
)


class SubcallCache:
    """LM replies by key. ``path`` defaults to ``$FASTRLM_HOME/cache.sqlite``; the directory
    and database are created on first use, not by the constructor.

    ``get`` returns a reply with ``cached=True`` and ``latency_s=0``; its ``usage`` is what the
    original call consumed (the engine charges a hit nothing and counts it as a hit).
    """

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else cache_path()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._warned = False
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key_for(lm: LM, messages: Sequence[ChatMessage], max_tokens: int | None) -> str:
        """sha256 of the LM's cache key (provider, endpoint, model, sampling), the messages and
        the call parameters. Credentials are never part of it."""
        payload = {
            "lm": lm.cache_key(),
            # a message with images adds them; one without keeps the key it always had
            "messages": [
                [m["role"], m["content"], *([m["images"]] if m.get("images") else [])]
                for m in messages
            ],
            "max_tokens": max_tokens,
        }
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    async def get(self, key: str) -> LMResponse | None:
        """The stored reply for ``key`` (``cached=True``), or ``None``."""
        row = await asyncio.to_thread(self._get_sync, key)
        response = None if row is None else _decode(row)
        if response is None:
            self.misses += 1
        else:
            self.hits += 1
        return response

    async def put(self, key: str, response: LMResponse) -> None:
        """Store ``response`` under ``key`` (a later put for the same key replaces it)."""
        await asyncio.to_thread(self._put_sync, key, response.model, _encode(response))

    def __len__(self) -> int:
        with self._lock:
            row = self._connect().execute("SELECT COUNT(*) FROM subcalls").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the connection; the cache reopens it if used again."""
        with self._lock:
            self._release()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> SubcallCache:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- blocking parts, run in worker threads ---------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA busy_timeout=30000")
                ensure_schema(conn, SCHEMA, self.path)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _release(self) -> None:
        """Close the connection (the caller holds the lock)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _guarded(self, op: Callable[[sqlite3.Connection], _T], fallback: _T) -> _T:
        """``op`` on the connection, under the lock. A broken file is moved aside and ``op``
        retried on a new one; any other database error gives ``fallback``, logged once."""
        with self._lock:
            try:
                return anew_if_unusable(SCHEMA, self.path, lambda: op(self._connect()),
                                        logger=logger, release=self._release)
            except sqlite3.Error as exc:
                if not self._warned:
                    self._warned = True
                    logger.warning("the sub-call cache %s is not used (%s): calls go to the "
                                   "model and their replies are not kept", self.path, exc)
                return fallback

    def _get_sync(self, key: str) -> str | None:
        row = self._guarded(
            lambda conn: conn.execute(
                "SELECT response FROM subcalls WHERE key = ?", (key,)).fetchone(),
            None,
        )
        return None if row is None else str(row[0])

    def _put_sync(self, key: str, model: str, blob: str) -> None:
        def store(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute(
                    "INSERT OR REPLACE INTO subcalls (key, model, response, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    (key, model, blob, time.time()),
                )

        self._guarded(store, None)


def _encode(response: LMResponse) -> str:
    u = response.usage
    return json.dumps(
        {
            "text": response.text,
            "model": response.model,
            "finish_reason": response.finish_reason,
            "cost_usd": response.cost_usd,
            "usage": [
                u.input_tokens,
                u.output_tokens,
                u.cached_input_tokens,
                u.cache_write_tokens,
                u.reasoning_tokens,
                u.estimated,
            ],
        },
        ensure_ascii=False,
    )


def _decode(blob: str) -> LMResponse | None:
    """The stored reply, or ``None`` for a row this version cannot read (treated as a miss)."""
    try:
        data = json.loads(blob)
        i, o, c, w, r, est = data["usage"]
        text, model = str(data["text"]), str(data["model"])
    except (ValueError, KeyError, TypeError):
        return None
    return LMResponse(
        text=text,
        usage=TokenUsage(int(i), int(o), int(c), int(w), int(r), bool(est)),
        model=model,
        latency_s=0.0,
        finish_reason=data.get("finish_reason"),
        cost_usd=data.get("cost_usd"),
        cached=True,
    )
