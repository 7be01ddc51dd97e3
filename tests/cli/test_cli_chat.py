"""`fastrlm chat`: a session on a terminal (driven through a pty: lines, Ctrl-C, Ctrl-D) and
line by line over stdin."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastrlm.testing import FakeOpenAIServer, FakeReply
from fastrlm.testing._fake_server import FakeRequest, Reply

CLI = [sys.executable, "-m", "fastrlm.cli"]


def _handler(request: FakeRequest) -> Reply:
    last = str(request.messages[-1].get("content", ""))
    if "slowly" in last:
        return FakeReply("```repl\nFINAL('late')\n```", latency_s=60)
    if "read x" in last:
        return "```repl\nFINAL(str(x + 1))\n```"
    return "```repl\nx = 41\nFINAL('x is set')\n```"


def _env() -> dict[str, str]:
    env = {**os.environ, "CI": "true", "NO_COLOR": "1"}
    paths = [str(Path(p).resolve()) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


@pytest.fixture
def doc(tmp_path: Path) -> Path:
    path = tmp_path / "doc.txt"
    path.write_text("Lisbon hosts the festival every June.\n")
    return path


def _args(server: FakeOpenAIServer, doc: Path) -> list[str]:
    return ["chat", "-c", str(doc), "--model", "openai/root", "--base-url", server.base_url,
            "--sandbox", "none"]


def test_stdin_questions_get_one_answer_each_and_variables_persist(doc: Path) -> None:
    with FakeOpenAIServer(handler=_handler) as server:
        proc = subprocess.run([*CLI, *_args(server, doc), "--json", "-q"],
                              input="set x\n\nread x\n", capture_output=True, text=True,
                              timeout=120, env=_env())
    assert proc.returncode == 0, proc.stderr
    answers = [json.loads(line)["answer"] for line in proc.stdout.splitlines()]
    assert answers == ["x is set", "42"]


def test_chat_refuses_a_context_from_stdin(doc: Path) -> None:
    proc = subprocess.run([*CLI, "chat", "-c", "-", "--model", "openai/x"], input="",
                          capture_output=True, text=True, timeout=60, env=_env())
    assert proc.returncode == 2 and "cannot come from there" in proc.stderr


class Terminal:
    """A child process on a pty: write keys, read until a text appears."""

    def __init__(self, argv: list[str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child
            os.execvpe(argv[0], argv, _env())
        self.seen = ""
        self.cursor = 0  # what earlier expect() calls matched is behind this

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def expect(self, text: str, timeout: float = 90.0) -> str:
        """Wait for ``text`` in what the terminal showed since the last match."""
        deadline = time.monotonic() + timeout
        while text not in self.seen[self.cursor:]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} never appeared; the terminal showed:\n{self.seen}")
            ready, _, _ = select.select([self.fd], [], [], min(left, 1.0))
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"the child exited before {text!r}:\n{self.seen}")
                self.seen += chunk.decode(errors="replace")
        self.cursor = self.seen.index(text, self.cursor) + len(text)
        return self.seen

    def wait(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            try:
                select.select([self.fd], [], [], 0.2)
                os.read(self.fd, 65536)
            except OSError:
                pass
        os.kill(self.pid, 9)
        raise AssertionError("the child did not exit")


@pytest.mark.slow
def test_a_terminal_session_answers_cancels_with_ctrl_c_and_ends_with_ctrl_d(doc: Path) -> None:
    with FakeOpenAIServer(handler=_handler) as server:
        term = Terminal([*CLI, *_args(server, doc)])
        try:
            term.expect("you> ")
            term.send("set x\r")
            term.expect("x is set")
            term.expect("you> ")
            term.send("answer slowly\r")
            term.expect("iteration 1/")
            term.send("\x03")  # Ctrl-C: cancels this question, not the session
            term.expect("(cancelled")
            term.send("read x\r")
            term.expect("42")
            term.expect("you> ")
            term.send("\x04")  # Ctrl-D: the end
            assert term.wait() == 0
        finally:
            try:
                os.kill(term.pid, 9)
                os.waitpid(term.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


def test_each_answer_gets_a_summary_line_and_the_session_a_total_it_can_be_found_by(
        doc: Path) -> None:
    # The issue: no cost/time/trace line after an answer, nothing at the end, and a session's
    # questions were unrelated rows in `fastrlm runs`.
    with FakeOpenAIServer(handler=_handler) as server:
        proc = subprocess.run([*CLI, *_args(server, doc)], input="set x\nread x\n",
                              capture_output=True, text=True, timeout=120, env=_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["x is set", "42"]
    summaries = [line for line in proc.stderr.splitlines() if line.startswith("final · ")]
    assert len(summaries) == 2 and all("1 iteration(s)" in s for s in summaries)
    assert proc.stderr.count("\ntrace: ") == 2
    [total] = [line for line in proc.stderr.splitlines() if line.startswith("session ")]
    assert ": 2 question(s) · " in total and " in / " in total
    session_id = total.split()[1].rstrip(":")
    assert f"its runs: fastrlm runs --session {session_id}" in proc.stderr
    listed = subprocess.run([*CLI, "runs", "--session", session_id, "--json"],
                            capture_output=True, text=True, timeout=120, env=_env())
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["question"], r["session_question"]) for r in rows] == [("read x", 2),
                                                                      ("set x", 1)]


def test_quiet_prints_no_summary_or_total(doc: Path) -> None:
    with FakeOpenAIServer(handler=_handler) as server:
        proc = subprocess.run([*CLI, *_args(server, doc), "-q"], input="set x\n",
                              capture_output=True, text=True, timeout=120, env=_env())
    assert proc.returncode == 0, proc.stderr
    assert "final · " not in proc.stderr and "session " not in proc.stderr
