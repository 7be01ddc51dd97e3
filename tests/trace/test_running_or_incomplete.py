"""A running run is shown as running; "incomplete" only once no process writes its trace.

The writer holds a lock on the trace while its run is open (``trace/_lock.py``). The adversary
here is a real process killed with SIGKILL mid-run (no ``run.finished``, no clean-up of its
own), and a copy of a running trace (another machine: nobody writes the copy)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastrlm.trace import read_trace, render_html
from fastrlm.trace._html import render_parts
from fastrlm.trace._live import LiveView
from fastrlm.trace._lock import writer_alive

#: A process that writes the start of a run through TraceWriter, says where, and waits.
WRITER = """
import sys
from pathlib import Path
from fastrlm._foundation.events import CodeExecuted, IterationStarted, RunStarted
from fastrlm.trace import TraceWriter

writer = TraceWriter(Path(sys.argv[1]))
writer(RunStarted(run_id="run1", parent_run_id=None, question="still going?", model="m",
                  sub_model="s", context={}, sandbox="none", budget={}))
writer(IterationStarted(run_id="run1", iteration=1, max_iterations=5))
writer(CodeExecuted(run_id="run1", iteration=1, block=1, code="print(1)", output="1",
                    output_chars=1, error=None, duration_s=0.1))
print(writer.path_for("run1"), flush=True)
sys.stdin.read()  # until the test kills it
"""


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        path = Path(proc.stdout.readline().strip())
        assert path.is_file()
        yield proc, path
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


def read_message(resp: http.client.HTTPResponse) -> dict[str, list[str]]:
    """The next server-sent message with an event or data, its fields by name (read from the
    raw socket: the lines of the body's chunked framing are not fields and are skipped)."""
    while True:
        fields: dict[str, list[str]] = {}
        while (text := resp.fp.readline().decode()) not in ("\n", ""):
            name, _, value = text.rstrip("\r\n").partition(": ")
            if name in ("event", "data", "id"):
                fields.setdefault(name, []).append(value)
        assert text, "the stream ended"
        if "data" in fields or "event" in fields:
            return fields


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()  # the kernel has released its files, and their locks, by now


def test_a_trace_being_written_is_running_not_incomplete(
    running: tuple[subprocess.Popen[str], Path],
) -> None:
    _, path = running
    trace = read_trace(path)
    assert writer_alive(path) is True and trace.writing
    page = render_html(trace)
    assert 'class="badge live">running<' in page
    assert "still running" in page
    assert "This trace is incomplete" not in page and 'badge bad">incomplete' not in page
    assert "print(1)" in page
    # a page written once may be opened long after: it says it is a snapshot, and of when
    assert "was still running when this page was written" in page and "--follow" in page
    live = render_html(trace, live={"events": "/events", "parts": "/parts", "call": "/call"})
    assert "This run is still running" in live and "snapshot" not in live
    assert "This run is still running" in render_parts(trace, live=True)["summary"]


def test_a_killed_writer_leaves_an_incomplete_trace(
    running: tuple[subprocess.Popen[str], Path],
) -> None:
    proc, path = running
    kill(proc)
    trace = read_trace(path)
    assert writer_alive(path) is False and not trace.writing
    summary = render_parts(trace)["summary"]
    assert 'class="badge bad">incomplete<' in summary
    assert "This trace is incomplete" in summary and "no process is writing it" in summary
    assert "running" not in summary


def test_runs_and_show_say_running_while_the_writer_lives_and_incomplete_after(
    running: tuple[subprocess.Popen[str], Path], tmp_path: Path,
) -> None:
    from fastrlm.trace import index_path, list_runs, render_transcript

    proc, path = running
    [row] = list_runs(index_path(tmp_path))
    assert (row.stop_reason, row.finished) == ("running", False)
    assert "still running" in render_transcript(read_trace(path))
    kill(proc)
    [row] = list_runs(index_path(tmp_path))  # the stored row still says running
    assert (row.stop_reason, row.finished) == ("incomplete", False)
    text = render_transcript(read_trace(path))
    assert "did not finish, and no process writes its trace" in text
    assert "still running" not in text


def test_a_copy_of_a_running_trace_is_incomplete_where_nobody_writes_it(
    running: tuple[subprocess.Popen[str], Path], tmp_path: Path,
) -> None:
    _, path = running
    copy = tmp_path / "elsewhere" / path.name
    copy.parent.mkdir()
    shutil.copyfile(path, copy)
    assert read_trace(path).writing and not read_trace(copy).writing
    assert "This trace is incomplete" in render_html(read_trace(copy))


def test_a_finished_run_releases_the_lock(tmp_path: Path) -> None:
    from fastrlm import RLM
    from fastrlm.testing import ScriptedLM

    rlm = RLM(ScriptedLM(["```repl\nFINAL('ok')\n```"]), ScriptedLM(["x"]), sandbox="none",
              trace=tmp_path)
    path = Path(str(rlm.completion("q", context="c").trace_path))
    assert writer_alive(path) is False
    page = render_html(read_trace(path))
    assert 'class="badge ok">final<' in page and "still running" not in page


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
def test_a_run_ended_by_an_interrupt_from_a_model_finishes_its_trace_while_the_process_lives(
    tmp_path: Path, error: type[BaseException],
) -> None:
    # the run dies but the process (a notebook) and the RLM's trace writer go on: left open,
    # the trace would read as "running" for as long as the process lives
    from fastrlm import RLM
    from fastrlm.testing import ScriptedLM

    def reply(_messages: object) -> str:
        raise error("from the model")

    rlm = RLM(ScriptedLM(reply), sandbox="none", trace=tmp_path)
    with pytest.raises(error, match="from the model"):
        rlm.completion("q", context="c")
    [path] = tmp_path.rglob("*.jsonl")
    assert writer_alive(path) is False
    trace = read_trace(path)
    assert trace.finished is not None and not trace.writing
    expected = "cancelled" if error is KeyboardInterrupt else "error"
    assert trace.finished["stop_reason"] == expected
    assert f"{error.__name__}: from the model" in str(trace.finished["error"])


def test_a_trace_file_someone_keeps_locked_does_not_stall_its_writer(tmp_path: Path) -> None:
    # anyone who can read a trace can flock it; the writer runs on the engine's event loop,
    # so it must not wait for such a lock (it gives up on marking the run as running)
    fcntl = pytest.importorskip("fcntl")
    from fastrlm._foundation.events import RunFinished, RunStarted
    from fastrlm.trace import TraceWriter

    writer = TraceWriter(tmp_path)
    path = writer.path_for("run1")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    with open(path, "rb") as squatter:
        fcntl.flock(squatter.fileno(), fcntl.LOCK_EX)
        writer(RunStarted(run_id="run1", parent_run_id=None, question="q", model="m",
                          sub_model="s", context={}, sandbox="none", budget={}))
        writer(RunFinished(run_id="run1", depth=0, stop_reason="final", answer="a",
                           iterations=1, subcalls=0, usage={}, cost_usd=0.0, duration_s=0.1,
                           error=None))
    trace = read_trace(path)
    assert trace.finished is not None and trace.finished["answer"] == "a"


def test_the_live_view_says_when_the_writer_goes_and_sends_its_last_lines_first(
    running: tuple[subprocess.Popen[str], Path],
) -> None:
    proc, path = running
    with LiveView(lambda: path) as live:
        conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
        conn.request("GET", "/events?from=0")
        resp = conn.getresponse()
        first = read_message(resp)
        assert [json.loads(d)["type"] for d in first["data"]][0] == "run.started"
        assert read_message(resp) == {"event": ["writer"], "data": ["alive"]}
        page = render_html(live.tail.refresh())
        assert 'class="badge live">running<' in page
        kill(proc)
        assert read_message(resp) == {"event": ["writer"], "data": ["gone"]}
        assert "This trace is incomplete" in render_parts(live.tail.refresh())["summary"]
        resp.close()
        conn.close()
