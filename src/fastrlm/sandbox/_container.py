"""The container layer (``docker`` and ``podman``, one code path): how a worker is started in a
container, how that container is removed, and the image it runs.

Host side only. The container is only *how the worker process starts*: the worker is the same
``_worker_main.py`` as on every other layer, driven by :class:`~._worker.WorkerSandbox` over the
same framed pipes (the container's stdin and stdout, attached by ``docker run -i``: no network
is needed, and ``--network none`` removes it). What differs:

- the context reaches the worker as a stream on its stdin (a size, then the bytes) ahead of the
  first frame; :mod:`._container_entry` writes it into a sealed memfd inside the container and
  hands that to the worker, so nothing is copied into the image, and a remote daemon (or a
  remote sandbox service) works the same way. A directory or file context is bound read-only;
- confinement: ``--network none --read-only --cap-drop ALL --security-opt no-new-privileges``,
  a non-root user, ``--ipc none`` (no ``/dev/shm``), a size- and inode-capped tmpfs ``/tmp``
  as the only writable place, and the memory (no swap), pids and CPU limits of the container's
  cgroup; inside, the worker loads seccomp and rlimits as elsewhere;
- the end: a container is removed (``rm -f``) after every kill and at close. Each carries the
  labels :data:`LABEL` and :data:`OWNER_LABEL` (host, boot, pid and start time of the process
  that made it), and every sandbox start first removes the containers whose owner is gone
  (:func:`reap_orphans`): a host killed with SIGKILL leaves nothing behind for long.

The image (``fastrlm sandbox build``, :mod:`._container_image`) is made locally: from this
host's own Python (its interpreter, standard library and the shared libraries they link: a root file
system imported with ``docker import``, no registry involved) or, with ``--base``, on an image
the user names. Either way it holds fastrlm's worker code, ``pyseccomp`` and ``libseccomp``,
and is labelled with a digest of that code: a worker never runs code older than the host's.
Nothing is pulled at run time unless ``FASTRLM_SANDBOX_IMAGE`` names an image.

Why over 500 lines: a container's whole life (the run command, its confinement flags, the
checks of runtime and image, removal and the reaping of orphans) is one concern that must agree
with itself; building the image is :mod:`._container_image`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import itertools
import json
import logging
import os
import resource
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator

logger = logging.getLogger("fastrlm.sandbox")

RUNTIMES = ("docker", "podman")
DEFAULT_IMAGE = "fastrlm-sandbox:latest"
IMAGE_ENV = "FASTRLM_SANDBOX_IMAGE"
#: Every container fastrlm makes carries this label (value ``1``).
LABEL = "io.fastrlm.sandbox"
#: ``<host>/<boot id>/<pid>/<start time>`` of the process that made the container.
OWNER_LABEL = "io.fastrlm.owner"
CODE_LABEL = "io.fastrlm.worker-code"
PYTHON_LABEL = "io.fastrlm.python"
VERSION_LABEL = "io.fastrlm.python-version"
#: Where the worker's code, ``pyseccomp`` and ``libseccomp`` live in the image.
IMAGE_ROOT = "/opt/fastrlm"
IMAGE_PACKAGE = IMAGE_ROOT + "/fastrlm"
IMAGE_LIB = IMAGE_ROOT + "/lib"
#: Where the host's packages the user asked for (``fastrlm sandbox build --with``) live.
IMAGE_SITE = IMAGE_ROOT + "/site"
#: The distributions (``name==version``, comma-separated) ``--with`` put in the image.
PACKAGES_LABEL = "io.fastrlm.packages"
#: The worker's user inside the container when the host runs as root: nobody. A host that is
#: not root gives its own uid and gid (the worker reads what the user can, as on other layers).
USER = "65534:65534"
CLI_TIMEOUT_S = 30.0
PROBE_TIMEOUT_S = 10.0
#: The packages of fastrlm the worker imports (copied into the image, and digested).
WORKER_PACKAGES = ("sandbox", "_foundation")
_SERIAL = itertools.count(1)


# ------------------------------------------------------------------ the runtime and its daemon
def runtime_cli(runtime: str) -> str | None:
    """The CLI of ``runtime`` (``docker`` or ``podman``) on PATH, or None."""
    return shutil.which(runtime)


def _cli(runtime: str, *args: str, timeout: float = CLI_TIMEOUT_S,
         stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ``<runtime> args``; raises ``OSError`` when the CLI is missing, ``TimeoutExpired``."""
    cli = runtime_cli(runtime)
    if cli is None:
        raise FileNotFoundError(f"{runtime} is not installed (no {runtime} on PATH)")
    return subprocess.run([cli, *args], input=stdin, capture_output=True, timeout=timeout,
                          check=False)


def _last_line(data: bytes) -> str:
    lines = data.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else "no output"


@functools.cache
def server_version(runtime: str) -> str | tuple[str]:
    """The daemon's version (a str), or ``(why it does not answer,)``."""
    try:
        done = _cli(runtime, "version", "--format", "{{.Server.Version}}", timeout=PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return (f"{runtime} does not answer: {exc}",)
    if done.returncode == 0 and not done.stdout.strip() and runtime == "podman":
        # podman without a service: no server part, the client runs the containers itself
        done = _cli(runtime, "version", "--format", "{{.Client.Version}}",
                    timeout=PROBE_TIMEOUT_S)
    if done.returncode != 0 or not done.stdout.strip():
        return (f"the {runtime} daemon does not answer ({_last_line(done.stderr)}): start it "
                f"(systemctl start {runtime}, or Docker Desktop)",)
    return done.stdout.decode("utf-8", "replace").strip()


def image_name() -> str:
    """The image a container layer runs: ``$FASTRLM_SANDBOX_IMAGE`` (which the CLI's
    ``--sandbox-image`` sets) or :data:`DEFAULT_IMAGE`."""
    return os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE


@dataclasses.dataclass(frozen=True, slots=True)
class ImageInfo:
    """What a sandbox image holds (from its labels): its name, the interpreter to run, that
    interpreter's version and the digest of the worker code inside."""

    name: str
    image_id: str
    python: str
    python_version: str
    code: str
    #: ``name==version`` of the host's packages built in (``--with``), comma-separated.
    packages: str = ""


def inspect_image(runtime: str, name: str) -> ImageInfo | str:
    """The image's labels, or why it cannot be used (missing, not a fastrlm sandbox image)."""
    try:
        done = _cli(runtime, "image", "inspect", "--format",
                    "{{.Id}} {{json .Config.Labels}}", name)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot inspect image {name}: {exc}"
    if done.returncode != 0:
        return (f"image {name} is not there ({_last_line(done.stderr)}): build it with "
                f"`fastrlm sandbox build --runtime {runtime}`")
    image_id, _, labels_json = done.stdout.decode().strip().partition(" ")
    labels = json.loads(labels_json or "null") or {}
    if PYTHON_LABEL not in labels or CODE_LABEL not in labels:
        return (f"image {name} is not a fastrlm sandbox image (no {CODE_LABEL} label): build one "
                f"with `fastrlm sandbox build --runtime {runtime} --base {name}`")
    return ImageInfo(name, image_id, labels[PYTHON_LABEL], labels.get(VERSION_LABEL, "?"),
                     labels[CODE_LABEL], labels.get(PACKAGES_LABEL, ""))


def _pull(runtime: str, name: str) -> str | None:
    try:
        done = _cli(runtime, "pull", name, timeout=600.0)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot pull {name}: {exc}"
    return None if done.returncode == 0 else f"cannot pull {name}: {_last_line(done.stderr)}"


@functools.cache
def ready_image(runtime: str, name: str) -> ImageInfo | str:
    """The image ``name`` (:func:`image_name`) as this process's workers run it, checked once
    per runtime and name: it must exist (it is pulled only when the user named it) and hold
    the same worker code as this host."""
    version = server_version(runtime)
    if isinstance(version, tuple):
        return version[0]
    refused = oci_runtime_problem(runtime)
    if refused is not None:
        return refused
    info = inspect_image(runtime, name)
    if isinstance(info, str) and os.environ.get(IMAGE_ENV) and "is not there" in info:
        pulled = _pull(runtime, name)
        info = info if pulled else inspect_image(runtime, name)
        if pulled:
            return f"{info}; {pulled}"
    if isinstance(info, str):
        return info
    if info.code != worker_code_digest():
        return (f"image {name} holds other fastrlm worker code than this host's "
                f"({info.code[:12]} vs {worker_code_digest()[:12]}): rebuild it with "
                f"`fastrlm sandbox build --runtime {runtime}`")
    return info


#: The cgroup v2 hierarchy of a hybrid cgroup host (v1 controllers, v2 mounted beside them).
HYBRID_CONTROLLERS = "/sys/fs/cgroup/unified/cgroup.controllers"


def crun_refuses(oci_runtime: str, hybrid_controllers: str | None) -> str | None:
    """Why podman's OCI runtime cannot start a container here, or None: crun refuses a hybrid
    cgroup host whose v2 hierarchy holds controllers (``cgroups in hybrid mode not
    supported``), where runc works."""
    controllers = (hybrid_controllers or "").split()
    if oci_runtime != "crun" or not controllers:
        return None
    return ("podman's OCI runtime crun refuses this host's hybrid cgroups (cgroup v1 with "
            f"controllers in cgroup v2 too: {' '.join(controllers)}): set "
            "runtime = \"runc\" in the [engine] section of containers.conf (or a file "
            "CONTAINERS_CONF names), or use docker")


def oci_runtime_problem(runtime: str) -> str | None:
    """For a local podman: :func:`crun_refuses` on this host. None for docker (its daemon
    runs runc) and where it cannot tell."""
    if runtime != "podman" or os.environ.get("CONTAINER_HOST"):
        return None
    try:
        with open(HYBRID_CONTROLLERS, encoding="ascii") as f:
            controllers = f.read()
    except OSError:
        return None
    try:
        done = _cli(runtime, "info", "--format", "{{.Host.OCIRuntime.Name}}",
                    timeout=PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return crun_refuses(done.stdout.decode("utf-8", "replace").strip(), controllers)


def problem(runtime: str) -> str | None:
    """None when ``runtime`` can start workers here (CLI, daemon, image), else why not."""
    if runtime_cli(runtime) is None:
        return f"{runtime} is not installed (no {runtime} on PATH)"
    found = ready_image(runtime, image_name())
    return found if isinstance(found, str) else None


def doctor_line(runtime: str) -> tuple[bool, str]:
    """(works, what ``fastrlm doctor`` says): the daemon's version, the image, its Python and
    the limits a container gets, or why the layer cannot work here."""
    if runtime_cli(runtime) is None:
        return False, f"{runtime} is not installed (no {runtime} on PATH)"
    version = server_version(runtime)
    if isinstance(version, tuple):
        return False, version[0]
    found = ready_image(runtime, image_name())
    if isinstance(found, str):
        return False, f"daemon {version}; {found}"
    return True, (
        f"daemon {version}, image {found.name} ({found.image_id.removeprefix('sha256:')[:12]}, "
        f"Python {found.python_version}"
        + (f"; with {found.packages.replace(',', ', ')}" if found.packages else "")
        + "); each worker: --network none, read-only root, "
        f"user {worker_user()}, no capabilities, no-new-privileges, memory = its limit (no "
        f"swap), {default_cpus():g} CPUs, pids {_pids_limit()}, /tmp a tmpfs of Limits.scratch_mb"
        + (" (its file count uncapped: podman's --tmpfs takes no nr_inodes)"
           if runtime == "podman" else " and its 10,000 files")
    )


def _pids_limit() -> int:
    from ._cgroup import pids_limit

    return pids_limit()


# ------------------------------------------------------------------ owners and orphans
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return "-"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), or
    None when there is no such process: with the pid, it names a process even after pid reuse."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def owner_tag(pid: int | None = None) -> str:
    """``<host>/<boot id>/<pid>/<start time>`` of this (or ``pid``'s) process."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}/{_boot_id()}/{pid}/{_start_time(pid) or '-'}"


def owner_gone(tag: str) -> bool:
    """True when the process a tag names has ended (on this host: another boot, or no process
    with that pid and start time). Containers of other hosts sharing a daemon are not ours."""
    host, boot, pid, started = (tag.split("/") + ["", "", "", ""])[:4]
    if host != socket.gethostname():
        return False
    if boot != _boot_id():
        return True
    return not pid.isdigit() or _start_time(int(pid)) != started


# Removes this process's containers once the host's end of a pipe closes, however the host
# ended (SIGKILL included): a worker spinning in a loop never reads its own pipe's EOF. The
# subshell outlives the shell that starts it (reparented, no child of the host to reap or warn
# about). The pipe is the shell's stdin, moved to fd 3 first: a background list's stdin is
# /dev/null, and dash (Debian's sh) cannot redirect from an fd number above 9 ("Bad fd
# number"), which made the guard exit at once wherever the host had ten fds open.
_GUARD_SCRIPT = ('exec 3<&0 </dev/null; ( read _ <&3; ids=$("$1" ps -aq --filter "label=$2=$3"); '
                 '[ -z "$ids" ] || "$1" rm -f $ids; rm -rf -- "$4"* ) >/dev/null 2>&1 & echo $!')
#: runtime -> the pid of this process's container guard (one each, started by :func:`guard`).
guards: dict[str, int] = {}
_guard_fds: list[int] = []


def _workdir_prefix() -> str:
    """The name prefix of this process's containers' working directories."""
    return f"fastrlm-container-{os.getpid()}-"


def guard(runtime: str) -> None:
    """Start, once per process and runtime, a shell in its own session that waits on a pipe
    only this process holds and, when it closes (this process ended, however), removes every
    container this process still owns and their working directories. Logs and goes on when
    it cannot start (orphans are then reaped by the next start, :func:`reap_orphans`)."""
    cli = runtime_cli(runtime)
    if runtime in guards or cli is None:
        return
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    env = {"PATH": "/usr/bin:/bin"}
    env.update((k, v) for k, v in os.environ.items()
               if k.startswith(("DOCKER_", "CONTAINER_", "CONTAINERS_"))
               or k in ("HOME", "XDG_RUNTIME_DIR"))
    try:
        started = subprocess.run(
            ["/bin/sh", "-c", _GUARD_SCRIPT, "fastrlm-container-guard", cli, OWNER_LABEL,
             owner_tag(), os.path.join(tempfile.gettempdir(), _workdir_prefix())],
            stdin=read_end,
            capture_output=True,
            start_new_session=True,  # outlives the host's process group
            env=env,
            timeout=CLI_TIMEOUT_S,
            check=True,
        )
        guards[runtime] = int(started.stdout.split()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        os.close(write_end)
        logger.warning("no container guard (%s): a killed host leaves its containers until "
                       "the next start", exc)
        return
    finally:
        os.close(read_end)
    _guard_fds.append(write_end)  # held open, never written, for the life of this process


def _reap_workdirs() -> None:
    """Remove the containers' working directories of processes that are gone (whose guard
    could not run)."""
    root = tempfile.gettempdir()
    with contextlib.suppress(OSError):
        for name in os.listdir(root):
            pid = name.removeprefix("fastrlm-container-").partition("-")[0]
            if name.startswith("fastrlm-container-") and pid.isdigit() and not os.path.exists(
                    f"/proc/{pid}"):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def reap_orphans(runtime: str) -> list[str]:
    """Remove every labelled container whose owning process is gone, and the working
    directories of such processes; returns the containers' names."""
    _reap_workdirs()
    try:
        listed = _cli(runtime, "ps", "-aq", "--filter", f"label={LABEL}")
        ids = listed.stdout.decode("ascii", "replace").split()
        # inspect, not a ps template: docker's and podman's ps label fields differ
        owners = _cli(runtime, "inspect", "--format",
                      f'{{{{.Name}}}} {{{{index .Config.Labels "{OWNER_LABEL}"}}}}',
                      *ids) if ids else None
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.warning("cannot list %s containers to reap orphans: %s", runtime, exc)
        return []
    orphans = []
    lines = owners.stdout.decode("utf-8", "replace").splitlines() if owners else []
    for line in lines:
        name, _, tag = line.strip().lstrip("/").partition(" ")
        if name and owner_gone(tag):
            orphans.append(name)
    if orphans:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            _cli(runtime, "rm", "-f", *orphans)
        logger.info("removed %d orphaned sandbox container(s): %s", len(orphans),
                    ", ".join(orphans))
    return orphans


# ------------------------------------------------------------------ one container
@dataclasses.dataclass(frozen=True, slots=True)
class ContainerLimits:
    """What the container's cgroup and mounts enforce."""

    memory_bytes: int
    scratch_bytes: int
    scratch_files: int
    pids: int
    cpus: float
    open_files: int


def default_cpus() -> float:
    """The CPUs a worker container may use: as many as this host process may."""
    try:
        return float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return float(os.cpu_count() or 1)


def worker_user() -> str:
    """``uid:gid`` the container's worker runs as: never root."""
    uid = os.getuid()
    return USER if uid == 0 else f"{uid}:{os.getgid()}"


def unreadable_mount(path: str, user: str) -> str | None:
    """Why ``user`` (``uid:gid``) cannot read the bound ``path`` (a directory on its way that it
    cannot enter, or the path itself), or None."""
    uid, gid = (int(x) for x in user.split(":"))
    here = os.path.realpath(path)
    checks = [(here, stat.S_IROTH, stat.S_IRUSR, stat.S_IRGRP)]
    parent = os.path.dirname(here)
    while parent and parent != "/":
        checks.append((parent, stat.S_IXOTH, stat.S_IXUSR, stat.S_IXGRP))
        parent = os.path.dirname(parent)
    for where, other, owner, group in checks:
        info = os.stat(where)
        bit = owner if info.st_uid == uid else group if info.st_gid == gid else other
        if not info.st_mode & bit:
            return (f"{where} (mode {stat.filemode(info.st_mode)}, owner {info.st_uid}) is not "
                    f"{'readable' if where == here else 'searchable'} by the container's user "
                    f"{user}")
    return None


#: RLIMIT_NPROC of a podman worker: its user's processes and threads host-wide (threads of
#: pyarrow's and BLAS's pools count), far more than a worker uses (its pids limit binds first).
PODMAN_NPROC = 16_384


def _nproc_limit() -> str:
    """RLIMIT_NPROC for podman's ``--ulimit``: :data:`PODMAN_NPROC`, or this process's hard
    limit where that is lower. Podman's own default (4,194,304) fails to apply (EPERM) where
    the runtime's limit is lower, and no container starts at all."""
    hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    value = PODMAN_NPROC if hard == resource.RLIM_INFINITY else min(hard, PODMAN_NPROC)
    return f"{value}:{value}"


class Container:
    """One worker's container: the ``run`` command line that starts it attached (stdin and
    stdout are the worker's pipes) and its removal."""

    def __init__(self, runtime: str, image: ImageInfo) -> None:
        self.runtime = runtime
        self.image = image
        self.name = f"fastrlm-{os.getpid()}-{next(_SERIAL)}-{secrets.token_hex(3)}"
        self._removal: subprocess.Popen[bytes] | None = None
        #: The run command's working directory, private: podman's conmon writes an ``oom``
        #: file into it when the container is OOM-killed (on cgroup v1 it is all podman says).
        self.workdir = tempfile.mkdtemp(prefix=_workdir_prefix())

    def run_argv(
        self,
        limits: ContainerLimits,
        env: dict[str, str],
        mounts: tuple[str, ...],
        worker_config: str,
        user: str = USER,
    ) -> list[str]:
        """``<runtime> run -i ...``: the confined container, running the worker's entry with
        ``worker_config`` (JSON)."""
        cli = runtime_cli(self.runtime) or self.runtime
        memory = str(limits.memory_bytes)
        tmpfs = f"/tmp:rw,nosuid,nodev,noexec,size={limits.scratch_bytes},mode=1777"
        if self.runtime == "docker":  # podman's --tmpfs refuses nr_inodes (4.3)
            tmpfs += f",nr_inodes={limits.scratch_files + 16}"
        argv = [
            cli, "run", "-i",
            "--name", self.name,
            "--label", f"{LABEL}=1",
            "--label", f"{OWNER_LABEL}={owner_tag()}",
            "--pull", "never",
            "--network", "none",
            "--read-only",
            "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges",
            "--user", user,
            "--ipc", "none",
            "--memory", memory,
            "--memory-swap", memory,
            "--pids-limit", str(limits.pids),
            # the worker's own RLIMIT_NOFILE, from the start (podman's default of 1,048,576
            # fails where the host's hard limit is lower)
            "--ulimit", f"nofile={limits.open_files}:{limits.open_files}",
            "--cpus", f"{limits.cpus:g}",
            "--tmpfs", tmpfs,
            "--workdir", "/tmp",
            "--log-driver", "none",
            "--init",  # the worker is not PID 1, which no signal from inside can end
            "--entrypoint", self.image.python,
        ]  # fmt: skip
        if self.runtime == "podman":  # it runs the container from this process: within its limit
            argv += ["--ulimit", f"nproc={_nproc_limit()}"]
        for name, value in env.items():
            argv += ["--env", f"{name}={value}"]
        for path in mounts:
            argv += ["--mount", f"type=bind,source={path},target={path},readonly"]
        entry = f"{IMAGE_PACKAGE}/sandbox/_container_entry.py"
        return [*argv, self.image.image_id, "-I", "-S", "-B", "-X", "utf8", entry, worker_config]

    def remove(self) -> subprocess.Popen[bytes] | None:
        """Start ``<runtime> rm -f`` of this container (once; later calls return the same
        process). The caller waits for it, within a bound. None when the CLI cannot start."""
        if self._removal is None:
            cli = runtime_cli(self.runtime) or self.runtime
            try:
                self._removal = subprocess.Popen(  # noqa: ASYNC220 - awaited by the caller
                    [cli, "rm", "-f", self.name],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,  # finishes even if the host dies meanwhile
                )
            except OSError as exc:
                logger.warning("cannot remove container %s: %s", self.name, exc)
                return None
        return self._removal

    def release(self) -> None:
        """Remove the private working directory (once the run command has ended)."""
        shutil.rmtree(self.workdir, ignore_errors=True)

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer ended this container (its memory limit)."""
        if os.path.exists(os.path.join(self.workdir, "oom")):
            return True
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            done = _cli(self.runtime, "inspect", "--format", "{{.State.OOMKilled}}", self.name,
                        timeout=PROBE_TIMEOUT_S)
            return done.stdout.strip() == b"true"
        return False


# ------------------------------------------------------------------ the image's worker code
def _worker_files() -> Iterator[tuple[str, str]]:
    """(path relative to the package, absolute host path) of the worker's code, sorted."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for sub in WORKER_PACKAGES:
        top = os.path.join(package, sub)
        for directory, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(directory, name)
                    yield os.path.relpath(path, package), path


@functools.cache
def worker_code_digest() -> str:
    """SHA-256 over the worker's code (names and bytes): the image must carry the same."""
    digest = hashlib.sha256()
    for rel, path in _worker_files():
        with open(path, "rb") as f:
            data = f.read()
        digest.update(f"{rel}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()
