"""The trace's slow writes, off the event loop: a thread a lane (the index rows, and the trace
files and replay records made before their runs' first rows; the records' fsyncs), each first
in first out.

A run's index rows (an SQLite transaction each) and its replay record's
fsyncs (:mod:`._record`) take a millisecond or more each. Made on the event loop, a server's
every request waited for them (three of each a run). While an event loop runs, the writer and
the record hand them here instead (:func:`later`); without one (a script, a test, the CLI after
a run) they are made at once, as before.

Order is kept within a lane (one thread, one queue: a run's row is inserted before it is
updated); the rows never wait behind an fsync. What is queued is made before the process exits
normally (an ``atexit`` drain) and before this process reads the index (:func:`drain`, called by
its readers); and a run's ``completion()`` returns only once its own rows are written (the
engine awaits ``TraceWriter.settled``, without holding up the loop), so nothing writes into a
trace home after the run that wrote there has ended. A process killed with writes queued loses
them as it would have lost a write in flight: the index is a cache of the traces (the trace file
itself is written at once), and a record line is written at once too; only its fsync comes a
moment later (a power cut, not a crash, could lose the last step).

A lane's thread woken for a job lingers a moment (:data:`LINGER_S`) before it runs what is
queued, so that the jobs handed over meanwhile are found, not signalled: under a server's load
each wake-up (a context switch that can take the CPU and the GIL from the event loop) then
serves many runs' writes (one index commit, one fsync a record) instead of one. A waiter cuts
the moment short (:func:`hurry`: a run's end waiting for its rows, a reader's drain), so no run
waits longer for its rows than before; nothing waits for an fsync, which is made at most
``LINGER_S["fsync"]`` after its step closed. A job whose lines wait in memory until it runs
(making a run's trace file or record) is ``urgent``: it never waits out a linger.

Creating a file (a trace, a record) is made here as well: in a folder where many files were
deleted lately, each creation can cost the loop up to a millisecond. A run's lines written
before its file is open wait for it, in order, and are written once it is (a kill in that
moment loses them, as it loses a buffered line).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

logger = logging.getLogger("fastrlm.trace")
_T = TypeVar("_T")

#: How long a reader (or the process's exit) waits for queued writes at most.
DRAIN_TIMEOUT_S = 30.0
#: How long a lane's thread, woken for a job, lets others join it before it runs them (a
#: waiter's :func:`hurry` ends it at once); lanes not named here run at once.
LINGER_S = {"rows": 0.005, "fsync": 0.02}

_Job = tuple[Callable[[], object], concurrent.futures.Future[None]]


class _Lane:
    """One lane's queue and thread. The thread is woken only when it waits for work (a job
    handed to a busy thread is found when it looks again): every wake-up is a context switch
    that can take the CPU, and the GIL, from the event loop."""

    def __init__(self, linger_s: float) -> None:
        self.jobs: collections.deque[_Job] = collections.deque()
        self.work = threading.Condition(_lock)
        self.waiting = False
        self.linger_s = linger_s
        self.lingering = False
        self.hurried = False
        self.thread: threading.Thread | None = None

    def hurry(self) -> None:
        """What is queued runs without lingering (under ``_lock``)."""
        self.hurried = True
        if self.lingering:
            self.work.notify()


#: One queue and thread a lane: the index rows do not wait behind the records' fsyncs.
_lanes: dict[str, _Lane] = {}
_lock = threading.RLock()  # batched() hands its batch to later() while holding it
#: Notified when the last job handed over is done (what :func:`drain` waits for).
_idle = threading.Condition(_lock)
_pending = 0
_at_exit = False


def loop_running() -> bool:
    """Whether an event loop runs on this thread (then slow writes go to :func:`later`)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def later(job: Callable[[], object], lane: str = "rows", *, urgent: bool = False
          ) -> concurrent.futures.Future[None]:
    """Run ``job`` on the trace's I/O thread of ``lane``, after every job handed to that lane
    before it; the future is done once it has run. ``job`` must not raise (its own errors are
    its to report); one that does is logged. ``urgent``: the lane does not linger for it (a
    file that lines wait for in memory: a kill loses what waits)."""
    global _pending, _at_exit
    done: concurrent.futures.Future[None] = concurrent.futures.Future()
    with _lock:
        queue = _lanes.get(lane)
        if queue is None:
            queue = _lanes[lane] = _Lane(LINGER_S.get(lane, 0.0))
        queue.jobs.append((job, done))
        _pending += 1
        if queue.thread is None or not queue.thread.is_alive():
            queue.thread = threading.Thread(
                target=_serve, args=(queue,), name=f"fastrlm-trace-{lane}", daemon=True)
            queue.thread.start()
            if not _at_exit:
                _at_exit = True
                atexit.register(drain)
                # a forked child (multiprocessing, Ray) has no I/O thread, and may have been
                # forked while it held the lock: it starts afresh
                os.register_at_fork(after_in_child=_forget)
        elif queue.waiting:
            queue.work.notify()
        if urgent:
            queue.hurry()
    return done


_batches: dict[object, list[Any]] = {}
_batch_done: dict[object, concurrent.futures.Future[None]] = {}


def batched(key: object, item: _T, run: Callable[[list[_T]], None], lane: str = "rows", *,
            urgent: bool = False) -> concurrent.futures.Future[None]:
    """Hand ``item`` to the I/O thread of ``lane`` to be run with the others of ``key`` queued
    before it ran: ``run(items)`` once for all of them (an index commit for many rows). The
    future is done once the batch holding ``item`` has run. ``urgent``: as for :func:`later`."""
    with _lock:
        _batches.setdefault(key, []).append(item)
        done = _batch_done.get(key)
        if done is None:  # none queued, or the queued one has taken its items already
            done = _batch_done[key] = later(lambda: run(_take(key)), lane, urgent=urgent)
        elif urgent:  # joins a batch still queued: that one is urgent now
            _lanes[lane].hurry()
        return done


def _take(key: object) -> list[Any]:
    with _lock:
        _batch_done.pop(key, None)
        return _batches.pop(key, [])


def hurry(lane: str | None = None) -> None:
    """Someone waits for what is queued on ``lane`` (every lane: None): it runs now, without
    lingering."""
    with _lock:
        for name, queue in _lanes.items():
            if lane is None or name == lane:
                queue.hurry()


def drain(timeout: float = DRAIN_TIMEOUT_S) -> bool:
    """Wait until every job handed over so far is done; False if ``timeout`` passed first."""
    hurry()
    with _lock:
        return _idle.wait_for(lambda: _pending == 0, timeout)


def _forget() -> None:
    global _lock, _idle, _pending
    _lanes.clear()
    _batches.clear()
    _batch_done.clear()
    _lock = threading.RLock()
    _idle = threading.Condition(_lock)
    _pending = 0


def _serve(lane: _Lane) -> None:
    jobs = lane.jobs
    while True:
        with lane.work:
            while not jobs:
                lane.waiting = True
                lane.work.wait()
            lane.waiting = False
            if lane.linger_s > 0 and not lane.hurried:  # the jobs handed over meanwhile join
                lane.lingering = True  # these (found, not signalled), unless a waiter hurries
                lane.work.wait(lane.linger_s)
                lane.lingering = False
            lane.hurried = False
            batch = list(jobs)
            jobs.clear()
        for job, done in batch:
            _run(job, done)


def _run(job: Callable[[], object], done: concurrent.futures.Future[None]) -> None:
    global _pending
    # a waiter may have given up on it (cancelled): the write is made all the same
    waited = done.set_running_or_notify_cancel()
    try:
        job()
    except Exception:  # a job reports its own errors; this only keeps the thread alive
        logger.exception("a trace write failed")
    finally:
        with _lock:
            _pending -= 1
            if _pending == 0:
                _idle.notify_all()
        if waited:
            done.set_result(None)


_H = TypeVar("_H")


class Making(Generic[_H, _T]):
    """A file made on an I/O lane while its writer, on the event loop, goes on writing to it:
    the writes made meanwhile are held, in order (:meth:`hold`); the lane makes the file
    (:meth:`make`), writes what is held (outside the lock: the loop never waits for a write),
    and, finding nothing more held, hands the file over (:attr:`handle`, from then on written by
    the loop), or closes it if the writer has ended meanwhile (:meth:`end`). A file that cannot
    be made, or a held write that fails, is reported once (``failed``, on the lane) and what is
    held is dropped. ``done`` is set once the file is made (or could not be) and what was held
    is written: what a run's end waits for."""

    __slots__ = ("_create", "_write", "_close", "_failed", "_lock", "_held", "_ended",
                 "_made", "handle", "done")

    def __init__(self, create: Callable[[], _H], write: Callable[[_H, list[_T]], None],
                 close: Callable[[_H], None], failed: Callable[[OSError], None]) -> None:
        self._create = create
        self._write = write
        self._close = close
        self._failed = failed
        self._lock = threading.Lock()
        self._held: list[_T] | None = []
        self._ended = False
        self._made: bool | None = None  # whether it was made, once tried (only the lane's)
        #: The file, once handed over; None before, and for good when it could not be made.
        self.handle: _H | None = None
        self.done: concurrent.futures.Future[None] = concurrent.futures.Future()

    def hold(self, item: _T, *, last: bool = False) -> bool:
        """Hold ``item`` while the file is being made (True; dropped if the writer has ended,
        ``last`` ends it), or False once it has been handed over or could not be made
        (:attr:`handle` says which)."""
        with self._lock:
            if self._held is None:
                return False
            if not self._ended:
                self._held.append(item)
                self._ended = last
            return True

    def end(self) -> None:
        """The writer is done with the file: closed now if it was handed over and not taken,
        else once made; whatever is written after this is dropped."""
        with self._lock:
            self._ended = True
            handle, self.handle = self.handle, None
        if handle is not None:
            self._close(handle)

    def make(self) -> bool:
        """Make the file and write what is held (on the lane; the first call only, later
        ones say what it did): whether it was made."""
        if self._made is None:
            try:
                self._made = self._make()
            finally:
                self.done.set_result(None)
        return self._made

    def _make(self) -> bool:
        try:
            handle = self._create()
            try:
                while True:
                    with self._lock:
                        items = self._held
                        assert items is not None
                        if not items:
                            self._held = None
                            if self._ended:
                                self._close(handle)
                            else:
                                self.handle = handle
                            return True
                        self._held = []
                    self._write(handle, items)
            except OSError:
                self._close(handle)
                raise
        except OSError as exc:
            with self._lock:
                self._held = None
            self._failed(exc)
            return False
