"""A model for ``fastrlm mcp`` to call: the fake OpenAI server, root turns scripted apart from
sub-calls; a question containing HANG makes the root call wait until the test releases it."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fastrlm.testing import FakeOpenAIServer
from fastrlm.testing._fake_server import FakeRequest, Reply

try:
    import mcp.server.mcpserver  # noqa: F401 - the extra these tests need
except ImportError:  # without fastrlm[mcp] there is nothing here to test
    collect_ignore_glob = ["test_*.py"]

SRC = str(Path(__file__).resolve().parents[2] / "src")
ANSWER = ('```repl\nFINAL("chars=" + str(len(context)) + " sub=" + llm_query("gist: " + '
          'str(context)[:40]))\n```')


@dataclass
class Upstream:
    hanging: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    prompts: list[str] = field(default_factory=list)

    def __call__(self, request: FakeRequest) -> Reply:
        self.prompts.append(json.dumps(request.body))
        if not request.is_root:
            return "sub:" + request.prompt[:12]
        if "HANG" in json.dumps(request.body):
            self.hanging.set()
            self.release.wait(60)
        return ANSWER


@pytest.fixture
def upstream() -> Iterator[tuple[FakeOpenAIServer, Upstream]]:
    handler = Upstream()
    with FakeOpenAIServer(handler=handler) as fake:
        try:
            yield fake, handler
        finally:
            handler.release.set()


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    """(root, outside): a root with docs/ and a symlink pointing out of it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "docs").mkdir(parents=True)
    outside.mkdir()
    (root / "docs" / "a.txt").write_text("The festival is held in Lisbon every June.")
    (root / "docs" / "b.txt").write_text("Tickets go on sale in March.")
    (outside / "secret.txt").write_text("SECRET-TOKEN-123")
    (root / "escape.txt").symlink_to(outside / "secret.txt")
    (root / "docs" / "z-escape.txt").symlink_to(outside / "secret.txt")
    return root, outside


def server_env(home: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC, "FASTRLM_HOME": str(home),
            "OPENAI_API_KEY": "fake", "XDG_CONFIG_HOME": str(home / "xdg")}


def server_args(fake: FakeOpenAIServer, root: Path, *extra: str) -> list[str]:
    return ["-m", "fastrlm", "mcp", "--root", str(root), "--model", "openai/root-model",
            "--sub-model", "openai/sub-model", "--base-url", fake.base_url, "--sandbox", "none",
            "--max-subcalls", "5", "--max-iterations", "4", *extra]


PYTHON = sys.executable
