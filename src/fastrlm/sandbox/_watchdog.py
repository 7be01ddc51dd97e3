"""Host-side watch on a worker's quantities: memory used and scratch space, read from ``/proc``
and the file system, never from anything the worker says.

Without a cgroup (see :func:`~._layers.memory_mechanism`) the kernel only backstops the
worker's heap (``RLIMIT_DATA``, with slack for address space reserved but not used), and nothing
adds heap, shared memory and tmpfs files together. The :class:`Watchdog` does: every
:data:`POLL_S` it sums ``RssAnon + RssShmem`` over the worker's processes plus the bytes its
tmpfs scratch holds, and counts the scratch directory's bytes and files; past a limit it
SIGKILLs the worker and records why, so the engine restarts it and tells the model (one timer
polls every worker watched from an event loop). Between two polls a worker can overshoot by what
it writes in that time; the seccomp filter (no memfd, no shared anonymous mappings, no SysV shm,
no new pipes) and the size-capped scratch keep the paths that ``RLIMIT_DATA`` does not see
narrow. Where a per-worker cgroup is in force (``_cgroup``),
the watchdog runs unchanged as a second line behind ``memory.max``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import weakref
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger("fastrlm.sandbox")

POLL_S = 0.05
#: The scratch directory of the Landlock/process layers is walked every this many polls.
WALK_EVERY = 5
MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Quotas:
    """What one worker may hold: ``memory_bytes`` (heap + shared memory + tmpfs scratch),
    ``scratch_bytes`` and ``scratch_files``. ``scratch_path`` is the host path of a plain
    scratch directory (walked); ``None`` means the worker's ``/tmp`` is a tmpfs of its own in
    its mount namespace (bubblewrap), read with statvfs through ``/proc/<pid>/root``."""

    memory_bytes: int
    scratch_bytes: int
    scratch_files: int
    scratch_path: str | None


def descendants(root: int) -> list[int]:
    """``root`` and every process below it (one pass over ``/proc``)."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += parents.get(pid, [])
    return found


def leaf_process(root: int) -> int:
    """The deepest process under ``root`` (the Python worker under bubblewrap's two)."""
    pid = root
    while True:
        try:
            with open(f"/proc/{pid}/task/{pid}/children", "rb") as children:
                below = children.read().split()
        except FileNotFoundError:  # a kernel without CONFIG_PROC_CHILDREN
            return descendants(root)[-1]
        except OSError:
            return pid
        if not below:
            return pid
        pid = int(below[0])


def _kib_field(status: bytes, name: bytes) -> int:
    start = status.find(name)
    if start < 0:
        return 0
    end = status.find(b"\n", start)
    return int(status[start + len(name) : end].split()[0]) * 1024


def memory_counted(status: bytes) -> int:
    """The memory a worker is charged, from its ``/proc/<pid>/status``: ``RssAnon +
    RssShmem`` in bytes."""
    return _kib_field(status, b"RssAnon:") + _kib_field(status, b"RssShmem:")


def memory_now(root: int) -> int:
    """What the worker under ``root`` is charged now (:func:`memory_counted`); 0 when it is
    gone. One reading, for a check outside the watchdog's polls."""
    try:
        with open(f"/proc/{leaf_process(root)}/status", "rb") as status:
            return memory_counted(status.read())
    except OSError:
        return 0


def directory_usage(path: str, max_files: int) -> tuple[int, int]:
    """(bytes allocated, entries) under ``path``; stops counting past ``max_files`` entries."""
    size, count, todo = 0, 0, [path]
    while todo and count <= max_files:
        with contextlib.suppress(OSError), os.scandir(todo.pop()) as entries:
            for entry in entries:
                count += 1
                with contextlib.suppress(OSError):
                    st = entry.stat(follow_symlinks=False)
                    size += st.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        todo.append(entry.path)
    return size, count


class Probe:
    """Open handles on one worker: its ``/proc/<pid>/status`` and, under bubblewrap, its own
    ``/tmp`` (through ``/proc/<pid>/root``), re-read with ``pread``/``fstatvfs`` at each poll
    (microseconds: no path lookups). :meth:`close` releases them (the tmpfs handle would keep
    a dead worker's tmpfs alive)."""

    def __init__(self, pid: int, quotas: Quotas) -> None:
        self._quotas = quotas
        self._status = os.open(f"/proc/{pid}/status", os.O_RDONLY | os.O_CLOEXEC)
        self._tmpfs = -1
        if quotas.scratch_path is None:
            try:
                self._tmpfs = os.open(
                    f"/proc/{pid}/root/tmp", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
                )
            except OSError:
                os.close(self._status)
                raise

    def memory_used(self) -> int:
        """``RssAnon + RssShmem`` in bytes (0 once the process is gone)."""
        try:
            status = os.pread(self._status, 8192, 0)
        except OSError:
            return 0
        return memory_counted(status)

    def scratch_usage(self, walk: bool) -> tuple[int, int]:
        """(bytes, files) in the scratch: statvfs of a tmpfs (O(1)), or a walk of a plain
        directory when ``walk`` (else (0, 0))."""
        if self._tmpfs >= 0:
            try:
                st = os.fstatvfs(self._tmpfs)
            except OSError:
                return 0, 0
            return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_files - st.f_ffree
        if walk and self._quotas.scratch_path is not None:
            return directory_usage(self._quotas.scratch_path, self._quotas.scratch_files)
        return 0, 0

    def check(self, walk: bool) -> str | None:
        """Why the worker is over a quota now, or None."""
        scratch_bytes, scratch_files = self.scratch_usage(walk)
        memory = self.memory_used() + (scratch_bytes if self._tmpfs >= 0 else 0)
        return over_quota(self._quotas, memory, scratch_bytes, scratch_files)

    def close(self) -> None:
        for fd in (self._status, self._tmpfs):
            if fd >= 0:
                os.close(fd)
        self._status = self._tmpfs = -1


def over_quota(
    quotas: Quotas, memory_bytes: int, scratch_bytes: int, scratch_files: int
) -> str | None:
    """Why a worker holding this much is over a quota (the model-facing reason), or None."""
    if scratch_files > quotas.scratch_files:
        return (f"its scratch directory held more than {quotas.scratch_files:,} files "
                "(the scratch file limit)")
    if scratch_bytes > quotas.scratch_bytes:
        return (f"its scratch directory held {scratch_bytes / MiB:,.0f} MiB, over its quota of "
                f"{quotas.scratch_bytes / MiB:,.0f} MiB (Limits.scratch_mb)")
    if memory_bytes > quotas.memory_bytes:
        return (f"it used {memory_bytes / MiB:,.0f} MiB of memory, over its limit of "
                f"{quotas.memory_bytes / MiB:,.0f} MiB (Limits.worker_memory_mb)")
    return None


class Watchdog:
    """Polls one worker until it ends or :meth:`stop`; on a breach calls ``kill()`` once and
    ``reason`` then holds why. The watchdogs of one event loop are polled together, every
    :data:`POLL_S` (:class:`_Polls`): one timer for a server's every live worker, not one
    each."""

    def __init__(self, root_pid: int, quotas: Quotas, kill: Callable[[], None]) -> None:
        self.reason: str | None = None
        self._root = root_pid
        self._quotas = quotas
        self._kill = kill
        self._probe: Probe | None = None
        self._polls: _Polls | None = None
        self._tick = 0

    def start(self) -> None:
        """Poll from the running event loop (a first poll within :data:`POLL_S`)."""
        self._polls = _Polls.of(asyncio.get_running_loop())
        self._polls.add(self)

    def _poll(self) -> None:
        if self._probe is None:  # the worker cannot fork: its process tree is fixed
            try:
                self._probe = Probe(leaf_process(self._root), self._quotas)
            except OSError:
                self.stop()  # the worker is already gone
                return
        self._tick += 1
        reason = self._probe.check(walk=self._tick % WALK_EVERY == 0)
        if reason is not None:
            self._stop_worker(reason)

    def _stop_worker(self, reason: str) -> None:
        kill = self._kill
        self.reason = reason
        self.stop()
        kill()

    def stop(self) -> None:
        """Stop polling and release the handles, and ``kill`` (a method of the worker, which
        holds this watchdog: kept, the two would wait for the garbage collector). Idempotent."""
        self._kill = _stopped
        if self._polls is not None:
            self._polls.remove(self)
            self._polls = None
        if self._probe is not None:
            self._probe.close()
            self._probe = None


def _stopped() -> None:
    """A stopped watchdog's ``kill``: it kills nothing more."""


class _Polls:
    """The watchdogs of one event loop and the one timer that polls them all; the timer runs
    while any is watched."""

    _of_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Polls] = (
        weakref.WeakKeyDictionary())

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._watched: dict[Watchdog, None] = {}  # in the order they started
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> _Polls:
        polls = cls._of_loop.get(loop)
        if polls is None:
            polls = cls._of_loop[loop] = cls(loop)
        return polls

    def add(self, dog: Watchdog) -> None:
        self._watched[dog] = None
        if self._timer is None:
            self._timer = self._loop.call_later(POLL_S, self._poll)

    def remove(self, dog: Watchdog) -> None:
        self._watched.pop(dog, None)
        if not self._watched and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _poll(self) -> None:
        self._timer = None
        for dog in list(self._watched):
            if dog not in self._watched:  # stopped by the kill of one polled before it
                continue
            try:
                dog._poll()
            except Exception as exc:  # a bug: never a worker left unwatched, nor the others
                logger.exception("a sandbox worker's watchdog failed; the worker is stopped")
                dog._stop_worker(f"its memory and scratch could not be checked "
                                 f"({type(exc).__name__}: {exc})")
        if self._watched and self._timer is None:
            self._timer = self._loop.call_later(POLL_S, self._poll)
