"""Traces: one JSONL file per top-level run, a SQLite index of runs, and reading them back;
the viewer's page (:func:`render_html`) and its live server (:class:`LiveView`) load on first
use (they are only needed by ``fastrlm view`` and ``ask --view``)."""

from typing import TYPE_CHECKING

from .._foundation.errors import ReplayError
from ._export import ExportFilter, ExportReport, export_runs, fix_reply, load_scores
from ._index import IndexUnusableError, RunFilter, RunRecord, delete_runs, list_runs
from ._paths import fastrlm_home, index_path, traces_dir
from ._reader import Trace, TraceNotFoundError, read_trace, render_transcript, resolve_run
from ._record import RECORD_SUFFIX, RecordFile, read_head, read_record, record_path
from ._writer import TraceWriter

if TYPE_CHECKING:
    from ._html import render_html
    from ._live import LiveView

__all__ = [
    "RECORD_SUFFIX",
    "ExportFilter",
    "ExportReport",
    "IndexUnusableError",
    "LiveView",
    "RecordFile",
    "ReplayError",
    "RunFilter",
    "RunRecord",
    "Trace",
    "TraceNotFoundError",
    "TraceWriter",
    "delete_runs",
    "export_runs",
    "fastrlm_home",
    "fix_reply",
    "index_path",
    "list_runs",
    "load_scores",
    "read_head",
    "read_record",
    "read_trace",
    "record_path",
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
