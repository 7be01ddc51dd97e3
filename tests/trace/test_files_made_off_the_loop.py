"""A run's trace file and replay record are made on the trace's I/O thread while an event loop
runs (creating a file can cost the loop a millisecond in a folder where many were deleted
lately). What the run writes before its file is open waits, in order, and nothing is lost: not
when the run ends or is cancelled first, not when the file cannot be made (then it behaves as
it did when the file was made on the loop)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fastrlm import RLM
from fastrlm.events import (
    Event,
    RunFinished,
    RunStarted,
    SandboxStarted,
    SubcallFinished,
    SubcallStarted,
)
from fastrlm.testing import ScriptedLM
from fastrlm.trace import RecordFile, ReplayError, TraceWriter, _io, read_record, record_path
from fastrlm.trace import _record as record_module
from fastrlm.trace import _writer as writer_module
from fastrlm.trace._index import list_runs
from fastrlm.trace._lock import writer_alive
from fastrlm.trace._paths import index_path

FINAL = "```repl\nFINAL('done')\n```"


def _rlm(home: Path, root: Callable[..., Any] = lambda m: FINAL) -> RLM:
    return RLM(ScriptedLM(root, model="scripted/root"),
               ScriptedLM(lambda m: "sub", model="scripted/sub"), sandbox="none", trace=home)


def _start(run: str = "r") -> RunStarted:
    return RunStarted(run_id=run, parent_run_id=None, depth=0, question="q", model="m",
                      sub_model="s", context={"type": "str", "total_chars": 1}, sandbox="none",
                      budget={})


def _sub(i: int, run: str = "r") -> Event:
    if i % 2:
        return SubcallFinished(run_id=run, call_id=f"c{i // 2}", model="s", input_tokens=1,
                               output_tokens=1, cost_usd=0.0, latency_s=0.0, cached=False,
                               error=None, response_chars=1, response_preview="a")
    return SubcallStarted(run_id=run, call_id=f"c{i // 2}", model="s", prompt_chars=1,
                          prompt_sha256="x", prompt_preview="p")


def _finish(run: str = "r") -> RunFinished:
    return RunFinished(run_id=run, depth=0, stop_reason="final", answer="a", iterations=1,
                       subcalls=0, usage={}, cost_usd=0.0, duration_s=0.1, error=None)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _descriptors_on(path: Path) -> list[Path]:
    """This process's open descriptors on ``path`` (Linux)."""
    return [fd for fd in Path("/proc/self/fd").iterdir() if fd.resolve() == path]


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Holds the making of every trace file and record (on the I/O thread) until set."""
    opened = threading.Event()
    open_trace, create = writer_module._open_trace, record_module._create

    def held(make: Callable[[Path], Any]) -> Callable[[Path], Any]:
        def wait_then_make(path: Path) -> Any:
            assert opened.wait(30), "the test never let the file be made"
            return make(path)
        return wait_then_make

    monkeypatch.setattr(writer_module, "_open_trace", held(open_trace))
    monkeypatch.setattr(record_module, "_create", held(create))
    try:
        yield opened
    finally:
        opened.set()  # never leave an I/O thread waiting for a test that failed
        assert _io.drain()


async def test_the_trace_and_the_record_are_made_off_the_loops_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails on the old code, which made both on the event loop's thread."""
    made: dict[str, str] = {}
    hold, os_open = writer_module.hold_writer_lock, os.open

    def hold_writer_lock(handle: Any) -> bool:  # called once a trace file is open
        made["trace"] = threading.current_thread().name
        return hold(handle)

    def open_(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        if str(path).endswith(".record"):
            made["record"] = threading.current_thread().name
        return os_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(writer_module, "hold_writer_lock", hold_writer_lock)
    monkeypatch.setattr(os, "open", open_)
    result = await _rlm(tmp_path).acompletion("q", context="c")
    assert result.answer == "done"
    assert made == {"trace": "fastrlm-trace-rows", "record": "fastrlm-trace-rows"}
    assert threading.current_thread().name not in made.values()
    assert [e["type"] for e in _lines(Path(str(result.trace_path)))][-1] == "run.finished"
    assert [e["k"] for e in read_record(record_path(tmp_path / "traces", result.trace_id))
            ][0] == "head"


async def test_lines_written_while_the_file_is_made_arrive_whole_and_in_order(
        tmp_path: Path, gate: threading.Event) -> None:
    writer = TraceWriter(tmp_path)
    path = writer.path_for("r")
    writer(_start())
    for i in range(40):
        writer(_sub(i))
    writer(SandboxStarted(run_id="r", layer="none", unsafe=True, startup_s=0.0))
    assert not path.exists() and writer.open_runs == ["r"]  # still being made: held
    gate.set()
    await writer.settled("r")  # (the run's first row, made once its file is)
    assert writer_alive(path) is True  # held open by this writer while the run goes on
    for i in range(40, 60):
        writer(_sub(i))
    writer(_finish())
    await writer.settled("r")
    types = [e["type"] for e in _lines(path)]
    assert types == (["run.started"] + ["subcall.started", "subcall.finished"] * 20
                     + ["sandbox.started"] + ["subcall.started", "subcall.finished"] * 10
                     + ["run.finished"])
    calls = [e["call_id"] for e in _lines(path) if e["type"].startswith("subcall")]
    assert calls == [f"c{i // 2}" for i in range(60)]
    assert writer_alive(path) is False and writer.open_runs == []
    [row] = list_runs(index_path(tmp_path))
    assert (row.stop_reason, row.sandbox) == ("final", "none")


async def test_lines_written_while_the_held_ones_are_written_follow_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The I/O thread writes the held lines outside the lock: lines the run writes in that
    moment are held too and written after them, before the file is handed to the loop."""
    writing, go = threading.Event(), threading.Event()
    open_trace = writer_module._open_trace

    class FirstWriteWaits:
        def __init__(self, handle: Any) -> None:
            self.handle, self.writes = handle, 0

        def write(self, text: str) -> int:
            self.writes += 1
            if self.writes == 1:
                writing.set()
                assert go.wait(30), "the test never let the first write finish"
            return int(self.handle.write(text))

        def __getattr__(self, name: str) -> Any:
            return getattr(self.handle, name)

    monkeypatch.setattr(writer_module, "_open_trace", lambda p: FirstWriteWaits(open_trace(p)))
    writer = TraceWriter(tmp_path)
    try:
        writer(_start())
        writer(_sub(0))
        assert await asyncio.to_thread(writing.wait, 30)  # the I/O thread writes those two
        writer(_sub(1))  # held meanwhile
        writer(_sub(2))
    finally:
        go.set()
    await writer.settled("r")
    writer(_sub(3))  # the loop's own now
    writer(_finish())
    await writer.settled("r")
    assert [(e["type"], e.get("call_id")) for e in _lines(writer.path_for("r"))] == [
        ("run.started", None), ("subcall.started", "c0"), ("subcall.finished", "c0"),
        ("subcall.started", "c1"), ("subcall.finished", "c1"), ("run.finished", None)]


async def test_a_run_that_ends_before_its_file_is_made_is_written_whole_and_closed(
        tmp_path: Path, gate: threading.Event) -> None:
    writer = TraceWriter(tmp_path)
    path = writer.path_for("r")
    writer(_start())
    writer(_sub(0))
    writer(_finish())
    assert writer.open_runs == [] and not path.exists()
    gate.set()
    await writer.settled("r")
    assert [e["type"] for e in _lines(path)] == ["run.started", "subcall.started",
                                                  "run.finished"]
    assert writer_alive(path) is False  # closed: a viewer shows it finished, not running
    [row] = list_runs(index_path(tmp_path))
    assert row.stop_reason == "final"


async def test_a_run_cancelled_before_its_files_are_made_ends_with_both_whole(
        tmp_path: Path, gate: threading.Event) -> None:
    """A cancelled run does not wait for its index rows, but it ends only once its trace and
    record hold what it wrote (as when they were written on the loop): a reader right after
    it sees the whole trace, ended as cancelled and no longer held open."""
    asked = asyncio.Event()

    async def never(messages: object) -> str:
        asked.set()
        await asyncio.Event().wait()
        return FINAL

    rlm = _rlm(tmp_path, never)
    task = asyncio.create_task(rlm.acompletion("q", context="c"))
    await asked.wait()
    task.cancel()
    for _ in range(20):  # (the files cannot be made before the gate opens)
        await asyncio.sleep(0)
    assert not task.done(), "the cancelled run ended before its files held its lines"
    traces = tmp_path / "traces"
    assert not traces.exists()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    [trace] = traces.glob("*.jsonl")  # no drain: the run's end waited for both files
    events = _lines(trace)
    assert events[0]["type"] == "run.started"
    assert (events[-1]["type"], events[-1]["stop_reason"]) == ("run.finished", "cancelled")
    assert writer_alive(trace) is False
    record = record_path(traces, trace.stem)
    assert [e["k"] for e in read_record(record)] == ["head"]
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert await asyncio.to_thread(_io.drain)
    [row] = list_runs(index_path(tmp_path))
    assert row.stop_reason == "cancelled"


async def test_a_record_made_off_the_loop_keeps_every_entry_in_order_and_is_private(
        tmp_path: Path, gate: threading.Event) -> None:
    path = tmp_path / "new" / "r.record"  # its folder made only because it is missing
    record = RecordFile(path)
    for n in range(5):
        record.append({"k": "call", "n": n}, durable=n == 4)
    assert not path.exists()
    gate.set()
    await record.settled()
    record.append({"k": "call", "n": 5}, durable=True)  # written at once now
    assert [e["n"] for e in read_record(path)] == list(range(6))
    record.close()
    await record.settled()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_a_record_closed_before_it_is_made_is_written_whole_then_closed(
        tmp_path: Path, gate: threading.Event) -> None:
    path = tmp_path / "r.record"
    record = RecordFile(path)
    record.append({"k": "head"}, durable=True)
    record.append({"k": "turn"})
    record.close()
    record.append({"k": "late"})  # after close: dropped, as on a closed file
    gate.set()
    await record.settled()
    assert [e["k"] for e in read_record(path)] == ["head", "turn"]
    assert _io.drain()
    assert not _descriptors_on(path), "left open"


def test_without_a_running_loop_a_record_that_cannot_be_made_raises_at_once(
        tmp_path: Path) -> None:
    (tmp_path / "traces").write_text("a file where the folder should be")
    with pytest.raises(NotADirectoryError):
        RecordFile(tmp_path / "traces" / "r.record")


async def test_a_home_with_a_file_where_the_traces_folder_should_be_stops_only_the_trace(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """As when both files were made on the loop: one warning each, the run answers, and the
    run has no index row (its trace could not be made)."""
    (tmp_path / "traces").write_text("a file where the folder should be")
    with caplog.at_level(logging.WARNING, logger="fastrlm"):
        result = await _rlm(tmp_path).acompletion("q", context="c")
    assert result.answer == "done"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum(f"trace for run {result.trace_id} stopped" in w for w in warnings) == 1
    assert sum(f"no replay record for run {result.trace_id}" in w for w in warnings) == 1
    assert list_runs(index_path(tmp_path)) == []
    assert (tmp_path / "traces").is_file()


async def test_a_record_that_cannot_be_made_warns_once_and_the_run_cannot_be_resumed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The record alone cannot be made (the trace can): the same warning as when it was made
    on the loop, the run goes on, and a resume says it has no record."""
    os_open = os.open

    def open_(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        if str(path).endswith(".record"):
            raise PermissionError(13, "Permission denied", str(path))
        return os_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    rlm = _rlm(tmp_path)
    with caplog.at_level(logging.WARNING, logger="fastrlm"):
        result = await rlm.acompletion("q", context="c")
    assert result.answer == "done"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w for w in warnings if "replay record" in w] == [
        f"no replay record for run {result.trace_id} ([Errno 13] Permission denied: "
        f"'{record_path(tmp_path / 'traces', result.trace_id)}'): it cannot be resumed"]
    assert not record_path(tmp_path / "traces", result.trace_id).exists()
    monkeypatch.setattr(os, "open", os_open)
    with pytest.raises(ReplayError, match="no replay record"):
        await rlm.aresume(result.trace_id, context="c")


async def test_a_finished_run_resumes_at_once_from_the_record_made_off_the_loop(
        tmp_path: Path) -> None:
    rlm = _rlm(tmp_path)
    first = await rlm.acompletion("q", context="c")
    again = await rlm.aresume(first.trace_id, context="c")  # no drain: the run settled it
    assert again.answer == "done"


async def test_a_run_ends_without_waiting_for_its_records_fsync(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The record is made on the lane of the rows (which a run's end waits for), its head's
    fsync handed on to the fsync lane: a slow disk's fsync never holds up a run's end."""
    release = threading.Event()
    synced: list[int] = []
    given_up: list[int] = []  # a run that waited for an fsync made it give up
    fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        if not release.wait(30):
            given_up.append(fd)
            return
        fsync(fd)
        synced.append(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    try:
        result = await _rlm(tmp_path).acompletion("q", context="c")
        assert result.answer == "done"
        assert synced == [], "the run waited for its record's fsync"
    finally:
        release.set()
        assert await asyncio.to_thread(_io.drain)
    assert synced and given_up == [], "the run waited for its record's fsync"


class _SlowHeldWrites:
    """``os`` as the record module sees it, but its I/O thread's writes of the held entries
    (made under the record's lock) first run ``meanwhile`` on another thread."""

    def __init__(self, meanwhile: Callable[[], None]) -> None:
        self._meanwhile = meanwhile

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def write(self, fd: int, data: bytes) -> int:
        if threading.current_thread() is not threading.main_thread():
            meanwhile, self._meanwhile = self._meanwhile, lambda: None
            meanwhile()
        return os.write(fd, data)


async def test_an_entry_written_while_the_held_ones_are_written_is_kept(
        tmp_path: Path, gate: threading.Event, monkeypatch: pytest.MonkeyPatch) -> None:
    """The I/O thread writes the held entries under the record's lock, then hands the file
    over. An entry the engine writes in that moment must wait for the lock and follow them;
    it was dropped when the engine read the record's state outside the lock (no file yet,
    nothing held any more: "it could not be made")."""
    path = tmp_path / "r.record"
    record = RecordFile(path)
    record.append({"k": "head"})
    late: list[threading.Thread] = []

    def append_meanwhile() -> None:
        thread = threading.Thread(target=record.append, args=({"k": "turn"},))
        thread.start()
        thread.join(0.5)  # the fixed code waits for the lock held here: it is still going
        late.append(thread)

    monkeypatch.setattr(record_module, "os", _SlowHeldWrites(append_meanwhile))
    gate.set()
    await record.settled()
    await asyncio.to_thread(late[0].join, 30)
    assert [e["k"] for e in read_record(path)] == ["head", "turn"]
    record.close()


async def test_a_run_cancelled_while_its_rows_are_written_still_ends_with_both_files_whole(
        tmp_path: Path, gate: threading.Event) -> None:
    """The run has its answer and waits for its files and rows when it is cancelled (a client
    that hangs up just then): it still ends only once both files are made and hold its lines,
    never leaving the I/O thread to make them after it has returned (a test's temporary home
    removed then found a file come back)."""
    rlm = _rlm(tmp_path)
    task = asyncio.create_task(rlm.acompletion("q", context="c"))
    traces = tmp_path / "traces"
    for _ in range(1000):  # until the run waits for its files (held at the gate)
        await asyncio.sleep(0)
        if task.done():
            break
    assert not task.done() and not traces.exists()
    task.cancel()
    for _ in range(20):
        await asyncio.sleep(0)
    assert not task.done(), "the cancelled run ended before its files held its lines"
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    [trace] = traces.glob("*.jsonl")  # made before the run ended, not after
    assert _lines(trace)[-1]["type"] == "run.finished"
    assert [e["k"] for e in read_record(record_path(traces, trace.stem))][0] == "head"
    assert await asyncio.to_thread(_io.drain)
