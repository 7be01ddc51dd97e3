from __future__ import annotations

import gc
import json
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from fastrlm._foundation.events import (
    ChildRunFinished,
    ChildRunStarted,
    CodeExecuted,
    Event,
    FinalAnswer,
    IterationStarted,
    ModelResponse,
    RunFinished,
    RunStarted,
    SandboxStarted,
    SubcallFinished,
    SubcallStarted,
)
from fastrlm.cli import cli
from fastrlm.trace import (
    TraceNotFoundError,
    TraceWriter,
    _index,
    list_runs,
    read_trace,
    render_transcript,
    resolve_run,
)
from fastrlm.trace._paths import index_path

CONTEXT = {"type": "str", "total_chars": 1000, "n_chunks": 1, "sha256": "ab" * 32}


def started(run_id: str, parent: str | None = None, depth: int = 0, ts: float = 1.0) -> RunStarted:
    return RunStarted(
        run_id=run_id,
        depth=depth,
        ts=ts,
        parent_run_id=parent,
        question="How many?",
        model="scripted/root",
        sub_model="scripted/sub",
        context=CONTEXT,
        sandbox="bwrap",
        budget={"max_usd": 1.0, "max_subcalls": None},
    )


def finished(run_id: str, depth: int = 0, stop: str = "final") -> RunFinished:
    return RunFinished(
        run_id=run_id,
        depth=depth,
        stop_reason=stop,
        answer="42",
        iterations=2,
        subcalls=3,
        usage={"input_tokens": 100, "output_tokens": 20},
        cost_usd=0.01,
        duration_s=1.5,
        error=None,
    )


def a_run(run_id: str = "run1", *, prompt: str | None = None) -> list[Event]:
    return [
        started(run_id),
        IterationStarted(run_id=run_id, iteration=1, max_iterations=30),
        ModelResponse(
            run_id=run_id,
            iteration=1,
            model="scripted/root",
            text="```repl\nprint(1)\n```",
            input_tokens=10,
            output_tokens=5,
            cost_usd=0.0,
            latency_s=0.1,
        ),
        SubcallStarted(
            run_id=run_id,
            call_id="c1",
            model="scripted/sub",
            prompt_chars=9,
            prompt_sha256="cd" * 32,
            prompt_preview="the promp",
            prompt=prompt,
        ),
        SubcallFinished(
            run_id=run_id,
            call_id="c1",
            model="scripted/sub",
            input_tokens=3,
            output_tokens=1,
            cost_usd=0.0,
            latency_s=0.01,
            cached=False,
            error=None,
            response_chars=2,
            response_preview="ok",
        ),
        CodeExecuted(
            run_id=run_id,
            iteration=1,
            block=1,
            code="print(1)",
            output="1\n",
            output_chars=2,
            error=None,
            duration_s=0.01,
        ),
        FinalAnswer(run_id=run_id, source="FINAL", answer_chars=2, answer_preview="42"),
        finished(run_id),
    ]


def test_one_jsonl_per_top_level_run_with_one_line_per_event(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path)
    events = a_run()
    for ev in events:
        writer(ev)
    path = writer.path_for("run1")
    assert path == tmp_path / "traces" / "run1.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [d["type"] for d in lines] == [ev.type for ev in events]
    assert writer.open_runs == []
    assert writer.started_runs == ["run1"]  # kept after the finish: the live view finds it


def test_each_event_is_on_disk_before_the_next_arrives(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path)
    events = a_run()
    for n, ev in enumerate(events[:-1], start=1):
        writer(ev)
        assert len(writer.path_for("run1").read_text().splitlines()) == n


def test_child_run_events_go_into_the_top_level_file(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path)
    writer(started("root"))
    writer(ChildRunStarted(run_id="root", child_run_id="kid", prompt_preview="p", model="m"))
    writer(started("kid", parent="root", depth=1))
    writer(finished("kid", depth=1))
    writer(
        ChildRunFinished(
            run_id="root", child_run_id="kid", stop_reason="final", cost_usd=0, answer_preview="a"
        )
    )
    writer(finished("root"))
    assert not (tmp_path / "traces" / "kid.jsonl").exists()
    assert writer.path_for("kid") == writer.path_for("root")
    trace = read_trace(writer.path_for("root"))
    assert [e["run_id"] for e in trace.events] == ["root", "root", "kid", "kid", "root", "root"]
    [row] = list_runs(index_path(tmp_path))
    assert row.run_id == "root"


def test_full_prompts_are_dropped_unless_asked_for(tmp_path: Path) -> None:
    for full, expected in ((False, None), (True, "the whole prompt")):
        writer = TraceWriter(tmp_path / str(full), full_prompts=full)
        for ev in a_run(prompt="the whole prompt"):
            writer(ev)
        trace = read_trace(writer.path_for("run1"))
        [sub] = [e for e in trace.events if e["type"] == "subcall.started"]
        assert sub["prompt"] == expected
        assert sub["prompt_preview"] == "the promp"


def test_index_row_written_at_start_and_completed_at_finish(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path)
    events = a_run()
    writer(events[0])
    [row] = list_runs(index_path(tmp_path))
    assert (row.stop_reason, row.finished) == ("running", False)
    for ev in events[1:]:
        writer(ev)
    [row] = list_runs(index_path(tmp_path))
    assert row.stop_reason == "final"
    assert row.question == "How many?"
    assert (row.model, row.sub_model, row.sandbox) == ("scripted/root", "scripted/sub", "bwrap")
    assert (row.cost_usd, row.iterations, row.subcalls) == (0.01, 2, 3)
    assert (row.input_tokens, row.output_tokens) == (100, 20)
    assert row.context_sha256 == "ab" * 32
    assert row.answer_preview == "42"
    assert row.trace_path == str(writer.path_for("run1"))


def test_index_writes_make_and_delete_no_file_beside_the_index(tmp_path: Path) -> None:
    # SQLite's default journal was made and deleted at every commit: two inodes freed a run,
    # which ext4 then skips one by one when the next trace file is made in that directory.
    writer = TraceWriter(tmp_path)
    for event in a_run("run1"):
        writer(event)
    journal = index_path(tmp_path).with_name(index_path(tmp_path).name + "-journal")
    kept = journal.stat().st_ino  # left in place after the commits, its header zeroed
    for run in ("run2", "run3"):
        for event in a_run(run):
            writer(event)
    assert journal.stat().st_ino == kept
    assert [r.run_id for r in list_runs(index_path(tmp_path))] == ["run3", "run2", "run1"]
    _index.delete_runs(index_path(tmp_path), list_runs(index_path(tmp_path))[:1])
    assert journal.stat().st_ino == kept
    assert [r.run_id for r in list_runs(index_path(tmp_path))] == ["run2", "run1"]


def test_close_records_cancellation_of_open_runs(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path)
    for ev in a_run()[:3]:
        writer(ev)
    writer.close("cancelled", error="interrupted")
    trace = read_trace(writer.path_for("run1"))
    assert trace.finished is not None
    assert trace.finished["stop_reason"] == "cancelled"
    [row] = list_runs(index_path(tmp_path))
    assert (row.stop_reason, row.error) == ("cancelled", "interrupted")


def test_a_cut_last_line_is_skipped_by_the_reader(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path)
    for ev in a_run()[:4]:
        writer(ev)
    with open(writer.path_for("run1"), "a") as handle:
        handle.write('{"type": "code.exec')
    trace = read_trace(writer.path_for("run1"))
    assert len(trace.events) == 4
    assert trace.truncated_lines == 1
    text = render_transcript(trace)
    assert "still running" in text  # this writer still holds the run open
    assert "1 unreadable line" in text
    del writer  # its handles close, as a killed process's do
    gc.collect()
    assert "did not finish" in render_transcript(read_trace(trace.path))


def test_writer_never_raises_into_the_engine(tmp_path: Path) -> None:
    blocker = tmp_path / "home"
    blocker.write_text("a file where the home directory should be")
    writer = TraceWriter(blocker)
    for ev in a_run():
        writer(ev)  # logged and dropped


def test_runs_listed_newest_first(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path)
    for i, ts in enumerate((5.0, 9.0, 7.0)):
        writer(started(f"r{i}", ts=ts))
        writer(finished(f"r{i}"))
    assert [r.run_id for r in list_runs(index_path(tmp_path))] == ["r1", "r2", "r0"]
    assert [r.run_id for r in list_runs(index_path(tmp_path), limit=1)] == ["r1"]


def test_resolve_run_by_prefix_last_offset_and_path(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path)
    for run_id, ts in (("abc111", 1.0), ("abd222", 2.0)):
        writer(started(run_id, ts=ts))
        writer(finished(run_id))
    assert resolve_run("abc", tmp_path).name == "abc111.jsonl"
    assert resolve_run("last", tmp_path).name == "abd222.jsonl"
    assert resolve_run("-2", tmp_path).name == "abc111.jsonl"
    assert resolve_run("2", tmp_path).name == "abc111.jsonl"
    path = writer.path_for("abc111")
    assert resolve_run(str(path), tmp_path) == path
    with pytest.raises(TraceNotFoundError, match="matches 2 runs"):
        resolve_run("ab", tmp_path)
    with pytest.raises(TraceNotFoundError, match="no run matches"):
        resolve_run("zzz", tmp_path)
    with pytest.raises(TraceNotFoundError, match="there is no run"):
        resolve_run("-3", tmp_path)


def test_resolve_run_finds_a_trace_the_index_never_saw(tmp_path: Path) -> None:
    (tmp_path / "traces").mkdir()
    (tmp_path / "traces" / "orphan99.jsonl").write_text("")
    assert resolve_run("orphan", tmp_path).name == "orphan99.jsonl"


def test_transcript_shows_question_code_output_subcalls_and_outcome(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path)
    for ev in a_run():
        writer(ev)
    text = render_transcript(read_trace(writer.path_for("run1")), subcalls=True)
    for expected in (
        "Run run1",
        "question: How many?",
        "iteration 1/30",
        "print(1)",
        "sub-calls: 1 (0 failed, 0 from cache)",
        "· c1 scripted/sub: ok",
        "answer delivered via FINAL",
        "finished: final",
        "42",
    ):
        assert expected in text
    assert "did not finish" not in text


def test_index_records_the_sandbox_layer_really_in_force(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path)
    writer(started("run1"))
    writer(SandboxStarted(run_id="run1", layer="landlock+seccomp", unsafe=False, startup_s=0.1))
    writer(finished("run1"))
    [row] = list_runs(index_path(tmp_path))
    assert row.sandbox == "landlock+seccomp"
    text = render_transcript(read_trace(writer.path_for("run1")))
    assert "sandbox landlock+seccomp ready in 0.10s" in text


def test_transcript_shows_anomalies_failed_turns_and_what_limited_the_run(
        tmp_path: Path) -> None:
    from dataclasses import replace

    from fastrlm._foundation.events import ModelCallFailed

    writer = TraceWriter(tmp_path)
    lie = SubcallFinished(
        run_id="run1", call_id="c7", model="scripted/sub", input_tokens=10,
        output_tokens=2_000_000, cost_usd=64.0, latency_s=0.1, cached=False, error=None,
        response_chars=2, response_preview="ok", attempts=1,
        anomaly="reported 2000000 completion tokens for a request capped at max_tokens=1000")
    failed = ModelCallFailed(run_id="run1", iteration=2, model="scripted/root",
                             error="ProviderResponseError: HTTP 500", input_tokens=300,
                             output_tokens=0, cost_usd=0.0009, attempts=3)
    done = replace(finished("run1", stop="budget_usd"), limited_by="budget_usd",
                   subcalls_refused=4, subcalls_failed=1)
    for ev in (started("run1"), lie, failed, done):
        writer(ev)
    text = render_transcript(read_trace(writer.path_for("run1")))
    assert "provider anomaly in c7: reported 2000000 completion tokens" in text
    assert "model scripted/root failed after 3 attempt(s) ($0.0009)" in text
    assert "limited by budget_usd: 4 sub-call(s) refused, 1 failed" in text


# -- the index is a cache: a broken one never cuts a trace short (issue #23) ---------------


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00\xffnot a database at all" * 500)


def _truncated(path: Path) -> None:
    writer = TraceWriter(path.parent)
    for n in range(40):  # enough rows for several pages
        for event in a_run(f"old{n}"):
            writer(event)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    for trace in (path.parent / "traces").iterdir():
        trace.unlink()


def _wrong_layout(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE runs (id INTEGER, note TEXT)")
        conn.execute("PRAGMA user_version = 1")
    conn.close()


BROKEN: dict[str, Callable[[Path], None]] = {
    "garbage": _garbage, "truncated": _truncated, "wrong_layout": _wrong_layout,
}


def _write_one_run(home: Path) -> Path:
    writer = TraceWriter(home)
    for event in a_run("run1"):
        writer(event)
    return writer.path_for("run1")


def _index_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "fastrlm.trace" and r.levelno == logging.WARNING]


@pytest.mark.parametrize("damage", sorted(BROKEN))
def test_a_broken_index_is_set_aside_once_and_the_trace_is_whole(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str) -> None:
    index = index_path(tmp_path)
    index.parent.mkdir(parents=True, exist_ok=True)
    BROKEN[damage](index)
    caplog.clear()
    trace = read_trace(_write_one_run(tmp_path))
    assert [e["type"] for e in trace.events] == [e.type for e in a_run("run1")]
    [warning] = _index_warnings(caplog)
    assert "moved aside" in warning and "traces are intact" in warning
    [aside] = [p for p in tmp_path.glob("index.sqlite.unusable-*")
               if not p.name.endswith("-journal")]  # its journal went aside with it
    assert aside.stat().st_size > 0
    [row] = list_runs(index)  # the new index has the run, finished
    assert (row.run_id, row.stop_reason) == ("run1", "final")
    listed = CliRunner().invoke(cli, ["runs"], env={"FASTRLM_HOME": str(tmp_path)})
    assert listed.exit_code == 0 and "run1" in listed.output


def test_a_locked_index_is_skipped_with_one_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    index = index_path(tmp_path)
    _write_one_run(tmp_path)  # a valid index
    monkeypatch.setattr(_index, "BUSY_TIMEOUT_S", 0.0)
    holder = sqlite3.connect(index, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        caplog.clear()
        writer = TraceWriter(tmp_path)
        for event in a_run("run2"):
            writer(event)
    finally:
        holder.close()
    trace = read_trace(writer.path_for("run2"))
    assert [e["type"] for e in trace.events] == [e.type for e in a_run("run2")]
    [warning] = _index_warnings(caplog)
    assert "database is locked" in warning and "still written whole" in warning
    assert list(tmp_path.glob("index.sqlite.unusable-*")) == []  # busy is not broken


def test_an_index_from_a_newer_fastrlm_is_left_alone_and_bypassed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    index = index_path(tmp_path)
    _write_one_run(tmp_path)
    with sqlite3.connect(index) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    caplog.clear()
    writer = TraceWriter(tmp_path)
    for run in ("run2", "run3"):
        for event in a_run(run):
            writer(event)
    assert len(read_trace(writer.path_for("run3")).events) == len(a_run("run3"))
    [warning] = _index_warnings(caplog)
    assert "newer fastrlm" in warning
    assert list(tmp_path.glob("index.sqlite.unusable-*")) == []


def test_an_unreadable_index_says_what_to_do_and_ids_still_resolve(tmp_path: Path) -> None:
    path = _write_one_run(tmp_path)
    _garbage(index_path(tmp_path))
    listed = CliRunner().invoke(cli, ["runs"], env={"FASTRLM_HOME": str(tmp_path)})
    assert listed.exit_code == 1
    assert "cannot be read" in listed.output and "move the file aside" in listed.output
    assert resolve_run("run1", tmp_path) == path  # the trace file is found without the index
    shown = CliRunner().invoke(cli, ["show", "last"], env={"FASTRLM_HOME": str(tmp_path)})
    assert shown.exit_code == 2 and "cannot be read" in shown.output
    assert json.loads(path.read_text().splitlines()[0])["type"] == "run.started"
