"""The run index and the sub-call cache carry a schema version: old files are upgraded in
place with their rows intact, files from a newer fastrlm are refused with a clear error."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from fastrlm import ConfigurationError, TokenUsage
from fastrlm.lm import LMResponse, SubcallCache
from fastrlm.lm._cache import SCHEMA as CACHE_SCHEMA
from fastrlm.trace._index import SCHEMA as INDEX_SCHEMA
from fastrlm.trace._index import list_runs, record_start, update_run

# The layouts that fastrlm wrote before schemas were versioned (user_version 0).
UNVERSIONED_INDEX = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, started_at REAL NOT NULL, finished_at REAL,
    question TEXT NOT NULL, model TEXT NOT NULL, sub_model TEXT NOT NULL,
    sandbox TEXT NOT NULL, context_sha256 TEXT NOT NULL, context_chars INTEGER NOT NULL,
    stop_reason TEXT NOT NULL, cost_usd REAL NOT NULL DEFAULT 0, duration_s REAL,
    iterations INTEGER NOT NULL DEFAULT 0, subcalls INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
    answer_preview TEXT NOT NULL DEFAULT '', error TEXT, trace_path TEXT NOT NULL
);
CREATE INDEX runs_started ON runs (started_at);
INSERT INTO runs VALUES ('old1', 5.0, 9.0, 'q?', 'openai/gpt-5', 'openai/gpt-5-mini', 'bwrap',
    'abc', 10, 'final', 0.25, 4.0, 3, 7, 100, 20, 'the answer', NULL, '/t/old1.jsonl');
"""

UNVERSIONED_CACHE = """
CREATE TABLE subcalls (key TEXT PRIMARY KEY, model TEXT NOT NULL, response TEXT NOT NULL,
    created_at REAL NOT NULL);
"""


def _version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def _write(path: Path, script: str, user_version: int = 0) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.executescript(script)
        conn.execute(f"PRAGMA user_version = {user_version}")
        conn.commit()
    finally:
        conn.close()


def _row(run_id: str, started_at: float) -> dict[str, object]:
    return {
        "run_id": run_id,
        "started_at": started_at,
        "question": "why?",
        "model": "m",
        "sub_model": "s",
        "sandbox": "none",
        "context_sha256": "h",
        "context_chars": 1,
        "trace_path": f"/t/{run_id}.jsonl",
    }


def test_a_new_index_is_created_at_the_current_version(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    record_start(path, _row("r1", 1.0))
    assert _version(path) == INDEX_SCHEMA.version >= 1
    assert [r.run_id for r in list_runs(path)] == ["r1"]


def test_an_unversioned_index_is_upgraded_with_its_rows_intact(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    _write(path, UNVERSIONED_INDEX)
    (old,) = list_runs(path)
    assert (old.run_id, old.answer_preview, old.subcalls, old.cost_usd) == (
        "old1",
        "the answer",
        7,
        0.25,
    )
    assert _version(path) == INDEX_SCHEMA.version
    record_start(path, _row("new", 10.0))
    assert [r.run_id for r in list_runs(path)] == ["new", "old1"]


def test_an_older_index_missing_columns_gains_them_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    _write(
        path,
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, started_at REAL NOT NULL, "
        "question TEXT NOT NULL, trace_path TEXT NOT NULL);"
        "INSERT INTO runs VALUES ('ancient', 1.0, 'q', '/t/a.jsonl');",
    )
    (old,) = list_runs(path)
    assert (old.run_id, old.stop_reason, old.subcalls, old.error) == (
        "ancient",
        "running",
        0,
        None,
    )
    update_run(path, "ancient", {"stop_reason": "final", "answer_preview": "ok"})
    assert list_runs(path)[0].answer_preview == "ok"


def test_an_index_from_a_newer_fastrlm_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    _write(path, UNVERSIONED_INDEX, user_version=INDEX_SCHEMA.version + 1)
    with pytest.raises(ConfigurationError, match=r"newer fastrlm.*upgrade fastrlm") as info:
        list_runs(path)
    assert str(path) in str(info.value)
    assert _version(path) == INDEX_SCHEMA.version + 1
    with pytest.raises(ConfigurationError):
        record_start(path, _row("r2", 2.0))


def test_many_threads_opening_one_old_index_upgrade_it_once(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    _write(path, UNVERSIONED_INDEX)
    errors: list[BaseException] = []

    def start(i: int) -> None:
        try:
            record_start(path, _row(f"t{i}", float(i)))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(list_runs(path, limit=None)) == 9
    assert _version(path) == INDEX_SCHEMA.version


def _response() -> LMResponse:
    return LMResponse("cached answer", TokenUsage(10, 2), "openai/gpt-5-mini", latency_s=0.1)


def test_an_unversioned_cache_is_upgraded_and_still_answers(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    _write(path, UNVERSIONED_CACHE)

    async def go() -> LMResponse | None:
        with SubcallCache(path) as cache:
            await cache.put("k", _response())
        with SubcallCache(path) as cache:
            return await cache.get("k")

    hit = asyncio.run(go())
    assert hit is not None and hit.text == "cached answer" and hit.cached
    assert _version(path) == CACHE_SCHEMA.version


def test_a_cache_from_a_newer_fastrlm_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    _write(path, UNVERSIONED_CACHE, user_version=CACHE_SCHEMA.version + 5)
    cache = SubcallCache(path)
    with pytest.raises(ConfigurationError, match=r"sub-call cache .* newer fastrlm.*FASTRLM_HOME"):
        asyncio.run(cache.get("k"))
    cache.close()
    assert _version(path) == CACHE_SCHEMA.version + 5


def test_a_versioned_file_runs_each_migration_step_in_order(tmp_path: Path) -> None:
    from fastrlm._foundation.schema import Schema, ensure_schema

    steps: list[int] = []

    def v1_to_v2(conn: sqlite3.Connection) -> None:
        steps.append(1)
        conn.execute("ALTER TABLE notes ADD COLUMN tag TEXT NOT NULL DEFAULT 'none'")

    def v2_to_v3(conn: sqlite3.Connection) -> None:
        steps.append(2)
        conn.execute("UPDATE notes SET tag = upper(tag)")

    path = tmp_path / "notes.sqlite"
    _write(
        path,
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);"
        "INSERT INTO notes VALUES (1, 'hi');",
        user_version=1,
    )
    schema = Schema(
        name="notes",
        version=3,
        table="notes",
        columns=(("id", "INTEGER PRIMARY KEY"), ("body", "TEXT"), ("tag", "TEXT")),
        migrations={1: v1_to_v2, 2: v2_to_v3},
    )
    conn = sqlite3.connect(path)
    try:
        ensure_schema(conn, schema, path)
        ensure_schema(conn, schema, path)  # already current: nothing runs twice
        assert conn.execute("SELECT body, tag FROM notes").fetchall() == [("hi", "NONE")]
    finally:
        conn.close()
    assert steps == [1, 2] and _version(path) == 3


def test_a_failed_migration_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    from fastrlm._foundation.schema import Schema, ensure_schema

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE notes ADD COLUMN extra TEXT")
        raise RuntimeError("disk on fire")

    path = tmp_path / "notes.sqlite"
    _write(path, "CREATE TABLE notes (id INTEGER PRIMARY KEY);", user_version=1)
    schema = Schema("notes", 2, "notes", (("id", "INTEGER PRIMARY KEY"),), migrations={1: broken})
    conn = sqlite3.connect(path)
    try:
        with pytest.raises(RuntimeError, match="disk on fire"):
            ensure_schema(conn, schema, path)
        columns = [row[1] for row in conn.execute("PRAGMA table_info(notes)")]
    finally:
        conn.close()
    assert columns == ["id"] and _version(path) == 1


def test_a_version_1_index_gains_the_session_columns_with_its_rows_intact(
        tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    _write(path, UNVERSIONED_INDEX, user_version=1)
    (old,) = list_runs(path)
    assert (old.run_id, old.cost_usd, old.session_id, old.session_question) == (
        "old1", 0.25, None, 0)
    assert _version(path) == INDEX_SCHEMA.version == 2
    record_start(path, {**_row("new", 10.0), "session_id": "s1", "session_question": 2})
    new, _ = list_runs(path)
    assert (new.session_id, new.session_question) == ("s1", 2)
