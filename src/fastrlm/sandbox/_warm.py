"""Warm workers: one booted process per sandbox setting that forks each run's worker.

A spawned worker costs a fresh interpreter and its imports (about 60 ms of CPU), so a server
that starts one per request is bound by worker start, not by its model. :func:`warm_workers`
boots one *warm* process per setting (the layer, the worker's environment, the scratch size)
and keeps it; a :class:`~._worker.WorkerSandbox` whose plan matches asks it to fork the run's
worker instead (:meth:`WarmWorker.fork`: a few milliseconds), which then confines itself and
loads its context exactly like a spawned one.

What a run gets is a fresh process, never a used one: the fork happens before any context or
model code exists in it, so nothing of an earlier run can be left in it (a worker is never
reused; a restart forks another). Forked workers of one warm process are kept apart by the
same layers as spawned ones (their seccomp filter refuses ``kill``, ``ptrace``, ``fork`` and
sockets; Landlock confines each to its own scratch directory, even under bubblewrap, where
they share the warm process's namespaces), so a plan is warmed only where those hold
(:func:`warm_problem`): never for a container, never without seccomp, and under bubblewrap
only with Landlock. Every other sandbox starts its worker cold, as before.

An order is sent from the event loop that starts the sandbox, and its answer awaited there: no
thread stands between a run and its worker. Each order carries a socket of its own for the
answer, so orders from any number of runs (and event loops) are in flight at once and no answer
can be taken for another's. The host learns a forked worker's pid from the credentials of the
one datagram the worker sends on that socket (the kernel translates the pid into the host's pid
namespace), and holds a pidfd on it: signals go through the pidfd, so a pid reused after the
worker ended can never be hit.

Why over 500 lines: one warm process's whole life is here (its boot, the order path, the room in
its shared ``/tmp``, the clean-ups after its workers, its holders), and the order path, the room
and the clean-ups share one lock's invariants (a clean-up goes out before the fork that uses its
room; an order given up is sent before its fds close or never).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .._foundation.errors import SandboxUnavailableError
from . import _layers
from ._base import SandboxLimits
from ._channel import readable_within, wait_readable, writable_within
from ._reaper import _Reaper

logger = logging.getLogger("fastrlm.sandbox")

#: How long a fork order may take (the warm process forks in milliseconds; past this it is
#: taken for dead and the sandbox starts its worker cold).
FORK_TIMEOUT_S = 10.0
_BOOT_TIMEOUT_S = 60.0
_CREDENTIALS = struct.Struct("3i")
_SCRATCH_SERIAL = itertools.count(1)


def warm_problem(plan: _layers.LayerPlan) -> str | None:
    """None when workers of ``plan`` can be forked from a warm process, else why not."""
    if plan.container:
        return "a container worker starts in a container of its own"
    if not plan.seccomp:
        return "without seccomp, workers forked from one process could signal each other"
    if plan.kind == "bwrap":
        problem = _layers.landlock_problem()
        if problem is not None:
            return ("under bubblewrap, forked workers share one /tmp, which Landlock keeps "
                    f"apart, and Landlock is not available ({problem})")
    return None


def _key(plan: _layers.LayerPlan, limits: SandboxLimits) -> tuple[object, ...]:
    """What a forked worker inherits from its warm process: the rest comes with the order."""
    return (plan.name, limits.env, limits.scratch_bytes if plan.kind == "bwrap" else 0)


class ForkedProc:
    """A forked worker as :class:`~._worker.WorkerProcess` sees a process: ``pid`` (in the
    host's namespace), ``returncode`` (None while it runs; ``-SIGKILL`` once killed here, else
    1: its parent, the warm process, reaps it, so its own exit status is not known here),
    ``poll``, ``wait`` and :meth:`kill_group`. ``scratch`` is its scratch directory as the host
    reads it (under bubblewrap, through ``/proc/<pid>/root``)."""

    def __init__(self, pid: int, warm: WarmWorker, scratch: str | None) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._pidfd = os.pidfd_open(pid)
        self._killed = False
        self._warm = warm
        self._scratch = scratch  # inside the warm process's namespaces: it removes it
        self.scratch = f"/proc/{pid}/root{scratch}" if scratch is not None else None

    @property
    def warm(self) -> WarmWorker:
        """The warm process that forked it."""
        return self._warm

    def poll(self) -> int | None:
        if self.returncode is None and self._pidfd >= 0:
            if readable_within(self._pidfd, 0):
                self._ended()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        if self.returncode is None and self._pidfd >= 0:
            if readable_within(self._pidfd, timeout):
                self._ended()
        return self.returncode

    def kill_group(self) -> None:
        """SIGKILL the worker (through its pidfd: never another process). Its seccomp filter
        refuses ``fork``, so it leads a group of one."""
        if self.returncode is None and self._pidfd >= 0:
            self._killed = True
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    def _ended(self) -> None:
        self.returncode = -signal.SIGKILL if self._killed else 1
        os.close(self._pidfd)
        self._pidfd = -1
        if self._scratch is not None:
            self._warm.clean(self._scratch)
            self._scratch = None


class WarmWorker:
    """One warm process (see the module docstring). :meth:`boot` starts it; :meth:`fork` makes
    a worker; :meth:`close` ends it, and with it every worker it forked."""

    def __init__(self, plan: _layers.LayerPlan, limits: SandboxLimits, slots: int) -> None:
        self.plan = plan
        self.limits = limits
        self.slots = slots
        self.forks = 0
        #: Held while a datagram goes out on the control socket (never across a wait): the
        #: clean-up orders queued go before the fork order that may use the room they free.
        self._send_lock = threading.Lock()
        self._control: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()
        self._dead: str | None = None
        self._to_clean: list[str] = []
        #: Workers forked and not yet cleaned after (alive, or killed and still ending: a
        #: closed sandbox does not wait for its worker's end), against the room their shared
        #: ``/tmp`` was sized for (:attr:`scratch_room`).
        self._unclean = 0
        self._room = threading.Condition()
        #: Waits for its killed workers to end (see :meth:`after_exit`).
        self.reaper = _Reaper()

    @property
    def alive(self) -> bool:
        return self._dead is None and self._proc is not None and self._proc.poll() is None

    @property
    def scratch_room(self) -> int:
        """How many workers' whole scratch quotas the shared ``/tmp`` holds: ``slots`` alive
        and as many again killed and still ending (their scratch is removed once they have
        ended, after their sandbox has closed). :meth:`fork` waits for room past that, so a
        worker always has its whole quota."""
        return 2 * max(self.slots, 1)

    async def boot(self) -> None:
        """Start the warm process and wait until it has imported what a worker needs. Raises
        SandboxUnavailableError (with its output) when it cannot."""
        control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        control.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        plan = self.plan
        config = {
            "warm": True,
            "fd_control": theirs.fileno(),
            "parent_pid": 0 if plan.kind == "bwrap" else os.getpid(),
            "package_dir": _layers.package_dir(),
            "sys_path": _layers.module_dirs(),
            "landlock": {} if plan.kind in ("bwrap", "landlock") else None,
            "seccomp": plan.seccomp,
            "libraries": _layers.library_names(),
        }
        # under bubblewrap its workers share its /tmp: room for ``scratch_room`` of them
        argv, env = _layers.launch(
            plan.kind, config, tmpfs_bytes=self.limits.scratch_bytes * self.scratch_room,
            env=self.limits.env, scratch="/")
        try:
            # On this thread: a process that dies with its parent dies with the thread that
            # started it (PR_SET_PDEATHSIG), and this one is the event loop's.
            self._proc = subprocess.Popen(  # noqa: ASYNC220 - fork+exec; the wait is below
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log,
                pass_fds=(theirs.fileno(),), start_new_session=True, env=env,
                cwd=None if plan.kind == "bwrap" else "/",
            )
        except OSError as exc:
            control.close()
            raise SandboxUnavailableError(f"cannot start the warm worker: {exc}") from exc
        finally:
            theirs.close()
        self._control = control
        try:
            message = await asyncio.to_thread(self._receive, _BOOT_TIMEOUT_S)
        except SandboxUnavailableError:
            await asyncio.to_thread(self.close)
            raise
        if message[0] != b"warm":
            self.close()
            raise SandboxUnavailableError(f"the warm worker did not start: {message[0]!r}")
        control.setblocking(False)  # orders go out from event loops: never wait on it there

    def _receive(self, timeout: float) -> tuple[bytes, int]:
        """The warm process's first datagram on the control socket: (bytes, its pid). Raises
        SandboxUnavailableError when none comes (the process is then taken for dead)."""
        control = self._control
        if control is None:
            raise SandboxUnavailableError("the warm worker is closed")
        control.settimeout(timeout)
        return self._datagram(control)

    def _datagram(self, sock: socket.socket) -> tuple[bytes, int]:
        """The datagram waiting on ``sock`` (blocking, or one known to be there): (bytes,
        sender's pid, from its credentials). Raises SandboxUnavailableError when there is none
        (its sender closed its end, or an error): the warm process is then taken for dead."""
        try:
            data, ancillary, _, _ = sock.recvmsg(1024, socket.CMSG_SPACE(_CREDENTIALS.size))
        except OSError as exc:
            data, ancillary = b"", []
            why = f"{type(exc).__name__}: {exc}"
        else:
            why = "it closed its socket"
        pid = 0
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = _CREDENTIALS.unpack(value[: _CREDENTIALS.size])[0]
        if not data or not pid:
            self._dead = self._dead or f"it stopped answering ({why})"
            raise SandboxUnavailableError(f"the warm worker is gone: {self._dead}; "
                                          f"{self._output() or 'no output'}")
        return data, pid

    def _output(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            self._log.seek(0)
            return self._log.read(4000).decode("utf-8", "replace").strip()
        return ""

    def new_scratch(self) -> str:
        """A scratch directory for the next worker, inside the warm process's ``/tmp``."""
        return f"/tmp/w{next(_SCRATCH_SERIAL)}"

    async def fork(self, config: dict[str, object], fds: list[int],
                   scratch: str | None) -> ForkedProc:
        """Fork one worker that starts with ``config`` (the spawned worker's) on ``fds`` (pipe
        A, pipe B, the context buffer), waiting on the running event loop, never blocking it.
        ``scratch``: its directory inside the warm process's namespaces, removed once it ends.
        Raises SandboxUnavailableError when the warm process cannot fork (then the caller
        starts the worker cold)."""
        if scratch is not None and not self._take_room(wait=False):
            await self._wait_for_room()  # rare: waits for workers still ending
        try:
            return await self._fork(config, fds, scratch)
        except BaseException:
            if scratch is not None:
                self._give_room()
            raise

    async def _wait_for_room(self) -> None:
        """:meth:`_take_room`, waiting in a thread. A wait given up (the run cancelled) takes
        no room, even where the thread had found some just before."""
        given_up, took = threading.Event(), threading.Event()
        try:
            await asyncio.to_thread(self._take_room, True, given_up, took)
        except BaseException:
            with self._room:
                given_up.set()
                if took.is_set():
                    self._unclean -= 1
                self._room.notify_all()
            raise

    def _take_room(self, wait: bool = True, given_up: threading.Event | None = None,
                   took: threading.Event | None = None) -> bool:
        """Count one more worker in the shared ``/tmp``, once the workers not yet cleaned
        after leave room for it: at once (False when there is none), or waiting for the ending
        ones (``wait``, in a thread: rare, a burst of sandboxes closed while their workers were
        still writing; False once its waiter has ``given_up``, else ``took`` is set)."""
        with self._room:
            found = self._room.wait_for(
                lambda: self._unclean < self.scratch_room or bool(given_up and given_up.is_set()),
                FORK_TIMEOUT_S if wait else 0)
            if given_up is not None and given_up.is_set():
                return False
            if not found:
                if not wait:
                    return False
                raise SandboxUnavailableError(
                    f"the warm worker's /tmp is full: {self._unclean} workers have not been "
                    f"cleaned after within {FORK_TIMEOUT_S:.0f} s")
            self._unclean += 1
            if took is not None:
                took.set()
            return True

    def _give_room(self) -> None:
        with self._room:
            self._unclean -= 1
            self._room.notify()

    async def _fork(self, config: dict[str, object], fds: list[int], scratch: str | None
                    ) -> ForkedProc:
        # the answer comes on a socket of this order's own, from the worker (its pid in the
        # credentials) or from the warm process (why it could not fork); a warm process gone
        # or closed is found by _send, under its lock
        answer, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            answer.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            answer.setblocking(False)
            order = json.dumps({"op": "fork", "config": config}).encode()
            if not self._send(order, [*fds, theirs.fileno()]):  # its buffer is full: rare
                given_up = threading.Event()
                try:
                    await asyncio.to_thread(self._send_waiting, order, [*fds, theirs.fileno()],
                                            given_up)
                except BaseException:
                    # sent already, or never: the fds are closed after this, and a number
                    # reused by then must not go out in a late order
                    with self._send_lock:
                        given_up.set()
                    raise
            theirs.close()  # an answer, or the end of every copy (the warm process gone)
            try:
                async with asyncio.timeout(FORK_TIMEOUT_S):
                    await wait_readable(answer.fileno())
            except TimeoutError:
                self._dead = self._dead or (f"it did not fork within {FORK_TIMEOUT_S:.0f} s")
                raise SandboxUnavailableError(
                    f"the warm worker is gone: {self._dead}; {self._output() or 'no output'}"
                ) from None
            data, pid = self._datagram(answer)
        finally:
            theirs.close()
            answer.close()
        if data != b"forked":
            raise SandboxUnavailableError(data.decode("utf-8", "replace"))
        self.forks += 1
        return ForkedProc(pid, self, scratch)

    def _send(self, order: bytes, fds: list[int], given_up: threading.Event | None = None,
              *, wait_lock: bool = True) -> bool:
        """Send the clean-up orders queued, then ``order`` (with ``fds``) if it is not empty,
        without waiting for room: False when the control socket's buffer is full (the rest is
        sent later), or when the lock is held and not ``wait_lock``. Raises
        SandboxUnavailableError when the warm process is gone, or its sender has
        ``given_up``."""
        if not self._send_lock.acquire(blocking=wait_lock):
            return False
        try:
            control = self._control
            if given_up is not None and given_up.is_set():
                raise SandboxUnavailableError("the fork was given up")
            if not self.alive or control is None:
                raise SandboxUnavailableError(
                    f"the warm worker is gone: {self._dead or 'closed'}")
            try:
                while self._to_clean:
                    cleaning = json.dumps({"op": "clean", "dir": self._to_clean[-1]}).encode()
                    control.send(cleaning)
                    self._to_clean.pop()
                if order:
                    socket.send_fds(control, [order], fds)
            except BlockingIOError:
                return False
            except OSError as exc:
                self._dead = self._dead or f"it stopped taking orders ({exc})"
                raise SandboxUnavailableError(f"the warm worker is gone: {self._dead}") from None
            return True
        finally:
            self._send_lock.release()

    def _send_waiting(self, order: bytes, fds: list[int], given_up: threading.Event) -> None:
        """:meth:`_send`, waiting (in a thread) for room in the control socket's buffer, up to
        :data:`FORK_TIMEOUT_S` (past it the warm process is taken for dead), unless its sender
        has ``given_up``."""
        deadline = time.monotonic() + FORK_TIMEOUT_S
        while not self._send(order, fds, given_up):
            control = self._control
            left = deadline - time.monotonic()
            if control is None or left <= 0 or not writable_within(control.fileno(), left):
                self._dead = self._dead or "it stopped taking orders (its socket stayed full)"
                raise SandboxUnavailableError(f"the warm worker is gone: {self._dead}")

    def clean(self, scratch: str) -> None:
        """Have the warm process remove a finished worker's scratch directory: now, or with
        the next fork order when the control socket is full (never waits: it is called from
        the event loop). Its room in the shared ``/tmp`` is free for the next fork, whose
        order follows this one."""
        self._to_clean.append(scratch)
        with contextlib.suppress(SandboxUnavailableError):  # gone: nothing left to clean
            self._send(b"", [], wait_lock=False)  # (an order going out sends it first)
        self._give_room()

    def after_exit(self, pidfd: int, then: Callable[[], None]) -> bool:
        """Run ``then`` on the reaper's thread once a killed worker of this warm process has
        ended (see :class:`_Reaper`); False when this warm process is closing or gone: the
        caller waits for the exit itself."""
        return self.alive and self.reaper.after_exit(pidfd, then)

    def close(self) -> None:
        """End the warm process (its workers die with it), then wait for the workers still
        ending to be cleaned up after. Idempotent."""
        self._end()
        self.reaper.close()

    def _end(self) -> None:
        with self._send_lock:  # held for no wait: a sender on an event loop waits for it
            self._dead = self._dead or "closed"
            control, self._control = self._control, None
        if control is not None:
            control.close()
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5.0)
        self._log.close()


@dataclass
class _Entry:
    warm: WarmWorker
    users: int


_WARM: dict[tuple[object, ...], _Entry] = {}
_WARM_LOCK = threading.Lock()


def find(plan: _layers.LayerPlan, limits: SandboxLimits,
         mounts: tuple[str, ...]) -> WarmWorker | None:
    """The live warm process that can fork a worker for ``plan`` and ``limits``, or None.
    Under bubblewrap a context with its own mounts (a directory) starts cold: the mounts are
    the namespace's, made at spawn."""
    if plan.kind == "bwrap" and mounts:
        return None
    entry = _WARM.get(_key(plan, limits))
    return entry.warm if entry is not None and entry.warm.alive else None


class WarmWorkers:
    """What :func:`warm_workers` holds: :attr:`warm` (None when no plan could be warmed, and
    :attr:`problem` says why); :meth:`close` lets it go (the last holder ends it)."""

    def __init__(self, key: tuple[object, ...] | None, entry: _Entry | None,
                 problem: str | None) -> None:
        self._key = key
        self._entry = entry
        self.warm = entry.warm if entry is not None else None
        self.problem = problem

    def close(self) -> None:
        """Let the warm process go; the last holder ends it (and any worker it forked).
        Idempotent."""
        entry, self._entry = self._entry, None
        if entry is None:
            return
        with _WARM_LOCK:
            entry.users -= 1
            if entry.users > 0:
                return
            if _WARM.get(self._key or ()) is entry:
                del _WARM[self._key or ()]
        entry.warm.close()


async def warm_workers(kind: str, limits: SandboxLimits, slots: int = 4) -> WarmWorkers:
    """Keep a warm process for sandboxes of ``kind`` with ``limits`` (its env and scratch size:
    the rest may differ per run) until the returned holder is closed. ``slots``: how many of
    its workers may be alive at once (under bubblewrap their ``/tmp`` is twice ``slots`` times
    ``scratch_bytes``: room too for the killed workers still ending; a later holder of the
    same setting shares the first one's). Never raises for a layer that cannot be warmed: the
    holder says why (``problem``) and sandboxes start cold as before."""
    if kind == "none":
        return WarmWorkers(None, None, "the in-process sandbox starts no worker")
    try:
        plans = _layers.plans_for(kind)
    except (SandboxUnavailableError, ValueError) as exc:
        return WarmWorkers(None, None, str(exc))
    plan = plans[0]  # the one every sandbox of this kind tries first
    problem = warm_problem(plan)
    if problem is not None:
        return WarmWorkers(None, None, f"{plan.name}: {problem}")
    key = _key(plan, limits)
    with _WARM_LOCK:
        entry = _WARM.get(key)
        if entry is not None and entry.warm.alive:
            entry.users += 1
            return WarmWorkers(key, entry, None)
    warm = WarmWorker(plan, limits, slots)
    try:
        await warm.boot()
    except SandboxUnavailableError as exc:
        logger.warning("no warm worker for %s: %s", plan.name, exc)
        return WarmWorkers(None, None, str(exc))
    unused = None
    with _WARM_LOCK:
        entry = _WARM.get(key)
        if entry is not None and entry.warm.alive:  # another holder booted one meanwhile
            unused = warm
        else:  # none, or a dead one: its holders still close their own entry, not this one
            entry = _WARM[key] = _Entry(warm, 0)
        entry.users += 1
    if unused is not None:
        await asyncio.to_thread(unused.close)
    return WarmWorkers(key, entry, None)
