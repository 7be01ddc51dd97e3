"""Where fastrlm keeps its state: ``$FASTRLM_HOME`` (default ``~/.fastrlm``), the one reader of
that variable. Every path under it (traces, the run index, the sub-call cache, the user's prices,
saved views) is named here, so two parts of fastrlm never disagree about where a file lives."""

from __future__ import annotations

import os
from pathlib import Path


def fastrlm_home() -> Path:
    """The state directory (``$FASTRLM_HOME`` with ``~`` expanded, else ``~/.fastrlm``). Not
    created here."""
    env = os.environ.get("FASTRLM_HOME")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".fastrlm"


def traces_dir(home: Path | None = None) -> Path:
    return (home or fastrlm_home()) / "traces"


def index_path(home: Path | None = None) -> Path:
    return (home or fastrlm_home()) / "index.sqlite"


def cache_path(home: Path | None = None) -> Path:
    return (home or fastrlm_home()) / "cache.sqlite"


def user_prices_path(home: Path | None = None) -> Path:
    return (home or fastrlm_home()) / "prices.json"


def views_dir(home: Path | None = None) -> Path:
    return (home or fastrlm_home()) / "views"
