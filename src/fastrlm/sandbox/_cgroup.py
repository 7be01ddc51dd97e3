"""Per-worker cgroup v2 memory limits, host side: find where this process may make child
cgroups, make one per worker, read its OOM count, remove it.

Every function takes the cgroup file system's root as a parameter (``/sys/fs/cgroup`` on a real
host; a plain directory in the tests, where the interface files are plain files).

Where worker cgroups go (:func:`locate`), first that works:

- ``child``: this process's cgroup already delegates ``memory`` and ``pids`` to its children
  (``cgroup.subtree_control``) and is writable: under it (the root cgroup, or a process that
  runs in a cgroup with no other processes);
- ``sibling``: the parent cgroup delegates them and is writable (a delegated subtree whose
  processes were moved into a leaf, as container entry points do): beside this one;
- ``leaf``: this process is alone in a writable cgroup whose ``cgroup.controllers`` offers them:
  cgroup v2 forbids processes in a cgroup that delegates controllers, so :func:`prepare` first
  moves this process into a ``fastrlm-host`` leaf of it, then enables ``+memory +pids``.

Anything else (cgroup v1 or a hybrid hierarchy, nothing writable, a cgroup shared with other
processes) is a reason, and the sandbox uses the watchdog alone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from dataclasses import dataclass

CGROUP_ROOT = "/sys/fs/cgroup"
HOST_LEAF = "fastrlm-host"
WANTED = ("memory", "pids")
#: Shell run between fork and the worker: it writes its own pid into the worker's cgroup and
#: only then execs bwrap or Python, so everything the worker ever runs is inside the cgroup.
PLACE_SCRIPT = 'echo $$ > "$1" || { echo "fastrlm: cannot join cgroup $1" >&2; exit 125; }; ' \
    'shift; exec "$@"'
PLACE_FAILED = 125
_NAME = re.compile(r"fastrlm-(\d+)-\d+\Z")


class CgroupError(Exception):
    """A cgroup step failed; ``str()`` says which and why (the reason the watchdog is used)."""


@dataclass(frozen=True, slots=True)
class Delegation:
    """Where worker cgroups are made: ``parent`` (a directory of the cgroup file system) and
    ``how`` it was found (``child``, ``sibling`` or ``leaf``; a ``leaf`` needs :func:`prepare`)."""

    parent: str
    how: str


def _read(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read()


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(text)


def _offers(path: str, name: str) -> bool:
    try:
        return set(WANTED) <= set(_read(os.path.join(path, name)).split())
    except OSError:
        return False


def _writable(path: str) -> bool:
    # Moving a process needs write access to cgroup.procs of the common ancestor of where it
    # is and where it goes: the parent of the worker cgroups, here.
    return os.access(path, os.W_OK) and os.access(os.path.join(path, "cgroup.procs"), os.W_OK)


def locate(root: str, proc_cgroup: str, pid: int) -> Delegation:
    """Where this process (``pid``, whose ``/proc/<pid>/cgroup`` text is ``proc_cgroup``) can
    make worker cgroups under ``root``. Raises :class:`CgroupError` saying why it cannot."""
    lines = proc_cgroup.splitlines()
    if not lines or any(not line.startswith("0::") for line in lines):
        raise CgroupError("cgroup v1 (or hybrid v1/v2) hierarchy: no unified memory controller")
    own = os.path.normpath(root + "/" + lines[0][3:].strip())
    if not os.path.isdir(own):
        raise CgroupError(f"cgroup v2, but this process's cgroup {own} is not visible")
    if _offers(own, "cgroup.subtree_control") and _writable(own):
        return Delegation(own, "child")
    parent = os.path.dirname(own)
    if (own != os.path.normpath(root) and _offers(parent, "cgroup.subtree_control")
            and _writable(parent)):
        return Delegation(parent, "sibling")
    if _offers(own, "cgroup.controllers") and _writable(own):
        try:
            members = _read(os.path.join(own, "cgroup.procs")).split()
        except OSError as exc:
            raise CgroupError(f"cgroup v2, but {own}/cgroup.procs cannot be read: {exc}") from None
        if members in ([], [str(pid)]):
            return Delegation(own, "leaf")
        raise CgroupError(
            f"cgroup v2, but {own} holds other processes and delegates no memory controller "
            "(run under a delegated cgroup, e.g. systemd-run --user -p Delegate=yes)"
        )
    raise CgroupError("cgroup v2, but no writable cgroup with the memory and pids controllers "
                      "is delegated to this process")


def prepare(delegation: Delegation, pid: int) -> None:
    """For a ``leaf`` delegation: move ``pid`` into the ``fastrlm-host`` leaf, then enable the
    controllers for children. Raises :class:`CgroupError`."""
    if delegation.how != "leaf":
        return
    leaf = os.path.join(delegation.parent, HOST_LEAF)
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(leaf)
        _write(os.path.join(leaf, "cgroup.procs"), str(pid))
        _write(os.path.join(delegation.parent, "cgroup.subtree_control"),
               " ".join("+" + c for c in WANTED))
    except OSError as exc:
        raise CgroupError(f"cannot move the host into {leaf} to delegate memory: {exc}") from None


def pids_limit() -> int:
    """``pids.max`` of a worker: bubblewrap's processes and the thread pools of numpy, pyarrow
    and BLAS (a thread or two per core), never a fork bomb."""
    return 64 + 4 * (os.cpu_count() or 1)


class WorkerCgroup:
    """One worker's cgroup: ``memory.max``, ``memory.swap.max`` 0, ``pids.max``. The worker
    joins it through :data:`PLACE_SCRIPT` (``procs`` is the file it writes)."""

    def __init__(self, path: str, memory_bytes: int) -> None:
        self.path = path
        self.memory_bytes = memory_bytes

    @classmethod
    def create(cls, parent: str, name: str, memory_bytes: int, pids_max: int) -> WorkerCgroup:
        """Make ``parent/name`` with the limits written. Raises :class:`CgroupError` naming the
        step that failed (the half-made cgroup is removed)."""
        _sweep(parent)
        path = os.path.join(parent, name)
        try:
            os.mkdir(path)
        except OSError as exc:
            raise CgroupError(f"cannot create the worker cgroup {path}: {exc}") from None
        group = cls(path, memory_bytes)
        for setting, value in (("memory.max", memory_bytes), ("memory.swap.max", 0),
                               ("pids.max", pids_max)):
            try:
                _write(os.path.join(path, setting), str(value))
            except OSError as exc:
                group.remove()
                raise CgroupError(f"cannot write {setting} of {path}: {exc}") from None
        return group

    @property
    def procs(self) -> str:
        return os.path.join(self.path, "cgroup.procs")

    def add(self, pid: int) -> None:
        """Move process ``pid`` into this cgroup (a worker forked elsewhere, before it runs
        anything). Raises :class:`CgroupError`."""
        try:
            _write(self.procs, str(pid))
        except OSError as exc:
            raise CgroupError(f"cannot move the worker into {self.procs}: {exc}") from None

    def members(self) -> list[int]:
        """The pids listed in ``cgroup.procs`` (empty when it cannot be read)."""
        try:
            return [int(p) for p in _read(self.procs).split() if p.isdigit()]
        except OSError:
            return []

    def kill(self) -> None:
        """SIGKILL every process in the cgroup (``cgroup.kill``, Linux 5.14+; a no-op where the
        kernel lacks it: the process-group kill and ``--die-with-parent`` still apply)."""
        with contextlib.suppress(OSError):
            _write(os.path.join(self.path, "cgroup.kill"), "1")

    def oom_kills(self) -> int:
        """How many processes the kernel killed for going over ``memory.max`` (0 if unknown)."""
        try:
            events = _read(os.path.join(self.path, "memory.events"))
        except OSError:
            return 0
        for line in events.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0

    def oom_reason(self) -> str | None:
        """The model-facing reason when the cgroup's OOM killer ended the worker, else None."""
        if self.oom_kills() == 0:
            return None
        return (f"it went over its memory limit of {self.memory_bytes / 2**20:,.0f} MiB "
                "(Limits.worker_memory_mb) and the kernel's cgroup OOM killer ended it")

    def remove(self) -> bool:
        """rmdir the cgroup once its processes are gone; True when it is gone."""
        return _remove(self.path)


def _remove(path: str) -> bool:
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno != errno.ENOTEMPTY:  # EBUSY: processes are still in it
            return False
        # Only a plain directory standing in for cgroupfs holds files that block rmdir (the
        # kernel's interface files never do): remove those files, never anything below.
        with contextlib.suppress(OSError), os.scandir(path) as entries:
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False):
                    os.unlink(entry.path)
        try:
            os.rmdir(path)
        except OSError:
            return False
    return True


def _sweep(parent: str) -> None:
    """Remove the empty worker cgroups of fastrlm hosts that died without cleaning up."""
    with contextlib.suppress(OSError), os.scandir(parent) as entries:
        for entry in entries:
            match = _NAME.match(entry.name)
            if match and entry.is_dir(follow_symlinks=False) and not _alive(int(match[1])):
                _remove(entry.path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
