"""`fastrlm ask --tools module:function` and `fastrlm serve --tools`: host tools loaded from an
importable module (the current directory included), bad specs refused with what to do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastrlm.cli import ExitCode
from fastrlm.testing._fake_server import FakeRequest, Reply

from .helpers import model_args, server

CLI = [sys.executable, "-m", "fastrlm.cli"]
TOOLS = '''
from fastrlm import Tool

def lookup(code: str) -> dict:
    """The country of an airport code."""
    return {"LIS": "Portugal", "CDG": "France"}.get(code, "unknown")

def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()

TOOLS = [Tool(shout, timeout_s=5)]
NOT_A_TOOL = 5
'''
ROOT = '```repl\nFINAL(lookup("LIS") + "/" + llm_query("go"))\n```'


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CI": "true"}
    paths = [str(Path(p).resolve()) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([*paths, str(cwd)])
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, env=env,
                          cwd=cwd, stdin=subprocess.DEVNULL)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "mytools.py").write_text(TOOLS)
    (tmp_path / "doc.txt").write_text("airports: LIS CDG\n")
    return tmp_path


def test_ask_loads_root_and_sub_tools_from_a_module(project: Path) -> None:
    def sub(request: FakeRequest) -> Reply:
        from fastrlm.testing import FakeReply

        if not any(m.get("role") == "tool" for m in request.messages):
            return FakeReply(None, tool_calls=(("shout", {"text": "hi"}),))
        return FakeReply("sub:" + request.messages[-1]["content"])

    with server([ROOT], sub) as srv:
        proc = _run(project, "ask", "Where is LIS?", "-c", "doc.txt", "--json",
                    "--tools", "mytools:lookup", "--sub-tools", "mytools:TOOLS",
                    "--sandbox", "none", *model_args(srv))
    assert proc.returncode == ExitCode.OK, proc.stderr
    result = json.loads(proc.stdout)
    assert result["answer"] == 'Portugal/sub:"HI"'
    assert result["tool_calls"] == 2


@pytest.mark.parametrize(
    ("spec", "needle"),
    [("mytools", "is not module:function"), ("nosuchmodule:f", "cannot import 'nosuchmodule'"),
     ("mytools:missing", "has no 'missing'"), ("mytools:NOT_A_TOOL", "callable")],
)
def test_a_bad_tools_spec_is_a_usage_error(project: Path, spec: str, needle: str) -> None:
    proc = _run(project, "ask", "q", "-c", "doc.txt", "--tools", spec, "--model", "openai/x")
    assert proc.returncode == 2
    assert needle in proc.stderr and "--tools" in proc.stderr


def test_serve_takes_tools_at_start_and_ignores_a_requests_tools(project: Path) -> None:
    import asyncio

    from fastrlm import RLM
    from fastrlm.server import RLMServer
    from fastrlm.testing import ScriptedLM

    sys.path.insert(0, str(project))
    try:
        import mytools  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(project))
    root = ScriptedLM(['```repl\nFINAL(lookup("CDG") + str("shout" in dir()))\n```'])

    async def main() -> dict[str, object]:
        import openai

        async with RLMServer(RLM(root, sandbox="none", tools=[mytools.lookup])) as srv:
            await srv.start()
            client = openai.AsyncOpenAI(base_url=srv.base_url, api_key="k")
            reply = await client.chat.completions.create(
                model="rlm", messages=[{"role": "user", "content": "where?"}],
                tools=[{"type": "function", "function": {"name": "shout", "parameters": {
                    "type": "object", "properties": {}}}}],
            )
            await client.close()
            return {"content": reply.choices[0].message.content}

    out = asyncio.run(main())
    assert out["content"] == "FranceFalse"  # the server's tool, never the request's
    assert "lookup(code: str) -> dict" in root.calls[0][0]["content"]
    assert "shout" not in root.calls[0][0]["content"]
