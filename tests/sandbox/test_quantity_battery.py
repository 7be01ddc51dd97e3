"""The escape battery, continued: attacks on quantities (memory, disk, files, answer size) and
on the protocol, on every strong layer. Each test asserts that the attack failed *and* that the
host and the run survived.

Memory tests prove a limit by staying under it: a small limit, an attempt at twice as much.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from fastrlm.sandbox import Sandbox
from fastrlm.sandbox._channel import wait_readable
from fastrlm.sandbox._worker import WorkerSandbox

from .helpers import CONTEXT, FakeBridge, MakeSandbox, assert_alive, skip_unless_available

pytestmark = pytest.mark.sandbox

MiB = 1024 * 1024
# The soft timeout is far away: a watchdog kill (within ~50 ms of polling) always comes first.
PATIENT = {"exec_timeout_s": 60.0, "hard_grace_s": 5.0}
BLOCK_FOREVER = "import threading\nthreading.Event().wait()"


@pytest.fixture
async def sb(make_sandbox: MakeSandbox, isolated_kind: str) -> Sandbox:
    return await make_sandbox(isolated_kind, exec_timeout_s=5.0, hard_grace_s=1.0, warm=True)


async def refused(sb: Sandbox, code: str) -> str:
    """Run ``code``; it must fail in the cell without costing the worker. Returns the error."""
    result = await sb.execute(code)
    assert not result.restarted, result.error
    assert result.error is not None, result.stdout
    return result.error


# ------------------------------------------------------------------------------ memory
async def test_memfd_bomb_is_refused(sb: Sandbox) -> None:
    error = await refused(sb, "import os\nfds = [os.memfd_create('bomb') for _ in range(200)]")
    assert "PermissionError" in error
    await assert_alive(sb)


async def test_dev_shm_cannot_be_filled(sb: Sandbox) -> None:
    error = await refused(sb, "open('/dev/shm/fill', 'wb').write(b'x' * (64 << 20))")
    assert "OSError" in error or "PermissionError" in error or "FileNotFoundError" in error
    await assert_alive(sb)


async def test_shared_anonymous_memory_is_refused(sb: Sandbox) -> None:
    error = await refused(sb, "import mmap\nm = mmap.mmap(-1, 256 << 20)")
    assert "PermissionError" in error
    await assert_alive(sb)


async def test_pipe_buffers_cannot_be_piled_up(sb: Sandbox) -> None:
    error = await refused(sb, "import os\npipes = [os.pipe() for _ in range(100)]")
    assert "PermissionError" in error
    await assert_alive(sb)


async def test_memory_past_the_limit_is_stopped_and_the_model_told(
    make_sandbox: MakeSandbox, isolated_kind: str
) -> None:
    """Far past the limit at once: MemoryError, state kept. Growing past it: the watchdog stops
    the worker first, or the heap limit does; either way the model is told which limit."""
    sb = await make_sandbox(isolated_kind, memory_bytes=256 * MiB, **PATIENT)
    await sb.execute("kept = 42")
    error = await refused(sb, f"big = b'x' * {2048 * MiB}")
    assert "MemoryError" in error and "memory limit is 256 MiB" in error
    result = await sb.execute("print(kept)")
    assert result.stdout.strip() == "42"
    grow = f"held = []\nfor _ in range(512):\n    held.append(b'x' * {MiB})\n" + BLOCK_FOREVER
    result = await sb.execute(grow)
    assert result.error is not None
    if result.restarted:
        assert "over its limit of 256 MiB" in result.error
    else:
        assert "MemoryError" in result.error and "memory limit is 256 MiB" in result.error
    await assert_alive(sb)


async def test_reserved_address_space_is_not_charged(
    make_sandbox: MakeSandbox, isolated_kind: str
) -> None:
    """What pyarrow's allocator does: reserve far more address space than the limit, use little."""
    sb = await make_sandbox(isolated_kind, memory_bytes=256 * MiB, **PATIENT)
    code = (
        "import ctypes\n"
        "libc = ctypes.CDLL(None)\n"
        "libc.mmap.restype = ctypes.c_void_p\n"
        "libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,"
        " ctypes.c_int, ctypes.c_long]\n"
        "address = libc.mmap(None, 4 << 30, 0, 0x22 | 0x4000, -1, 0)\n"  # PROT_NONE, NORESERVE
        "print(address not in (None, 2**64 - 1))"
    )
    result = await sb.execute(code)
    assert result.error is None and result.stdout.strip() == "True"
    await assert_alive(sb)


async def test_memory_outside_the_heap_restarts_the_worker_and_says_why(
    make_sandbox: MakeSandbox,
) -> None:
    """tmpfs files are memory too: heap plus /tmp past the limit ends the worker (bwrap, where
    /tmp is a tmpfs of the worker's own), and the model is told which limit it hit."""
    sb = await make_sandbox(
        "bwrap", memory_bytes=256 * MiB, scratch_bytes=512 * MiB, **PATIENT
    )
    # A fresh worker's /tmp is empty but for the mount points of host paths that lie under /tmp
    # (a checkout or virtualenv there): what a restart must give back is that, not "[]".
    fresh = (await sb.execute("import os; print(sorted(os.listdir('/tmp')))")).stdout.strip()
    code = (
        "with open('/tmp/fill', 'wb') as f:\n"
        "    for _ in range(200):\n"
        f"        f.write(b'x' * {MiB})\n"
        f"heap = b'y' * {150 * MiB}\n" + BLOCK_FOREVER
    )
    result = await sb.execute(code)
    assert result.restarted
    assert result.error is not None and "memory" in result.error
    assert "Limits.worker_memory_mb" in result.error
    out = await sb.execute("import os; print(sorted(os.listdir('/tmp')))")
    assert out.stdout.strip() == fresh and "fill" not in fresh
    await assert_alive(sb)


# ------------------------------------------------------------------------------ disk
@pytest.mark.parametrize("kind", ["bwrap", "landlock", "auto", "process", "docker"])
async def test_scratch_disk_fill_is_stopped(make_sandbox: MakeSandbox, kind: str) -> None:
    sb = await make_sandbox(kind, scratch_bytes=64 * MiB, **PATIENT)
    code = (
        "import os\n"
        "for i in range(25):\n"
        "    with open(os.path.join(os.environ['TMPDIR'], f'f{i}'), 'wb') as f:\n"
        f"        f.write(b'x' * {8 * MiB})\n" + BLOCK_FOREVER
    )
    result = await sb.execute(code)
    assert result.error is not None
    if sb.layer.startswith(("bwrap", "docker")):  # a size-capped tmpfs (auto: bwrap here)
        assert "No space left" in result.error and not result.restarted
    else:  # a host directory, counted by the watchdog
        assert result.restarted and "scratch" in result.error and "quota" in result.error
    await assert_alive(sb)


@pytest.mark.parametrize("kind", ["bwrap", "landlock", "auto", "process", "docker"])
async def test_file_count_flood_is_stopped(make_sandbox: MakeSandbox, kind: str) -> None:
    sb = await make_sandbox(kind, scratch_files=300, **PATIENT)
    count = "import os; print(len(os.listdir(os.environ['TMPDIR'])))"
    fresh = (await sb.execute(count)).stdout.strip()  # mount points of host paths under /tmp
    code = (
        "import os\n"
        "for i in range(2000):\n"
        "    open(os.path.join(os.environ['TMPDIR'], f'f{i}'), 'w').close()\n" + BLOCK_FOREVER
    )
    result = await sb.execute(code)
    if sb.layer.startswith("docker"):  # the tmpfs holds so many inodes: the cell fails
        assert not result.restarted and result.error is not None
        assert "No space left" in result.error
        await sb.execute("import os, glob\nfor f in glob.glob('/tmp/f*'): os.unlink(f)")
    else:
        assert result.restarted
        assert result.error is not None and "300 files" in result.error
    out = await sb.execute(count)
    assert out.stdout.strip() == fresh and int(fresh) < 10
    await assert_alive(sb)


@pytest.mark.parametrize("kind", ["landlock", "process"])
async def test_scratch_is_emptied_after_a_hard_kill_and_removed_at_close(kind: str) -> None:
    skip_unless_available(kind)
    sb = create(kind, exec_timeout_s=0.5, hard_grace_s=0.5)
    await sb.start(CONTEXT, FakeBridge())
    try:
        scratch = sb._scratch
        assert scratch is not None and exists(scratch)
        code = (
            "import os, signal\n"
            "open(os.path.join(os.environ['TMPDIR'], 'left-behind'), 'w').write('x')\n"
            "signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
            "while True: pass"
        )
        result = await sb.execute(code)
        assert result.restarted
        assert os.listdir(scratch) == []
        await assert_alive(sb)
    finally:
        await sb.close()
    assert not exists(scratch)


def exists(path: str) -> bool:
    return os.path.exists(path)


def create(kind: str, **limits: float) -> WorkerSandbox:
    from fastrlm.sandbox import SandboxLimits, create_sandbox

    sandbox = create_sandbox(kind, SandboxLimits(**limits))  # type: ignore[arg-type]
    assert isinstance(sandbox, WorkerSandbox)
    return sandbox


KILLED_HOST = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from fastrlm.sandbox import create_sandbox

    async def main():
        sb = create_sandbox(sys.argv[1])
        await sb.start("context", None)
        await sb.execute("open('planted', 'w').write('x')")
        print(sb._scratch, sb._reaper.pid if sb._reaper else 0, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("kind", ["landlock", "process"])
def test_scratch_is_removed_after_the_host_is_killed(kind: str) -> None:
    skip_unless_available(kind)
    host = subprocess.run(
        [sys.executable, "-c", KILLED_HOST, kind], capture_output=True, text=True, timeout=60
    )
    assert host.returncode == -signal.SIGKILL, host.stderr
    scratch, reaper = host.stdout.split()
    assert scratch.startswith(os.path.join(os.path.realpath("/tmp"), "fastrlm-scratch-")) or (
        "fastrlm-scratch-" in scratch
    )
    try:
        pidfd = os.pidfd_open(int(reaper))
    except ProcessLookupError:
        pidfd = -1  # the reaper already finished
    if pidfd >= 0:
        try:
            import select

            ready, _, _ = select.select([pidfd], [], [], 30.0)
            assert ready, "the scratch reaper did not finish"
        finally:
            os.close(pidfd)
    assert not os.path.exists(scratch)


# ------------------------------------------------------------------------------ protocol
FORGE = textwrap.dedent(
    """
    import fcntl, json, os, stat, struct
    def _pipe_b():  # the one pipe the worker writes to (found as model code would find it)
        for fd in range(3, 256):
            try:
                if (stat.S_ISFIFO(os.fstat(fd).st_mode)
                        and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY):
                    return fd
            except OSError:
                pass
    _fd_out = _pipe_b()
    def _forge(op, nonce="guessed", **fields):
        body = {"op": op, "nonce": nonce, **fields}
        if op == "done":
            body.update(stdout="forged", stderr="", error=None, final=None,
                        answer_content=None, restored=[], timed_out=False, dropped_bytes=0)
        data = json.dumps(body).encode()
        os.write(_fd_out, struct.pack(">I", len(data)) + data)
    """
)


@pytest.mark.parametrize(
    "forged",
    [
        "_forge('done')",
        "_forge('vars', text='forged')",
        "_forge('llm_query', id=1, prompts=['forged'], model=None)",
    ],
)
async def test_frame_forged_by_a_model_thread_during_a_cell_is_caught(
    sb: Sandbox, forged: str, bridge: FakeBridge
) -> None:
    await sb.execute(FORGE)
    code = (
        "import threading\n"
        f"t = threading.Thread(target=lambda: {forged})\n"
        "t.start(); t.join()\n"
        "print('real')"
    )
    result = await sb.execute(code)
    assert result.restarted and result.stdout != "forged"
    assert result.error is not None and "does not belong" in result.error
    assert bridge.llm_calls == []  # the forged request was not answered
    await assert_alive(sb)


async def test_frame_forged_between_cells_with_a_stolen_nonce_is_caught(sb: Sandbox) -> None:
    """The strongest forger: a thread that reads the last nonce out of the worker's memory and
    writes a ``done`` once the cell is over, to be taken as the next cell's result."""
    await sb.execute(FORGE)
    code = (
        "import gc, sys, threading, time\n"
        "_w = next(o for o in gc.get_objects() if type(o).__name__ == 'Worker')\n"
        "_main = threading.main_thread().ident\n"
        "def _later():\n"
        "    while sys._current_frames()[_main].f_code.co_name != 'read_exact':\n"
        "        time.sleep(0.001)\n"
        "    _forge('done', nonce=_w._nonce)\n"
        "threading.Thread(target=_later).start()"
    )
    assert (await sb.execute(code)).error is None
    assert isinstance(sb, WorkerSandbox) and sb._worker is not None
    # the forged frame is in the host's pipe, or already in its channel's buffer: on a loaded
    # machine the host can read the cell's own "done" late, the forged frame with it
    if not sb._worker.channel._buffer:
        await wait_readable(sb._worker.channel._in)
    result = await sb.execute("print('second')")
    assert result.restarted and result.stdout != "forged"
    assert result.error is not None and "no request was in flight" in result.error
    after = await sb.execute("print('third')")
    assert after.stdout.strip() == "third" and not after.restarted
    await assert_alive(sb)


async def test_a_model_thread_calling_llm_query_across_cells_is_not_taken_for_a_forger(
    make_sandbox: MakeSandbox, isolated_kind: str, bridge: FakeBridge
) -> None:
    """Nor does it touch the cell's soft-timeout clock (the timer is process-wide)."""
    sb = await make_sandbox(isolated_kind, exec_timeout_s=60.0)
    code = (
        "import threading\n"
        "results = []\n"
        "def background():\n"
        "    for i in range(200):\n"
        "        results.append(llm_query(f'bg{i}'))\n"
        "t = threading.Thread(target=background)\n"
        "t.start()"
    )
    assert (await sb.execute(code)).error is None
    for _ in range(10):
        result = await sb.execute("sum(range(300_000)) > 0")
        assert not result.restarted and not result.timed_out, result.error
        assert result.error is None and result.stdout.strip() == "True", result.error
    done = await sb.execute("t.join()\nprint(results == [f'answer:bg{i}' for i in range(200)])")
    assert not done.restarted and done.stdout.strip() == "True", done.error
    assert bridge.llm_prompts == 200


async def test_a_forged_llm_query_reply_does_not_shift_later_results(
    sb: Sandbox, bridge: FakeBridge
) -> None:
    """A reply written into the worker's own input pipe (through /proc/self/fd where that is
    visible) is refused by the nonce check or never reached; later answers stay in step."""
    code = (
        "import json, os, struct, sys\n"
        "fd = json.loads(sys.argv[1])['fd_in']\n"
        "body = json.dumps({'op': 'reply', 'id': 1, 'nonce': 'guessed', "
        "'results': ['forged']}).encode()\n"
        "with open(f'/proc/self/fd/{fd}', 'wb', buffering=0) as pipe:\n"
        "    pipe.write(struct.pack('>I', len(body)) + body)\n"
        "print(llm_query('real'))"
    )
    result = await sb.execute(code)
    assert "forged" not in result.stdout
    assert result.error is not None  # no /proc (landlock), or the reply was out of turn
    after = await sb.execute("print(llm_query('next'))")
    assert after.error is None and after.stdout.strip() == "answer:next"
    await assert_alive(sb)


# ------------------------------------------------------------------------------ answers
async def test_200_mb_and_400_mb_final_var_are_refused_and_the_worker_survives(
    sb: Sandbox,
) -> None:
    await sb.execute("kept = 42")
    for size in (200_000_000, 400_000_000):
        result = await sb.execute(f"big = 'a' * {size}\nFINAL_VAR('big')")
        assert result.final is None and not result.restarted
        assert result.error is not None and f"{size:,} characters" in result.error
        assert "Limits.max_answer_chars" in result.error
        await sb.execute("del big")
    result = await sb.execute("answer['content'] = 'b' * 100_000_000\nanswer['ready'] = True")
    assert result.final is None and result.error is not None and "max_answer_chars" in result.error
    result = await sb.execute("answer['content'] = ''\nprint(kept)")
    assert result.stdout.strip() == "42"
    await assert_alive(sb)


async def test_an_answer_within_a_small_limit_is_delivered_and_one_past_it_refused(
    make_sandbox: MakeSandbox, isolated_kind: str
) -> None:
    sb = await make_sandbox(isolated_kind, max_answer_chars=1000)
    refused_ = await sb.execute("FINAL('x' * 1001)")
    assert refused_.final is None and refused_.error is not None and "1,000" in refused_.error
    delivered = await sb.execute("FINAL('x' * 1000)")
    assert delivered.final is not None and delivered.final.text == "x" * 1000


# ------------------------------------------------------------------------------ poisoned values
POISON = textwrap.dedent(
    """
    class Ambiguous:
        def __bool__(self):
            raise ValueError("The truth value of an array is ambiguous")
    class Unprintable:
        def __str__(self):
            raise RuntimeError("no str for you")
        __repr__ = __str__
    class Liar(dict):
        def get(self, *args):
            raise RuntimeError("get is poisoned")
    class Impostor:
        __class__ = dict
    kept = 42
    """
)
POISONED_CELLS = {
    "ready_raises_in_bool": "answer['content'] = 'x'\nanswer['ready'] = Ambiguous()",
    "content_raises_in_str": "answer['content'] = Unprintable()",
    "final_raises_in_str": "FINAL(Unprintable())",
    "final_var_raises_in_str": "u = Unprintable()\nFINAL_VAR('u')",
    "print_raises": "print(Unprintable())",
    "repr_of_the_result_raises": "Unprintable()",
    "answer_dict_subclass": "answer = Liar(content='x', ready=True)",
    "answer_impostor": "answer = Impostor()",
}


@pytest.mark.parametrize("case", sorted(POISONED_CELLS))
async def test_poisoned_values_are_a_cell_error_and_the_worker_survives(
    make_sandbox: MakeSandbox, isolated_kind: str, case: str
) -> None:
    sb = await make_sandbox(isolated_kind)
    assert (await sb.execute(POISON)).error is None
    result = await sb.execute(POISONED_CELLS[case])
    assert not result.restarted, result.error
    if case != "answer_dict_subclass":
        assert result.error is not None
    assert result.final is None or result.final.text == "x"
    after = await sb.execute("answer = {'content': '', 'ready': False}\nprint(kept)")
    assert after.stdout.strip() == "42"
    await assert_alive(sb)


# ------------------------------------------------------------------------------ environment
async def test_the_worker_environment_is_the_users_and_nothing_of_the_hosts(
    make_sandbox: MakeSandbox, isolated_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FASTRLM_TEST_SECRET", "sk-host")
    sb = await make_sandbox(isolated_kind, env=(("POLARS_MAX_THREADS", "1"),))
    result = await sb.execute("import os; print(sorted(os.environ.items()))")
    assert "('POLARS_MAX_THREADS', '1')" in result.stdout
    assert "sk-host" not in result.stdout


# ------------------------------------------------------------------------------ a real workload
PANDAS = textwrap.dedent(
    """
    import numpy as np, pandas as pd, pyarrow
    n = 1_000_000
    df = pd.DataFrame({
        "key": pd.array([f"k{i % 997}" for i in range(n)], dtype="string[pyarrow]"),
        "text": pd.array([f"row {i}" for i in range(n)], dtype="string[pyarrow]"),
        "value": np.arange(n, dtype="int64"),
    })
    sums = df.groupby("key", observed=True)["value"].sum().rename("total").reset_index()
    joined = df.merge(sums, on="key")
    print(len(joined), int(joined["total"].iloc[0] > 0), joined["text"].str.len().max())
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["bwrap", "landlock", "auto", "process"])
async def test_pandas_and_pyarrow_work_under_the_default_memory_limit(
    make_sandbox: MakeSandbox, kind: str
) -> None:
    pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    sb = await make_sandbox(kind, exec_timeout_s=110.0)
    result = await sb.execute(PANDAS)
    assert result.error is None, result.error
    assert result.stdout.split() == ["1000000", "1", "10"]
    await assert_alive(sb)

