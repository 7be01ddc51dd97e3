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
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from .._foundation.errors import ConfigurationError
from .._foundation.schema import Schema, anew_if_unusable, ensure_schema
from .._foundation.text import well_formed
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

#: Version 1: the layout below. See :mod:`fastrlm._foundation.schema` for how to change it.
SCHEMA = Schema(
    name="run index",
    version=1,
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
    ),
    extra=("CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at)",),
)


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

    @property
    def finished(self) -> bool:
        return self.stop_reason not in (RUNNING, INCOMPLETE)


_COLUMNS = tuple(f.name for f in fields(RunRecord))


@contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)) as conn:
        ensure_schema(conn, SCHEMA, path)
        with conn:
            yield conn


def _write(path: Path, apply: Callable[[sqlite3.Connection], object]) -> None:
    """Apply one write; an unusable file is set aside and the write made on a new one."""

    def attempt() -> None:
        with _connect(path) as conn:
            apply(conn)

    anew_if_unusable(SCHEMA, path, attempt, logger=logger, note="; the traces are intact")


def _read(path: Path, sql: str, params: tuple[object, ...]) -> list[RunRecord]:
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


def record_start(path: Path, values: dict[str, Any]) -> None:
    """Insert (or replace) the row of a run that just started."""
    row = _cells({name: values.get(name) for name in _COLUMNS})
    row["stop_reason"] = RUNNING
    for name in ("cost_usd", "iterations", "subcalls", "input_tokens", "output_tokens"):
        row[name] = row[name] or 0
    row["answer_preview"] = row["answer_preview"] or ""
    names = ", ".join(_COLUMNS)
    marks = ", ".join(f":{c}" for c in _COLUMNS)
    _write(path, lambda conn: conn.execute(
        f"INSERT OR REPLACE INTO runs ({names}) VALUES ({marks})", row))


def update_run(path: Path, run_id: str, values: dict[str, Any]) -> None:
    """Update columns of a run's row (``values`` keys are column names)."""
    keys = [k for k in values if k in _COLUMNS and k != "run_id"]
    assignments = ", ".join(f"{k} = :{k}" for k in keys)
    _write(path, lambda conn: conn.execute(
        f"UPDATE runs SET {assignments} WHERE run_id = :run_id",
        _cells({**values, "run_id": run_id})))


def list_runs(path: Path, *, limit: int | None = 20) -> list[RunRecord]:
    """Runs, newest first. Raises :class:`IndexUnusableError` for an unreadable index."""
    if not path.exists():
        return []
    sql = f"SELECT {', '.join(_COLUMNS)} FROM runs ORDER BY started_at DESC"
    params: tuple[int, ...] = ()
    if limit is not None:
        sql += " LIMIT ?"
        params = (limit,)
    return _read(path, sql, params)


def find_runs(path: Path, prefix: str) -> list[RunRecord]:
    """Runs whose id starts with ``prefix``, newest first."""
    if not path.exists():
        return []
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    sql = (
        f"SELECT {', '.join(_COLUMNS)} FROM runs WHERE run_id LIKE ? ESCAPE '\\' "
        "ORDER BY started_at DESC"
    )
    return _read(path, sql, (escaped + "%",))
