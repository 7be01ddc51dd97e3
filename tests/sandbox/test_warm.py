"""Warm workers (sandbox/_warm.py): each run's worker forked from one warm process, tried from
the failure side. A forked worker must hold nothing of an earlier run, must not reach a
sibling running at the same time nor the warm process, and every way the warm process can
fail must leave sandboxes starting (cold) as before."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from fastrlm.sandbox import SandboxLimits, _layers, _reaper, _warm, _worker, create_sandbox
from fastrlm.sandbox._channel import readable_within
from fastrlm.sandbox._warm import WarmWorkers, warm_problem, warm_workers
from fastrlm.sandbox._watchdog import leaf_process
from fastrlm.sandbox._worker import WorkerSandbox

from .helpers import CONTEXT, FakeBridge, assert_alive, skip_unless_available

LIMITS = SandboxLimits(exec_timeout_s=20.0)


@pytest.fixture(params=["bwrap", "landlock", "process"])
async def warm(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, WarmWorkers]]:
    """A warm process for each layer that can have one here (skipped, saying why, elsewhere)."""
    kind: str = request.param
    skip_unless_available(kind)
    held = await warm_workers(kind, LIMITS, slots=4)
    if held.warm is None:
        pytest.skip(f"no warm worker for {kind}: {held.problem}")
    try:
        yield kind, held
    finally:
        held.close()


async def _started(kind: str, context: object = CONTEXT) -> WorkerSandbox:
    sandbox = create_sandbox(kind, LIMITS)
    assert isinstance(sandbox, WorkerSandbox)
    await sandbox.start(context, FakeBridge())
    return sandbox


async def _out(sandbox: WorkerSandbox, code: str) -> str:
    result = await sandbox.execute(code)
    assert result.error is None, result.error
    return result.stdout.strip()


async def test_a_run_forked_after_another_holds_none_of_its_variables_or_files(
        warm: tuple[str, WarmWorkers]) -> None:
    kind, held = warm
    assert held.warm is not None
    forks = held.warm.forks
    first = await _started(kind, "first secret context")
    try:
        where = await _out(first, "secret = 'hunter2'\nimport os\nopen('left.txt', 'w')"
                                  ".write('hunter2')\nprint(os.getcwd())")
    finally:
        await first.close()
    second = await _started(kind, "second context")
    try:
        assert held.warm.forks == forks + 2  # both were forked, neither started cold
        seen = json.loads(await _out(second, f"""
import json, os
found = {{"secret": "secret" in globals(), "context": context, "cwd": os.getcwd()}}
try:
    found["file"] = open({where + '/left.txt'!r}).read()
except OSError as exc:
    found["file"] = type(exc).__name__
found["here"] = sorted(os.listdir("."))
print(json.dumps(found))"""))
    finally:
        await second.close()
    assert seen["secret"] is False
    assert seen["context"] == "second context"
    assert seen["here"] == []
    assert seen["file"] != "hunter2"  # removed with its run, or out of this worker's reach
    assert seen["cwd"] != where


async def test_a_worker_cannot_reach_a_sibling_running_beside_it(
        warm: tuple[str, WarmWorkers]) -> None:
    kind, _ = warm
    victim = await _started(kind, "victim's context")
    attacker = await _started(kind, "attacker's context")
    try:
        where = await _out(victim, "import os\nopen('mine.txt', 'w').write('victim data')\n"
                                   "print(os.getcwd())")
        pid = victim.worker_pid
        assert pid is not None and attacker.worker_pid != pid
        tried = json.loads(await _out(attacker, f"""
import json, os, signal
tried = {{}}
for name, act in [
    ("file", lambda: open({where + '/mine.txt'!r}).read()),
    ("environ", lambda: open("/proc/{pid}/environ", "rb").read()[:10].decode()),
    ("mem", lambda: open("/proc/{pid}/mem", "rb").read(1).decode()),
    ("kill", lambda: os.kill({pid}, signal.SIGKILL)),
    ("kill_parent", lambda: os.kill(os.getppid(), signal.SIGKILL)),
]:
    try:
        tried[name] = repr(act())
    except OSError as exc:
        tried[name] = type(exc).__name__
print(json.dumps(tried))"""))
        if kind != "process":  # the process layer keeps no file apart (cold ones neither)
            assert "victim data" not in tried["file"]
            assert tried["file"] in ("PermissionError", "FileNotFoundError")
            assert tried["environ"] in ("PermissionError", "FileNotFoundError")
        assert tried["mem"] != repr("")  # never read
        assert tried["kill"] == "PermissionError"
        assert tried["kill_parent"] == "PermissionError"
        await assert_alive(victim, "victim's context")
        assert await _out(victim, "print(open('mine.txt').read())") == "victim data"
    finally:
        await attacker.close()
        await victim.close()


async def test_a_forked_worker_holds_no_socket_to_the_warm_process(
        warm: tuple[str, WarmWorkers]) -> None:
    kind, _ = warm
    sandbox = await _started(kind)
    try:
        sockets = await _out(sandbox, """
import os, stat
found = []
for fd in range(256):
    try:
        if stat.S_ISSOCK(os.fstat(fd).st_mode):
            found.append(fd)
    except OSError:
        pass
print(found)""")
    finally:
        await sandbox.close()
    assert sockets == "[]"


async def test_a_worker_killed_past_its_time_is_forked_again(
        warm: tuple[str, WarmWorkers]) -> None:
    kind, held = warm
    assert held.warm is not None
    sandbox = create_sandbox(kind, SandboxLimits(exec_timeout_s=0.5, hard_grace_s=0.5))
    assert isinstance(sandbox, WorkerSandbox)
    await sandbox.start(CONTEXT, FakeBridge())
    try:
        forks = held.warm.forks
        result = await sandbox.execute(
            "import signal\nsignal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])\n"
            "while True:\n    pass")
        assert result.restarted
        assert held.warm.forks == forks + 1
        await assert_alive(sandbox)
    finally:
        await sandbox.close()


async def test_a_worker_over_its_memory_limit_is_stopped_and_the_warm_process_lives_on(
        warm: tuple[str, WarmWorkers]) -> None:
    kind, held = warm
    assert held.warm is not None
    sandbox = create_sandbox(kind, SandboxLimits(memory_bytes=256 * 2**20))
    assert isinstance(sandbox, WorkerSandbox)
    await sandbox.start(CONTEXT, FakeBridge())
    try:
        result = await sandbox.execute("blocks = []\nwhile True:\n    blocks.append("
                                       "bytearray(16 * 2**20))")
        assert result.restarted or "MemoryError" in (result.error or "")
        await assert_alive(sandbox)
    finally:
        await sandbox.close()
    assert held.warm.alive
    again = await _started(kind)
    try:
        await assert_alive(again)
    finally:
        await again.close()


async def test_a_killed_warm_process_leaves_sandboxes_starting_cold(
        warm: tuple[str, WarmWorkers]) -> None:
    kind, held = warm
    assert held.warm is not None and held.warm._proc is not None
    running = await _started(kind)
    os.killpg(held.warm._proc.pid, signal.SIGKILL)
    held.warm._proc.wait(30)
    assert not held.warm.alive
    forks = held.warm.forks
    after = await _started(kind)  # started cold: no warm process matches any more
    try:
        await assert_alive(after)
        assert held.warm.forks == forks
        # the running one died with its warm process, and its next cell says so and goes on
        result = await running.execute("len(context)")
        assert result.restarted
        await assert_alive(running)
    finally:
        await after.close()
        await running.close()


async def test_a_warm_process_is_shared_by_its_holders_and_ends_with_the_last() -> None:
    skip_unless_available("landlock")
    one = await warm_workers("landlock", LIMITS)
    two = await warm_workers("landlock", LIMITS)
    other = await warm_workers("landlock", SandboxLimits(env=(("X", "1"),)))
    try:
        assert one.warm is not None and one.warm is two.warm
        assert other.warm is not None and other.warm is not one.warm  # another environment
        one.close()
        one.close()  # idempotent: never takes the other holder's share
        assert two.warm.alive
        two.close()
        assert not two.warm.alive
    finally:
        for held in (one, two, other):
            held.close()


def test_layers_that_cannot_keep_forked_workers_apart_are_never_warmed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert "container" in (warm_problem(_layers.LayerPlan("docker", True)) or "")
    assert "seccomp" in (warm_problem(_layers.LayerPlan("landlock", False)) or "")
    monkeypatch.setattr(_layers, "landlock_problem", lambda: "the kernel has no Landlock")
    why = warm_problem(_layers.LayerPlan("bwrap", True))
    assert why is not None and "Landlock" in why and "the kernel has no Landlock" in why


async def test_the_in_process_sandbox_and_unknown_layers_say_why_they_are_not_warmed() -> None:
    held = await warm_workers("none", LIMITS)
    assert held.warm is None and held.problem is not None and "in-process" in held.problem
    held.close()


@pytest.fixture
def many_fds() -> object:
    """This process holding descriptors past 1024 (a busy server): ``select`` cannot wait on
    those, and the sandbox must not use it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the hard limit on open files is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    yield held
    for fd in held:
        os.close(fd)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("forked", [True, False], ids=["forked", "cold"])
async def test_workers_start_and_end_when_descriptors_run_past_1024(
        warm: tuple[str, WarmWorkers], many_fds: object, forked: bool) -> None:
    kind, held = warm
    assert held.warm is not None
    if not forked:
        held.close()  # the last holder: sandboxes start cold from here
    sandbox = await _started(kind)
    try:
        await assert_alive(sandbox)
        worker = sandbox._worker
        assert worker is not None and worker.channel._in > 1024  # type: ignore[attr-defined]
    finally:
        await sandbox.close()
    assert sandbox._worker is None


@pytest.mark.parametrize("kind", ["bwrap", "landlock", "process"])
async def test_a_worker_that_fills_its_scratch_is_stopped_and_leaves_the_next_room(
        kind: str) -> None:
    skip_unless_available(kind)
    limits = SandboxLimits(scratch_bytes=16 * 2**20)
    held = await warm_workers(kind, limits, slots=2)
    if held.warm is None:
        pytest.skip(f"no warm worker for {kind}: {held.problem}")
    try:
        for _ in range(3):  # more than the warm process's /tmp holds if nothing were removed
            sandbox = create_sandbox(kind, limits)
            assert isinstance(sandbox, WorkerSandbox)
            await sandbox.start(CONTEXT, FakeBridge())
            try:
                ok = await sandbox.execute("open('ok.bin', 'wb').write(bytes(8 * 2**20))")
                assert ok.error is None, ok.error
                flood = await sandbox.execute(
                    "with open('big.bin', 'wb') as f:\n"
                    "    for _ in range(64):\n"
                    "        f.write(bytes(2**20))\n"
                    "        f.flush()\n"
                    "import time\ntime.sleep(2)")
                assert flood.restarted or flood.error is not None
            finally:
                await sandbox.close()
        assert held.warm.forks >= 3
    finally:
        held.close()


def test_the_filter_a_warm_process_builds_once_is_the_one_each_worker_would_build() -> None:
    """A forked worker loads the warm process's seccomp program with its own pid put in; that
    must be, byte for byte, the program libseccomp builds for that pid."""
    import tempfile

    pytest.importorskip("pyseccomp")
    from fastrlm.sandbox import _confine

    libraries = _layers.library_names()
    template = _confine.seccomp_template(libraries)
    assert template is not None
    for pid in (1, 2, 77, 4321, 65_535, 4_194_303):
        with tempfile.TemporaryFile() as out:
            _confine._build_filter(libraries, pid).export_bpf(out)
            out.seek(0)
            assert _confine.with_pid(template, pid) == out.read(), pid
    assert _confine.with_pid(template, 4321) != template  # the sentinel was replaced


@pytest.mark.parametrize("where", ["nowhere", "a load"])
def test_a_template_whose_sentinel_is_not_only_in_comparisons_is_not_used(
        monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    import struct

    from fastrlm.sandbox import _confine

    insn = struct.Struct("=HBBI")
    program = insn.pack(0x20, 0, 0, 4) + insn.pack(0x15, 0, 1, 99) + insn.pack(0x06, 0, 0, 0)
    if where == "a load":  # BPF_LD with the sentinel as its operand: not a pid comparison
        program += insn.pack(0x20, 0, 0, _confine.PID_SENTINEL)

    class Built:
        def export_bpf(self, out: object) -> None:
            out.write(program)  # type: ignore[attr-defined]

    monkeypatch.setattr(_confine, "_build_filter", lambda libraries, pid: Built())
    assert _confine.seccomp_template({}) is None


def _exists(path: str) -> bool:
    return os.path.exists(path)


def _fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


def _hold_every_clean_up(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Hold the clean-up after every killed worker's end (of any warm process) until the
    returned event is set."""
    gate = threading.Event()
    real_after_exit = _reaper._Reaper.after_exit

    def held(self: Any, pidfd: int, then: Callable[[], None]) -> bool:
        def later() -> None:
            assert gate.wait(timeout=60)
            then()
        return real_after_exit(self, pidfd, later)

    monkeypatch.setattr(_reaper._Reaper, "after_exit", held)
    return gate


def _gate_reaper(held: WarmWorkers, monkeypatch: pytest.MonkeyPatch,
                 gate: threading.Event, ran: list[int]) -> None:
    """Hold every clean-up after a worker's end until ``gate`` is set (recorded in ``ran``)."""
    assert held.warm is not None
    reaper = held.warm.reaper
    hand = reaper.after_exit

    def gated(pidfd: int, then: Callable[[], None]) -> bool:
        def later() -> None:
            assert gate.wait(30)
            then()
            ran.append(pidfd)

        return hand(pidfd, later)

    monkeypatch.setattr(reaper, "after_exit", gated)


async def test_close_kills_a_forked_worker_at_once_and_its_warm_process_cleans_up_after(
        warm: tuple[str, WarmWorkers], monkeypatch: pytest.MonkeyPatch) -> None:
    """A run does not wait for its worker's teardown: close() returns once the worker is
    killed, before what follows its end has run; the worker then ends with nothing waiting for
    it, and the holder's close() returns only once its scratch is removed."""
    kind, held = warm
    gate, ran = threading.Event(), []
    _gate_reaper(held, monkeypatch, gate, ran)
    sandbox = await _started(kind)
    await _out(sandbox, "open('left.bin', 'wb').write(b'x' * 1000)")
    worker = sandbox._worker
    assert worker is not None
    pidfd = os.pidfd_open(worker.proc.pid)
    scratch = sandbox._scratch  # the host directory of the Landlock and process layers
    try:
        await sandbox.close()
        assert ran == []  # close() returned with the clean-up still to come
        assert readable_within(pidfd, 20.0)  # and the worker ends, awaited by no one here
        if scratch is not None:
            assert _exists(os.path.join(scratch, "left.bin"))  # removed after its end
        gate.set()
        held.close()
    finally:
        gate.set()
        os.close(pidfd)
    assert len(ran) == 1
    if scratch is not None:
        assert not _exists(scratch)


async def test_the_holder_waits_for_workers_still_ending_and_leaks_no_descriptor(
        warm: tuple[str, WarmWorkers], monkeypatch: pytest.MonkeyPatch) -> None:
    kind, held = warm
    gate, ran = threading.Event(), []
    _gate_reaper(held, monkeypatch, gate, ran)
    monkeypatch.setattr(_reaper._Reaper, "CLOSE_WAIT_S", 120.0)  # the gate opens long before
    before = _fds()
    scratches = []
    for _ in range(5):
        sandbox = await _started(kind)
        await assert_alive(sandbox)
        scratches.append(sandbox._scratch)
        await sandbox.close()
    assert ran == []
    opener = threading.Timer(0.2, gate.set)  # opened while close() below waits
    opener.start()
    try:
        held.close()  # waits for the five clean-ups held at the gate
    finally:
        opener.cancel()
        gate.set()
    assert len(ran) == 5
    assert held.warm is not None and held.warm.reaper.pending == 0
    assert not [path for path in scratches if path is not None and _exists(path)]
    assert _fds() <= before  # every pidfd, pipe and reaper descriptor closed


async def test_a_sandbox_closed_after_its_warm_process_waits_for_its_worker_itself(
        warm: tuple[str, WarmWorkers]) -> None:
    kind, held = warm
    sandbox = await _started(kind)
    await _out(sandbox, "open('left.bin', 'wb').write(b'x')")
    scratch = sandbox._scratch
    held.close()  # its worker dies with the warm process, whose reaper takes no more
    await sandbox.close()
    assert sandbox._worker is None
    if scratch is not None:
        assert not _exists(scratch)


async def test_a_failing_clean_up_leaves_the_next_ones_running(
        warm: tuple[str, WarmWorkers], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    kind, held = warm
    freed = _worker._free_scratch
    calls = []

    def first_fails(scratch: str | None, *rest: Any) -> None:
        calls.append(scratch)
        freed(scratch, *rest)
        if len(calls) == 1:
            raise OSError("the disk went away")

    monkeypatch.setattr(_worker, "_free_scratch", first_fails)
    first, second = await _started(kind), await _started(kind)
    await first.close()
    await second.close()
    held.close()
    assert len(calls) == 2
    assert "cleaning up after a sandbox worker failed" in caplog.text
    if calls[1] is not None:
        assert not _exists(calls[1])


async def test_workers_still_ending_leave_each_new_worker_its_whole_scratch_quota(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A closed sandbox does not wait for its worker's end, so the workers sharing a warm
    bubblewrap process's ``/tmp`` are the live ones plus those still ending. Here the ending
    ones are held (their clean-up waits at a gate): a second worker still writes nearly its
    whole quota beside the first's leftovers (a ``/tmp`` sized for the live ones alone refused
    it), and a third, past the room, waits for a clean-up instead of finding the disk full."""
    skip_unless_available("bwrap")
    quota = 8 * 2**20
    limits = SandboxLimits(scratch_bytes=quota)
    cleaned = _hold_every_clean_up(monkeypatch)
    real_take = _warm.WarmWorker._take_room
    waited: list[int] = []

    def taking(self: Any, wait: bool = True, *rest: Any) -> bool:
        if wait and self._unclean >= self.scratch_room:  # no room left: the ending ones are
            waited.append(self._unclean)  # cleaned a moment later (a fork that did not wait
            threading.Timer(0.5, cleaned.set).start()  # for that would find the disk full)
        return real_take(self, wait, *rest)

    monkeypatch.setattr(_warm.WarmWorker, "_take_room", taking)
    holder = await warm_workers("bwrap", limits, slots=1)
    if holder.warm is None:
        pytest.skip(f"no warm worker for bwrap: {holder.problem}")
    try:
        for _ in range(3):
            sandbox = create_sandbox("bwrap", limits)
            await sandbox.start(CONTEXT, FakeBridge())
            try:
                wrote = await sandbox.execute("open('w.bin', 'wb').write(bytes(7 * 2**20))")
                assert wrote.error is None, wrote.error
            finally:
                await sandbox.close()  # returns before its worker has ended
        assert waited == [2]  # the third fork waited for room, once
    finally:
        cleaned.set()
        holder.close()


def _own_pid(host_pid: int) -> int:
    """The pid a process sees for itself (the last NSpid: inside its pid namespace)."""
    with open(f"/proc/{host_pid}/status") as status:
        for line in status:
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    raise AssertionError(f"no NSpid for {host_pid}")


async def _each_holds_its_own_worker(kind: str, count: int) -> list[bool]:
    """Start ``count`` sandboxes at once (their fork orders in flight together); for each,
    whether the worker it talks to is the process it holds (and would kill)."""
    sandboxes = await asyncio.gather(*(_started(kind, f"context {i}") for i in range(count)))
    try:
        held = []
        for i, sandbox in enumerate(sandboxes):
            assert sandbox._worker is not None
            held.append(_own_pid(sandbox._worker.proc.pid) == sandbox.worker_pid
                        and await _out(sandbox, "print(context)") == f"context {i}")
        return held
    finally:
        await asyncio.gather(*(sandbox.close() for sandbox in sandboxes))


async def test_forks_in_flight_at_once_each_answer_their_own_sandbox(
        warm: tuple[str, WarmWorkers]) -> None:
    """Orders sent together are answered each on a socket of its own: every sandbox holds the
    pid of the worker it talks to (a mixed-up answer would have it watch and kill another
    run's worker), and none started cold."""
    kind, held = warm
    assert held.warm is not None
    forks = held.warm.forks
    assert await _each_holds_its_own_worker(kind, 6) == [True] * 6
    assert held.warm.forks == forks + 6


async def test_forks_from_two_event_loops_at_once_each_answer_their_own_sandbox(
        warm: tuple[str, WarmWorkers]) -> None:
    kind, held = warm
    assert held.warm is not None
    forks = held.warm.forks
    elsewhere = asyncio.to_thread(asyncio.run, _each_holds_its_own_worker(kind, 3))
    here = _each_holds_its_own_worker(kind, 3)
    assert await asyncio.gather(elsewhere, here) == [[True] * 3, [True] * 3]
    assert held.warm.forks == forks + 6


async def test_a_warm_process_that_stops_answering_leaves_sandboxes_starting_cold(
        warm: tuple[str, WarmWorkers], monkeypatch: pytest.MonkeyPatch) -> None:
    kind, held = warm
    assert held.warm is not None and held.warm._proc is not None
    monkeypatch.setattr(_warm, "FORK_TIMEOUT_S", 1.0)
    stopped = leaf_process(held.warm._proc.pid)  # the warm Python (under bubblewrap's two)
    os.kill(stopped, signal.SIGSTOP)
    try:
        forks = held.warm.forks
        sandbox = await _started(kind)  # its order is never read: cold after the timeout
        try:
            await assert_alive(sandbox)
            assert held.warm.forks == forks
            assert not held.warm.alive
            assert "did not fork within 1 s" in (held.warm._dead or "")
        finally:
            await sandbox.close()
    finally:
        os.kill(stopped, signal.SIGCONT)


@pytest.mark.parametrize("kind", ["bwrap", "landlock", "process"])
async def test_orders_past_a_full_control_socket_wait_for_room_and_all_are_forked(
        kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A socket holds so many bytes of datagrams not yet read (its send buffer; made small
    here, where it holds a few orders) and then refuses more: orders sent while the warm
    process is busy (stopped here) wait for room (off the event loop), in order, and every
    one is forked once it reads again."""
    skip_unless_available(kind)
    waited: list[int] = []
    stopped = 0
    real_wait = _warm.WarmWorker._send_waiting

    def waiting(self: _warm.WarmWorker, order: bytes, fds: list[int], *rest: Any) -> None:
        if not waited:  # the warm process reads again a moment after the first order waits
            threading.Timer(0.2, os.kill, (stopped, signal.SIGCONT)).start()
        waited.append(len(fds))
        real_wait(self, order, fds, *rest)

    monkeypatch.setattr(_warm.WarmWorker, "_send_waiting", waiting)
    limits = SandboxLimits(exec_timeout_s=20.0, env=(("FASTRLM_TEST_QUEUE", "1"),))
    holder = await warm_workers(kind, limits, slots=16)
    if holder.warm is None or holder.warm._proc is None:
        pytest.skip(f"no warm worker for {kind}: {holder.problem}")
    try:
        assert holder.warm._control is not None
        holder.warm._control.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        stopped = leaf_process(holder.warm._proc.pid)
        os.kill(stopped, signal.SIGSTOP)
        starting = [create_sandbox(kind, limits) for _ in range(16)]
        await asyncio.gather(*(sandbox.start(CONTEXT, FakeBridge()) for sandbox in starting))
        try:
            assert holder.warm.forks == 16  # none started cold
            assert waited and set(waited) == {4}  # some waited, each with its four fds
            for sandbox in starting:
                await assert_alive(sandbox)
        finally:
            await asyncio.gather(*(sandbox.close() for sandbox in starting))
    finally:
        holder.close()


async def test_a_start_cancelled_while_its_order_waits_sends_it_never_after(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An order that waits for room in the control socket (in a thread) and whose run is
    cancelled meanwhile is sent before the cancel returns or never: its fds are closed right
    after, and a late order would hand the warm process whatever reused their numbers."""
    skip_unless_available("landlock")
    limits = SandboxLimits(exec_timeout_s=20.0, env=(("FASTRLM_TEST_CANCEL", "1"),))
    holder = await warm_workers("landlock", limits, slots=16)
    if holder.warm is None or holder.warm._proc is None or holder.warm._control is None:
        pytest.skip(f"no warm worker for landlock: {holder.problem}")
    sent_after: list[int] = []
    cancelled = threading.Event()
    real_send_fds = socket.send_fds

    def send_fds(sock: socket.socket, buffers: list[bytes], fds: list[int], *rest: Any) -> int:
        result = real_send_fds(sock, buffers, fds, *rest)
        if cancelled.is_set():
            sent_after.append(len(fds))
        return result

    monkeypatch.setattr(socket, "send_fds", send_fds)
    loop = asyncio.get_running_loop()
    one_waits = asyncio.Event()
    real_wait = _warm.WarmWorker._send_waiting

    def waiting(self: _warm.WarmWorker, order: bytes, fds: list[int], *rest: Any) -> None:
        loop.call_soon_threadsafe(one_waits.set)
        real_wait(self, order, fds, *rest)

    monkeypatch.setattr(_warm.WarmWorker, "_send_waiting", waiting)
    stopped = leaf_process(holder.warm._proc.pid)
    try:
        holder.warm._control.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        os.kill(stopped, signal.SIGSTOP)
        starting = [create_sandbox("landlock", limits) for _ in range(16)]
        tasks = [asyncio.ensure_future(sandbox.start(CONTEXT, FakeBridge()))
                 for sandbox in starting]
        # the first orders fill the buffer, the next wait for room
        await asyncio.wait_for(one_waits.wait(), 60)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        cancelled.set()
        os.kill(stopped, signal.SIGCONT)
        await asyncio.gather(*(sandbox.close() for sandbox in starting))
        forks = holder.warm.forks
        after = create_sandbox("landlock", limits)
        await after.start(CONTEXT, FakeBridge())  # the warm process took what was sent, and
        try:  # forks on
            await assert_alive(after)
            assert holder.warm.forks == forks + 1
        finally:
            await after.close()
    finally:
        os.kill(stopped, signal.SIGCONT)
        holder.close()
    assert sent_after == [4]  # the one order sent after the cancels: the new sandbox's


async def test_a_start_cancelled_while_it_waits_for_scratch_room_takes_none(
        monkeypatch: pytest.MonkeyPatch) -> None:
    skip_unless_available("bwrap")
    gate = _hold_every_clean_up(monkeypatch)
    loop = asyncio.get_running_loop()
    waits = asyncio.Event()
    real_take = _warm.WarmWorker._take_room

    def taking(self: Any, wait: bool = True, *rest: Any) -> bool:
        if wait:
            loop.call_soon_threadsafe(waits.set)
        return real_take(self, wait, *rest)

    monkeypatch.setattr(_warm.WarmWorker, "_take_room", taking)
    limits = SandboxLimits(scratch_bytes=8 * 2**20, env=(("FASTRLM_TEST_ROOM", "1"),))
    holder = await warm_workers("bwrap", limits, slots=1)
    if holder.warm is None:
        pytest.skip(f"no warm worker for bwrap: {holder.problem}")
    warm = holder.warm
    try:
        for _ in range(warm.scratch_room):  # closed, and held unclean at the gate: no room
            sandbox = create_sandbox("bwrap", limits)
            await sandbox.start(CONTEXT, FakeBridge())
            await sandbox.close()
        assert warm._unclean == warm.scratch_room
        waiting = create_sandbox("bwrap", limits)
        task = asyncio.ensure_future(waiting.start(CONTEXT, FakeBridge()))
        await asyncio.wait_for(waits.wait(), 60)  # waiting for room, in a thread
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await waiting.close()
        gate.set()  # room comes back now, after its waiter gave up
        holder.warm.reaper.close()
        assert warm._unclean == 0  # the room its thread then found was not taken
    finally:
        gate.set()
        holder.close()
