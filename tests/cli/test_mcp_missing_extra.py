"""``fastrlm mcp`` without the ``mcp`` extra: its help works, running it names the pip line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fastrlm.cli._app import cli


def test_mcp_without_the_sdk_says_which_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [m for m in sys.modules if m == "fastrlm.mcp" or m.startswith("fastrlm.mcp.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mcp.server.mcpserver", None)  # import fails
    assert CliRunner().invoke(cli, ["mcp", "--help"]).exit_code == 0
    result = CliRunner().invoke(cli, ["mcp", "--root", str(tmp_path), "--model", "openai/m"])
    assert result.exit_code == 1
    assert "pip install 'fastrlm[mcp]'" in result.output
