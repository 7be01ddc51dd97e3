"""Host-side watch on a worker's quantities: memory used and scratch space, read from ``/proc``
and the file system, never from anything the worker says.

Without a cgroup (see :func:`~._layers.memory_mechanism`) the kernel only backstops the
worker's heap (``RLIMIT_DATA``, with slack for address space reserved but not used), and nothing
adds heap, shared memory and tmpfs files together. The :class:`Watchdog` does: every
:data:`POLL_S` it sums ``RssAnon + RssShmem`` over the worker's processes plus the bytes its
tmpfs scratch holds, and counts the scratch directory's bytes and files; past a limit it
SIGKILLs the worker and records why, so the engine restarts it and tells the model. Between two
polls a worker can overshoot by what it writes in that time; the seccomp filter (no memfd, no
shared anonymous mappings, no SysV shm, no new pipes) and the size-capped scratch keep the paths
that ``RLIMIT_DATA`` does not see narrow.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass

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


def memory_used(pids: list[int]) -> int:
    """Bytes of anonymous and shared memory the processes hold (``RssAnon + RssShmem``)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", "rb") as status:
                for line in status:
                    if line.startswith((b"RssAnon:", b"RssShmem:")):
                        total += int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            continue
    return total


def tmpfs_usage(path: str) -> tuple[int, int]:
    """(bytes, files) a tmpfs holds, from statvfs: O(1) however many files."""
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_files - st.f_ffree


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


def over_quota(quotas: Quotas, pids: list[int], walk: bool) -> str | None:
    """Why the worker (``pids``: its process tree, root first) is over a quota, or None.
    ``walk``: count a plain scratch directory now."""
    scratch_bytes = scratch_files = 0
    tmpfs = quotas.scratch_path is None
    if tmpfs:
        with contextlib.suppress(OSError):
            scratch_bytes, scratch_files = tmpfs_usage(f"/proc/{pids[-1]}/root/tmp")
    elif walk and quotas.scratch_path is not None:
        scratch_bytes, scratch_files = directory_usage(quotas.scratch_path, quotas.scratch_files)
    if scratch_files > quotas.scratch_files:
        return (f"its scratch directory held more than {quotas.scratch_files:,} files "
                "(the scratch file limit)")
    if scratch_bytes > quotas.scratch_bytes:
        return (f"its scratch directory held {scratch_bytes / MiB:,.0f} MiB, over its quota of "
                f"{quotas.scratch_bytes / MiB:,.0f} MiB (Limits.scratch_mb)")
    used = memory_used(pids) + (scratch_bytes if tmpfs else 0)
    if used > quotas.memory_bytes:
        return (f"it used {used / MiB:,.0f} MiB of memory, over its limit of "
                f"{quotas.memory_bytes / MiB:,.0f} MiB (Limits.worker_memory_mb)")
    return None


class Watchdog:
    """Polls one worker until it ends or :meth:`stop`; on a breach calls ``kill(reason)`` once.
    ``reason`` then holds why."""

    def __init__(self, root_pid: int, quotas: Quotas, kill: Callable[[], None]) -> None:
        self.reason: str | None = None
        self._root = root_pid
        self._quotas = quotas
        self._kill = kill
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        pids: list[int] = []
        tick = 0
        while True:
            await asyncio.sleep(POLL_S)  # a poll interval, not a wait for an event
            if not pids:  # the worker cannot fork: its process tree is fixed once it runs
                pids = await asyncio.to_thread(descendants, self._root)
            tick += 1
            reason = over_quota(self._quotas, pids, walk=tick % WALK_EVERY == 0)
            if reason is not None:
                self.reason = reason
                self._kill()
                return

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
