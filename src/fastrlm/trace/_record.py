"""The replay record: what a resume or a fork needs to re-run a run without asking a model again,
kept beside its trace as ``<run_id>.record`` (the trace stays O(steps) and readable; whole
replies and host results live here).

One entry a line, appended as it happens: ``<16 hex digits> <JSON object>\\n``, the digits the
head of the SHA-256 of the JSON text, so a flipped byte is found, not trusted. Each line is one
``write`` on a descriptor opened with ``O_APPEND``: a process killed (SIGKILL included) keeps
every line written before it died, whole, and at most the last one is cut short, which the reader
drops. The fsync policy: an entry that closes a step (a root reply, a cell's output) is
``fsync``-ed (while an event loop runs, on the trace's I/O thread within its lane's linger,
``_io.LINGER_S["fsync"]``, one fsync for the record's entries by then), so after a machine
crash the record holds every step closed before that;
the entries inside a step (each sub-call reply, each host result: a fan-out of thousands) are
written at once but not fsync-ed one by one, since a process crash (what resume is for) loses
none of them and a power cut loses at most the step in flight.

While an event loop runs, the file itself is made on the I/O thread too (creating a file can
cost a millisecond in a folder where many were deleted lately), on the lane of the index rows
(a run's end waits for those anyway; never behind an fsync): the entries written before it is
open wait, in order, and are written once it is (then fsync-ed on the fsync lane, if one of
them closes a step); :meth:`RecordFile.settled` waits for the writes, not the fsync. One that
cannot be made is reported to ``failed`` (from that thread), and its entries are dropped.

What the entries mean is the engine's business (``fastrlm._core.replay``); this module only
writes and reads them.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._foundation.errors import ReplayError
from .._foundation.text import json_text
from .._foundation.threads import thread_result
from . import _io

#: The suffix of a run's record beside its trace (``<run_id>.record``).
RECORD_SUFFIX = ".record"
_DIGEST_CHARS = 16


def record_path(traces: Path, run_id: str) -> Path:
    """Where the record of the top-level run ``run_id`` is kept."""
    return traces / f"{run_id}{RECORD_SUFFIX}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_DIGEST_CHARS]


class RecordFile:
    """Appends entries to one record file (made with mode 0600: it holds whole prompts and
    replies). The engine writes from its one event loop; while the file is being made on the
    I/O thread (a loop runs), the entries wait in memory (an :class:`~._io.Making`, shared with
    that thread). Without a running loop the file is made at once, and an ``OSError`` raised
    here; with one, ``failed`` (called on the I/O thread) is told instead."""

    def __init__(self, path: Path, failed: Callable[[OSError], None] | None = None) -> None:
        self.path = path
        self._fd: int | None = None
        self._making: _io.Making[int, tuple[bytes, bool]] | None = None
        self._made: concurrent.futures.Future[None] | None = None
        if _io.loop_running():
            making = self._making = _io.Making(functools.partial(_create, path),
                                               self._write_held, os.close, failed or _ignore)
            self._made = making.done
            # on the index rows' lane, which a run's end waits for anyway, never behind fsyncs
            _io.later(making.make, "rows", urgent=True)
        else:
            self._fd = _create(path)

    def append(self, entry: dict[str, Any], *, durable: bool = False) -> None:
        """Write ``entry`` as one line; ``durable`` also fsyncs it (the end of a step)."""
        body = json_text(entry, separators=(",", ":"))
        data = f"{_digest(body)} {body}\n".encode()
        if self._fd is None:
            making = self._making
            if making is None:  # closed
                return
            if making.hold((data, durable)):  # still being made: it waits its turn
                return
            self._making = None
            self._fd = making.handle  # handed over; None: it could not be made
            if self._fd is None:
                return
        self._write(self._fd, data)
        if durable:
            if _io.loop_running():  # on the trace's I/O thread, on a descriptor of its own:
                # the fsyncs of one record queued by then are one (the last covers them all)
                _io.batched(("record", self.path), os.dup(self._fd), _sync, "fsync")
            else:
                os.fsync(self._fd)

    async def settled(self) -> None:
        """Wait (without holding up the loop) until the file is made and the entries written
        before that are in it."""
        if self._made is not None:  # a cancelled waiter never cancels the write
            if not self._made.done():
                _io.hurry("rows")
            await thread_result(self._made)

    def close(self) -> None:
        making, self._making = self._making, None
        if making is not None:  # closed by the I/O thread once it is made
            making.end()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()

    def _write(self, fd: int, data: bytes) -> None:
        written = os.write(fd, data)
        if written != len(data):  # a short write to a regular file: the disk is full
            raise OSError(f"the record {self.path} took {written} of {len(data)} bytes")

    def _write_held(self, fd: int, held: list[tuple[bytes, bool]]) -> None:
        """Write the entries held while the file was made (on the I/O thread); fsync them on
        the fsync lane if one closed a step, as the loop's own: nothing waits for it."""
        for data, _ in held:
            self._write(fd, data)
        if any(durable for _, durable in held):
            _io.batched(("record", self.path), os.dup(fd), _sync, "fsync")


def _ignore(exc: OSError) -> None:
    """No one to tell that a record could not be made (its entries are dropped)."""


def _create(path: Path) -> int:
    """Make (or open) a record for appending, mode 0600, its folder made only when missing."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    try:
        return os.open(path, flags, 0o600)
    except FileNotFoundError:  # its folder is not there yet
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, flags, 0o600)


def _sync(fds: list[int]) -> None:
    """fsync one record once for every entry queued (its descriptors, one per entry, all on
    the same file), then close them."""
    try:
        os.fsync(fds[-1])
    except OSError:
        pass  # the lines are written; only their durability against a power cut is lost
    finally:
        for fd in fds:
            os.close(fd)


def read_record(path: Path) -> list[dict[str, Any]]:
    """Every entry of the record at ``path``, in order. A last line cut short (the process died
    while writing it) is dropped. Raises :class:`ReplayError` when the file is missing or a
    line before the last is damaged (its digest or JSON is wrong: what follows cannot be
    trusted)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ReplayError(
            f"no replay record at {path}: the run was made with tracing off or by a fastrlm "
            "without replay records, so it cannot be resumed or forked (runs made with "
            "RLM(trace=...) or `fastrlm ask` keep one)"
        ) from None
    except OSError as exc:
        raise ReplayError(f"cannot read the replay record {path}: {exc}") from exc
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]  # tail: b"" after a final newline, else cut short
    entries: list[dict[str, Any]] = []
    for number, line in enumerate(complete, 1):
        entry = _entry(line)
        if entry is None:
            raise ReplayError(
                f"the replay record {path} is damaged at line {number} of {len(complete)}: "
                "the rest cannot be trusted. Fork the run before the damage "
                f"(rlm.fork(run_id, at_turn=K) / `fastrlm resume RUN --at-turn K`), with K "
                "no later than the last turn before it"
            )
        entries.append(entry)
    if tail and (entry := _entry(tail)) is not None:
        entries.append(entry)  # written whole but not ended: a newline lost, not the entry
    return entries


def read_head(path: Path) -> dict[str, Any] | None:
    """The first entry of the record at ``path`` (its head), reading that line only; None
    when it is missing, empty or damaged."""
    try:
        with path.open("rb") as handle:
            line = handle.readline()
    except OSError:
        return None
    return _entry(line.rstrip(b"\n"))


def _entry(line: bytes) -> dict[str, Any] | None:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return None
    digest, _, body = text.partition(" ")
    if len(digest) != _DIGEST_CHARS or _digest(body) != digest:
        return None
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
