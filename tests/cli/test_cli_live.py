"""``fastrlm view --follow`` and ``fastrlm ask --view``: the live page of a run, on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fastrlm import RLM
from fastrlm.cli import ExitCode, _view, cli
from fastrlm.testing import ScriptedLM
from fastrlm.testing._fake_server import FakeRequest
from fastrlm.trace._live import LiveView

from .helpers import FANOUT, model_args, server


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 (loopback only)
        body: bytes = resp.read()
    return body.decode()


def test_view_follow_serves_the_run_on_loopback_until_stopped(_isolated_home: Path) -> None:
    root = ScriptedLM(['```repl\nprint("followed")\nFINAL("done")\n```'], model="s/root")
    RLM(root, ScriptedLM(["x"]), sandbox="none", trace=_isolated_home).completion(
        "follow me?", context="c")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastrlm.cli", "view", "--follow", "last"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        env={**os.environ, "FASTRLM_HOME": str(_isolated_home)})
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        page = fetch(url)
        assert "follow me?" in page and "followed" in page and '"events":"/events' in page
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        assert proc.stderr is not None and proc.stdout is not None
        stderr = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert "following" in stderr and "Ctrl-C stops" in stderr


def test_view_follow_of_an_unknown_run_exits_2() -> None:
    result = CliRunner().invoke(cli, ["view", "--follow", "nope-no-such-run"])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "no run matches" in result.stderr


def test_view_follow_refuses_an_output_file(_isolated_home: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["view", "--follow", "-o", str(tmp_path / "x.html")])
    assert result.exit_code == ExitCode.BAD_INPUT and "drop -o" in result.stderr


def test_a_taken_port_exits_2_saying_to_pick_another(tmp_path: Path) -> None:
    with LiveView(lambda: None) as taken:
        port = int(taken.url.rstrip("/").rsplit(":", 1)[1])
        with pytest.raises(SystemExit) as exc:
            _view.start_live_view(lambda: None, port)
    assert exc.value.code == ExitCode.BAD_INPUT


def test_ask_view_serves_the_running_run_and_stops_after_it_off_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("Lisbon hosts the festival every June.\n" * 10)
    views: list[LiveView] = []
    seen: list[str] = []
    start = _view.start_live_view

    def recording(*args: Any, **kwargs: Any) -> LiveView:
        views.append(start(*args, **kwargs))
        return views[-1]

    monkeypatch.setattr(_view, "start_live_view", recording)

    def sub(request: FakeRequest) -> str:
        if not seen:  # mid-run: the live page already shows this run
            seen.append(fetch(views[0].url))
        return "sub ok"

    with server([FANOUT], sub=sub) as srv:
        result = CliRunner().invoke(
            cli, ["ask", "Where is the festival?", "-c", str(doc), "--view", *model_args(srv)],
            catch_exceptions=False)
    assert result.exit_code == ExitCode.OK, result.stderr
    assert f"live view at {views[0].url}" in result.stderr
    assert "Where is the festival?" in seen[0]
    # its writer (this process) holds the trace: running, not the red incomplete of a dead run
    assert "This run is still running" in seen[0] and "incomplete" not in seen[0]
    assert views[0].stopping  # stdin is not a terminal: no lingering
    trace = views[0].tail.path
    assert trace is not None and json.loads(trace.read_text().splitlines()[-1])["type"] == (
        "run.finished")


def test_ask_view_needs_the_trace(tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("x")
    result = CliRunner().invoke(cli, ["ask", "q", "-c", str(doc), "--view", "--no-trace",
                                      "--model", "openai/m"])
    assert result.exit_code == ExitCode.BAD_INPUT and "drop --no-trace" in result.stderr


class _Terminal:
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_view_stays_after_the_run_until_ctrl_c(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fastrlm.cli import _ask

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(sys, "stdin", _Terminal())
    monkeypatch.setattr(_view.time, "sleep", interrupted)
    with LiveView(lambda: None) as live:
        _ask._linger(live, cancelled=False)
        assert live.stopping
    assert f"stays at {live.url} (Ctrl-C stops)" in capsys.readouterr().err
    with LiveView(lambda: None) as cancelled:  # Ctrl-C already ended the run: no second wait
        _ask._linger(cancelled, cancelled=True)
        assert cancelled.stopping


def test_off_a_terminal_the_view_stays_until_a_browser_has_loaded_the_page(
    _isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The issue: a non-tty run's page vanished at the end, before a slow browser loaded it.
    import threading

    from fastrlm.cli import _ask

    root = ScriptedLM(['```repl\nFINAL("done")\n```'], model="s/root")
    result = RLM(root, sandbox="none", trace=_isolated_home).completion("late?", context="c")
    assert result.trace_path is not None
    trace = Path(result.trace_path)
    live = LiveView(lambda: trace).start()
    lingering = threading.Thread(target=_ask._linger, args=(live,),
                                 kwargs={"cancelled": False, "wait_s": 120.0})
    lingering.start()
    try:
        page = fetch(live.url)  # the browser arrives after the run ended
    finally:
        lingering.join(timeout=60)
        live.close()
    assert not lingering.is_alive() and live.stopping
    assert "late?" in page
    assert f"stays at {live.url} until a browser loads it" in capsys.readouterr().err


def test_off_a_terminal_a_page_never_loaded_is_stopped_after_the_wait() -> None:
    from fastrlm.cli import _ask

    with LiveView(lambda: None) as live:
        _ask._linger(live, cancelled=False, wait_s=0.0)
        assert live.stopping
