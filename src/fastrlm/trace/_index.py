"""The SQLite index of runs: one row per top-level run, for ``fastrlm runs`` and ``show``.

The row is inserted when the run starts (``stop_reason`` ``"running"``) and completed when it
finishes, so a run whose process was killed still appears, marked as never finished: a reader
shows such a row as ``"incomplete"`` once no process holds its trace's writer lock
(:mod:`._lock`; the stored row is left as it is). Every write
opens, commits and closes its own connection: several processes may share one index. The
file carries a schema version (:data:`SCHEMA`): an older index is upgraded in place, one from a
newer fastrlm is refused with a clear error.

The index is a cache of the traces, never the record: a write that finds the file unusable (not
a database, malformed, or a ``runs`` table of another layout) moves it aside, beside it as
``index.sqlite.unusable-<time>`` (nothing is deleted), logs that once, and writes to a new one.
A reader that finds it unusable raises :class:`IndexUnusableError`, which says what to do.

Runs are found by a :class:`RunFilter` (text, model, stop reason, dates, session, cost, ids):
one ``WHERE`` clause built in one place for ``fastrlm runs``, its export and its delete.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from .._foundation.errors import ConfigurationError
from .._foundation.schema import Schema, anew_if_unusable, ensure_schema
from .._foundation.text import well_formed
from . import _io
from ._lock import writer_alive

logger = logging.getLogger("fastrlm.trace")
RUNNING = "running"
#: What a reader shows for a row still "running" whose trace no process writes any more.
INCOMPLETE = "incomplete"
#: How long a write waits for another process's lock on the index before it gives up.
BUSY_TIMEOUT_S = 30.0


class IndexUnusableError(ConfigurationError):
    """The run index cannot be read: the message names the file, what is wrong, and what to do.
    The traces themselves are intact."""

#: Version 2: the layout below (version 1 lacked the session columns: a run asked in
#: ``rlm.session()`` / ``fastrlm chat`` carries its session's id and its question's number).
#: See :mod:`fastrlm._foundation.schema` for how to change it.
SCHEMA = Schema(
    name="run index",
    version=2,
    table="runs",
    columns=(
        ("run_id", "TEXT PRIMARY KEY"),
        ("started_at", "REAL NOT NULL"),
        ("finished_at", "REAL"),
        ("question", "TEXT NOT NULL DEFAULT ''"),
        ("model", "TEXT NOT NULL DEFAULT ''"),
        ("sub_model", "TEXT NOT NULL DEFAULT ''"),
        ("sandbox", "TEXT NOT NULL DEFAULT ''"),
        ("context_sha256", "TEXT NOT NULL DEFAULT ''"),
        ("context_chars", "INTEGER NOT NULL DEFAULT 0"),
        ("stop_reason", "TEXT NOT NULL DEFAULT 'running'"),
        ("cost_usd", "REAL NOT NULL DEFAULT 0"),
        ("duration_s", "REAL"),
        ("iterations", "INTEGER NOT NULL DEFAULT 0"),
        ("subcalls", "INTEGER NOT NULL DEFAULT 0"),
        ("input_tokens", "INTEGER NOT NULL DEFAULT 0"),
        ("output_tokens", "INTEGER NOT NULL DEFAULT 0"),
        ("answer_preview", "TEXT NOT NULL DEFAULT ''"),
        ("error", "TEXT"),
        ("trace_path", "TEXT NOT NULL DEFAULT ''"),
        ("session_id", "TEXT"),
        ("session_question", "INTEGER NOT NULL DEFAULT 0"),
    ),
    extra=("CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at)",
           "CREATE INDEX IF NOT EXISTS runs_session ON runs (session_id)"),
    migrations={1: lambda conn: _add_session_columns(conn)},
)


def _add_session_columns(conn: sqlite3.Connection) -> None:
    """Version 1 to 2: the session columns, and only those (a ``runs`` table of another
    layout stays unusable, and is set aside by the first write)."""
    conn.execute("ALTER TABLE runs ADD COLUMN session_id TEXT")
    conn.execute("ALTER TABLE runs ADD COLUMN session_question INTEGER NOT NULL DEFAULT 0")


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One row of the index. ``stop_reason`` is ``"running"`` while a process writes the run,
    ``"incomplete"`` if it never finished and nothing writes it now (killed, crashed)."""

    run_id: str
    started_at: float
    finished_at: float | None
    question: str
    model: str
    sub_model: str
    sandbox: str
    context_sha256: str
    context_chars: int
    stop_reason: str
    cost_usd: float
    duration_s: float | None
    iterations: int
    subcalls: int
    input_tokens: int
    output_tokens: int
    answer_preview: str
    error: str | None
    trace_path: str
    session_id: str | None = None
    session_question: int = 0

    @property
    def finished(self) -> bool:
        return self.stop_reason not in (RUNNING, INCOMPLETE)


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs to find; every field left ``None`` (or empty) matches all.

    - ``text``: in the question, the answer's preview or the error (case-insensitive).
    - ``model``: in the root or sub-model's name (case-insensitive).
    - ``stop_reason``: exactly (``final``, ``budget_usd``, ... or ``running``).
    - ``since`` / ``until``: started at or after / before these Unix times.
    - ``session``: the session's id or a prefix of it.
    - ``min_cost`` / ``max_cost``: the run's cost in USD, inclusive.
    - ``run_ids``: runs whose id is one of these or starts with one.
    """

    text: str | None = None
    model: str | None = None
    stop_reason: str | None = None
    since: float | None = None
    until: float | None = None
    session: str | None = None
    min_cost: float | None = None
    max_cost: float | None = None
    run_ids: tuple[str, ...] = ()

    @property
    def narrows(self) -> bool:
        """Whether it selects anything less than every run."""
        return self != RunFilter()

    def where(self) -> tuple[str, list[object]]:
        """The SQL ``WHERE`` clause (``""`` for all runs) and its parameters. Pure."""
        clauses: list[str] = []
        params: list[object] = []
        if self.text:
            like = _contains(self.text)
            clauses.append("(question LIKE ? ESCAPE '\\' OR answer_preview LIKE ? ESCAPE '\\'"
                           " OR IFNULL(error, '') LIKE ? ESCAPE '\\')")
            params += [like, like, like]
        if self.model:
            like = _contains(self.model)
            clauses.append("(model LIKE ? ESCAPE '\\' OR sub_model LIKE ? ESCAPE '\\')")
            params += [like, like]
        if self.stop_reason:
            clauses.append("stop_reason = ?")
            params.append(self.stop_reason)
        if self.since is not None:
            clauses.append("started_at >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append("started_at < ?")
            params.append(self.until)
        if self.session:
            clauses.append("session_id LIKE ? ESCAPE '\\'")
            params.append(_escape(self.session) + "%")
        if self.min_cost is not None:
            clauses.append("cost_usd >= ?")
            params.append(self.min_cost)
        if self.max_cost is not None:
            clauses.append("cost_usd <= ?")
            params.append(self.max_cost)
        if self.run_ids:
            clauses.append("(" + " OR ".join("run_id LIKE ? ESCAPE '\\'"
                                             for _ in self.run_ids) + ")")
            params += [_escape(ref) + "%" for ref in self.run_ids]
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _escape(text: str) -> str:
    """``text`` taken literally by ``LIKE ... ESCAPE '\\'``."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _contains(text: str) -> str:
    return "%" + _escape(text) + "%"


_COLUMNS = tuple(f.name for f in fields(RunRecord))


def _open(path: Path) -> sqlite3.Connection:
    """A connection to the index at ``path`` (made, with its folder, when missing), its schema
    checked; closed again if the check raises."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
    try:
        ensure_schema(conn, SCHEMA, path)
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    with closing(_open(path)) as conn, conn:
        yield conn


def _write(path: Path, apply: Callable[[sqlite3.Connection], object], *,
           keep: bool = False) -> None:
    """Apply one write; an unusable file is set aside and the write made on a new one.
    ``keep``: on this thread's kept connection to ``path`` (:func:`_kept_connection`)."""

    def attempt() -> None:
        if keep:
            conn = _kept_connection(path)
            try:
                with conn:
                    apply(conn)
            except BaseException:
                _drop_kept(path)  # the next write opens the file (or its replacement) again
                raise
            return
        with _connect(path) as conn:
            _for_writing(conn)
            apply(conn)

    anew_if_unusable(SCHEMA, path, attempt, logger=logger, note="; the traces are intact")


def _for_writing(conn: sqlite3.Connection) -> None:
    # No fsync at commit: the index is a cache of the traces (each run's own file, written at
    # once), a commit that waited for the disk held every run that wrote a row, and a file a
    # power cut leaves damaged is set aside like any unusable one.
    conn.execute("PRAGMA synchronous = OFF")
    # The rollback journal stays on disk between commits (its header is zeroed instead):
    # SQLite's default made and deleted it at every commit, two files a run, and on ext4 each
    # inode deleted in the last minutes is skipped, one by one, by the next file made in that
    # directory's group: a server's trace and record files then cost ~1 ms each to create.
    conn.execute("PRAGMA journal_mode = PERSIST")


#: The trace I/O thread's connections, one per index file: opening one (connect, the schema
#: check, the pragma) cost more than the rows it wrote, two or three times a run.
_kept = threading.local()


def _kept_connection(path: Path) -> sqlite3.Connection:
    """This thread's open connection to the index at ``path``, made (with the schema checked)
    when it has none, or when the file at ``path`` is no longer the one it opened (removed,
    or set aside and made anew, by this process or another)."""
    held: dict[Path, tuple[sqlite3.Connection, tuple[int, int]]] = _kept.__dict__.setdefault(
        "held", {})
    kept = held.get(path)
    if kept is not None:
        try:
            found = os.stat(path)
        except FileNotFoundError:
            found = None
        if found is not None and (found.st_dev, found.st_ino) == kept[1]:
            return kept[0]
        _drop_kept(path)
    conn = _open(path)
    try:
        _for_writing(conn)
        made = os.stat(path)  # made by ensure_schema if it was missing
    except BaseException:
        conn.close()
        raise
    held[path] = (conn, (made.st_dev, made.st_ino))
    return conn


def _drop_kept(path: Path) -> None:
    held = _kept.__dict__.get("held", {})
    kept = held.pop(path, None)
    if kept is not None:
        kept[0].close()


def _read(path: Path, sql: str, params: tuple[object, ...]) -> list[RunRecord]:
    _io.drain()  # this process's own rows first (written on the trace's I/O thread)
    try:
        with _connect(path) as conn:
            return [_as_seen(RunRecord(*row)) for row in conn.execute(sql, params)]
    except sqlite3.Error as exc:
        raise IndexUnusableError(
            f"the run index {path} cannot be read ({exc}); the traces beside it are intact: "
            f"move the file aside (the next run starts a new index) or set FASTRLM_HOME to "
            "another directory"
        ) from exc


def _as_seen(row: RunRecord) -> RunRecord:
    # "running" is what the row said when the run started; whether it still runs is whether a
    # process holds its trace (unknown, e.g. without flock or a trace moved away: as stored)
    if row.stop_reason == RUNNING and writer_alive(Path(row.trace_path)) is False:
        return replace(row, stop_reason=INCOMPLETE)
    return row


def _cells(values: dict[str, Any]) -> dict[str, Any]:
    """A row's values as SQLite can store them: a lone surrogate in a text (a question pasted
    with a ``"\\ud83d"`` escape) is U+FFFD here, where it would fail the write (the trace keeps
    it exact)."""
    return {k: well_formed(v) if isinstance(v, str) else v for k, v in values.items()}


#: One write to the index, applied on an open connection inside a transaction.
Write = Callable[[sqlite3.Connection], object]


def start_row(values: dict[str, Any]) -> Write:
    """The write that inserts (or replaces) the row of a run that just started."""
    row = _cells({name: values.get(name) for name in _COLUMNS})
    row["stop_reason"] = RUNNING
    for name in ("cost_usd", "iterations", "subcalls", "input_tokens", "output_tokens",
                 "session_question"):
        row[name] = row[name] or 0
    row["answer_preview"] = row["answer_preview"] or ""
    names = ", ".join(_COLUMNS)
    marks = ", ".join(f":{c}" for c in _COLUMNS)
    return lambda conn: conn.execute(f"INSERT OR REPLACE INTO runs ({names}) VALUES ({marks})",
                                     row)


def update_row(run_id: str, values: dict[str, Any]) -> Write:
    """The write that updates columns of a run's row (``values`` keys are column names)."""
    keys = [k for k in values if k in _COLUMNS and k != "run_id"]
    assignments = ", ".join(f"{k} = :{k}" for k in keys)
    cells = _cells({**values, "run_id": run_id})
    return lambda conn: conn.execute(f"UPDATE runs SET {assignments} WHERE run_id = :run_id",
                                     cells)


def write_all(path: Path, writes: list[Write], *, keep: bool = False) -> None:
    """Apply ``writes`` in order, in one connection and one transaction (one commit: one wait
    for the disk, however many rows). ``keep``: on a connection this thread keeps open for the
    next writes (the trace's I/O thread), else one opened and closed for these."""
    _write(path, lambda conn: [write(conn) for write in writes], keep=keep)


def record_start(path: Path, values: dict[str, Any]) -> None:
    """Insert (or replace) the row of a run that just started."""
    write_all(path, [start_row(values)])


def update_run(path: Path, run_id: str, values: dict[str, Any]) -> None:
    """Update columns of a run's row (``values`` keys are column names)."""
    write_all(path, [update_row(run_id, values)])


def list_runs(
    path: Path, *, limit: int | None = 20, where: RunFilter | None = None
) -> list[RunRecord]:
    """Runs that ``where`` selects (default: all), newest first, at most ``limit``. Raises
    :class:`IndexUnusableError` for an unreadable index."""
    if not path.exists():
        return []
    clause, params = (where or RunFilter()).where()
    sql = f"SELECT {', '.join(_COLUMNS)} FROM runs{clause} ORDER BY started_at DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return _read(path, sql, tuple(params))


def find_runs(path: Path, prefix: str) -> list[RunRecord]:
    """Runs whose id starts with ``prefix``, newest first."""
    return list_runs(path, limit=None, where=RunFilter(run_ids=(prefix,)))


def delete_runs(path: Path, records: list[RunRecord]) -> list[Path]:
    """Forget ``records``: their rows leave the index, and their trace files (the ``.jsonl``
    and a long answer's ``<run>.answer.txt`` beside it) are removed. Returns the files
    removed. Raises :class:`IndexUnusableError` for an unreadable index, ``OSError`` for a
    file that cannot be removed (its row is then kept, so the run can still be found)."""
    _io.drain()  # rows this process still has queued go first, then away
    removed: list[Path] = []
    gone: list[str] = []
    try:
        for record in records:
            trace = Path(record.trace_path) if record.trace_path else None
            files = [] if trace is None else [trace,
                                              trace.with_name(f"{record.run_id}.answer.txt")]
            for file in files:
                try:
                    file.unlink()
                except FileNotFoundError:
                    continue
                removed.append(file)
            gone.append(record.run_id)
    finally:  # the rows of the runs whose files are gone, even when a later one failed
        if gone:
            try:
                with _connect(path) as conn:
                    _for_writing(conn)
                    conn.executemany("DELETE FROM runs WHERE run_id = ?", [(r,) for r in gone])
            except sqlite3.Error as exc:
                raise IndexUnusableError(
                    f"the run index {path} cannot be written ({exc}); move the file aside "
                    "(the next run starts a new index) or set FASTRLM_HOME to another "
                    "directory") from exc
    return removed
