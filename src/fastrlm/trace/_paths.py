"""Where traces live: the names come from :mod:`fastrlm._foundation.home` (their one owner)."""

from __future__ import annotations

from .._foundation.home import fastrlm_home, index_path, traces_dir

__all__ = ["fastrlm_home", "index_path", "traces_dir"]
