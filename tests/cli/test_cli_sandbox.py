"""``fastrlm sandbox build``: what it reports, and how it fails without a daemon."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import fastrlm.sandbox
from fastrlm.cli import ExitCode, cli
from fastrlm.sandbox import ImageInfo, _container


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
