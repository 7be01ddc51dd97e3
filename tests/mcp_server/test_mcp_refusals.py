"""The refusals of ``fastrlm mcp``'s tools, through the MCP SDK's client connected in-process
(the same server object the CLI serves; the transports are covered by test_mcp_stdio/http)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from fastrlm import RLM, Budget
from fastrlm.context import LoadLimits
from fastrlm.mcp import RLMTools, Roots, build_server
from fastrlm.mcp._policy import ToolRefusal
from fastrlm.testing import FakeOpenAIServer

from .conftest import Upstream


def text_of(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


@asynccontextmanager
async def connected(upstream: tuple[FakeOpenAIServer, Upstream],
                    roots: tuple[Path, Path]) -> AsyncIterator[Client]:
    """The MCP client, connected in-process (entered and left in the test's own task)."""
    fake, _ = upstream
    rlm = RLM("openai/root-model", "openai/sub-model", base_url=fake.base_url, api_key="fake",
              sandbox="none", budget=Budget(max_subcalls=5, max_iterations=4))
    tools = RLMTools(rlm, Roots([roots[0]]), max_handles=2)
    async with Client(build_server(tools)) as connected:
        yield connected
    await rlm.aclose()


@pytest.mark.parametrize(("arguments", "expected"), [
    ({"question": "q", "paths": ["{outside}/secret.txt"]}, "outside the server's roots"),
    ({"question": "q", "paths": ["escape.txt"]}, "outside the server's roots"),  # a symlink out
    ({"question": "q", "paths": ["docs/../../outside/secret.txt"]}, "'..' is not allowed"),
    ({"question": "q", "paths": ["{outside}/*.txt"]}, "outside the server's roots"),
    ({"question": "q", "paths": ["-"]}, "stdin"),
    ({"question": "q", "paths": []}, "non-empty list"),
    ({"question": "q", "text": "t", "budget": {"max_subcalls": 50}},
     "above the server's limit of 5"),
    ({"question": "q", "text": "t", "budget": {"max_iterations": 5}},
     "above the server's limit of 4"),
    ({"question": "q", "text": "t", "budget": {"max_usd": -1}}, "budget.max_usd"),
    ({"question": "q", "text": "t", "budget": {"max_usd": 0.5}}, "no price is known"),
    ({"question": "q", "text": "t", "budget": {"temperature": 1}}, "unknown budget key"),
    ({"question": "q", "text": "t", "paths": ["docs"]}, "exactly one"),
    ({"question": "q"}, "exactly one"),
    ({"question": " ", "text": "t"}, "question must be"),
    ({"question": "q", "handle": "ctx-nope"}, "call rlm_load again"),
    ({"question": "q" * 50_000, "text": "t"}, "raise Limits.question_chars"),
])
async def test_rlm_ask_refuses_with_a_message_saying_what_to_do(
    upstream: tuple[FakeOpenAIServer, Upstream], roots: tuple[Path, Path],
    arguments: dict[str, Any], expected: str,
) -> None:
    if "paths" in arguments:
        arguments = {**arguments, "paths": [p.format(outside=roots[1])
                                            for p in arguments["paths"]]}
    with anyio.fail_after(60):
        async with connected(upstream, roots) as client:
            result = await client.call_tool("rlm_ask", arguments)
    assert result.is_error
    assert expected in text_of(result)


async def test_nothing_outside_the_roots_reaches_the_model(
    upstream: tuple[FakeOpenAIServer, Upstream], roots: tuple[Path, Path],
) -> None:
    _, handler = upstream
    with anyio.fail_after(60):
        async with connected(upstream, roots) as client:
            loaded = await client.call_tool("rlm_load", {"paths": ["docs", "docs/*.txt"]})
            info = loaded.structured_content
            assert info is not None and info["files"] == 4
            assert [s["reason"] for s in info["skipped"]] == ["outside the allowed roots"] * 2
            asked = await client.call_tool(
                "rlm_ask", {"question": "All?", "handle": info["handle"]})
    assert not asked.is_error
    assert handler.prompts and not any("SECRET-TOKEN-123" in p for p in handler.prompts)


async def test_a_lowered_budget_governs_the_run(
    upstream: tuple[FakeOpenAIServer, Upstream], roots: tuple[Path, Path],
) -> None:
    with anyio.fail_after(60):
        async with connected(upstream, roots) as client:
            result = await client.call_tool(
                "rlm_ask", {"question": "q", "text": "t", "budget": {"max_subcalls": 0}})
    out = result.structured_content
    assert out is not None and out["subcalls"] == 0
    assert "budget_subcalls" in out["answer"]  # the REPL's llm_query was refused


async def test_handles_past_the_limit_drop_the_oldest(
    upstream: tuple[FakeOpenAIServer, Upstream], roots: tuple[Path, Path],
) -> None:
    with anyio.fail_after(60):
        async with connected(upstream, roots) as client:
            handles = []
            for _ in range(3):
                loaded = await client.call_tool("rlm_load", {"paths": ["docs/a.txt"]})
                handles.append(loaded.structured_content["handle"])  # type: ignore[index]
            oldest = await client.call_tool("rlm_ask", {"question": "q", "handle": handles[0]})
            newest = await client.call_tool("rlm_ask", {"question": "q", "handle": handles[2]})
    assert oldest.is_error and "call rlm_load again" in text_of(oldest)
    assert not newest.is_error


async def test_rlm_trace_reads_runs_never_files(
    upstream: tuple[FakeOpenAIServer, Upstream], roots: tuple[Path, Path], tmp_path: Path,
) -> None:
    stray = tmp_path / "x.jsonl"
    stray.write_text('{"type": "run.started", "run_id": "x", "depth": 0, "ts": 0}\n')
    with anyio.fail_after(60):
        async with connected(upstream, roots) as client:
            by_path = await client.call_tool("rlm_trace", {"run_id": str(stray)})
            missing = await client.call_tool("rlm_trace", {"run_id": "zzz"})
            runs = await client.call_tool("rlm_runs", {"limit": 0})
    assert by_path.is_error and "not a file path" in text_of(by_path)
    assert missing.is_error and "no run matches" in text_of(missing)
    assert runs.is_error and "limit" in text_of(runs)


async def test_a_pasted_message_passed_as_question_and_text_is_not_shown_to_the_model(
    upstream: tuple[FakeOpenAIServer, Upstream], roots: tuple[Path, Path],
) -> None:
    _, handler = upstream
    message = "event ok\n" * 100_000 + "How many events?"
    with anyio.fail_after(60):
        async with connected(upstream, roots) as client:
            result = await client.call_tool("rlm_ask", {"question": message, "text": message})
    assert not result.is_error, text_of(result)
    assert f"chars={len(message)}" in text_of(result)  # the whole message is `context`
    first = json.loads(handler.prompts[0])["messages"]
    shown = sum(len(m["content"]) for m in first if m["role"] != "system")
    assert shown < 5_000 and "How many events?" in first[-1]["content"]


async def test_an_unreadable_run_index_is_a_tool_error_that_says_what_to_do(
    upstream: tuple[FakeOpenAIServer, Upstream], roots: tuple[Path, Path],
) -> None:
    from fastrlm.trace import index_path

    index = index_path()
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_bytes(b"\x00\xffnot a database" * 500)
    with anyio.fail_after(60):
        async with connected(upstream, roots) as client:
            runs = await client.call_tool("rlm_runs", {})
            last = await client.call_tool("rlm_trace", {"run_id": "last"})
    for result in (runs, last):
        assert result.is_error and "move the file aside" in text_of(result)


async def test_a_fifo_in_a_root_is_skipped_and_call_after_call_answers(
    upstream: tuple[FakeOpenAIServer, Upstream], roots: tuple[Path, Path],
) -> None:
    """A FIFO once left a loading thread blocked per call, until the server answered nothing."""
    root, _ = roots
    os.mkfifo(root / "docs" / "pipe.txt")
    fifo = "a named pipe (FIFO): only regular files are read"
    with anyio.fail_after(60):
        async with connected(upstream, roots) as client:
            for _ in range(10):
                loaded = await client.call_tool("rlm_load", {"paths": ["docs"]})
                info = loaded.structured_content
                assert not loaded.is_error and info is not None and info["files"] == 2
                assert fifo in [s["reason"] for s in info["skipped"]]
            asked = await client.call_tool("rlm_ask", {"question": "q",
                                                       "paths": ["docs/pipe.txt"]})
            answered = await client.call_tool("rlm_ask", {"question": "q", "text": "t"})
    assert asked.is_error and fifo in text_of(asked)
    assert not answered.is_error


async def test_a_file_over_the_servers_size_limit_is_refused_naming_the_flag(
    upstream: tuple[FakeOpenAIServer, Upstream], roots: tuple[Path, Path],
) -> None:
    fake, _ = upstream
    rlm = RLM("openai/root-model", base_url=fake.base_url, api_key="fake", sandbox="none")
    tools = RLMTools(rlm, Roots([roots[0]]), load_limits=LoadLimits(max_file_bytes=10))
    try:
        with pytest.raises(ToolRefusal, match=r"over the limit of 10 bytes a file "
                                              r"\(LoadLimits.max_file_bytes; --max-file-mb"):
            await tools.load(["docs/a.txt"])
    finally:
        await rlm.aclose()
