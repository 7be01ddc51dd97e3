"""The README's offline walk-through (fake server, `ask`, `serve`) runs as written."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUB_REPLY = "A library that lets any chat model answer over inputs of any size."


def offline_script() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Try ask and serve offline", 1)[1].split("\n## ", 1)[0]
    (script,) = re.findall(r"```bash\n(.*?)\n```\n", section, re.DOTALL)
    return script


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
@pytest.mark.sandbox
def test_the_readme_offline_commands_answer_through_ask_and_serve(tmp_path: Path) -> None:
    script = offline_script()
    assert "8765" in script and "8766" in script and SUB_REPLY in script
    script = script.replace("8765", str(free_port())).replace("8766", str(free_port()))
    # `fastrlm` and `python` as a user has them, but this checkout's interpreter and source.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, args in (("fastrlm", '-m fastrlm "$@"'), ("python", '"$@"')):
        (bin_dir / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" {args}\n')
        (bin_dir / name).chmod(0o755)
    # -x: each command goes to stderr as it starts, so a failure or a hang shows where it was
    prelude = "set -xeuo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT / "src"), "FASTRLM_HOME": str(tmp_path / "home"),
           "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    for name in ("FASTRLM_MODEL", "FASTRLM_SUB_MODEL", "FASTRLM_CONFIG", "FASTRLM_SERVER_KEY"):
        env.pop(name, None)
    try:
        done = subprocess.run(["bash", "-c", prelude + script], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=100)
    except subprocess.TimeoutExpired as exc:  # what ran, and what it said, before the hang
        said = [part.decode(errors="replace") if isinstance(part, bytes) else part or ""
                for part in (exc.stdout, exc.stderr)]
        pytest.fail(f"the README's commands did not end in 100 s; stdout:\n{said[0][-2000:]}\n"
                    f"stderr:\n{said[1][-4000:]}")
    assert done.returncode == 0, done.stderr[-3000:]
    url, *answers = done.stdout.splitlines()  # the fake server prints its URL first
    assert url.startswith("http://127.0.0.1:")
    assert answers == [SUB_REPLY, SUB_REPLY], done.stderr[-3000:]
