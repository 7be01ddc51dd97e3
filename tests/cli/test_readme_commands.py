"""The README's two set-up commands, and `.ci/run` running the second one verbatim."""

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


def test_readme_has_exactly_two_setup_commands_run_then_test() -> None:
    run, test = two_commands()
    assert "\n" not in run and "\n" not in test
    assert run.endswith("quickstart")
    assert "'.[dev]'" in test and test.endswith("pytest")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in ci
    assert two_commands()[1] in ci.splitlines()


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
