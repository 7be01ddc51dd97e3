"""The README's MCP config: the `claude mcp add` line and the JSON form name the real command."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from fastrlm.cli._mcp import mcp

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
SECTION = README.split("## MCP server (coding agents)", 1)[1].split("\n## ", 1)[0]


def _flags(args: list[str]) -> set[str]:
    return {a for a in args if a.startswith("--")}


def test_the_claude_mcp_add_line_runs_fastrlm_mcp_with_known_flags() -> None:
    line = re.search(r"```bash\n(claude mcp add .*?)\n```", SECTION, re.DOTALL)
    assert line is not None
    argv = shlex.split(line.group(1))
    assert argv[:4] == ["claude", "mcp", "add", "fastrlm"]
    command = argv[argv.index("--") + 1:]
    assert command[:2] == ["fastrlm", "mcp"] and "--root" in command
    known = {opt for p in mcp.params for opt in p.opts}
    assert _flags(command[2:]) <= known


def test_the_json_config_form_parses_and_names_fastrlm_mcp() -> None:
    block = re.search(r"```json\n(.*?)\n```", SECTION, re.DOTALL)
    assert block is not None
    server = json.loads(block.group(1))["mcpServers"]["fastrlm"]
    assert server["command"] == "fastrlm" and server["args"][0] == "mcp"
    assert _flags(server["args"][1:]) <= {opt for p in mcp.params for opt in p.opts}
