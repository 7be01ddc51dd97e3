"""Traces: one JSONL file per top-level run, a SQLite index of runs, and reading them back;
the viewer's page (:func:`render_html`) and its live server (:class:`LiveView`) load on first
use (they are only needed by ``fastrlm view`` and ``ask --view``)."""

from typing import TYPE_CHECKING

from ._index import IndexUnusableError, RunFilter, RunRecord, delete_runs, list_runs
from ._paths import fastrlm_home, index_path, traces_dir
from ._reader import Trace, TraceNotFoundError, read_trace, render_transcript, resolve_run
from ._writer import TraceWriter

if TYPE_CHECKING:
    from ._html import render_html
    from ._live import LiveView

__all__ = [
    "IndexUnusableError",
    "LiveView",
    "RunFilter",
    "RunRecord",
    "Trace",
    "TraceNotFoundError",
    "TraceWriter",
    "delete_runs",
    "fastrlm_home",
    "index_path",
    "list_runs",
    "read_trace",
    "render_html",
    "render_transcript",
    "resolve_run",
    "traces_dir",
]


def __getattr__(name: str) -> object:
    if name == "LiveView":
        from ._live import LiveView

        return LiveView
    if name == "render_html":
        from ._html import render_html

        return render_html
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
