"""Where fastrlm keeps its state: ``$FASTRLM_HOME`` (default ``~/.fastrlm``)."""

from __future__ import annotations

import os
from pathlib import Path


def fastrlm_home() -> Path:
    """The state directory: traces, the run index, caches. Not created here."""
    env = os.environ.get("FASTRLM_HOME")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".fastrlm"


def traces_dir(home: Path | None = None) -> Path:
    return (home or fastrlm_home()) / "traces"


def index_path(home: Path | None = None) -> Path:
    return (home or fastrlm_home()) / "index.sqlite"
