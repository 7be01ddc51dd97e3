"""The model-free tools of ``fastrlm mcp`` (grep, read, stats, handles, drop, status), their
annotations, the typed ``budget`` schema and ``rlm_ask``'s concise result, through the MCP SDK's
client connected in-process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from fastrlm.mcp import _browse
from fastrlm.testing import FakeOpenAIServer

from .conftest import Upstream
from .test_mcp_refusals import connected, text_of

pytest.importorskip("regex")


def _lines(n: int) -> str:
    return "".join(f"line {i}{' needle' if i % 10 == 0 else ''}\n" for i in range(1, n + 1))


@pytest.fixture
def big(roots: tuple[Path, Path]) -> tuple[Path, Path]:
    root, _ = roots
    (root / "docs" / "c.log").write_text(_lines(100))
    return roots


async def _load(client: Any) -> str:
    loaded = await client.call_tool("rlm_load", {"paths": ["docs"]})
    assert not loaded.is_error, text_of(loaded)
    return str(loaded.structured_content["handle"])


async def test_grep_finds_lines_with_context_and_bounds_the_matches(
    upstream: tuple[FakeOpenAIServer, Upstream], big: tuple[Path, Path],
) -> None:
    _, handler = upstream
    with anyio.fail_after(60):
        async with connected(upstream, big) as client:
            handle = await _load(client)
            found = await client.call_tool("rlm_grep", {
                "handle": handle, "pattern": "needle", "context_lines": 1, "max_matches": 3})
            regex = await client.call_tool("rlm_grep", {
                "handle": handle, "pattern": r"^line 9\d NEEDLE$", "regex": True,
                "ignore_case": True})
            lisbon = await client.call_tool("rlm_grep", {"handle": handle, "pattern": "lisbon",
                                                         "ignore_case": True})
    out = found.structured_content
    assert out is not None and out["count"] == 3 and out["truncated"] is True
    first = out["matches"][0]
    assert first["name"].endswith("c.log") and first["line"] == 10
    assert first["text"] == "line 10 needle"
    assert first["before"] == ["line 9"] and first["after"] == ["line 11"]
    assert [m["line"] for m in regex.structured_content["matches"]] == [90]  # type: ignore[index]
    assert lisbon.structured_content["matches"][0]["name"].endswith("a.txt")  # type: ignore[index]
    assert handler.prompts == []  # no model was called


async def test_read_gives_a_range_of_one_document_and_says_where_to_go_on(
    upstream: tuple[FakeOpenAIServer, Upstream], big: tuple[Path, Path],
) -> None:
    with anyio.fail_after(60):
        async with connected(upstream, big) as client:
            handle = await _load(client)
            stats = await client.call_tool("rlm_stats", {"handle": handle})
            largest = stats.structured_content["largest"][0]  # type: ignore[index]
            page = await client.call_tool("rlm_read", {
                "handle": handle, "document": largest["name"], "start_line": 98,
                "max_lines": 2})
            last = await client.call_tool("rlm_read", {
                "handle": handle, "document": largest["document"], "start_line": 100})
            missing = await client.call_tool("rlm_read", {"handle": handle, "document": 9})
            past = await client.call_tool("rlm_read", {"handle": handle,
                                                       "document": largest["document"],
                                                       "start_line": 101})
    assert stats.structured_content["documents"] == 3  # type: ignore[index]
    assert largest["name"].endswith("c.log") and largest["lines"] == 100
    out = page.structured_content
    assert out is not None and out["text"] == "line 98\nline 99"
    assert (out["start_line"], out["end_line"], out["next_line"]) == (98, 99, 100)
    assert last.structured_content["next_line"] is None  # type: ignore[index]
    assert missing.is_error and "rlm_stats lists them" in text_of(missing)
    assert past.is_error and "start_line must be an integer from 1 to 100" in text_of(past)


async def test_handles_are_listed_and_a_dropped_one_is_refused(
    upstream: tuple[FakeOpenAIServer, Upstream], roots: tuple[Path, Path],
) -> None:
    with anyio.fail_after(60):
        async with connected(upstream, roots) as client:
            first = await _load(client)
            second = await _load(client)
            listed = await client.call_tool("rlm_handles", {})
            dropped = await client.call_tool("rlm_drop", {"handle": first})
            again = await client.call_tool("rlm_drop", {"handle": first})
            grep = await client.call_tool("rlm_grep", {"handle": first, "pattern": "x"})
            status = await client.call_tool("rlm_status", {})
    names = [h["handle"] for h in listed.structured_content["result"]]  # type: ignore[index]
    assert names == [second, first]  # most recently used first
    assert dropped.structured_content == {"dropped": first, "handles_left": 1}
    assert again.is_error and "rlm_handles lists the live ones" in text_of(again)
    assert grep.is_error and "call rlm_load again" in text_of(grep)
    info = status.structured_content
    assert info is not None
    assert info["model"] == "openai/root-model" and info["sub_model"] == "openai/sub-model"
    assert info["handles"] == 1 and info["max_handles"] == 2
    assert info["budget"]["max_subcalls"] == 5 and info["runs_running"] == 0


async def test_a_regex_that_backtracks_without_end_is_refused_not_hung(
    upstream: tuple[FakeOpenAIServer, Upstream], roots: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root, _ = roots
    (root / "docs" / "a.txt").write_text("a" * 5000 + "!")
    monkeypatch.setattr(_browse, "REGEX_SECONDS", 0.2)  # (a+)+$ on this line takes ages
    with anyio.fail_after(60):
        async with connected(upstream, roots) as client:
            handle = await _load(client)
            slow = await client.call_tool("rlm_grep", {"handle": handle, "pattern": "(a+)+$",
                                                       "regex": True})
            bad = await client.call_tool("rlm_grep", {"handle": handle, "pattern": "(",
                                                      "regex": True})
            huge = await client.call_tool("rlm_grep", {"handle": handle, "pattern": "x" * 2000})
            wide = await client.call_tool("rlm_grep", {"handle": handle, "pattern": "a",
                                                       "context_lines": 500})
    assert slow.is_error and "ran past 0.2 s" in text_of(slow)
    assert bad.is_error and "not a valid regular expression" in text_of(bad)
    assert huge.is_error and "over the limit of 1,000" in text_of(huge)
    assert wide.is_error and "context_lines must be an integer from 0 to 20" in text_of(wide)


def test_a_long_line_comes_back_clipped_around_the_match() -> None:
    docs = _browse.documents("x" * 10_000 + "FOUND" + "y" * 10_000, "one.txt")
    out = _browse.grep(docs, "FOUND")
    text = out["matches"][0]["text"]
    assert "FOUND" in text and len(text) <= _browse.LINE_CHARS + 2
    assert out["matches"][0]["name"] == "one.txt"


async def test_read_only_tools_are_annotated_and_the_budget_schema_is_typed(
    upstream: tuple[FakeOpenAIServer, Upstream], roots: tuple[Path, Path],
) -> None:
    with anyio.fail_after(60):
        async with connected(upstream, roots) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
    read_only = {name for name, t in tools.items()
                 if t.annotations is not None and t.annotations.read_only_hint}
    assert read_only == {"rlm_grep", "rlm_read", "rlm_stats", "rlm_handles", "rlm_status",
                         "rlm_runs", "rlm_trace"}
    assert tools["rlm_drop"].annotations.destructive_hint  # type: ignore[union-attr]
    assert tools["rlm_ask"].annotations.open_world_hint  # type: ignore[union-attr]
    budget = tools["rlm_ask"].input_schema["properties"]["budget"]
    assert budget["type"] == "object" and budget["additionalProperties"] is False
    props = budget["properties"]
    assert set(props) == {"max_usd", "max_subcalls", "max_requests", "max_seconds",
                          "max_depth", "max_iterations"}
    assert props["max_usd"]["type"] == ["number", "null"]
    assert props["max_usd"]["exclusiveMinimum"] == 0
    assert props["max_iterations"] == {**props["max_iterations"], "type": "integer",
                                       "minimum": 1}


async def test_rlm_ask_answers_with_structured_content_and_a_short_text(
    upstream: tuple[FakeOpenAIServer, Upstream], roots: tuple[Path, Path],
) -> None:
    with anyio.fail_after(60):
        async with connected(upstream, roots) as client:
            asked = await client.call_tool("rlm_ask", {"question": "q", "text": "abcd"})
    out = asked.structured_content
    assert out is not None
    assert set(out) == {"answer", "stop_reason", "cost_usd", "iterations", "subcalls",
                        "duration_s", "run_id"}  # no usage breakdown, no host paths
    text = text_of(asked)
    assert text.startswith(out["answer"] + "\n[final; $0.0000; 1 sub-call(s); run ")
    assert len(text) < len(out["answer"]) + 80  # not the structured content's JSON again


def test_a_grep_that_matches_everything_stays_bounded() -> None:
    docs = _browse.documents(["==> big.txt <==\n" + ("x" * 1000 + "\n") * 5000], "ctx")
    out = _browse.grep(docs, "x", context_lines=20, max_matches=500)
    size = sum(len(m["text"]) + sum(map(len, m["before"] + m["after"])) for m in out["matches"])
    assert out["truncated"] and size <= _browse.GREP_CHARS + 41 * (_browse.LINE_CHARS + 2)


def test_a_line_longer_than_a_read_goes_on_from_where_it_was_cut() -> None:
    # a minified file is one line: past READ_CHARS its rest was out of reach
    cut = _browse.READ_CHARS
    line = "".join(chr(ord("a") + i % 26) for i in range(2 * cut + 7))
    docs = _browse.documents(line + "\nafter\n", "min.json")
    pieces, at, char = [], 1, 0
    while True:
        out = _browse.read(docs, 0, start_line=at, start_char=char)
        pieces.append(out["text"])
        if out["next_line"] is None:
            break
        at, char = out["next_line"], out["next_char"]
        assert len(pieces) < 10
    assert pieces[:3] == [line[:cut], line[cut:2 * cut], line[2 * cut:] + "\nafter"]
    assert len(pieces) == 3
    with pytest.raises(_browse.ToolRefusal, match="start_char must be an integer from 0 to 4"):
        _browse.read(docs, 0, start_line=2, start_char=5)


async def test_rlm_read_takes_the_character_to_start_at(
    upstream: tuple[FakeOpenAIServer, Upstream], big: tuple[Path, Path],
) -> None:
    with anyio.fail_after(60):
        async with connected(upstream, big) as client:
            handle = await _load(client)
            stats = await client.call_tool("rlm_stats", {"handle": handle})
            largest = stats.structured_content["largest"][0]  # type: ignore[index]
            page = await client.call_tool("rlm_read", {
                "handle": handle, "document": largest["document"], "start_line": 42,
                "start_char": 5, "max_lines": 1})
    out = page.structured_content
    assert out is not None and out["text"] == "42"
    assert (out["next_line"], out["next_char"]) == (43, 0)
