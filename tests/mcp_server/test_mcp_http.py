"""``fastrlm mcp --http``: streamable HTTP on loopback with a bearer token, through the MCP SDK's
streamable-HTTP client (a real subprocess); and the refusal to serve HTTP without a token."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from fastrlm.cli._app import cli
from fastrlm.testing import FakeOpenAIServer

from .conftest import PYTHON, Upstream, server_args, server_env

TOKEN = "s3cret-token"


@pytest.fixture
def http_url(upstream: tuple[FakeOpenAIServer, Upstream], roots: tuple[Path, Path],
             tmp_path: Path) -> Iterator[str]:
    fake, _ = upstream
    env = {**server_env(tmp_path / "home"), "FASTRLM_MCP_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [PYTHON, *server_args(fake, roots[0], "--http", "--port", "0")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=env)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "listening on " in line:
                url = line.split("listening on ", 1)[1].split(" ", 1)[0]
                break
        else:
            pytest.fail(f"fastrlm mcp --http never listened (exit {proc.wait()})")
        assert "auth: bearer token" in line
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def post(url: str, token: str | None) -> int:
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}'
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_http_answers_with_the_token_and_refuses_without_it(http_url: str) -> None:
    assert http_url.startswith("http://127.0.0.1:") and http_url.endswith("/mcp")
    assert await anyio.to_thread.run_sync(post, http_url, None) == 401
    assert await anyio.to_thread.run_sync(post, http_url, "wrong") == 401

    http = create_mcp_http_client(headers={"Authorization": f"Bearer {TOKEN}"})
    with anyio.fail_after(120):
        async with http, Client(streamable_http_client(http_url, http_client=http)) as client:
            tools = await client.list_tools()
            assert "rlm_ask" in {t.name for t in tools.tools}
            asked = await client.call_tool("rlm_ask", {"question": "Len?", "text": "abcd"})
            assert not asked.is_error
            assert asked.structured_content["answer"].startswith("chars=4 ")  # type: ignore[index]
            refused = await client.call_tool("rlm_ask", {"question": "q", "paths": ["/etc"]})
            assert refused.is_error


def test_http_without_a_token_refuses_to_start(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FASTRLM_MCP_TOKEN", raising=False)
    done = CliRunner().invoke(cli, ["mcp", "--http", "--root", str(tmp_path), "--model",
                                    "openai/m"])
    assert done.exit_code == 2
    assert "--http needs a bearer token" in done.output and "FASTRLM_MCP_TOKEN" in done.output


def test_no_auth_is_refused_off_loopback(tmp_path: Path) -> None:
    done = CliRunner().invoke(cli, ["mcp", "--http", "--no-auth", "--host", "0.0.0.0", "--root",
                                    str(tmp_path), "--model", "openai/m"])
    assert done.exit_code == 2 and "only on loopback" in done.output
