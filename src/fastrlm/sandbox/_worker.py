"""The isolated sandbox, host side: one worker process per run, driven over framed pipes.

:class:`WorkerSandbox` implements the ``Sandbox`` protocol. It writes the context once into a
sealed memfd that every worker of the sandbox maps (restarts reload it without a copy), spawns
the worker under the chosen :class:`~._layers.LayerPlan`, answers its host-call frames (the
ops of :data:`._hostops.HOST_OPS`) through :func:`._hostops.dispatch`, and enforces the hard
deadline: past ``exec_timeout_s + hard_grace_s`` of the worker's own time (host calls
excluded), or on a crash or a protocol violation, the worker's process group is SIGKILLed and
a fresh worker takes over (``ExecResult.restarted``). Nothing the worker sends can crash or
hang the host.

Why over 500 lines: one worker's life on the host is one state machine over one pair of pipes
(start and its failures, cells with host calls interleaved, hard kill and restart, discard at
exit); split across files, a state and the transitions that leave it would part.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import itertools
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from .._foundation.errors import (
    ContextError,
    ProtocolError,
    SandboxError,
    SandboxUnavailableError,
    WorkerCrashedError,
)
from .._foundation.threads import thread_result
from . import _cgroup, _container, _hostops, _layers, _protocol, _warm, kinds
from ._base import ExecResult, HostBridge, SandboxLimits, cell_result
from ._channel import Channel, readable_within, wait_readable
from ._watchdog import Quotas, Watchdog, memory_now

logger = logging.getLogger("fastrlm.sandbox")

START_TIMEOUT_S = 60.0
#: Bytes of the context buffer read at a time while it is streamed into a container.
_STREAM_PIECE = 1 << 20
#: How long :meth:`WorkerSandbox.discard` lets a SIGKILLed process take to exit before it stops
#: waiting (one that has not is left to ``subprocess`` to reap later): a bound, never a wait.
DISCARD_REAP_S = 2.0
_CGROUP_SERIAL = itertools.count(1)
# Removes a scratch directory once the host's end of its stdin closes, however the host ended
# (SIGKILL included); retries while a dying worker may still be writing into it.
_REAPER_SCRIPT = (
    'read _; i=0; while [ -e "$1" ] && [ "$i" -lt 200 ]; do rm -rf -- "$1"; i=$((i+1)); '
    '[ -e "$1" ] && sleep 0.05; done'
)


class _WorkerLost(Exception):
    """The current worker is unusable (dead, too slow, or broke the protocol)."""

    def __init__(self, reason: str, *, timed_out: bool = False, crashed: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out
        self.crashed = crashed


class WorkerProcess:
    """One spawned worker: its process, a :class:`~._channel.Channel` on its two pipes, and the
    file its startup errors went to. In a container, ``proc`` is the attached ``run`` command
    and ``container`` the container, removed whenever the worker is killed."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes] | _warm.ForkedProc,
        fd_in: int,
        fd_out: int,
        log: IO[bytes],
        cgroup: _cgroup.WorkerCgroup | None = None,
        container: _container.Container | None = None,
    ):
        self.proc = proc
        self.cgroup = cgroup
        self.container = container
        self._oom: str | None = None
        self.channel = Channel(fd_out, fd_in)
        self._log = log
        self._pidfd = os.pidfd_open(proc.pid)
        self.closed = False
        self.watchdog: Watchdog | None = None
        self.memory_bytes = 0
        #: Where the watchdog finds its scratch: None for a bubblewrap tmpfs of its own (read
        #: with statvfs), else a directory it walks. Set by whoever started it.
        self.scratch_path: str | None = None
        #: What it must report having applied beyond its plan's layers.
        self.requires: frozenset[str] = frozenset()

    @property
    def exceeded(self) -> str | None:
        """Why the watchdog or the cgroup's OOM killer ended this worker (a quota it broke), or
        None."""
        if self.watchdog is not None and self.watchdog.reason is not None:
            return self.watchdog.reason
        if self.cgroup is not None and not self.closed:
            self._oom = self.cgroup.oom_reason()
        return self._oom

    async def send(self, message: dict[str, Any]) -> None:
        await self.channel.send(message)

    async def receive(self) -> dict[str, Any]:
        return await self.channel.receive()

    def exit_description(self) -> str:
        code = self.proc.poll()
        if code is None:
            return "still running"
        if isinstance(self.proc, _warm.ForkedProc) and code >= 0:
            return "exited"  # its parent, the warm process, reaped it: the status is not known
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit status {code}"

    def startup_log(self) -> str:
        self._log.seek(0)
        return self._log.read(8192).decode("utf-8", "replace").strip()

    def _kill_group(self) -> None:
        # Only while the leader is unreaped: until then its pid (= the group id) cannot be
        # reused, so the signal cannot reach an unrelated process group.
        if isinstance(self.proc, _warm.ForkedProc):
            self.proc.kill_group()
        elif self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.container is not None:  # the run command's end is not the container's
            self.container.remove()

    def abandon(self) -> None:
        """SIGKILL the process group now, synchronously (safe in a cancelled task); :meth:`kill`
        still has to reap it and release the fds."""
        if not self.closed:
            self._kill_group()

    def discard(self) -> None:
        """SIGKILL the process group (and the cgroup), reap the process if it exits within
        :data:`DISCARD_REAP_S` (a killed process exits at once; one that does not is left to
        ``subprocess`` to reap later), and release the fds. Never blocks longer. Idempotent."""
        if not self.closed:
            self._stop_now()
            _reap_within(self.proc, self._pidfd, DISCARD_REAP_S)
            removal = self.container.remove() if self.container is not None else None
            if removal is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    removal.wait(DISCARD_REAP_S)
            if self.container is not None:
                self.container.release()
            self.channel.close()
            os.close(self._pidfd)
            self._log.close()

    async def _exited(self, within_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                await wait_readable(self._pidfd)
        return self.proc.poll() is not None

    async def _remove_cgroup(self, cgroup: _cgroup.WorkerCgroup) -> None:
        """Read the OOM count, then rmdir the cgroup once the processes bubblewrap runs in their
        own session (killed by ``--die-with-parent``, not by the group kill) are gone too."""
        self._oom = self._oom or cgroup.oom_reason()
        cgroup.kill()
        if not cgroup.remove():
            await _to_thread_to_the_end(_remove_cgroup_now, cgroup)

    async def _read_container_oom(self, container: _container.Container) -> None:
        """A container that ended on its own: record whether its memory limit ended it. A
        SIGKILL the runtime does not attribute (podman on cgroup v1 may not) is named as the
        likely memory kill it is: model code killing itself is the only other way."""
        limit = f"its limit of {_mib(self.memory_bytes)} of memory (Limits.worker_memory_mb"
        if await asyncio.to_thread(container.oom_killed):
            self._oom = f"it went over {limit}; the container's OOM killer ended it)"
        elif self.proc.returncode == 128 + signal.SIGKILL:
            self._oom = (f"it was killed by SIGKILL in its container: most likely it went over "
                         f"{limit}), unless its own code sent the signal")

    def kill_later(self, then: Callable[[], None]) -> bool:
        """A forked worker's close without the wait: SIGKILL it and release its pipes now,
        and let its warm process's reaper thread wait for the end, remove its cgroup and then
        call ``then``. False, doing nothing, for a worker that is not forked or whose warm
        process is closing: :meth:`kill` it."""
        proc = self.proc
        if self.closed or not isinstance(proc, _warm.ForkedProc) or self.container is not None:
            return False
        cgroup, pidfd = self.cgroup, self._pidfd

        def ended() -> None:
            proc.poll()  # sees the end: its scratch directory is removed by the warm process
            if cgroup is not None:
                _remove_cgroup_now(cgroup)
            then()

        if not proc.warm.after_exit(pidfd, ended):
            return False
        self._stop_now()  # the reaper owns the pidfd from here
        self.channel.close()
        self._log.close()
        return True

    def _stop_now(self) -> None:
        """Closing without waiting: no more watching, SIGKILL to the group and to what is left
        in its cgroup."""
        self.closed = True
        if self.watchdog is not None:
            with contextlib.suppress(RuntimeError):  # its event loop may be closed already
                self.watchdog.stop()
        self._kill_group()
        if self.cgroup is not None:
            self.cgroup.kill()

    async def kill(self, grace_s: float = 0.0) -> str:
        """SIGKILL the worker's process group (after ``grace_s`` for a worker that is already
        exiting), wait for it, release everything; returns how it ended. Idempotent."""
        if not self.closed:
            self.closed = True
            if self.watchdog is not None:
                self.watchdog.stop()
            if grace_s:
                await self._exited(grace_s)
            if self.container is not None and self.proc.poll() is not None:
                await self._read_container_oom(self.container)
            self._kill_group()
            if not await self._exited(10.0):
                await asyncio.to_thread(self.proc.wait)
            removal = self.container.remove() if self.container is not None else None
            if removal is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(removal.wait, _container.CLI_TIMEOUT_S)
            if self.container is not None:
                self.container.release()
            if self.cgroup is not None:
                await self._remove_cgroup(self.cgroup)
            self.channel.close()
            os.close(self._pidfd)
            self._log.close()
        return self.exit_description()


class WorkerSandbox:
    """A ``Sandbox`` whose code runs in a confined worker process (see the module docstring).
    ``plans`` are tried in order at start; ``layer`` names the one that started."""

    unsafe = False

    def __init__(
        self,
        plans: list[_layers.LayerPlan],
        limits: SandboxLimits,
        *,
        cgroups: _cgroup.Delegation | str | None = None,
    ) -> None:
        """``cgroups``: where per-worker cgroups are made, or why none is (the watchdog alone
        limits memory then); default: what this host offers (:func:`_layers.cgroup_delegation`)."""
        if not plans:
            raise ValueError("at least one layer plan is needed")
        self._plans = plans
        self._plan = plans[0]
        self.limits = limits
        self._bridge: HostBridge | None = None
        self._worker: WorkerProcess | None = None
        self._context_fd: int | None = None
        self._shared: _protocol.SharedBuffer | None = None
        self._mounts: tuple[str, ...] = ()
        self._memory_bytes = 0
        self._sizes = (0, 0)  # the context's buffer bytes and decoded bytes
        self._scratch: str | None = None
        self._reaper: subprocess.Popen[bytes] | None = None
        self._reaper_fd = -1
        self._lock = asyncio.Lock()
        self._defined: dict[str, dict[str, Any]] = {}
        self._abandoned: str | None = None
        self._orphans: list[WorkerProcess] = []
        self._context_written: concurrent.futures.Future[None] | None = None
        self._closed = False
        self.worker_pid: int | None = None
        self.restarts = 0
        self._cgroups = _layers.cgroup_delegation() if cgroups is None else cgroups
        self._cgroups_made = 0
        self._cgroup_in_force = False
        self._reaped = False

    @property
    def memory_enforcement(self) -> str:
        """How the current worker's memory is limited: a per-worker cgroup, or the watchdog
        and why no cgroup is used."""
        delegation = self._cgroups
        if isinstance(delegation, str) or not self._cgroup_in_force:
            reason = delegation if isinstance(delegation, str) else "no worker started yet"
            return _layers.memory_mechanism(reason)
        return _layers.memory_mechanism(delegation)

    def _cgroup_failed(self, reason: str) -> None:
        logger.warning("no per-worker cgroup, memory is limited by the watchdog: %s", reason)
        self._cgroups = reason
        self._cgroup_in_force = False

    def _new_cgroup(self) -> _cgroup.WorkerCgroup | None:
        """A cgroup for the next worker, or None (the reason recorded) when none can be made."""
        delegation = self._cgroups
        if isinstance(delegation, str):
            return None
        try:
            if self._cgroups_made == 0:
                _cgroup.prepare(delegation, os.getpid())
            self._cgroups_made += 1
            return _cgroup.WorkerCgroup.create(
                delegation.parent,
                f"fastrlm-{os.getpid()}-{next(_CGROUP_SERIAL)}",
                self._memory_bytes,
                _cgroup.pids_limit(),
            )
        except _cgroup.CgroupError as exc:
            self._cgroup_failed(str(exc))
            return None

    @property
    def layer(self) -> str:
        return self._plan.name

    # ------------------------------------------------------------- lifecycle
    async def start(self, context: object, bridge: HostBridge) -> None:
        """Write the context buffer and start a worker. Raises ContextError for a context that
        cannot be sent or that the worker cannot rebuild within its memory limit (at once: no
        other layer is tried), SandboxUnavailableError when no planned layer can start."""
        if self._worker is not None or self._closed:
            raise SandboxError("the sandbox is already started (or closed)")
        self._bridge = bridge
        # One buffer per context object: sandboxes started on the same str (k candidates, a
        # file's text from load_context) map one buffer. The first fills it in a thread (on its
        # own dup of the fd, so close() can never pull the fd from under it) while the worker
        # boots; the worker maps it once it is sealed.
        held, first = _protocol.acquire_buffer(context)
        self._shared = held
        if first and _protocol.fills_at_once(context):  # less work than a thread's hand-off
            _protocol.fill_shared(held)
        elif first:  # submitted now, so a cancelled start cannot leave the others waiting
            asyncio.get_running_loop().run_in_executor(None, _protocol.fill_shared, held)
        try:
            kind, buffer_bytes, rich = await thread_result(held.encoded)
        except kinds.KindError as exc:
            raise ContextError(str(exc)) from exc
        except (TypeError, ValueError) as exc:
            raise ContextError(f"context cannot be sent to the sandbox: {exc}") from exc
        except RecursionError:
            raise ContextError(
                "context is nested too deeply to be sent to the sandbox (JSON nesting is "
                f"limited to about {sys.getrecursionlimit()} levels): flatten it, or pass it "
                "as a str"
            ) from None
        finally:
            if not held.encoded.done() or held.encoded.exception() is not None:
                self._release_shared()
        self._mounts = rich.mounts if rich is not None else ()
        decoded = rich.decoded_bytes if rich is not None else _str_bytes(
            context, kind, buffer_bytes)
        self._sizes = (buffer_bytes, decoded)
        self._memory_bytes = self.limits.memory_bytes or _layers.memory_limit_bytes(
            decoded, buffer_bytes
        )
        self._context_fd = os.dup(held.fd)
        self._context_written = held.written
        # One turn of the event loop first: a run's first root call, queued beside this start,
        # goes out before the spawn below, whose fork and exec block this thread (~20 ms; it
        # is the loop's thread, which a worker dying with its parent needs).
        await asyncio.sleep(0)
        problems = []
        for plan in self._plans:
            self._plan = plan
            try:
                self._worker = await self._spawn()
            except ContextError:  # past the memory limit: every layer has the same limit
                await self.close()
                raise
            except SandboxUnavailableError as exc:
                logger.warning("sandbox layer %s failed to start: %s", plan.name, exc)
                problems.append(f"{plan.name}: {exc}")
                continue
            if plan.kind == "process":
                logger.warning(
                    "sandbox layer %s: no namespaces and no Landlock here, so model code can "
                    "read the file system (see `fastrlm doctor`)",
                    plan.name,
                )
            return
        await self.close()
        raise SandboxUnavailableError("no sandbox layer could start: " + "; ".join(problems))

    def _config(self, fd_in: int, fd_out: int) -> dict[str, Any]:
        plan = self._plan
        if plan.kind == "bwrap" or plan.container:
            scratch = "/tmp"
        else:
            scratch = self._scratch_dir()
        config: dict[str, Any] = {
            "fd_in": fd_in,
            "fd_out": fd_out,
            "fd_context": self._context_fd,
            "parent_pid": 0 if plan.kind == "bwrap" else os.getpid(),
            "package_dir": _layers.package_dir(),
            "sys_path": _layers.module_dirs(),
            "rlimits": {
                "DATA": _layers.heap_rlimit_bytes(self._memory_bytes),
                "FSIZE": min(_layers.FILE_SIZE_BYTES, self.limits.scratch_bytes),
                "NOFILE": _layers.OPEN_FILES,
                "CORE": 0,
            },
            "landlock": (
                {"read": [*_layers.read_only_paths(), *self._mounts], "write": [scratch]}
                if plan.kind == "landlock"
                else None
            ),
            "seccomp": plan.seccomp,
            "libraries": _layers.library_names(),
            "max_output_bytes": self.limits.max_output_bytes,
            "max_answer_chars": self.limits.max_answer_chars,
            "memory_bytes": self._memory_bytes,
            "exec_timeout_s": self.limits.exec_timeout_s,
            "scratch": scratch,
            "tools": [spec.to_wire() for spec in self.limits.tools],
        }
        if plan.container:  # paths inside the image; the entry sets the fds
            config.update(
                parent_pid=0,
                package_dir=_container.IMAGE_PACKAGE,
                sys_path=[_container.IMAGE_LIB, _container.IMAGE_SITE],
                libraries={"c": "libc.so.6", "seccomp": _container.IMAGE_LIB + "/libseccomp.so.2"},
            )
        return config

    def _container_argv(self, config: dict[str, Any]) -> tuple[list[str], _container.Container]:
        """The ``run`` command of a container worker, and its container. Raises
        SandboxUnavailableError when the image is not ready."""
        runtime = self._plan.kind
        image = _container.ready_image(runtime, _container.image_name())
        if isinstance(image, str):
            raise SandboxUnavailableError(image)
        if not self._reaped:
            self._reaped = True
            _container.reap_orphans(runtime)
            _container.guard(runtime)
        user = _container.worker_user()
        for path in self._mounts:
            why = _container.unreadable_mount(path, user)
            if why is not None:
                raise ContextError(
                    f"the context cannot be read in the {runtime} sandbox: {why}. Make it "
                    "readable by others (chmod -R o+rX), or run fastrlm as its owner")
        container = _container.Container(runtime, image)
        limits = _container.ContainerLimits(
            memory_bytes=self._memory_bytes,
            scratch_bytes=self.limits.scratch_bytes,
            scratch_files=self.limits.scratch_files,
            pids=_cgroup.pids_limit(),
            cpus=_container.default_cpus(),
            open_files=_layers.OPEN_FILES,
        )
        env = _layers.worker_env("/tmp", self.limits.env)
        argv = container.run_argv(limits, env, self._mounts, json.dumps(config), user)
        return argv, container

    async def _spawn(self) -> WorkerProcess:
        """A worker for the current plan, loaded and confined: forked from a warm process
        when one matches (:mod:`._warm`), else started cold."""
        warm = _warm.find(self._plan, self.limits, self._mounts)
        if warm is not None:
            try:
                return await self._fork(warm)
            except SandboxUnavailableError as exc:
                logger.warning("the warm worker could not fork, starting one cold: %s", exc)
        return await self._spawn_cold()

    async def _fork(self, warm: _warm.WarmWorker) -> WorkerProcess:
        """A worker forked by ``warm``, given the config a spawned one gets (under bubblewrap
        with a scratch directory of its own in the warm process's ``/tmp``, which Landlock
        keeps it in)."""
        a_read, a_write = os.pipe2(os.O_CLOEXEC)
        b_read, b_write = os.pipe2(os.O_CLOEXEC)
        assert self._context_fd is not None
        config = self._config(a_read, b_write)
        config["parent_pid"] = 0  # it dies with the warm process, which dies with this one
        scratch = None
        if self._plan.kind == "bwrap":
            scratch = warm.new_scratch()
            config["scratch"] = scratch
            config["landlock"] = {"read": [*_layers.read_only_paths(), *self._mounts],
                                  "write": [scratch]}
        try:
            proc = await warm.fork(config, [a_read, b_write, self._context_fd], scratch)
        except BaseException:
            for fd in (a_write, b_read):
                os.close(fd)
            raise
        finally:
            os.close(a_read)  # the worker holds its own
            os.close(b_write)
        cgroup = self._new_cgroup()
        if cgroup is not None:
            try:
                cgroup.add(proc.pid)
            except _cgroup.CgroupError as exc:
                cgroup.remove()
                self._cgroup_failed(str(exc))
                cgroup = None
        # its start-up errors come back in its "fatal" frame; before that it writes nowhere
        worker = WorkerProcess(proc, a_write, b_read, io.BytesIO(), cgroup)
        if scratch is not None:  # bubblewrap: its directory in the tmpfs the warm one shares
            worker.scratch_path = proc.scratch
            worker.requires = frozenset({"landlock"})  # what keeps its siblings out of it
        else:
            worker.scratch_path = self._scratch
        return await self._load(worker)

    async def _spawn_cold(self) -> WorkerProcess:
        a_read, a_write = os.pipe2(os.O_CLOEXEC)
        b_read, b_write = os.pipe2(os.O_CLOEXEC)
        assert self._context_fd is not None
        config = self._config(a_read, b_write)
        env: dict[str, str] | None
        container = None
        if self._plan.container:
            try:
                argv, container = await asyncio.to_thread(self._container_argv, config)
            except (SandboxUnavailableError, ContextError):
                for fd in (a_read, a_write, b_read, b_write):
                    os.close(fd)
                raise
            env = None  # the runtime's CLI needs the host's (DOCKER_HOST ...): not the worker
        else:
            argv, env = _layers.launch(
                self._plan.kind, config, tmpfs_bytes=self.limits.scratch_bytes,
                env=self.limits.env, scratch=str(config["scratch"]), mounts=self._mounts)
        cgroup = None if container is not None else self._new_cgroup()
        if cgroup is not None:
            # The shell joins the cgroup and only then execs: every process of the worker
            # starts inside it, before any model code (writing the pid after spawn would race
            # with bubblewrap's fork).
            argv = ["/bin/sh", "-c", _cgroup.PLACE_SCRIPT, "fastrlm-cgroup", cgroup.procs, *argv]
        log = tempfile.TemporaryFile()
        try:
            # Popen, not asyncio's: the exit is awaited on a pidfd, no child-watcher thread.
            # A container's pipes are the run command's stdin and stdout (it attaches them).
            proc = subprocess.Popen(  # noqa: ASYNC220
                argv,
                stdin=a_read if container is not None else subprocess.DEVNULL,
                stdout=b_write if container is not None else subprocess.DEVNULL,
                stderr=log,
                pass_fds=() if container is not None else (a_read, b_write, self._context_fd),
                start_new_session=True,
                env=env,
                cwd=(container.workdir if container is not None else
                     None if self._plan.kind == "bwrap" else str(config["scratch"])),
            )
        except OSError as exc:
            log.close()
            for fd in (a_read, a_write, b_read, b_write):
                os.close(fd)
            if cgroup is not None:
                cgroup.remove()
            if container is not None:
                container.release()
            raise SandboxUnavailableError(f"cannot start the worker: {exc}") from exc
        finally:
            if "proc" in locals():
                os.close(a_read)
                os.close(b_write)
        worker = WorkerProcess(proc, a_write, b_read, log, cgroup, container)
        worker.scratch_path = None if self._plan.kind == "bwrap" else self._scratch
        return await self._load(worker)

    async def _load(self, worker: WorkerProcess) -> WorkerProcess:
        """Send ``load`` once the context buffer is sealed (streaming it first into a
        container), check what the worker reports having applied, and start its watchdog."""
        proc, cgroup, container = worker.proc, worker.cgroup, worker.container
        worker.memory_bytes = self._memory_bytes
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                await self._context_buffer_sealed()
                if container is not None:
                    await self._stream_context(worker)
                await worker.send({"op": "load"})
                ready = await worker.receive()
        except (TimeoutError, ProtocolError, WorkerCrashedError) as exc:
            detail = worker.startup_log()
            await worker.kill()
            if worker.exceeded is not None:
                raise self._out_of_memory(
                    f"was stopped because {worker.exceeded} while rebuilding the context"
                ) from None
            if cgroup is not None and proc.returncode == _cgroup.PLACE_FAILED:
                self._cgroup_failed(f"the worker could not join its cgroup: {detail}")
                return await self._spawn_cold()
            raise SandboxUnavailableError(
                f"the worker did not start ({exc}): {detail or 'no output'}"
            ) from None
        except BaseException:  # cancelled, or the buffer could not be written
            worker.abandon()
            self._orphans.append(worker)  # reaped by close()
            raise
        if ready["op"] != "ready":
            await worker.kill()
            if ready.get("out_of_memory") is True:
                raise self._out_of_memory(
                    "ran out of memory (MemoryError) while rebuilding the context")
            raise SandboxUnavailableError(f"the worker failed to start:\n{ready.get('text')}")
        missing = (self._plan.confined | worker.requires) - set(ready["confined"])
        if missing:
            await worker.kill()
            raise SandboxUnavailableError(f"the worker did not apply {sorted(missing)}")
        if cgroup is not None and proc.pid not in cgroup.members():
            await worker.kill()
            self._cgroup_failed(f"the worker's pid is not in {cgroup.procs} after it started")
            return await self._spawn_cold()
        if container is not None:  # its cgroup holds the limits; the worker's pid is its own
            self._cgroup_in_force = False
            self.worker_pid = ready["pid"]
            return worker
        used = memory_now(proc.pid)
        if used > self._memory_bytes:  # the watchdog would stop it at its first poll, each time
            await worker.kill()
            raise self._out_of_memory(f"held {_mib(used)} just after rebuilding the context")
        self._cgroup_in_force = cgroup is not None
        self.worker_pid = ready["pid"]
        quotas = Quotas(
            memory_bytes=self._memory_bytes,
            scratch_bytes=self.limits.scratch_bytes,
            scratch_files=self.limits.scratch_files,
            scratch_path=worker.scratch_path,
        )
        worker.watchdog = Watchdog(proc.pid, quotas, worker.abandon)
        worker.watchdog.start()
        return worker

    async def _stream_context(self, worker: WorkerProcess) -> None:
        """Send the sealed context buffer ahead of the first frame: its size (8 bytes, big
        endian), then its bytes (see :mod:`._container_entry`)."""
        assert self._context_fd is not None
        size = os.fstat(self._context_fd).st_size
        await worker.channel.send_bytes(size.to_bytes(8, "big"))
        offset = 0
        while offset < size:  # read in pieces: nothing holds a mapping if this is cancelled
            piece = os.pread(self._context_fd, min(_STREAM_PIECE, size - offset), offset)
            if not piece:
                raise SandboxError(f"the context buffer ended at {offset:,} of {size:,} bytes")
            await worker.channel.send_bytes(piece)
            offset += len(piece)

    def _out_of_memory(self, how: str) -> ContextError:
        """The error for a worker that hit its memory limit while it started (rebuilding the
        context): which limit, its size, the context's, and the settings that raise it."""
        buffer_bytes, decoded = self._sizes
        limit = self._memory_bytes
        sized = _layers.memory_limit_bytes(decoded, buffer_bytes)
        if self.limits.memory_bytes:
            origin = "as set"
            unset = ", or leave it unset to size it from the context" if sized > limit else ""
        else:
            origin = "sized from the context: 1 GiB + the buffer + 3x the decoded size"
            unset = ""
        return ContextError(
            f"the context does not fit in the sandbox worker's memory limit of {_mib(limit)} "
            f"({origin}): the worker {how} (the context: a {_mib(buffer_bytes)} buffer, "
            f"estimated {_mib(decoded)} decoded). Raise the limit "
            "with --worker-memory-mb N or Limits(worker_memory_mb=N) "
            "(SandboxLimits.memory_bytes for a sandbox of your own) to at least "
            f"{_mib(max(2 * limit, sized))}{unset}; or pass a smaller context"
        )

    def _scratch_dir(self) -> str:
        """The host scratch directory of the Landlock/process layers, made once per sandbox,
        with the reaper that removes it when this process ends, however it ends."""
        if self._scratch is None:
            self._scratch = tempfile.mkdtemp(prefix="fastrlm-scratch-")
            read_end, self._reaper_fd = os.pipe2(os.O_CLOEXEC)
            try:
                self._reaper = subprocess.Popen(  # noqa: ASYNC220 - fork+exec, never waited on here
                    ["/bin/sh", "-c", _REAPER_SCRIPT, "fastrlm-reaper", self._scratch],
                    stdin=read_end,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,  # outlives the host's process group
                    env={"PATH": "/usr/bin:/bin"},
                )
            except OSError as exc:
                logger.warning("no scratch reaper (%s): a killed host leaves %s", exc,
                               self._scratch)
            finally:
                os.close(read_end)
        return self._scratch

    def _empty_scratch(self) -> None:
        """Delete what a lost worker left in the scratch directory."""
        if self._scratch is not None:
            with contextlib.suppress(OSError), os.scandir(self._scratch) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        with contextlib.suppress(OSError):
                            os.unlink(entry.path)

    async def _stop_reaper(self) -> None:
        reaper, self._reaper = self._reaper, None
        reaper_fd, self._reaper_fd = self._reaper_fd, -1
        if reaper is not None or reaper_fd >= 0:
            await _to_thread_to_the_end(_free_scratch, None, reaper, reaper_fd)

    async def _context_buffer_sealed(self) -> None:
        """Wait for the thread that fills the context buffer. Raises ContextError when it
        failed (out of memory for the buffer, for instance)."""
        assert self._context_written is not None
        try:
            await thread_result(self._context_written)
        except OSError as exc:
            raise ContextError(f"cannot write the context buffer: {exc}") from exc

    async def close(self) -> None:
        """Kill the worker, release the context buffer and the scratch directory. Idempotent.

        A worker forked from a warm process (:mod:`._warm`) is killed before this returns, and
        its end is awaited by the warm process's reaper thread, which removes its scratch
        directory then (``WarmWorkers.close()`` returns once all have ended): a run answers
        without waiting for its worker's teardown. Any other worker is gone when this
        returns."""
        workers = self._take_workers()
        if workers and all(isinstance(w.proc, _warm.ForkedProc) and w.container is None
                           for w in workers):
            ended = self._after_all(len(workers))
            self._free_buffers()
            for worker in workers:
                if not worker.kill_later(ended):  # its warm process is closing: wait here
                    await worker.kill()
                    await _to_thread_to_the_end(ended)  # the last waits for the scratch reaper
            return
        for worker in workers:
            await worker.kill()
        self._free_buffers()
        await self._stop_reaper()

    def _after_all(self, count: int) -> Callable[[], None]:
        """Take this sandbox's scratch directory and its reaper out of it, and return what to
        call once each of ``count`` workers has ended (on any thread): the last call removes
        them."""
        scratch, self._scratch = self._scratch, None
        reaper, self._reaper = self._reaper, None
        reaper_fd, self._reaper_fd = self._reaper_fd, -1
        left = [count]
        lock = threading.Lock()

        def ended() -> None:
            with lock:
                left[0] -= 1
                last = left[0] == 0
            if last:
                _free_scratch(scratch, reaper, reaper_fd)

        return ended

    def _take_workers(self) -> list[WorkerProcess]:
        """Closing starts here: no new worker, and every worker (current and orphaned) handed
        to the caller to kill (close) or discard (exit)."""
        self._closed = True
        if self._worker is not None:
            self._orphans.append(self._worker)
            self._worker = None
        workers, self._orphans = self._orphans[::-1], []
        return workers

    def _release_shared(self) -> None:
        if self._shared is not None:
            _protocol.release_buffer(self._shared)
            self._shared = None

    def _free_buffers(self) -> None:
        """Release the context buffer and the scratch directory, once the workers are gone."""
        if self._context_fd is not None:
            os.close(self._context_fd)
            self._context_fd = None
        self._release_shared()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def discard(self) -> None:
        """:meth:`close` without waiting: kill every worker, release the context buffer, remove
        the scratch directory, and let the reaper go (it deletes whatever a dying worker still
        wrote once its pipe closes). Idempotent."""
        for worker in self._take_workers():
            worker.discard()
        self._free_buffers()
        if self._reaper_fd >= 0:
            os.close(self._reaper_fd)  # EOF: the reaper finds the directory gone and exits
            self._reaper_fd = -1
        if self._reaper is not None:
            reaper, self._reaper = self._reaper, None
            with contextlib.suppress(ProcessLookupError):
                pidfd = os.pidfd_open(reaper.pid)
                try:
                    _reap_within(reaper, pidfd, DISCARD_REAP_S)
                finally:
                    os.close(pidfd)

    async def _restart(self, lost: _WorkerLost) -> str:
        """Replace a lost worker; returns the reason, with how the old worker ended."""
        reason = lost.reason
        if self._worker is not None:
            exceeded = self._worker.exceeded
            ended = await self._worker.kill(grace_s=0.0 if exceeded or not lost.crashed else 1.0)
            exceeded = exceeded or self._worker.exceeded  # a container's, read as it ended
            self._worker = None
            if exceeded is not None:
                reason = f"the worker was stopped because {exceeded}"
            elif lost.crashed:
                reason = f"{reason} ({ended})"
        self._empty_scratch()
        if self._closed:
            raise SandboxError("the sandbox was closed")
        self.restarts += 1
        logger.info("sandbox worker restarted: %s", reason)
        try:
            self._worker = await self._spawn()
        except (SandboxUnavailableError, ContextError) as exc:
            raise WorkerCrashedError(
                f"the worker died ({reason}) and cannot restart: {exc}"
            ) from exc
        if self._defined:  # a session's later contexts come back with the fresh worker
            await self._send_defined()
        return reason

    # ------------------------------------------------------------- execution
    async def execute(self, code: str) -> ExecResult:
        """Run one cell; model errors, timeouts, crashes and protocol violations all come back
        as an ExecResult. Raises SandboxError only when not started or when no fresh worker can
        be started."""
        async with self._lock:
            began = time.monotonic()
            self._check_open()
            replaced = await self._replace_abandoned()
            try:
                done = await self._round_trip({"op": "exec", "code": code}, "done")
            except _WorkerLost as lost:
                reason = await self._restart(lost)
                return ExecResult(
                    error=(
                        f"SandboxRestarted: {reason}. The REPL was restarted: every "
                        "variable and scratch file was lost; `context` was reloaded."
                    ),
                    timed_out=lost.timed_out,
                    restarted=True,
                    duration_s=time.monotonic() - began,
                    extra={"restart_reason": reason},
                )
            return cell_result(done, time.monotonic() - began, restart_reason=replaced)

    async def define(self, name: str, value: object = None, *, alias: str | None = None) -> None:
        """Bind ``name`` in the worker's REPL (see :meth:`Sandbox.define`); kept, and sent again
        (in order) to every fresh worker after a restart. Raises ContextError for a value a
        frame cannot carry (JSON, at most the frame size) or that the worker could not hold (it
        is replaced, without that value)."""
        request = {"op": "define", "name": name, "value": value, "alias": alias}
        async with self._lock:
            self._check_open()
            await self._replace_abandoned()
            try:
                reply = await self._round_trip(request, "defined")
            except (TypeError, ValueError) as exc:
                raise ContextError(f"{name} cannot be sent to the sandbox: {exc}") from exc
            except _WorkerLost as lost:
                reason = await self._restart(lost)
                raise ContextError(f"the sandbox worker could not take {name} ({reason}); "
                                   "raise Limits.worker_memory_mb or send less") from None
            if reply.get("error"):
                raise ContextError(str(reply["error"]))
            self._defined.pop(name, None)  # the latest binding goes last
            self._defined[name] = request

    async def _send_defined(self) -> None:
        """Send every binding again, in order, to a fresh worker (after a restart)."""
        for name, request in self._defined.items():
            try:
                await self._round_trip(request, "defined")
            except _WorkerLost as lost:
                raise WorkerCrashedError(f"the fresh worker died while {name} was sent to it "
                                         f"again ({lost.reason})") from None

    async def show_vars(self) -> str:
        """The user variables, one per line (a hard timeout or crash restarts the worker)."""
        async with self._lock:
            self._check_open()
            await self._replace_abandoned()
            try:
                reply = await self._round_trip({"op": "show_vars"}, "vars")
            except _WorkerLost as lost:
                reason = await self._restart(lost)
                return f"[SHOW_VARS: {reason}; the REPL was restarted, variables lost]"
            return str(reply["text"])

    def _check_open(self) -> None:
        if self._context_fd is None or self._closed:
            raise SandboxError("the sandbox is not started, or closed")

    async def _replace_abandoned(self) -> str | None:
        """A request cancelled half-way leaves the pipes out of step: that worker was killed at
        once; start its replacement now (likewise after a failed or cancelled restart). Returns
        the reason when it did."""
        if self._worker is not None and self._abandoned is None:
            if self._worker.exceeded is None:
                return None
            self._abandoned = "between cells"
        reason = self._abandoned or "the previous worker could not be replaced"
        self._abandoned = None
        return await self._restart(_WorkerLost(reason))

    async def _round_trip(self, request: dict[str, Any], terminal: str) -> dict[str, Any]:
        worker = self._worker
        if worker is None:
            raise SandboxError("the sandbox is not started")
        try:
            return await self._exchange(worker, request, terminal)
        except asyncio.CancelledError:
            worker.abandon()
            self._abandoned = "the previous request was cancelled while the worker ran it"
            raise

    async def _exchange(
        self, worker: WorkerProcess, request: dict[str, Any], terminal: str
    ) -> dict[str, Any]:
        hard_limit = self.limits.exec_timeout_s + self.limits.hard_grace_s
        own_time_left = hard_limit if math.isfinite(hard_limit) else math.inf
        nonce = _protocol.new_nonce()
        request = {**request, "nonce": nonce}
        try:
            if worker.channel.pending():
                raise ProtocolError(
                    "a frame arrived while no request was in flight (written by model code?)"
                )
            while True:
                started = time.monotonic()
                try:
                    async with asyncio.timeout(_finite(own_time_left)):
                        if request:
                            await worker.send(request)
                            request = {}
                        message = await worker.receive()
                except TimeoutError:
                    raise _WorkerLost(
                        f"the cell ran past the hard time limit ({hard_limit:g} s of its own "
                        "time), or stopped reading its pipe",
                        timed_out=True,
                    ) from None
                own_time_left = max(own_time_left - (time.monotonic() - started), 0.0)
                op = message["op"]
                if message.get("nonce") != nonce:
                    raise ProtocolError(
                        f"a {op!r} frame that does not belong to the request in flight "
                        "(forged by model code?)"
                    )
                if op == terminal:
                    return self._within_limits(message)
                if op not in _hostops.HOST_CALL_OPS:
                    raise ProtocolError(f"unexpected {op!r} frame from the worker")
                results = await self._answer(message)  # the host's time: not counted
                request = {"op": "reply", "id": message["id"], "nonce": nonce, "results": results}
        except ProtocolError as exc:
            raise _WorkerLost(f"the worker broke the protocol ({exc})") from None
        except WorkerCrashedError:
            raise _WorkerLost("the worker died", crashed=True) from None

    def _within_limits(self, message: dict[str, Any]) -> dict[str, Any]:
        """A ``done`` frame held to the limits the worker's REPL applies to a cell's result,
        again on the host: model code can write a frame of its own (up to the frame cap).
        Raises ``ProtocolError`` past them."""
        if message["op"] != "done":
            return message
        final = message.get("final")
        limits = self.limits
        sizes = {
            "answer": (len(final["text"]) if final else 0, limits.max_answer_chars,
                       "Limits.max_answer_chars"),
            "answer['content']": (len(message.get("answer_content") or ""),
                                  limits.max_answer_chars, "Limits.max_answer_chars"),
            "stdout": (len(message["stdout"]), limits.max_output_bytes, "max_output_bytes"),
            "stderr": (len(message["stderr"]), limits.max_output_bytes, "max_output_bytes"),
        }
        for what, (size, limit, setting) in sizes.items():
            if size > limit:
                raise ProtocolError(f"a cell result whose {what} holds {size:,} characters, "
                                    f"over the {limit:,} of {setting}")
        return message

    async def _answer(self, message: dict[str, Any]) -> object:
        assert self._bridge is not None
        return await _hostops.dispatch(self._bridge, message["op"], message)


def _remove_cgroup_now(cgroup: _cgroup.WorkerCgroup) -> None:
    """Kill what is left in a worker's cgroup and rmdir it, polling (at most 2 s) while the
    kernel finishes the exits. Blocking: off the event loop."""
    cgroup.kill()
    for _ in range(200):
        if cgroup.remove():
            return
        time.sleep(0.01)
    logger.warning("worker cgroup %s could not be removed (processes remain)", cgroup.path)


def _free_scratch(scratch: str | None, reaper: subprocess.Popen[bytes] | None,
                  reaper_fd: int) -> None:
    """Remove a closed sandbox's scratch directory once its workers have ended, and let its
    scratch reaper go (EOF on its pipe: it finds the directory gone and exits; killed if it
    has not within 10 s). Blocking: on the worker reaper's thread."""
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
    if reaper_fd >= 0:
        os.close(reaper_fd)
    if reaper is not None:
        try:
            reaper.wait(10.0)
        except subprocess.TimeoutExpired:
            reaper.kill()
            reaper.wait()


async def _to_thread_to_the_end(clean_up: Callable[..., None], *args: Any) -> None:
    """Run ``clean_up`` in a thread and wait for it; a caller cancelled meanwhile stops waiting,
    but the clean-up still runs, to its end. It is handed to the thread pool before the first
    wait: ``asyncio.to_thread`` cancelled before its thread started never runs it at all (a
    close cancelled there leaked its scratch reaper), and a task that would hand it over later
    never runs if the loop stops first (a sync call returns as its run ends)."""
    await asyncio.shield(asyncio.get_running_loop().run_in_executor(None, clean_up, *args))


def _reap_within(proc: subprocess.Popen[bytes] | _warm.ForkedProc, pidfd: int,
                 seconds: float) -> None:
    """Reap ``proc`` if it exits within ``seconds`` (its pidfd turns readable), else leave it."""
    readable_within(pidfd, seconds)
    proc.poll()


def _mib(n: int) -> str:
    return f"{math.ceil(n / _layers.MiB):,} MiB"


def _finite(seconds: float) -> float | None:
    """``asyncio.timeout`` argument: None (no limit) for an infinite budget."""
    return seconds if math.isfinite(seconds) else None


def _str_bytes(context: object, kind: int, buffer_bytes: int) -> int:
    """Bytes the decoded context takes in the worker (CPython: 1, 2 or 4 bytes a character)."""
    if kind in (_protocol.KIND_STR, _protocol.KIND_ASCII):
        return sys.getsizeof(context)
    if kind == _protocol.KIND_LIST:
        items: list[str] = list(context)  # type: ignore[call-overload]
        return sys.getsizeof(items) + sum(sys.getsizeof(x) for x in items)
    return 8 * buffer_bytes  # parsed JSON: objects are far larger than their text
