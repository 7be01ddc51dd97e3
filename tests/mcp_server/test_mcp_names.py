"""Names that are not well-formed Unicode (a file name of invalid UTF-8 decodes to a lone
surrogate) in what an MCP tool returns: the result still reaches the client."""

from __future__ import annotations

import os
from pathlib import Path

from fastrlm.testing import FakeOpenAIServer

from .conftest import Upstream
from .test_mcp_refusals import connected, text_of


def _write(path: bytes, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


async def test_a_file_name_of_invalid_utf8_comes_back_in_the_tools_result(
        upstream: tuple[FakeOpenAIServer, Upstream], roots: tuple[Path, Path]) -> None:
    root, _ = roots
    docs = os.fsencode(root / "docs")
    _write(docs + b"/bad\xff.bin", b"\x00\x01\x02" * 100)  # skipped as binary: name reported
    _write(docs + b"/ok\xfe.txt", b"plain text")  # read: its name heads its document
    async with connected(upstream, roots) as client:
        loaded = await client.call_tool("rlm_load", {"paths": ["docs"]})
        asked = await client.call_tool("rlm_ask", {"question": "q", "paths": ["docs"]})
    assert not loaded.is_error, text_of(loaded)
    assert "bad" in text_of(loaded) and "binary" in text_of(loaded)
    assert not asked.is_error, text_of(asked)
    assert "chars=" in text_of(asked)
