"""Versioned SQLite state: the run index and the sub-call cache carry a schema version.

Each database stores its version in ``PRAGMA user_version``. :func:`ensure_schema` creates a
new file at the current version, upgrades an older one in place (one transaction, so two
processes opening an old file at once cannot both migrate it) and refuses a file written by a
newer fastrlm with a message that says what to do, instead of misreading it.

Version 0 is a file from before versions existed: its table is brought up to date by adding the
columns it lacks (with their declared defaults), then stamped. To change a schema, bump its
``version``, keep ``create`` the newest layout, and append a migration step from the previous
version: ``migrations[v]`` upgrades version ``v`` to ``v + 1``.

Both files are caches (of the traces, of paid-for replies): one found broken (not a database,
malformed, a table of another layout; :func:`is_unusable`) is renamed aside with
:func:`set_aside`, never deleted, and made anew by the next connection:
:func:`anew_if_unusable` does all three for one operation.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from .errors import ConfigurationError

Migration = Callable[[sqlite3.Connection], None]
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Schema:
    """One database's layout.

    - ``name``: what the file is, for messages (``"run index"``).
    - ``version``: the current version (>= 1).
    - ``table`` / ``columns``: the main table and its column definitions, in order; version 0
      files are upgraded by adding the missing ones.
    - ``extra``: further statements run after the table exists (indexes).
    - ``migrations``: ``migrations[v]`` turns version ``v`` into ``v + 1`` for ``v >= 1``.
    """

    name: str
    version: int
    table: str
    columns: Sequence[tuple[str, str]]
    extra: Sequence[str] = ()
    migrations: dict[int, Migration] = field(default_factory=dict)

    def create_sql(self) -> str:
        body = ",\n    ".join(f"{name} {decl}" for name, decl in self.columns)
        return f"CREATE TABLE IF NOT EXISTS {self.table} (\n    {body}\n)"


def ensure_schema(conn: sqlite3.Connection, schema: Schema, path: Path) -> None:
    """Make ``conn``'s database match ``schema``: create, upgrade or refuse.

    Raises :class:`ConfigurationError` when the file was written by a newer fastrlm (its
    version is above ``schema.version``).
    """
    found = _user_version(conn)
    if found == schema.version and _has_table(conn, schema.table):
        return
    if found > schema.version:
        raise _too_new(schema, path, found)
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = _user_version(conn)  # another process may have migrated while we waited
        if found > schema.version:
            raise _too_new(schema, path, found)
        if not _has_table(conn, schema.table):
            conn.execute(schema.create_sql())
        elif found == 0:
            _add_missing_columns(conn, schema)
        else:
            for version in range(found, schema.version):
                step = schema.migrations.get(version)
                if step is None:
                    raise ConfigurationError(
                        f"the {schema.name} at {path} has schema version {found}, which this "
                        f"fastrlm cannot upgrade (no step from v{version}); move the file aside "
                        "and it is created anew"
                    )
                step(conn)
        for statement in schema.extra:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {int(schema.version)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _has_table(conn: sqlite3.Connection, table: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return row is not None


def _add_missing_columns(conn: sqlite3.Connection, schema: Schema) -> None:
    present = {str(row[1]) for row in conn.execute(f"PRAGMA table_info({schema.table})")}
    for name, decl in schema.columns:
        if name not in present:
            conn.execute(f"ALTER TABLE {schema.table} ADD COLUMN {name} {_addable(decl)}")


def _addable(decl: str) -> str:
    """A column declaration SQLite accepts in ``ADD COLUMN``: no PRIMARY KEY, and NOT NULL only
    with a default (rows that predate the column get the default, or NULL)."""
    decl = re.sub(r"\bPRIMARY KEY\b", "", decl, flags=re.IGNORECASE)
    if re.search(r"\bNOT NULL\b", decl, re.IGNORECASE) and not re.search(
        r"\bDEFAULT\b", decl, re.IGNORECASE
    ):
        decl = re.sub(r"\bNOT NULL\b", "", decl, flags=re.IGNORECASE)
    return " ".join(decl.split())


def _too_new(schema: Schema, path: Path, found: int) -> ConfigurationError:
    return ConfigurationError(
        f"the {schema.name} at {path} was written by a newer fastrlm (schema v{found}; this "
        f"version reads up to v{schema.version}): upgrade fastrlm, or set FASTRLM_HOME to "
        "another directory"
    )


def is_unusable(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says the file itself is broken (not a database, malformed, or its table
    lacks our columns), as opposed to busy, locked or unwritable."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return True
    text = str(exc)
    return code == sqlite3.SQLITE_ERROR and ("no such column" in text
                                             or "has no column named" in text)


def set_aside(path: Path) -> Path:
    """Rename a broken database, with its journal files (which belong to it, and would be
    replayed into a new file of the same name), to ``<name>.unusable-<time>``; returns that."""
    aside = path.with_name(f"{path.name}.unusable-{time.strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("", "-journal", "-wal", "-shm"):
        part = path.with_name(path.name + suffix)
        with contextlib.suppress(FileNotFoundError):  # absent, or another process was first
            part.rename(aside.with_name(aside.name + suffix))
    return aside


def anew_if_unusable(
    schema: Schema, path: Path, attempt: Callable[[], _T], *, logger: logging.Logger,
    release: Callable[[], None] | None = None, note: str = "",
) -> _T:
    """``attempt()``, and when it finds the file at ``path`` broken (:func:`is_unusable`):
    ``release`` what holds it open, :func:`set_aside` it, warn on ``logger`` (``note`` ends
    the warning) and ``attempt()`` once more, on a new file. Any other error propagates."""
    try:
        return attempt()
    except sqlite3.Error as exc:
        if not is_unusable(exc):
            raise
        if release is not None:
            release()
        aside = set_aside(path)
        logger.warning("the %s %s was unusable (%s): moved aside to %s and started anew%s",
                       schema.name, path, exc, aside, note)
        return attempt()
