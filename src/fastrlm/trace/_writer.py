"""TraceWriter: an event callback that keeps one append-only JSONL file per top-level run.

Each event becomes one JSON line, written and flushed as it arrives, so a process killed mid-run
leaves a readable trace (at worst its last line is cut, and the reader skips it). The events a
fan-out makes by the thousand (sub-calls and tool calls started and finished) are flushed
together, at most :data:`FLUSH_DELAY_S` after they were written, when an event loop runs: a
SIGKILL loses at most that much of them, and everything else reaches the file at once. Events of
child runs go into their top-level run's file; every event is routed by its own ``run_id``
(never by which run started last), so concurrent runs sharing one writer never mix their traces.
The context never enters a trace: events only carry its sha256 and size. Sub-call prompts appear
as previews unless ``full_prompts`` is set. An answer longer than :data:`ANSWER_INLINE_CHARS` is
not written into the trace either: ``run.finished`` keeps its head, its length and sha256, and
the name of a sidecar file beside the trace (``<run_id>.answer.txt``) that holds it whole, so a
trace grows with the steps, not the answer. What a resume needs (whole
replies, host results) goes into the run's replay record beside it (``<run_id>.record``,
:mod:`._record`), written by the engine as the run goes. The run's index rows are written on
the trace's I/O thread while an event loop runs (:mod:`._io`), and so is the trace file itself
made there, in the batch of the run's first row and before it (creating a file can cost a
millisecond in a folder where many were deleted lately): the lines the run writes meanwhile wait,
in order, and are written first once the file is open. While a run is open its file carries
the writer's lock (:mod:`._lock`), so a viewer shows it as running, and as incomplete once no
process holds it. Sub-call replies, like prompts, are whole only with ``full_prompts`` (for the
viewer to open).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .._foundation.errors import ConfigurationError
from .._foundation.events import (
    Event,
    RunFinished,
    RunStarted,
    SandboxStarted,
    SubcallFinished,
    SubcallStarted,
    ToolFinished,
    ToolStarted,
    preview,
)
from .._foundation.text import json_text
from .._foundation.threads import thread_result
from . import _index, _io
from ._lock import hold_writer_lock
from ._paths import index_path, traces_dir

logger = logging.getLogger("fastrlm.trace")
#: Answers up to this many characters stay inline in ``run.finished``.
ANSWER_INLINE_CHARS = 4096
#: How late a fan-out's sub-call and tool events may reach the file (one flush per batch rather
#: than one per event: a flush is a system call, as dear as encoding the event).
FLUSH_DELAY_S = 0.05
_BATCHED = (SubcallStarted, SubcallFinished, ToolStarted, ToolFinished)


#: The fields that hold whole texts, kept only with ``full_prompts``.
_FULL_ONLY: tuple[tuple[type[Event], str], ...] = (
    (SubcallStarted, "prompt"), (SubcallFinished, "response"),
    (ToolStarted, "arguments"), (ToolFinished, "result"),
)


class TraceWriter:
    """Write every event of a run tree to ``<home>/traces/<run_id>.jsonl`` and index the run.

    ``home`` defaults to ``$FASTRLM_HOME`` (``~/.fastrlm``). Safe to share between concurrent
    top-level runs of one event loop. Never raises into the engine: I/O errors are logged once
    and tracing stops for that run. The index is only a cache of the traces: a failed index
    write is logged once per writer and skipped, and the trace goes on whole.
    """

    def __init__(self, home: Path | None = None, *, full_prompts: bool = False) -> None:
        from ._paths import fastrlm_home

        self.home = Path(home) if home is not None else fastrlm_home()
        self.full_prompts = full_prompts
        self._root_of: dict[str, str] = {}
        self._files: dict[str, IO[str]] = {}
        #: Top-level runs whose file is being made on the I/O thread (while a loop runs).
        self._opening: dict[str, _io.Making[IO[str], str]] = {}
        self._started: dict[str, RunStarted] = {}
        self._failed: set[str] = set()
        self._index_warned = False
        self._flush_timer: tuple[asyncio.AbstractEventLoop, asyncio.TimerHandle] | None = None
        self._settling: dict[str, concurrent.futures.Future[None]] = {}
        self._made: dict[str, concurrent.futures.Future[None]] = {}
        self._made_paths: tuple[Path, Path, Path] | None = None

    @property
    def traces_dir(self) -> Path:
        return self._paths()[0]

    @property
    def index_path(self) -> Path:
        return self._paths()[1]

    def _paths(self) -> tuple[Path, Path]:
        """The traces directory and the index of :attr:`home`, made once per home (several
        times an event, they were a measurable part of a short run's trace)."""
        home = self.home
        if self._made_paths is None or self._made_paths[0] is not home:
            self._made_paths = (home, traces_dir(home), index_path(home))
        return self._made_paths[1], self._made_paths[2]

    def path_for(self, run_id: str) -> Path:
        """The trace file of a top-level run (a child run maps to its top-level run's file)."""
        return self.traces_dir / f"{self._root_of.get(run_id, run_id)}.jsonl"

    @property
    def started_runs(self) -> list[str]:
        """Top-level runs this writer saw start, finished or not, oldest first."""
        return list(self._started)

    @property
    def open_runs(self) -> list[str]:
        """Top-level runs that started and have not finished yet."""
        return [*self._files, *self._opening]

    def __call__(self, event: Event) -> None:
        root = self._route(event)
        if root is None or root in self._failed:
            return
        try:
            self._write(root, event)
        except (OSError, sqlite3.Error, TypeError, ValueError) as exc:
            self._failed.add(root)
            logger.warning("trace for run %s stopped: %s", root, exc)

    def close(self, stop_reason: str = "cancelled", error: str | None = None) -> None:
        """End every run still open, recording ``stop_reason`` (a process about to exit after
        Ctrl-C calls this so the trace and the index say how the run ended)."""
        for root in self.open_runs:
            started = self._started.get(root)
            duration = time.time() - started.ts if started else 0.0
            self(
                RunFinished(
                    run_id=root,
                    depth=0,
                    stop_reason=stop_reason,
                    answer="",
                    iterations=0,
                    subcalls=0,
                    usage={},
                    cost_usd=0.0,
                    duration_s=duration,
                    error=error,
                )
            )

    def __del__(self) -> None:
        # Runs that never finished keep their lines on disk; only the handles go.
        for handle in getattr(self, "_files", {}).values():
            handle.close()
        for opening in getattr(self, "_opening", {}).values():
            opening.end()

    def _route(self, event: Event) -> str | None:
        if isinstance(event, RunStarted):
            parent = event.parent_run_id
            if parent is None:
                self._root_of[event.run_id] = event.run_id
            else:
                self._root_of[event.run_id] = self._root_of.get(parent, parent)
        child = getattr(event, "child_run_id", None)
        if isinstance(child, str):
            self._root_of.setdefault(child, self._root_of.get(event.run_id, event.run_id))
        return self._root_of.get(event.run_id)

    def _write(self, root: str, event: Event) -> None:
        is_root_start = isinstance(event, RunStarted) and event.run_id == root
        is_root_end = isinstance(event, RunFinished) and event.run_id == root
        handle = self._files.get(root)
        opening = self._opening.get(root)
        if handle is None and opening is None:
            if not is_root_start and root not in self._started:
                return  # not part of a run this writer saw start: nothing to attach it to
            if is_root_start and _io.loop_running():  # made on the I/O thread (_index_batch)
                opening = self._opening[root] = _making_trace(self.path_for(root))
                self._made[root] = opening.done
            else:
                handle = self._files[root] = _open_trace(self.path_for(root))
        line = json_text(self._record(event)) + "\n"
        if opening is not None:
            handle = self._held_or_open(root, opening, line, is_root_end)
            if root in self._failed:
                return
        if handle is not None:
            handle.write(line)
        if not (isinstance(event, _BATCHED) and self._flush_later()):
            self.flush()
        if is_root_start:
            assert isinstance(event, RunStarted)
            self._started[root] = event
            start = self._start_row(event)
            self._to_index(root, _index.start_row(start))
        elif isinstance(event, SandboxStarted) and event.run_id == root:
            layer = {"sandbox": event.layer}
            self._to_index(root, _index.update_row(root, layer))
        elif is_root_end:
            assert isinstance(event, RunFinished)
            finish = self._finish_row(event)
            self._to_index(root, _index.update_row(root, finish))
            self._opening.pop(root, None)  # (if held: closed on the I/O thread once open)
            if handle is not None:
                handle.close()
                del self._files[root]

    def _held_or_open(self, root: str, opening: _io.Making[IO[str], str], line: str,
                      last: bool) -> IO[str] | None:
        """The file of ``root`` once the I/O thread has opened it (from now on written here);
        None while it is being opened (``line`` waits its turn then), or when it could not be
        (the run's trace stops: the I/O thread has said why)."""
        if opening.hold(line, last=last):
            return None
        del self._opening[root]
        if opening.handle is None:
            self._failed.add(root)
            return None
        self._files[root] = opening.handle
        return opening.handle

    def flush(self) -> None:
        """Write out what every open trace holds in its buffer (sub-call events wait up to
        :data:`FLUSH_DELAY_S` for this)."""
        if self._flush_timer is not None:
            self._flush_timer[1].cancel()
            self._flush_timer = None
        for root, handle in list(self._files.items()):
            try:
                handle.flush()
            except OSError as exc:
                self._failed.add(root)
                logger.warning("trace for run %s stopped: %s", root, exc)

    def _flush_later(self) -> bool:
        """Arrange a flush within :data:`FLUSH_DELAY_S` on the running loop; False with no
        loop running (the caller flushes now)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        if self._flush_timer is None or self._flush_timer[0] is not loop:
            # (a timer of a loop that has ended since would never fire)
            if self._flush_timer is not None:
                self._flush_timer[1].cancel()
            self._flush_timer = (loop, loop.call_later(FLUSH_DELAY_S, self.flush))
        return True

    def _to_index(self, root: str, write: _index.Write) -> None:
        """One index write: while an event loop runs, on the trace's I/O thread, in one commit
        with the others queued by then (:mod:`._io`; :meth:`settled` waits for it), after the
        run's file is made if it is still being made (and not at all if it could not be);
        else now."""
        if _io.loop_running():
            path, opening = self.index_path, self._opening.get(root)
            self._settling[root] = _io.batched(  # a file to make (its lines held) is urgent
                ("index", path), (write, self._index_failed, opening),
                functools.partial(_index_batch, path), urgent=opening is not None)
        else:
            try:
                _index.write_all(self.index_path, [write])
            except (OSError, sqlite3.Error, ConfigurationError) as exc:
                self._index_failed(exc)

    async def settled(self, run_id: str) -> None:
        """Wait (without holding up the event loop) until the index writes of ``run_id``'s
        top-level run handed to the I/O thread so far are made (and with them its file, and the
        lines written before it was open)."""
        root = self._root_of.get(run_id, run_id)
        self._made.pop(root, None)  # (made before its first row)
        pending = self._settling.pop(root, None)
        if pending is not None:  # a cancelled run never cancels the write itself
            if not pending.done():
                _io.hurry("rows")
            await thread_result(pending)

    async def written(self, run_id: str) -> None:
        """Wait (without holding up the event loop) until the file of ``run_id``'s top-level
        run is made and holds the lines written to it so far; its index rows may still be
        queued (what a cancelled run waits for: its rows may wait for a busy index), though
        written at once: the I/O lanes stop lingering for them."""
        _io.hurry("rows")
        made = self._made.pop(self._root_of.get(run_id, run_id), None)
        if made is not None:
            await thread_result(made)

    def _index_failed(self, exc: BaseException) -> None:
        """An index write failed (locked past the busy timeout, written by a newer fastrlm,
        unwritable): never the trace's end; logged once per writer."""
        if not self._index_warned:
            self._index_warned = True
            logger.warning("the run index %s is not updated (%s); traces are still written "
                           "whole to %s", self.index_path, exc, self.traces_dir)

    def _record(self, event: Event) -> dict[str, Any]:
        data = event.to_dict()
        if not self.full_prompts:  # whole texts only in a full trace (keys set on the dict:
            # a dataclasses.replace per event would cost more than writing it)
            for kind, key in _FULL_ONLY:
                if isinstance(event, kind) and data.get(key):
                    data[key] = None
        if isinstance(event, RunFinished) and len(event.answer) > ANSWER_INLINE_CHARS:
            data.update(self._answer_sidecar(event))
        return data

    def _answer_sidecar(self, event: RunFinished) -> dict[str, Any]:
        """Write a long answer beside the trace; the fields that replace it in the record."""
        encoded = event.answer.encode("utf-8", "surrogatepass")
        name = f"{event.run_id}.answer.txt"
        try:
            (self.traces_dir / name).write_bytes(encoded)
        except FileNotFoundError:  # the run's file (and its folder) is still being made
            self.traces_dir.mkdir(parents=True, exist_ok=True)
            (self.traces_dir / name).write_bytes(encoded)
        return {
            "answer": event.answer[:ANSWER_INLINE_CHARS],
            "answer_chars": len(event.answer),
            "answer_sha256": hashlib.sha256(encoded).hexdigest(),
            "answer_file": name,
        }

    def _start_row(self, event: RunStarted) -> dict[str, Any]:
        ctx = event.context or {}
        return {
            "run_id": event.run_id,
            "started_at": event.ts,
            "question": event.question,
            "model": event.model,
            "sub_model": event.sub_model,
            "sandbox": event.sandbox,
            "context_sha256": str(ctx.get("sha256", "")),
            "context_chars": int(ctx.get("total_chars", 0) or 0),
            "trace_path": str(self.path_for(event.run_id)),
            "session_id": event.session_id,
            "session_question": event.session_question,
        }

    @staticmethod
    def _finish_row(event: RunFinished) -> dict[str, Any]:
        usage = event.usage or {}
        return {
            "finished_at": event.ts,
            "stop_reason": event.stop_reason,
            "cost_usd": event.cost_usd,
            "duration_s": event.duration_s,
            "iterations": event.iterations,
            "subcalls": event.subcalls,
            "input_tokens": int(usage.get("input_tokens", 0) or 0),
            "output_tokens": int(usage.get("output_tokens", 0) or 0),
            "answer_preview": preview(event.answer, 300),
            "error": event.error,
        }


def _open_trace(path: Path) -> IO[str]:
    """Open (make) a run's trace file for appending, its folder made only when missing, and
    mark it as being written."""
    try:
        handle = path.open("a", encoding="utf-8")
    except FileNotFoundError:  # the first run in this home (or its folder was removed)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a", encoding="utf-8")
    hold_writer_lock(handle)  # a viewer tells a running run from a dead one by it
    return handle


def _making_trace(path: Path) -> _io.Making[IO[str], str]:
    """A run's trace file, to be made on the I/O thread (with its first index row, by
    :func:`_index_batch`) while the run's lines wait for it."""

    def write(handle: IO[str], lines: list[str]) -> None:
        handle.write("".join(lines))
        handle.flush()

    def failed(exc: OSError) -> None:
        logger.warning("trace for run %s stopped: %s", path.stem, exc)

    return _io.Making(functools.partial(_open_trace, path), write, _close_trace, failed)


def _close_trace(handle: IO[str]) -> None:
    handle.close()


def _index_batch(path: Path, items: list[tuple[_index.Write, Callable[[BaseException], None],
                                               _io.Making[IO[str], str] | None]]) -> None:
    """The index writes of several runs (and writers) in one commit, each after its run's file
    is made if that is still to do (a run whose file cannot be made has no rows, as when it is
    made on the loop); if the commit fails, each is tried alone, so a write that cannot be
    made fails by itself, reported to its writer."""
    items = [item for item in items if item[2] is None or item[2].make()]
    if not items:
        return
    try:
        _index.write_all(path, [write for write, _, _ in items], keep=True)
        return
    except (OSError, sqlite3.Error, ConfigurationError) as exc:
        if len(items) == 1:
            items[0][1](exc)
            return
    for write, failed, _ in items:
        try:
            _index.write_all(path, [write], keep=True)
        except (OSError, sqlite3.Error, ConfigurationError) as exc:
            failed(exc)
