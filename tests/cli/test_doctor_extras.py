"""``fastrlm doctor`` lists every optional extra: installed, or the pip line that adds it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from fastrlm.cli import _doctor
from fastrlm.cli._app import cli

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_every_extra_in_pyproject_has_a_doctor_row() -> None:
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    rows = {extra for extra, _, _ in _doctor.EXTRAS}
    assert set(extras) - {"dev", "test"} <= rows  # the tooling extras, not features


def test_the_core_rows_are_the_core_dependencies() -> None:
    """What doctor calls core is what pyproject installs as core (openai, once core, is now
    the litellm extra's and was still listed as the core provider)."""
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    core = {re.split(r"[<>=!~; \[]", spec, maxsplit=1)[0] for spec in dependencies}
    rows = {name for name, role in _doctor.PACKAGES if role.startswith("core:")}
    assert rows == core


def test_a_missing_extra_shows_the_pip_line(monkeypatch: pytest.MonkeyPatch) -> None:
    real = _doctor._version
    monkeypatch.setattr(_doctor, "_version",
                        lambda name: "not installed" if name == "mcp" else real(name))
    lines = {line.split()[0]: line for line in _doctor.extra_lines()}
    assert "missing mcp: pip install 'fastrlm[mcp]'" in lines["mcp"]
    assert "installed (" in lines["pdf"] or "pip install 'fastrlm[pdf]'" in lines["pdf"]


def test_doctor_prints_the_extras_section() -> None:
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 0
    section = result.output.split("\nextras:\n", 1)[1].split("\n\n", 1)[0]
    assert [line.split()[0] for line in section.splitlines()] == [
        extra for extra, _, _ in _doctor.EXTRAS]
