"""The real ``fastrlm`` process: stdout purity, exit codes through ``main()``, Ctrl-C, the demo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from fastrlm.cli import ExitCode
from fastrlm.sandbox._watchdog import descendants
from fastrlm.testing._fake_server import FakeRequest
from fastrlm.trace import read_trace

from .helpers import FANOUT, SIMPLE_FINAL, model_args, server

CLI = [sys.executable, "-m", "fastrlm.cli"]


def fastrlm(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], input=input.decode() if input else None, capture_output=True,
        text=True, timeout=120, env={**os.environ, "CI": "true"},
        stdin=None if input else subprocess.DEVNULL,
    )


@pytest.fixture
def doc(tmp_path: Path) -> Path:
    path = tmp_path / "doc.txt"
    path.write_text("Lisbon hosts the festival every June.\n" * 30)
    return path


def test_json_output_is_one_object_on_stdout_with_progress_on_stderr(doc: Path) -> None:
    with server([FANOUT]) as srv:
        proc = fastrlm("ask", "Where?", "-c", str(doc), "--json", *model_args(srv))
    assert proc.returncode == ExitCode.OK, proc.stderr
    [line] = proc.stdout.splitlines()
    assert json.loads(line)["stop_reason"] == "final"
    assert "iteration 1/30" in proc.stderr
    assert "\x1b[" not in proc.stderr  # no live view (and no escape codes) off a terminal


def test_stream_json_lines_are_flushed_events(doc: Path) -> None:
    with server([SIMPLE_FINAL]) as srv:
        proc = fastrlm("ask", "Q", "-c", str(doc), "--stream-json", *model_args(srv))
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[0]["type"] == "run.started"
    assert events[-1]["type"] == "run.finished"
    assert proc.returncode == ExitCode.OK


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["ask"], ExitCode.BAD_INPUT, "Missing argument"),
        (["nonsense"], ExitCode.BAD_INPUT, "No such command"),
        (["ask", "Q", "-c", "/nonexistent/x", "-m", "openai/x", "--base-url",
          "http://127.0.0.1:9/v1"], ExitCode.BAD_INPUT, "no such file or directory"),
        (["ask", "Q", "-c", "/etc/hostname"], ExitCode.BAD_INPUT, "No model is configured"),
        (["ask", "Q", "-c", "x", "--max-usd", "-1", "-m", "x"], ExitCode.BAD_INPUT,
         "Invalid value"),
        (["show", "no-such-run"], ExitCode.BAD_INPUT, "no run matches"),
    ],
)
def test_exit_codes_through_the_entry_point(args: list[str], code: int, needle: str) -> None:
    proc = fastrlm(*args)
    assert proc.returncode == code, proc.stderr
    assert needle in proc.stderr
    assert proc.stdout == ""


def test_version_and_help_exit_zero() -> None:
    assert fastrlm("--version").returncode == 0
    helped = fastrlm("ask", "--help")
    assert helped.returncode == 0
    for flag in ("--model", "--sub-model", "--base-url", "--max-usd", "--max-subcalls",
                 "--max-seconds", "--max-depth", "--max-iterations", "--sandbox", "--json",
                 "--stream-json", "--trace-full", "130 cancelled"):
        assert flag in helped.stdout


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.sandbox
@pytest.mark.parametrize("mode", ["text", "--json", "--stream-json"])
def test_sigint_mid_run_cancels_keeps_the_trace_and_kills_the_worker(
    doc: Path, tmp_path: Path, mode: str
) -> None:
    arrived, release = threading.Event(), threading.Event()

    def slow_sub(request: FakeRequest) -> str:
        arrived.set()
        release.wait(60)
        return "too late"

    with server([FANOUT], slow_sub) as srv:
        proc = subprocess.Popen(
            [*CLI, "ask", "Q", "-c", str(doc), "--sandbox", "auto", *model_args(srv)]
            + ([mode] if mode != "text" else []),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env={**os.environ, "CI": "true"},
        )
        try:
            assert arrived.wait(60), "no sub-call reached the server"
            workers = set(descendants(proc.pid)[1:])
            assert workers, "the sandbox worker should be running"
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            release.set()
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == ExitCode.CANCELLED, err
    assert "cancelled; partial trace: " in err
    if mode == "text":
        assert out == ""
    elif mode == "--json":
        payload = json.loads(out)
        assert (payload["stop_reason"], payload["partial"]) == ("cancelled", True)
        assert Path(payload["trace_path"]).is_file()
    else:
        last = json.loads(out.splitlines()[-1])
        assert (last["type"], last["stop_reason"]) == ("run.finished", "cancelled")
    [path] = (Path(os.environ["FASTRLM_HOME"]) / "traces").glob("*.jsonl")
    trace = read_trace(path)
    assert trace.truncated_lines == 0
    types = [e["type"] for e in trace.events]
    assert "subcall.started" in types
    assert trace.finished is not None and trace.finished["stop_reason"] == "cancelled"
    assert not [pid for pid in workers if _alive(pid)]
    runs = fastrlm("runs", "--json")
    assert json.loads(runs.stdout.splitlines()[0])["stop_reason"] == "cancelled"


@pytest.mark.sandbox
def test_demo_runs_end_to_end_and_ends_with_the_trace_location() -> None:
    proc = fastrlm("demo", "--size-mb", "1")
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert proc.stdout.startswith("answer (scripted model): The payments service logged")
    assert "SCRIPTED" in proc.stderr
    assert "check against the generator's truth: correct" in proc.stderr
    assert proc.stderr.rstrip("\n").splitlines()[-1].startswith("trace: ")


@pytest.mark.sandbox
def test_demo_json_reports_scripted_and_the_expected_answer() -> None:
    proc = fastrlm("demo", "--size-mb", "0.5", "--json", "-q")
    payload = json.loads(proc.stdout)
    assert payload["scripted"] is True
    assert payload["answer"] == payload["expected"]
    assert payload["subcalls"] >= 2
    assert proc.stderr == ""


def test_importing_the_cli_loads_no_command_rich_or_bench() -> None:
    code = ("import sys, fastrlm.cli; print(sorted(m for m in sys.modules "
            "if m.startswith(('rich', 'fastrlm.bench', 'fastrlm.cli.', 'fastrlm.trace'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert proc.stdout.strip() == "['fastrlm.cli._app', 'fastrlm.cli._exit']"
