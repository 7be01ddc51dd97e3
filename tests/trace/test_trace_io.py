"""The trace's I/O thread (trace/_io.py): the index rows and the record's fsyncs of a run made
while an event loop runs go there, in order. The loop is never held up by them, a run returns
only once its own rows are written, and a failing write never stops the ones after it."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from fastrlm import RLM
from fastrlm.events import RunFinished, RunStarted
from fastrlm.testing import ScriptedLM
from fastrlm.trace import TraceWriter, _index, _io
from fastrlm.trace._index import list_runs
from fastrlm.trace._paths import index_path

FINAL = "```repl\nFINAL('done')\n```"


def _rlm(home: Path) -> RLM:
    return RLM(ScriptedLM(lambda m: FINAL, model="scripted/root"),
               ScriptedLM(lambda m: "sub", model="scripted/sub"), sandbox="none", trace=home)


async def test_a_slow_index_write_never_holds_up_the_loop_and_the_run_waits_for_its_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate, waiting = threading.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    threads: list[str] = []
    write_all = _index.write_all

    def slow_write_all(path: Path, writes: list[_index.Write], **kwargs: Any) -> None:
        threads.append(threading.current_thread().name)
        loop.call_soon_threadsafe(waiting.set)  # held until the loop opens the gate
        assert gate.wait(30), "the loop never got to open the gate: it was held up"
        write_all(path, writes, **kwargs)

    monkeypatch.setattr(_index, "write_all", slow_write_all)

    async def open_gate() -> None:  # runs only if the loop is free while a row waits
        await waiting.wait()
        gate.set()

    opener = asyncio.create_task(open_gate())
    result = await _rlm(tmp_path).acompletion("q", context="c")
    await opener
    assert gate.is_set()
    assert set(threads) == {"fastrlm-trace-rows"}
    # the row is final when the run returns, read by another connection without a drain
    with sqlite3.connect(index_path(tmp_path)) as conn:
        [(stop,)] = conn.execute("SELECT stop_reason FROM runs WHERE run_id = ?",
                                 (result.trace_id,)).fetchall()
    conn.close()
    assert stop == "final"


def test_a_run_from_the_sync_facade_leaves_nothing_to_write_into_its_home(
        tmp_path: Path) -> None:
    import shutil

    home = tmp_path / "home"
    result = _rlm(home).completion("q", context="c")
    shutil.rmtree(home)  # what a TemporaryDirectory does right after the run
    assert _io.drain()
    assert not home.exists(), "a write queued by the run recreated its home after it returned"
    assert result.answer == "done"


def test_jobs_run_in_order_and_a_failing_one_stops_none_after_it(
        caplog: pytest.LogCaptureFixture) -> None:
    seen: list[int] = []

    def fail() -> None:
        raise RuntimeError("disk on fire")

    futures = [_io.later(lambda: seen.append(1)), _io.later(fail),
               _io.later(lambda: seen.append(2))]
    assert _io.drain()
    assert seen == [1, 2]
    assert all(f.done() for f in futures)
    assert any("a trace write failed" in r.getMessage() for r in caplog.records
               if r.levelno == logging.ERROR)


def test_without_a_running_loop_writes_are_made_at_once(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    handed: list[object] = []
    monkeypatch.setattr(_io, "later", handed.append)
    writer = TraceWriter(tmp_path)
    writer(RunStarted(run_id="r1", parent_run_id=None, depth=0, question="q", model="m",
                      sub_model="s", context={"type": "str", "total_chars": 1}, sandbox="none",
                      budget={}))
    writer(RunFinished(run_id="r1", depth=0, stop_reason="final", answer="a", iterations=1,
                       subcalls=0, usage={}, cost_usd=0.0, duration_s=0.1, error=None))
    assert handed == []
    with sqlite3.connect(index_path(tmp_path)) as conn:
        assert conn.execute("SELECT run_id, stop_reason FROM runs").fetchall() == [
            ("r1", "final")]
    conn.close()


async def test_a_waiter_cancelled_while_its_rows_are_written_leaves_the_io_thread_working(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cancelled run stops waiting for its rows; the write is made all the same, and the
    thread goes on (it used to die setting the result of the future the waiter cancelled)."""
    gate, waiting = threading.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    write_all = _index.write_all

    def slow_write_all(path: Path, writes: list[_index.Write], **kwargs: Any) -> None:
        loop.call_soon_threadsafe(waiting.set)
        assert gate.wait(30)
        write_all(path, writes, **kwargs)

    monkeypatch.setattr(_index, "write_all", slow_write_all)
    writer = TraceWriter(tmp_path)
    writer(RunStarted(run_id="r1", parent_run_id=None, depth=0, question="q", model="m",
                      sub_model="s", context={"type": "str", "total_chars": 1}, sandbox="none",
                      budget={}))
    waiter = asyncio.create_task(writer.settled("r1"))
    await waiting.wait()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    gate.set()
    assert await asyncio.to_thread(_io.drain)
    assert await asyncio.wrap_future(_io.later(lambda: None)) is None  # the thread serves on
    with sqlite3.connect(index_path(tmp_path)) as conn:  # and the row was written
        assert conn.execute("SELECT run_id FROM runs").fetchall() == [("r1",)]
    conn.close()


def test_a_lane_is_woken_only_when_it_waits_for_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each wake-up is a context switch that can take the CPU and the GIL from the event
    loop: jobs handed to a lane busy with another are found by it, not signalled; a lane
    waiting for work is woken once."""
    gate, busy = threading.Event(), threading.Event()

    def first() -> None:
        busy.set()
        gate.wait(30)

    held = _io.later(first, lane="test-wakeups")
    lane = _io._lanes["test-wakeups"]
    notified: list[int] = []
    notify = lane.work.notify
    monkeypatch.setattr(lane.work, "notify", lambda n=1: (notified.append(n), notify(n)))
    assert busy.wait(30)
    ran: list[int] = []
    queued = [_io.later(lambda i=i: ran.append(i), lane="test-wakeups") for i in range(50)]
    assert notified == []  # the lane is busy: it finds them when it looks again
    gate.set()
    for future in [held, *queued]:
        future.result(30)
    assert ran == list(range(50))  # in order
    for _ in range(3000):  # until the thread waits again (bounded: never a timing assertion)
        with _io._lock:
            if lane.waiting:
                break
        threading.Event().wait(0.01)
    assert lane.waiting
    _io.later(lambda: ran.append(50), lane="test-wakeups").result(30)
    assert notified == [1] and ran[-1] == 50


def test_the_io_threads_kept_connection_follows_the_index_file_it_writes(
        tmp_path: Path) -> None:
    """The I/O thread keeps its connection to the index between runs; an index overwritten
    with garbage or removed under it (by a user, or another process setting it aside) never
    takes a later run's row with it. (Each run under an event loop: the I/O thread writes.)"""
    rlm = _rlm(tmp_path)
    index = index_path(tmp_path)
    first = asyncio.run(rlm.acompletion("q1"))
    assert [r.run_id for r in list_runs(index)] == [first.trace_id]
    with open(index, "r+b") as damaged:  # the same file, now not a database
        damaged.write(b"not a database at all " * 400)
    second = asyncio.run(rlm.acompletion("q2"))
    assert [r.run_id for r in list_runs(index)] == [second.trace_id]  # a new index
    assert list(tmp_path.glob("index.sqlite.unusable-*"))  # the damaged one set aside
    index.unlink()
    third = asyncio.run(rlm.acompletion("q3"))
    assert [r.run_id for r in list_runs(index)] == [third.trace_id]
    assert {r.stop_reason for r in list_runs(index)} == {"final"}


def test_a_traces_folder_removed_between_runs_is_made_again_for_the_next(
        tmp_path: Path) -> None:
    """A run's trace and replay record are opened first and their folder made only when it is
    missing: one removed between two runs of one writer (a user clearing old traces) is made
    again, and the second run is traced whole."""
    import shutil

    rlm = _rlm(tmp_path)
    first = asyncio.run(rlm.acompletion("q1"))
    assert first.trace_path is not None
    folder = Path(first.trace_path).parent
    shutil.rmtree(folder)
    second = asyncio.run(rlm.acompletion("q2"))
    assert second.trace_path is not None and Path(second.trace_path).parent == folder
    assert Path(second.trace_path).read_text().count("\n") >= 3
    assert (folder / f"{second.trace_id}.record").stat().st_size > 0


#: A linger no test outlives: only a hurry (a waiter, a drain) ends it.
_FOREVER_S = 3600.0


@pytest.fixture
def lingering(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The trace's two lanes made to linger for ever once woken; hurried and drained at the
    end, so that no later test meets a lingering lane."""
    for name in ("rows", "fsync"):
        _io.later(lambda: None, lane=name)
    assert _io.drain(60)
    for name in ("rows", "fsync"):
        monkeypatch.setattr(_io._lanes[name], "linger_s", _FOREVER_S)
    yield
    monkeypatch.undo()
    assert _io.drain(60)


def _lingering_lane(name: str) -> Any:
    """The lane ``name`` once its woken thread lingers (bounded: never a timing assertion)."""
    lane = _io._lanes[name]
    for _ in range(3000):
        with _io._lock:
            if lane.lingering:
                return lane
        threading.Event().wait(0.01)
    raise AssertionError(f"the lane {name!r} never lingered")


def test_jobs_handed_to_a_lingering_lane_are_found_not_signalled_until_a_waiter_hurries(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a server's load, the lane woken for one run's write lingers, and the writes of
    the runs after it join that wake-up instead of each making one."""
    monkeypatch.setitem(_io.LINGER_S, "test-linger", _FOREVER_S)
    ran: list[int] = []
    first = _io.later(lambda: ran.append(0), lane="test-linger")
    lane = _lingering_lane("test-linger")
    notified: list[int] = []
    notify = lane.work.notify
    monkeypatch.setattr(lane.work, "notify", lambda n=1: (notified.append(n), notify(n)))
    queued = [_io.later(lambda i=i: ran.append(i), lane="test-linger") for i in range(1, 50)]
    assert notified == [] and ran == []  # found when the linger ends, not signalled
    _io.hurry()
    for future in [first, *queued]:
        future.result(60)
    assert ran == list(range(50))  # in order, after the hurry's one wake-up
    assert notified == [1]


async def test_a_run_never_waits_out_a_lanes_linger(tmp_path: Path, lingering: None) -> None:
    """A run's end waits for its own rows and hurries them: with lanes that linger for ever
    once woken, runs still end, their rows written, their records whole."""
    rlm = _rlm(tmp_path)
    for _ in range(3):
        result = await asyncio.wait_for(rlm.acompletion("q", context="c"), 60)
        assert result.answer == "done"
        row = _index_row(tmp_path, result.trace_id)  # read without a drain: no hurry here
        assert row == ("done", "final")
    again = await asyncio.wait_for(rlm.aresume(result.trace_id, context="c"), 60)
    assert again.answer == "done"  # its record was whole


def _index_row(home: Path, run_id: str) -> tuple[str, str]:
    conn = sqlite3.connect(index_path(home))
    try:
        answer, stop = conn.execute(
            "SELECT answer_preview, stop_reason FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
    finally:
        conn.close()
    return answer, stop


def test_an_urgent_job_is_not_held_by_a_lingering_lane(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(_io.LINGER_S, "test-urgent", _FOREVER_S)
    ran: list[str] = []
    lingered = _io.later(lambda: ran.append("row"), lane="test-urgent")
    _lingering_lane("test-urgent")
    _io.later(lambda: ran.append("file"), lane="test-urgent", urgent=True).result(60)
    assert lingered.done() and ran == ["row", "file"]  # in order, the lingering one first


async def test_a_runs_files_are_made_while_it_runs_even_when_the_lanes_linger(
        tmp_path: Path, lingering: None) -> None:
    """Lines and record entries wait in memory until their file is made: a server killed then
    loses them. Making a file never waits out a linger, so a run's files exist while it is
    still asking its model (what a killed session's next start replays from)."""
    asked, answer = asyncio.Event(), asyncio.Event()

    async def root(messages: Any) -> str:
        asked.set()
        await answer.wait()
        return FINAL

    rlm = RLM(ScriptedLM(root, model="scripted/root"),
              ScriptedLM(lambda m: "sub", model="scripted/sub"), sandbox="none", trace=tmp_path)
    run = asyncio.create_task(rlm.acompletion("q", context="c"))
    await asyncio.wait_for(asked.wait(), 60)
    traces = tmp_path / "traces"
    for _ in range(3000):  # until both files are made (bounded: never a timing assertion)
        made = sorted(p.suffix for p in traces.glob("*")) if traces.exists() else []
        if made == [".jsonl", ".record"]:
            break
        await asyncio.sleep(0.01)
    assert made == [".jsonl", ".record"]
    answer.set()
    assert (await asyncio.wait_for(run, 60)).answer == "done"
