"""``fastrlm sandbox build``: what it reports, and how it fails without a daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import fastrlm.sandbox
from fastrlm.cli import ExitCode, cli
from fastrlm.sandbox import ImageInfo, _container
from fastrlm.testing import skip_unless_sandbox

from .helpers import model_args, server


def test_build_names_the_image_it_made_and_how_to_use_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[str, str, str | None, str, tuple[str, ...]]] = []

    def build(runtime: str, name: str, base: str | None, python: str,
              packages: tuple[str, ...] = ()) -> ImageInfo:
        asked.append((runtime, name, base, python, packages))
        return ImageInfo(name, "sha256:0123456789abcdef", "/usr/bin/python3", "3.11.7", "d",
                         ",".join(f"{p}==1.0" for p in packages))

    monkeypatch.setattr(fastrlm.sandbox, "build_image", build)
    monkeypatch.delenv(_container.IMAGE_ENV, raising=False)
    result = CliRunner().invoke(cli, ["sandbox", "build"])
    assert result.exit_code == 0, result.output
    assert asked == [("docker", "fastrlm-sandbox:latest", None, "python3", ())]
    assert "built fastrlm-sandbox:latest (0123456789ab, Python 3.11.7)" in result.output
    result = CliRunner().invoke(cli, ["sandbox", "build", "--runtime", "podman", "--image",
                                      "mine:1", "--base", "python:3.11-slim"])
    assert result.exit_code == 0, result.output
    assert asked[-1] == ("podman", "mine:1", "python:3.11-slim", "python3", ())
    assert "FASTRLM_SANDBOX_IMAGE=mine:1" in result.output
    result = CliRunner().invoke(cli, ["sandbox", "build", "--with", "pandas", "--with", "six"])
    assert result.exit_code == 0, result.output
    assert asked[-1][-1] == ("pandas", "six")
    assert "Python 3.11.7; pandas==1.0, six==1.0)" in result.output


def test_build_without_a_daemon_exits_with_the_sandbox_code_saying_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_container, "server_version", lambda runtime: (
        f"the {runtime} daemon does not answer (cannot connect): start it",))
    result = CliRunner().invoke(cli, ["sandbox", "build"])
    assert result.exit_code == ExitCode.SANDBOX
    assert "daemon does not answer" in result.output and "start it" in result.output


TOOLS = '''
def lookup(code: str) -> dict:
    """The country of an airport code."""
    return {"LIS": "Portugal", "CDG": "France"}.get(code, "unknown")
'''
ROOT = ('```repl\nimport os\nFINAL(lookup("LIS") + "/" + llm_query("go") + "/" '
        '+ str(context.count("LIS")) + "/" + str(os.getuid()))\n```')


@pytest.mark.sandbox
def test_ask_with_sandbox_docker_runs_end_to_end_with_tools_and_sub_calls(
    tmp_path: Path,
) -> None:
    skip_unless_sandbox("docker")
    (tmp_path / "mytools.py").write_text(TOOLS)
    (tmp_path / "doc.txt").write_text("airports: LIS CDG LIS\n")
    env = {**os.environ, "CI": "true"}
    paths = [str(Path(p).resolve()) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([*paths, str(tmp_path)])
    with server([ROOT], lambda request: "sub-answer") as srv:
        proc = subprocess.run(
            [sys.executable, "-m", "fastrlm.cli", "ask", "Where is LIS?", "-c", "doc.txt",
             "--json", "--tools", "mytools:lookup", "--sandbox", "docker", *model_args(srv)],
            capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
            stdin=subprocess.DEVNULL)
    assert proc.returncode == ExitCode.OK, proc.stderr
    uid = _container.worker_user().partition(":")[0]
    assert json.loads(proc.stdout)["answer"] == f"Portugal/sub-answer/2/{uid}"


def test_sandbox_image_names_the_image_the_container_layer_runs(tmp_path: Path) -> None:
    """``--sandbox-image`` is the flag form of $FASTRLM_SANDBOX_IMAGE: a named image is the
    one used, and one that is not there is pulled (here from a registry on a closed local
    port: refused at once, and the error names the image). Without the flag nothing is
    pulled (tests/sandbox/test_container.py)."""
    skip_unless_sandbox("docker")
    (tmp_path / "doc.txt").write_text("airports: LIS CDG LIS\n")
    env = {k: v for k, v in os.environ.items() if k != "FASTRLM_SANDBOX_IMAGE"}
    env["CI"] = "true"
    named = "127.0.0.1:9/fastrlm-not-here:x"
    with server([ROOT], lambda request: "sub-answer") as srv:
        proc = subprocess.run(
            [sys.executable, "-m", "fastrlm.cli", "ask", "Where is LIS?", "-c", "doc.txt",
             "--sandbox", "docker", "--sandbox-image", named, *model_args(srv)],
            capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
            stdin=subprocess.DEVNULL)
        sent = len(srv.completion_requests)
    assert proc.returncode == ExitCode.SANDBOX, proc.stderr
    assert f"cannot pull {named}" in proc.stderr
    assert sent == 0  # refused before the first model call


def test_sandbox_image_is_offered_wherever_the_sandbox_is_chosen() -> None:
    for command in ("ask", "chat", "serve", "batch", "mcp"):
        result = CliRunner().invoke(cli, [command, "--help"])
        assert "--sandbox-image" in result.output, command
