"""Shared fixtures: every test runs with its own FASTRLM_HOME and no provider credentials."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# litellm fetches its price map from the network at import unless told to use its own copy:
# tests never reach the network (set before any test imports litellm, subprocesses inherit it)
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "fastrlm-home"
    monkeypatch.setenv("FASTRLM_HOME", str(home))
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "FASTRLM_MODEL",
                 "FASTRLM_SUB_MODEL", "OPENROUTER_API_KEY", "FASTRLM_OTEL"):
        monkeypatch.delenv(name, raising=False)
    for name in [n for n in os.environ if n.startswith("OTEL_")]:  # no spans sent anywhere
        monkeypatch.delenv(name)
    yield home
