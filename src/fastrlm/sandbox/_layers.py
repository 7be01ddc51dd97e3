"""Isolation layers: what this machine supports, the bubblewrap command line, the rlimits.

Host side only. Detection is cached per process; :func:`doctor_report` runs it for
``fastrlm doctor``. Layers, best first:

- ``bwrap``: bubblewrap namespaces (no network, read-only system, private ``/tmp``, own PID
  namespace) + seccomp + rlimits;
- ``landlock``: where namespaces are denied, a Landlock read-only allow-list (no ``/proc``, no
  home) with one private read-write scratch directory + seccomp + rlimits;
- ``process``: a plain child process + seccomp + rlimits: the file system stays readable. Last
  resort, named as such;
- ``docker`` / ``podman``: the same worker in a container (see :mod:`._container`): no
  network, read-only root, the container's cgroup limits, + seccomp + rlimits inside. ``auto``
  takes it only where no namespace layer works and a daemon answers with a current image;
- ``none``: in-process, unsafe, only when asked for by name.
"""

from __future__ import annotations

import ctypes.util
import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from typing import Any

from .._foundation.errors import SandboxUnavailableError
from . import _cgroup, _container

CONTAINER_KINDS = _container.RUNTIMES
ISOLATED_KINDS = ("bwrap", "landlock", "process", *CONTAINER_KINDS)
#: What ``auto`` may choose. ``process`` is left out on purpose: its worker can read the host's
#: files, /proc/<host pid>/environ included, so API keys would be reachable; it must be asked for.
AUTO_KINDS = ("bwrap", "landlock")
#: What ``auto`` falls back to when no kind of :data:`AUTO_KINDS` works here (a container
#: start is slower: it is the choice only where namespaces are denied, macOS and Windows).
AUTO_FALLBACK_KINDS = CONTAINER_KINDS
KINDS = ("auto", *ISOLATED_KINDS, "none")
GiB = 1024**3
MiB = 1024**2
TMPFS_BYTES = 512 * MiB
FILE_SIZE_BYTES = 256 * MiB
OPEN_FILES = 256
PROBE_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class LayerStatus:
    """One line of ``fastrlm doctor``: a layer, whether it works here, and why (not)."""

    name: str
    available: bool
    reason: str


@dataclass(frozen=True, slots=True)
class LayerPlan:
    """How a worker is confined: ``kind`` (bwrap, landlock or process) and whether seccomp is
    loaded. ``name`` is what ``Sandbox.layer`` reports, e.g. ``"bwrap+seccomp+rlimits"``."""

    kind: str
    seccomp: bool

    @property
    def name(self) -> str:
        parts = [self.kind] + (["seccomp"] if self.seccomp else []) + ["rlimits"]
        return "+".join(parts)

    @property
    def container(self) -> bool:
        """Whether the worker starts in a container (docker, podman)."""
        return self.kind in CONTAINER_KINDS

    @property
    def confined(self) -> frozenset[str]:
        """What the worker must report having applied to itself."""
        layers = {"rlimits"} | ({"seccomp"} if self.seccomp else set())
        return frozenset(layers | ({"landlock"} if self.kind == "landlock" else set()))


def package_dir() -> str:
    """The directory of the ``fastrlm`` package (bound read-only into the sandbox)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


#: The names of the directories installers put third-party packages in.
SITE_DIR_NAMES = frozenset({"site-packages", "dist-packages"})


@functools.cache
def module_dirs() -> tuple[str, ...]:
    """Host site-packages directories the worker may import from (no ``.pth`` is executed):
    the interpreter's (or virtualenv's) own, and every site directory on this process's
    ``sys.path`` (the user site, a distribution's ``dist-packages``), so that the packages the
    user installed (numpy, pandas, Pillow ...) import in the sandbox as they do here."""
    dirs = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    dirs |= {p for p in sys.path if p and os.path.basename(p.rstrip("/")) in SITE_DIR_NAMES}
    for name in ("pyseccomp", "landlock"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            origin = os.path.dirname(spec.origin)
            dirs.add(os.path.dirname(origin) if name == "landlock" else origin)
    return tuple(sorted(d for d in dirs if os.path.isdir(d)))


@functools.cache
def read_only_paths() -> tuple[str, ...]:
    """Everything the worker needs to read: the system, the interpreter, the package."""
    paths = {
        "/usr",
        "/lib",
        "/lib64",
        "/lib32",
        "/bin",
        "/sbin",
        "/etc/ld.so.cache",
        sys.prefix,
        sys.base_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
        os.path.dirname(interpreter()),
        package_dir(),
        *module_dirs(),
    }
    return tuple(sorted(p for p in paths if os.path.exists(p)))


#: Parts of the package model code must not read: the benchmark harness (it can rebuild a
#: task's instances, so their answers). The worker's import guard refuses it too; under
#: bubblewrap it is not in the sandbox's file system at all.
HIDDEN_SUBPACKAGES = ("bench",)


def hidden_paths() -> tuple[str, ...]:
    """The host paths of :data:`HIDDEN_SUBPACKAGES` that exist here."""
    paths = (os.path.join(package_dir(), name) for name in HIDDEN_SUBPACKAGES)
    return tuple(p for p in paths if os.path.isdir(p))


@functools.cache
def library_names() -> dict[str, str]:
    """Sonames of libc and libseccomp as resolved here (the worker cannot run ``ldconfig``)."""
    names = {n: ctypes.util.find_library(n) for n in ("c", "seccomp")}
    return {k: v for k, v in names.items() if v}


def worker_env(scratch: str, extra: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    """The worker's whole environment: nothing of the host's, then the user's ``extra``."""
    env = {"HOME": scratch, "TMPDIR": scratch, "LANG": "C.UTF-8", "MALLOC_ARENA_MAX": "2"}
    env.update(extra)
    return env


def bwrap_argv(
    bwrap: str,
    tmpfs_bytes: int = TMPFS_BYTES,
    env: tuple[tuple[str, str], ...] = (),
    mounts: tuple[str, ...] = (),
) -> list[str]:
    """bubblewrap options: every namespace unshared (network included), capabilities dropped,
    environment cleared (then ``env`` set), a private size-capped tmpfs ``/tmp`` first (a later
    tmpfs would hide binds under it), a read-only ``/dev`` (so no ``/dev/shm`` to fill), then
    read-only binds; merged-/usr symlinks are recreated as symlinks; :func:`hidden_paths` are
    covered by empty read-only directories. ``mounts`` (a context's directory or file) are bound
    read-only last, at their host paths."""
    argv = [
        bwrap,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--cap-drop", "ALL",
        "--clearenv",
    ]  # fmt: skip
    for name, value in worker_env("/tmp", env).items():
        argv += ["--setenv", name, value]
    argv += [
        "--size", str(tmpfs_bytes),
        "--tmpfs", "/tmp",
        "--proc", "/proc",
        "--dev", "/dev",
        "--remount-ro", "/dev",
    ]  # fmt: skip
    for path in read_only_paths():
        if os.path.islink(path) and os.path.dirname(path) == "/":
            argv += ["--symlink", os.readlink(path), path]
        else:
            argv += ["--ro-bind", path, path]
    for path in hidden_paths():  # an empty read-only directory in their place
        argv += ["--size", "4096", "--perms", "0555", "--tmpfs", path, "--remount-ro", path]
    for path in mounts:
        argv += ["--ro-bind", path, path]
    return [*argv, "--chdir", "/tmp", "--"]


@functools.cache
def interpreter() -> str:
    """This interpreter as the worker runs it: ``sys.executable`` with its directory resolved
    (``..`` and symbolic links: ``/tmp/x/../bin/python3`` names directories a sandbox does not
    have) but its own name kept, so a virtualenv's ``python`` link still finds its
    ``pyvenv.cfg``."""
    directory, name = os.path.split(os.path.abspath(sys.executable))
    return os.path.join(os.path.realpath(directory), name)


def launch(kind: str, config: dict[str, Any], *, tmpfs_bytes: int,
           env: tuple[tuple[str, str], ...], scratch: str, mounts: tuple[str, ...] = ()
           ) -> tuple[list[str], dict[str, str]]:
    """The command and environment that start ``_worker_main.py`` with ``config`` (a worker,
    or a warm process) on a layer that is not a container: under bubblewrap (``kind``
    ``"bwrap"``) its options with a private ``/tmp`` of ``tmpfs_bytes`` and ``env`` set inside,
    and an empty environment for bubblewrap itself; else the interpreter alone with the
    worker's whole environment (``HOME`` and ``TMPDIR`` at ``scratch``)."""
    argv = python_argv(json.dumps(config))
    if kind == "bwrap":
        return bwrap_argv(shutil.which("bwrap") or "bwrap", tmpfs_bytes, env, mounts) + argv, {}
    return argv, worker_env(scratch, env)


def python_argv(worker_config: str) -> list[str]:
    """The interpreter command: isolated mode, no site (no ``.pth`` runs), no bytecode writes."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_worker_main.py")
    return [interpreter(), "-I", "-S", "-B", "-X", "utf8", script, worker_config]


@functools.cache
def bwrap_problem() -> str | None:
    """None when bubblewrap can start a Python here, else why not."""
    if not sys.platform.startswith("linux"):
        return f"needs Linux (this is {sys.platform})"
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap is not installed (apt install bubblewrap)"
    try:
        probe = subprocess.run(
            [*bwrap_argv(bwrap), interpreter(), "-I", "-S", "-c", "pass"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_TIMEOUT_S,
            env={},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap failed to run: {exc}"
    if probe.returncode != 0:
        detail = probe.stderr.decode("utf-8", "replace").strip().splitlines()
        last = detail[-1] if detail else f"exit {probe.returncode}"
        if "execvp" in last:  # namespaces worked; the interpreter is not where bwrap looked
            return (f"bubblewrap could not run this Python ({last}): its path must exist "
                    "inside the sandbox (the interpreter's directory is bound read-only)")
        return "namespaces denied: " + last
    return None


@functools.cache
def landlock_problem() -> str | None:
    """None when the kernel offers Landlock and the ``landlock`` package is importable."""
    if not sys.platform.startswith("linux"):
        return f"needs Linux (this is {sys.platform})"
    try:
        from landlock.plumbing import landlock_abi_version  # type: ignore[import-untyped]
    except ImportError:
        return "the 'landlock' package is not installed (pip install landlock)"
    try:
        version = landlock_abi_version()
    except OSError as exc:
        return f"the kernel refuses Landlock: {exc}"
    return None if version >= 1 else "the kernel has no Landlock"


@functools.cache
def seccomp_problem() -> str | None:
    """None when seccomp filters can be loaded (kernel + libseccomp + pyseccomp)."""
    if not sys.platform.startswith("linux"):
        return f"needs Linux (this is {sys.platform})"
    if ctypes.util.find_library("seccomp") is None:
        return "libseccomp is not installed (apt install libseccomp2)"
    if importlib.util.find_spec("pyseccomp") is None:
        return "the 'pyseccomp' package is not installed (pip install pyseccomp)"
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            if "Seccomp:" not in status.read():
                return "the kernel was built without seccomp"
    except OSError as exc:
        return f"cannot read /proc/self/status: {exc}"
    return None


def _problem(kind: str) -> str | None:
    if kind == "bwrap":
        return bwrap_problem()
    if kind == "landlock":
        return landlock_problem()
    if kind in CONTAINER_KINDS:
        return _container.problem(kind)
    if sys.platform.startswith("linux"):
        return None
    return f"the isolated worker needs Linux (this is {sys.platform})"


def plans_for(kind: str) -> list[LayerPlan]:
    """Candidate plans for a sandbox kind, best first. ``auto`` lists every working isolated
    layer; a named kind gives exactly one. Raises :class:`SandboxUnavailableError` (with the
    reason) when none works, and ``ValueError`` for an unknown kind."""
    if kind not in KINDS or kind == "none":
        raise ValueError(f"unknown isolated sandbox kind {kind!r}; expected one of {KINDS}")
    seccomp = seccomp_problem() is None
    wanted = AUTO_KINDS if kind == "auto" else (kind,)
    plans, reasons = [], []
    for candidate in wanted:
        problem = _problem(candidate)
        if problem is None:  # an image always carries pyseccomp and libseccomp
            plans.append(LayerPlan(candidate, seccomp or candidate in CONTAINER_KINDS))
        else:
            reasons.append(f"{candidate}: {problem}")
    for candidate in AUTO_FALLBACK_KINDS if kind == "auto" and not plans else ():
        problem = _problem(candidate)
        if problem is None:
            plans.append(LayerPlan(candidate, True))
            break
        reasons.append(f"{candidate}: {problem}")
    if not plans:
        hint = ""
        if kind == "auto":
            hint = (". Install bubblewrap (apt-get install bubblewrap libseccomp2), or Docker "
                    "or Podman and run `fastrlm sandbox build`, or choose "
                    "sandbox='process' (seccomp + rlimits only: the host's files, API keys "
                    "included, stay readable) or sandbox='none' (in-process, unsafe) knowingly")
        raise SandboxUnavailableError(
            f"sandbox {kind!r} cannot start here: " + "; ".join(reasons) + hint
        )
    return plans


def memory_limit_bytes(str_bytes: int, buffer_bytes: int) -> int:
    """The default memory limit of a worker holding a context whose decoded objects take
    ``str_bytes`` (1, 2 or 4 bytes a character, plus object headers) and whose buffer maps
    ``buffer_bytes``: 1 GiB for the interpreter and the model's own work, the mapping (mapped
    while the context is decoded), and three times the decoded context. It bounds memory used
    (``RLIMIT_DATA`` for the heap, the watchdog for everything together), not address space:
    allocators that reserve address space (pyarrow, jemalloc) are not charged for it."""
    return GiB + buffer_bytes + 3 * str_bytes


def heap_rlimit_bytes(memory_bytes: int) -> int:
    """RLIMIT_DATA for a worker whose memory limit is ``memory_bytes``: the limit plus room for
    what threads and allocators reserve without using it (an 8 MiB stack per thread, a thread
    per core in pyarrow's and BLAS's pools, per-thread allocator arenas): 256 MiB + 16 MiB a
    core. Memory actually used past ``memory_bytes`` is the watchdog's to stop."""
    return memory_bytes + 256 * MiB + 16 * MiB * _cpus()


@functools.cache
def _cpus() -> int:
    """The machine's CPUs (``os.cpu_count`` reads a file in /sys each call: once a worker)."""
    return os.cpu_count() or 1


@functools.cache
def cgroup_delegation() -> _cgroup.Delegation | str:
    """Where this process can make per-worker cgroup v2 children (see :mod:`._cgroup`), or why
    it cannot (then limits are enforced with rlimits, seccomp and the watchdog alone)."""
    if not sys.platform.startswith("linux"):
        return f"needs Linux (this is {sys.platform})"
    try:
        with open("/proc/self/cgroup", encoding="ascii", errors="replace") as own:
            text = own.read()
        return _cgroup.locate(_cgroup.CGROUP_ROOT, text, os.getpid())
    except OSError as exc:
        return f"cannot read /proc/self/cgroup: {exc}"
    except _cgroup.CgroupError as exc:
        return str(exc)


def cgroup_problem() -> str | None:
    """None when a cgroup v2 child with the memory and pids controllers can be made here,
    else why not."""
    found = cgroup_delegation()
    return found if isinstance(found, str) else None


def memory_mechanism(delegation: _cgroup.Delegation | str | None = None) -> str:
    """How worker memory is limited here (``delegation`` defaults to what this host offers),
    for ``fastrlm doctor``."""
    found = cgroup_delegation() if delegation is None else delegation
    guards = ("RLIMIT_DATA backstops the heap; seccomp refuses memfd_create, shared anonymous "
              "mmap, SysV shm and new pipes")
    if isinstance(found, str):
        return (f"no cgroup ({found}); memory used (heap + shared memory + tmpfs) limited by a "
                f"host watchdog on /proc; {guards}")
    return (f"cgroup v2 per worker under {found.parent} ({found.how}): memory.max = the "
            f"worker's limit, memory.swap.max = 0, pids.max = {_cgroup.pids_limit()}; the host "
            f"watchdog stays as a second line and counts scratch bytes and files; {guards}")


def doctor_report() -> list[LayerStatus]:
    """Which isolation layers work on this machine and why the others do not, best first, then
    what ``auto`` would pick."""
    bwrap, landlock, seccomp = bwrap_problem(), landlock_problem(), seccomp_problem()
    linux = sys.platform.startswith("linux")
    report = [
        LayerStatus("bwrap", bwrap is None, bwrap or "namespaces: no network, read-only system"),
        LayerStatus("landlock", landlock is None, landlock or "read-only file system allow-list"),
        LayerStatus(
            "process",
            linux,
            "plain child process: last resort, the file system stays readable"
            if linux
            else "needs Linux",
        ),
        *(LayerStatus(runtime, *_container.doctor_line(runtime)) for runtime in CONTAINER_KINDS),
        LayerStatus("seccomp", seccomp is None, seccomp or "no sockets, exec or fork"),
        LayerStatus(
            "rlimits",
            linux,
            "heap backstop (RLIMIT_DATA) sized from the context, file size, open files"
            if linux
            else "needs Linux",
        ),
        LayerStatus("memory", linux, memory_mechanism() if linux else "needs Linux"),
        LayerStatus(
            "disk",
            linux,
            "scratch quota (default 512 MiB, 10,000 files): bwrap a size-capped tmpfs; "
            "landlock/process a private directory under the host's temp dir, counted by the "
            "watchdog and removed by a reaper even if the host is killed",
        ),
    ]
    try:
        best = plans_for("auto")[0].name
        report.append(LayerStatus("auto", True, f"uses {best}"))
    except SandboxUnavailableError as exc:
        report.append(LayerStatus("auto", False, str(exc)))
    report.append(LayerStatus("none", True, "in-process, UNSAFE: model code can read API keys"))
    return report
