"""A question or answer that is not well-formed Unicode (argv of invalid UTF-8 decodes to a lone
surrogate; model code can make one) never crashes ``fastrlm ask``'s output, in any mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fastrlm.cli import ExitCode

from .helpers import model_args, server

LONE = '```repl\nFINAL("city: " + chr(0xDCFF))\n```'


@pytest.mark.parametrize("mode", ["--json", "--stream-json", None])
def test_a_lone_surrogate_in_question_and_answer_is_printed_not_a_crash(
        mode: str | None) -> None:
    question = os.fsdecode(b"\xff which city?")  # what argv of invalid UTF-8 becomes
    with server([LONE]) as srv:
        proc = subprocess.run(
            [sys.executable, "-m", "fastrlm.cli", "ask", question, "-c", "-",
             *([mode] if mode else []), *model_args(srv)],
            input=b"Lisbon hosts the festival.", capture_output=True, timeout=120,
            env={**os.environ, "CI": "true"})
    assert proc.returncode == ExitCode.OK, proc.stderr.decode("utf-8", "replace")
    out = proc.stdout.decode("utf-8")  # strict: what was printed is valid UTF-8
    if mode == "--json":
        assert json.loads(out)["answer"] == "city: \udcff"  # escaped, exact when read
    elif mode == "--stream-json":
        events = [json.loads(line) for line in out.splitlines()]
        assert events[0]["question"] == question and events[-1]["type"] == "run.finished"
    else:
        assert out == "city: \ufffd\n"
