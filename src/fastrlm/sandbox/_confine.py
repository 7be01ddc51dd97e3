"""Confinement the worker applies to itself before it accepts code: rlimits, Landlock,
capabilities and seccomp. Runs inside the worker (standard library, plus ``pyseccomp`` and
``landlock`` imported lazily); every function raises ``OSError``/``RuntimeError`` when its layer
cannot be applied, so the worker can refuse to start rather than run less confined than asked.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os
import resource
import signal
import stat
import struct
from collections.abc import Iterable
from typing import Any

# Syscalls refused with EPERM. Threads stay possible: clone is only refused without CLONE_THREAD.
DENIED_SYSCALLS = (
    # network
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
    # new programs and processes
    "execve", "execveat", "fork", "vfork",
    # reaching into other processes
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_open", "pidfd_getfd",
    "pidfd_send_signal", "tkill", "kcmp", "process_madvise",
    # namespaces, mounts, kernel surfaces
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "bpf", "keyctl", "add_key",
    "request_key", "io_uring_setup", "io_uring_enter", "io_uring_register", "perf_event_open",
    "userfaultfd", "open_by_handle_at", "name_to_handle_at", "init_module", "finit_module",
    "delete_module", "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff",
    "personality", "setrlimit", "acct", "quotactl", "syslog", "fanotify_init",
    "mount_setattr", "move_mount", "open_tree", "fsopen", "fsmount", "fspick",
    # memory that RLIMIT_DATA does not count (the context memfd is mapped before this loads)
    "memfd_create", "memfd_secret", "shmget", "pipe", "pipe2",
)  # fmt: skip
_MAP_SHARED, _MAP_SHARED_VALIDATE, _MAP_ANONYMOUS, _MAP_GROWSDOWN = 0x01, 0x03, 0x20, 0x0100
CLONE_THREAD = 0x00010000
_CAP_VERSION_3 = 0x20080522
_SYS_CAPSET = {"x86_64": 126, "aarch64": 91}
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_PDEATHSIG = 1
_PR_CAPBSET_DROP = 24


def apply_rlimits(limits: dict[str, int]) -> None:
    """Set each ``RLIMIT_<NAME>`` (soft = hard) from ``{"AS": bytes, "NOFILE": n, ...}``."""
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, f"RLIMIT_{name}"), (value, value))


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library, opened once a process (and inherited opened by a warm process's forks:
    opening it and finding each function again cost every forked worker ~0.3 ms)."""
    return ctypes.CDLL(None, use_errno=True)


def prepare(landlock: bool) -> None:
    """Do once, in a warm process, what every worker it forks would otherwise do again: open
    the C library, read the capability bounding set, and (``landlock``) work out this kernel's
    Landlock rights. The forks inherit the results, and apply the same layers as before."""
    _libc()
    _bounding_set_empty()
    if landlock:
        _landlock_rights()


def die_with_parent(parent_pid: int) -> None:
    """Get SIGKILLed when the host dies (a worker stuck in a loop would otherwise outlive it);
    exit now if the host is already gone."""
    if _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:
        os._exit(0)


def no_new_privs() -> None:
    """Forbid gaining privileges through exec (required by Landlock and seccomp)."""
    if _libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


def drop_capabilities() -> None:
    """Empty the bounding, effective, permitted and inheritable capability sets (a root worker
    outside namespaces could otherwise raise its own rlimits or bypass file permissions)."""
    libc = _libc()
    for cap in range(0 if _bounding_set_empty() else 64):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            if ctypes.get_errno() == errno.EINVAL:  # past the last capability this kernel knows
                break
            if ctypes.get_errno() != errno.EPERM:  # EPERM: already without CAP_SETPCAP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")
    machine = os.uname().machine
    if machine not in _SYS_CAPSET:
        raise RuntimeError(f"capset: unsupported architecture {machine}")
    header = (ctypes.c_uint32 * 2)(_CAP_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    if libc.syscall(_SYS_CAPSET[machine], header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


@functools.cache
def _bounding_set_empty() -> bool:
    """Whether this process's capability bounding set is already empty (bubblewrap's
    ``--cap-drop ALL``; it never grows again, so a warm process's answer holds for its forks).
    False when it cannot be read (``/proc`` is out of a Landlocked worker's reach)."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"CapBnd:"):
                    return int(line.split()[1], 16) == 0
    except (OSError, ValueError, IndexError):
        pass
    return False


@functools.cache
def _landlock_rights() -> tuple[int, int, int]:
    """This kernel's Landlock rights as integers: (every right its ABI handles, reading a
    directory, reading a file). The ``landlock`` package names them and asks the ABI."""
    from landlock import FSAccess  # type: ignore[import-untyped]

    read_file = FSAccess.READ_FILE | FSAccess.EXECUTE
    return int(FSAccess.all()), int(read_file | FSAccess.READ_DIR), int(read_file)


def apply_landlock(read_paths: Iterable[str], write_paths: Iterable[str]) -> None:
    """Restrict the file system to read-only ``read_paths`` and read-write ``write_paths``;
    everything else (``/proc``, ``/root``, ``/etc`` ...) is denied. A read path that does not
    exist is skipped; after :func:`no_new_privs`. The three Landlock syscalls are made here
    directly (the ``landlock`` package's rule objects cost a forked worker ~1 ms)."""
    from landlock.plumbing import (  # type: ignore[import-untyped]
        SYSCALL_ADD_RULE,
        SYSCALL_CREATE_RULESET,
        SYSCALL_RESTRICT_SELF,
        PathBeneathAttr,
        RulesetAttr,
    )

    handled, read_dir, read_file = _landlock_rights()
    syscall = _libc().syscall
    attr = RulesetAttr(handled)
    ruleset = syscall(ctypes.c_long(SYSCALL_CREATE_RULESET), ctypes.byref(attr),
                      ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        rules = [(path, None) for path in read_paths] + [(p, handled) for p in write_paths]
        for path, rights in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                if rights is None:  # a read path that is not there (or not reachable)
                    continue
                raise
            try:
                if rights is None:  # directory rights on a file are an error
                    rights = read_dir if stat.S_ISDIR(os.fstat(fd).st_mode) else read_file
                rule = PathBeneathAttr(rights, fd)
                if syscall(ctypes.c_long(SYSCALL_ADD_RULE), ctypes.c_int(ruleset),
                           ctypes.c_uint(1), ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
            finally:
                os.close(fd)
        if syscall(ctypes.c_long(SYSCALL_RESTRICT_SELF), ctypes.c_int(ruleset),
                   ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)


def apply_seccomp(library_names: dict[str, str], own_pid: int) -> None:
    """Load the syscall filter (:func:`_build_filter`) for this process, ``own_pid``."""
    _build_filter(library_names, own_pid).load()


def _build_filter(library_names: dict[str, str], own_pid: int) -> Any:
    """The syscall filter for ``own_pid``: :data:`DENIED_SYSCALLS` and process-creating
    ``clone``/``clone3`` fail with EPERM/ENOSYS; ``kill``/``tgkill`` only reach this process;
    ``prlimit64`` may only read; ``mmap`` of shared anonymous or grows-down memory fails.
    ``library_names`` maps ``"c"``/``"seccomp"`` to sonames the host resolved, so that importing
    ``pyseccomp`` does not run ``ldconfig`` inside the sandbox."""
    seccomp = _import_pyseccomp(library_names)
    eperm = seccomp.ERRNO(errno.EPERM)
    flt = seccomp.SyscallFilter(seccomp.ALLOW)
    for name in DENIED_SYSCALLS:
        try:
            flt.add_rule(eperm, name)
        except (OSError, ValueError, RuntimeError):
            continue  # a syscall this architecture does not have
    arg = seccomp.Arg
    flt.add_rule(eperm, "clone", arg(0, seccomp.MASKED_EQ, CLONE_THREAD, 0))
    # clone3 passes its flags by pointer, which BPF cannot read: ENOSYS makes glibc fall back to
    # clone for threads, where the rule above applies.
    flt.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for call in ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"):
        flt.add_rule(eperm, call, arg(0, seccomp.NE, own_pid))
    flt.add_rule(eperm, "prlimit64", arg(2, seccomp.NE, 0))
    # Shared anonymous memory (shmem) and grows-down mappings escape RLIMIT_DATA.
    kind = _MAP_SHARED_VALIDATE | _MAP_ANONYMOUS
    for shared in (_MAP_SHARED, _MAP_SHARED_VALIDATE):
        flt.add_rule(eperm, "mmap", arg(3, seccomp.MASKED_EQ, kind, shared | _MAP_ANONYMOUS))
    flt.add_rule(eperm, "mmap", arg(3, seccomp.MASKED_EQ, _MAP_GROWSDOWN, _MAP_GROWSDOWN))
    return flt


#: The pid a filter template is built for: above any pid_max, so it is no process's (the
#: template on its own lets a process signal nothing, itself included).
PID_SENTINEL = 0x3FFF_FFF0
_BPF_INSN = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k
_BPF_JMP = 0x05
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_template(library_names: dict[str, str]) -> bytes | None:
    """The filter's BPF program built once for :data:`PID_SENTINEL`, for workers forked from a
    warm process to load with their own pid put in (:func:`load_seccomp_template`): building
    it (libseccomp) costs a forked worker ~1.4 ms, loading a built one microseconds. None when
    the sentinel is not only where it is expected (in the comparisons of jump instructions),
    and the caller builds the filter as before."""
    import tempfile

    with tempfile.TemporaryFile() as out:
        _build_filter(library_names, PID_SENTINEL).export_bpf(out)
        out.seek(0)
        program = out.read()
    if not program or len(program) % _BPF_INSN.size:
        return None
    found = 0
    for code, _, _, k in _BPF_INSN.iter_unpack(program):
        if k == PID_SENTINEL:
            if code & 0x07 != _BPF_JMP:
                return None
            found += 1
    return program if found else None


def with_pid(program: bytes, own_pid: int) -> bytes:
    """``program`` (from :func:`seccomp_template`) with ``own_pid`` wherever the sentinel was:
    the filter :func:`apply_seccomp` would build for ``own_pid``."""
    patched = bytearray(program)
    for offset in range(0, len(patched), _BPF_INSN.size):
        code, jt, jf, k = _BPF_INSN.unpack_from(patched, offset)
        if k == PID_SENTINEL:
            _BPF_INSN.pack_into(patched, offset, code, jt, jf, own_pid)
    return bytes(patched)


def load_seccomp_template(program: bytes, own_pid: int) -> None:
    """Load :func:`seccomp_template`'s program for this process, ``own_pid`` (after
    :func:`no_new_privs`). Raises OSError when the kernel refuses it."""
    code = ctypes.create_string_buffer(with_pid(program, own_pid), len(program))
    fprog = _SockFprog(len(program) // _BPF_INSN.size, ctypes.cast(code, ctypes.c_void_p))
    if _libc().prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")


def _import_pyseccomp(library_names: dict[str, str]) -> Any:
    original = ctypes.util.find_library

    def find_library(name: str) -> str | None:
        return library_names.get(name) or original(name)

    ctypes.util.find_library = find_library
    try:
        import pyseccomp  # type: ignore[import-untyped]
    finally:
        ctypes.util.find_library = original
    return pyseccomp
