"""CLI tests: no user configuration, a private FASTRLM_HOME (root conftest), no credentials."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config_home = tmp_path / "xdg-config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    for name in ("FASTRLM_CONFIG", "NO_COLOR", "OLLAMA_BASE_URL", "VLLM_BASE_URL",
                 "LLAMACPP_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return config_home
