"""Traces: one JSONL file per top-level run, a SQLite index of runs, and reading them back."""

from ._index import IndexUnusableError, RunRecord, list_runs
from ._paths import fastrlm_home, index_path, traces_dir
from ._reader import Trace, TraceNotFoundError, read_trace, render_transcript, resolve_run
from ._writer import TraceWriter

__all__ = [
    "IndexUnusableError",
    "RunRecord",
    "Trace",
    "TraceNotFoundError",
    "TraceWriter",
    "fastrlm_home",
    "index_path",
    "list_runs",
    "read_trace",
    "render_transcript",
    "resolve_run",
    "traces_dir",
]
