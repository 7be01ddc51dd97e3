"""``fastrlm mcp`` over stdio, driven by the MCP SDK's own client (a real subprocess)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

from fastrlm.testing import FakeOpenAIServer

from .conftest import PYTHON, Upstream, server_args, server_env


def params(fake: FakeOpenAIServer, root: Path, home: Path) -> StdioServerParameters:
    return StdioServerParameters(command=PYTHON, args=server_args(fake, root),
                                 env=server_env(home))


def text_of(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


async def test_stdio_answers_over_paths_text_and_handles_with_progress(
    upstream: tuple[FakeOpenAIServer, Upstream], roots: tuple[Path, Path], tmp_path: Path,
) -> None:
    fake, _ = upstream
    root, _ = roots
    steps: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        steps.append((progress, message))

    with anyio.fail_after(120):
        async with Client(params(fake, root, tmp_path / "home")) as client:
            names = sorted(t.name for t in (await client.list_tools()).tools)
            assert names == ["rlm_ask", "rlm_drop", "rlm_grep", "rlm_handles", "rlm_load",
                             "rlm_read", "rlm_runs", "rlm_stats", "rlm_status", "rlm_trace"]

            asked = await client.call_tool(
                "rlm_ask", {"question": "When?", "paths": ["docs/a.txt"]},
                progress_callback=on_progress)
            assert not asked.is_error, text_of(asked)
            out = asked.structured_content
            assert out is not None
            assert out["answer"] == "chars=42 sub=sub:gist: The fe"
            assert out["stop_reason"] == "final" and out["subcalls"] == 1
            assert "trace_path" not in out  # no host paths go back to the client
            messages = [m for _, m in steps]
            assert messages[0] == "iteration 1/4"
            assert messages[-1] == f"answer ready ({len(out['answer'])} chars)"
            assert [p for p, _ in steps] == sorted(p for p, _ in steps)  # increasing

            text = await client.call_tool("rlm_ask", {"question": "Gist?", "text": "x" * 7})
            assert text.structured_content["answer"].startswith("chars=7 ")  # type: ignore[index]

            loaded = await client.call_tool("rlm_load", {"paths": ["docs"]})
            info = loaded.structured_content
            assert info is not None and info["files"] == 2
            # the symlink out of the root inside docs/ was skipped, never read
            assert [s["reason"] for s in info["skipped"]] == ["outside the allowed roots"]
            for question in ("First?", "Second?"):
                again = await client.call_tool(
                    "rlm_ask", {"question": question, "handle": info["handle"]})
                assert again.structured_content["answer"].startswith("chars=2 ")  # type: ignore[index]

            runs = await client.call_tool("rlm_runs", {"limit": 10})
            listed = json.loads(text_of(runs)) if not runs.structured_content else \
                runs.structured_content["result"]
            assert [r["question"] for r in listed] == ["Second?", "First?", "Gist?", "When?"]
            trace = await client.call_tool("rlm_trace", {"run_id": listed[-1]["run_id"]})
            assert "question: When?" in text_of(trace) and "chars=42" in text_of(trace)


async def test_cancelling_the_call_cancels_the_run(
    upstream: tuple[FakeOpenAIServer, Upstream], roots: tuple[Path, Path], tmp_path: Path,
) -> None:
    fake, handler = upstream
    root, _ = roots
    one_run = StdioServerParameters(
        command=PYTHON, args=server_args(fake, root, "--max-concurrent-runs", "1"),
        env=server_env(tmp_path / "home"))
    with anyio.fail_after(120):
        async with Client(one_run) as client:
            async with anyio.create_task_group() as group:
                async def ask() -> None:
                    await client.call_tool("rlm_ask", {"question": "HANG", "text": "t"})

                group.start_soon(ask)
                await anyio.to_thread.run_sync(handler.hanging.wait, 60)
                group.cancel_scope.cancel()  # the SDK sends notifications/cancelled
            handler.release.set()
            # one run at a time: this call starts only once the cancelled run has ended
            ok = await client.call_tool("rlm_ask", {"question": "after", "text": "abc"})
            assert ok.structured_content["answer"].startswith("chars=3 ")  # type: ignore[index]
            runs = await client.call_tool("rlm_runs", {})
    listed = runs.structured_content["result"]  # type: ignore[index]
    assert [(r["question"], r["stop_reason"]) for r in listed] == [
        ("after", "final"), ("HANG", "cancelled")]
