"""The doors stay light: ``import fastrlm`` and the compat module never import the MCP SDK."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_fastrlm_and_compat_import_no_mcp_sdk() -> None:
    code = ("import sys, fastrlm, fastrlm.compat.rlms, fastrlm.cli._mcp; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('mcp', 'uvicorn', 'starlette', 'pydantic')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": SRC}, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
