"""The README's two set-up commands (run; test, in a fast core form and a full one), and
`.ci/run` running the full test command verbatim."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from fastrlm.cli import ExitCode, cli

from .helpers import SIMPLE_FINAL, server

ROOT = Path(__file__).resolve().parents[2]


def two_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, re.DOTALL)


def test_readme_has_the_run_command_then_the_fast_and_the_full_test_command() -> None:
    run, fast, full = two_commands()
    assert "\n" not in run + fast + full
    assert run.endswith("quickstart")
    assert "'.[test]'" in fast and "'.[dev]'" in full
    for test in (fast, full):  # in parallel, one file's tests on one worker
        assert test.endswith("python3 -m pytest -n auto --dist loadfile")


def test_the_test_extras_bring_what_the_test_command_needs() -> None:
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    names = {re.split(r"[<>=!~; \[]", spec, maxsplit=1)[0] for spec in extras["test"]}
    assert {"pytest", "pytest-xdist", "pytest-timeout", "pytest-asyncio"} <= names
    assert "fastrlm[test]" in extras["dev"]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in ci
    assert two_commands()[2] in ci.splitlines()


@pytest.mark.sandbox
def test_quickstart_without_a_model_says_how_to_configure_and_runs_the_demo() -> None:
    result = CliRunner().invoke(cli, ["quickstart", "--size-mb", "0.5"])
    assert result.exit_code == ExitCode.OK, result.stderr
    assert "No model is configured" in result.stderr
    assert "OPENAI_API_KEY" in result.stderr and "ANTHROPIC_API_KEY" in result.stderr
    assert "SCRIPTED" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("trace: ")


@pytest.mark.sandbox
def test_quickstart_with_a_model_asks_about_the_project_docs_and_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with server([SIMPLE_FINAL]) as srv:
        monkeypatch.setenv("FASTRLM_MODEL", "openai/root-model")
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        result = CliRunner().invoke(cli, ["quickstart"])
        assert srv.completion_requests
    assert result.exit_code == ExitCode.OK, result.stderr
    assert "asking openai/root-model about fastrlm's own" in result.stderr
    assert result.stdout == "forty-two\n"
