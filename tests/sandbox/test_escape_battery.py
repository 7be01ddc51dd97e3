"""The escape battery of docs/../specs/sandbox.md: one test per attack, on every strong layer.

Each test asserts that the attack failed *and* that the host and the run survived (the REPL
still answers and ``context`` is intact).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from fastrlm.sandbox import Sandbox

from .helpers import CONTEXT, FakeBridge, MakeSandbox, assert_alive

pytestmark = pytest.mark.sandbox

HOST_PID = os.getpid()
HOME = os.path.expanduser("~")


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "id_rsa"
    path.write_text("PRIVATE KEY")
    return path


def planted(*paths: str) -> list[str]:
    return [p for p in paths if os.path.exists(p)]


@pytest.fixture
async def sb(make_sandbox: MakeSandbox, isolated_kind: str) -> Sandbox:
    return await make_sandbox(isolated_kind, exec_timeout_s=5.0, hard_grace_s=1.0, warm=True)


async def run(sb: Sandbox, code: str) -> tuple[str, str | None]:
    result = await sb.execute(code)
    assert not result.restarted, result.error
    return result.stdout.strip(), result.error


async def test_secret_file_in_home_is_unreadable(sb: Sandbox, secret_file: Path) -> None:
    out, error = await run(sb, f"open({str(secret_file)!r}).read()")
    assert "PRIVATE KEY" not in out
    assert error is not None and ("FileNotFoundError" in error or "PermissionError" in error)
    out, error = await run(sb, f"import os; os.listdir({HOME!r})")
    assert ".ssh" not in out and "id_rsa" not in out
    await assert_alive(sb)


async def test_etc_shadow_is_unreadable(sb: Sandbox) -> None:
    out, error = await run(sb, "open('/etc/shadow').read()")
    assert out == "" and error is not None and "Error" in error
    await assert_alive(sb)


async def test_host_environment_api_keys_are_absent(
    make_sandbox: MakeSandbox, isolated_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-123")
    sb = await make_sandbox(isolated_kind)
    out, error = await run(sb, "import os; print(sorted(os.environ)); print(dict(os.environ))")
    assert error is None
    assert "sk-test-secret-123" not in out and "OPENAI_API_KEY" not in out
    await assert_alive(sb)


async def test_host_environ_through_proc_is_unreadable(
    make_sandbox: MakeSandbox, isolated_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret-456")
    sb = await make_sandbox(isolated_kind)
    code = f"open('/proc/{HOST_PID}/environ', 'rb').read()"
    out, error = await run(sb, code)
    assert "sk-ant-secret-456" not in out and error is not None
    await assert_alive(sb)


async def test_socket_cannot_be_opened(sb: Sandbox) -> None:
    out, error = await run(sb, "import socket; socket.socket(socket.AF_INET, socket.SOCK_STREAM)")
    assert error is not None and "PermissionError" in error
    out, error = await run(sb, "import socket; socket.socket(socket.AF_UNIX)")
    assert error is not None and "PermissionError" in error
    await assert_alive(sb)


async def test_http_connection_fails(sb: Sandbox) -> None:
    code = "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9/', timeout=2)"
    out, error = await run(sb, code)
    assert error is not None and ("URLError" in error or "PermissionError" in error)
    await assert_alive(sb)


async def test_subprocess_cannot_start(sb: Sandbox) -> None:
    out, error = await run(sb, "import subprocess; subprocess.run(['/bin/echo', 'pwned'])")
    assert error is not None and "PermissionError" in error and "pwned" not in out
    await assert_alive(sb)


async def test_os_system_fails(sb: Sandbox) -> None:
    out, error = await run(sb, "import os; os.system('echo pwned')")
    assert error is None and out != "0" and "pwned" not in out
    await assert_alive(sb)


async def test_os_fork_fails(sb: Sandbox) -> None:
    out, error = await run(sb, "import os; os.fork()")
    assert error is not None and "PermissionError" in error
    await assert_alive(sb)


async def test_os_execv_fails_and_worker_keeps_running(sb: Sandbox) -> None:
    out, error = await run(sb, "import os, sys; os.execv(sys.executable, [sys.executable])")
    assert error is not None and "PermissionError" in error
    await assert_alive(sb)


async def test_fork_bomb_is_stopped(sb: Sandbox) -> None:
    code = "import os\nn = 0\nwhile True:\n    os.fork()\n    n += 1"
    out, error = await run(sb, code)
    assert error is not None and "PermissionError" in error
    out, _ = await run(sb, "n")
    assert out == "0"
    await assert_alive(sb)


async def test_multiprocessing_cannot_start(sb: Sandbox) -> None:
    code = "import multiprocessing as mp\np = mp.Process(target=print)\np.start()"
    out, error = await run(sb, code)
    assert error is not None
    await assert_alive(sb)


async def test_write_outside_scratch_fails(sb: Sandbox, tmp_path: Path) -> None:
    target = str(tmp_path / "planted.txt")
    for path in (target, "/usr/planted.txt", os.path.join(os.path.dirname(os.__file__), "x.py")):
        out, error = await run(sb, f"open({path!r}, 'w').write('x')")
        assert error is not None, path
    assert planted(target, "/usr/planted.txt") == []
    await assert_alive(sb)


async def test_allocation_far_past_the_limit_raises_memory_error(sb: Sandbox) -> None:
    out, error = await run(sb, "x = bytearray(8 * 1024**3)")
    assert error is not None and "MemoryError" in error
    await assert_alive(sb)


async def test_busy_loop_is_interrupted_and_state_kept(
    make_sandbox: MakeSandbox, isolated_kind: str
) -> None:
    sb = await make_sandbox(isolated_kind, exec_timeout_s=0.5, hard_grace_s=5.0)
    await run(sb, "kept = 42")
    result = await sb.execute("while True: pass")
    assert result.timed_out and not result.restarted
    assert result.error is not None and "TimeoutError" in result.error
    assert (await run(sb, "kept"))[0] == "42"
    await assert_alive(sb)


async def test_ignoring_sigalrm_then_looping_gets_hard_killed(
    make_sandbox: MakeSandbox, isolated_kind: str
) -> None:
    sb = await make_sandbox(isolated_kind, exec_timeout_s=0.3, hard_grace_s=0.5)
    await run(sb, "lost = 1")
    code = "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True: pass"
    result = await sb.execute(code)
    assert result.restarted and result.timed_out
    assert result.error is not None and "variable" in result.error
    out, error = await run(sb, "lost")
    assert error is not None and "NameError" in error
    await assert_alive(sb)


async def test_overwriting_reserved_names_is_undone(sb: Sandbox, bridge: FakeBridge) -> None:
    result = await sb.execute("llm_query = None\ncontext = 'mine'\nFINAL = print")
    assert set(result.restored) >= {"llm_query", "context", "FINAL"}
    out, error = await run(sb, "llm_query('still here')")
    assert error is None and out == "'answer:still here'"
    await assert_alive(sb)


async def test_function_attributes_lead_to_no_host_object(sb: Sandbox) -> None:
    code = (
        "import gc, sys\n"
        "seen = {type(o).__name__ for o in gc.get_objects()}\n"
        "mods = sorted(m for m in sys.modules if m.startswith('fastrlm'))\n"
        "g = llm_query.__func__.__globals__\n"
        "owner = type(llm_query.__self__).__name__\n"
        "print('FakeBridge' in seen, 'WorkerSandbox' in seen, mods, owner, "
        "llm_query.__func__.__closure__, 'asyncio' in sys.modules)"
    )
    out, error = await run(sb, code)
    assert error is None, error
    assert out.startswith("False False ")
    assert "_engine" not in out and "_worker'" not in out
    await assert_alive(sb)


async def test_ptrace_of_the_host_fails(sb: Sandbox) -> None:
    code = f"import ctypes\nctypes.CDLL(None, use_errno=True).ptrace(16, {HOST_PID}, 0, 0)"
    out, error = await run(sb, code)
    assert out == "-1"
    await assert_alive(sb)


async def test_host_memory_through_proc_is_unreadable(sb: Sandbox) -> None:
    out, error = await run(sb, f"open('/proc/{HOST_PID}/mem', 'rb')")
    assert error is not None
    await assert_alive(sb)


async def test_process_vm_readv_of_the_host_fails(sb: Sandbox) -> None:
    code = (
        "import ctypes\n"
        "buf = ctypes.create_string_buffer(8)\n"
        "class iov(ctypes.Structure): _fields_ = [('b', ctypes.c_void_p), ('n', ctypes.c_size_t)]\n"
        "local = iov(ctypes.addressof(buf), 8); remote = iov(0x400000, 8)\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"libc.process_vm_readv({HOST_PID}, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)"
    )
    out, error = await run(sb, code)
    assert out == "-1", error
    await assert_alive(sb)


async def test_signalling_the_host_fails(sb: Sandbox) -> None:
    out, error = await run(sb, f"import os, signal; os.kill({HOST_PID}, signal.SIGKILL)")
    assert error is not None and ("PermissionError" in error or "ProcessLookupError" in error)
    out, error = await run(sb, "import os, signal; os.killpg(1, signal.SIGKILL)")
    assert error is not None
    os.kill(HOST_PID, 0)  # still here
    await assert_alive(sb)


async def test_namespace_and_mount_escapes_fail(sb: Sandbox) -> None:
    code = (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.unshare(0x10000000), libc.mount(b'none', b'/tmp', b'tmpfs', 0, None), "
        "libc.chroot(b'/'))"
    )
    out, error = await run(sb, code)
    assert out == "-1 -1 -1", error
    await assert_alive(sb)


async def test_raising_own_rlimits_fails(sb: Sandbox) -> None:
    code = "import resource\nr = resource.RLIMIT_DATA\nresource.setrlimit(r, (-1, -1))"
    out, error = await run(sb, code)
    assert error is not None and ("PermissionError" in error or "ValueError" in error)
    out, error = await run(sb, "import resource; resource.getrlimit(resource.RLIMIT_DATA)[0] > 0")
    assert out == "True"
    await assert_alive(sb)


_CAPABILITIES = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
bounding = [cap for cap in range(64) if libc.prctl(23, cap, 0, 0, 0) == 1]  # PR_CAPBSET_READ
header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
sets = (ctypes.c_uint32 * 6)()
got = libc.syscall({"x86_64": 125, "aarch64": 90}[os.uname().machine], header, sets)  # capget
print(bounding, got, list(sets))
"""


async def test_the_worker_holds_no_capability_and_can_gain_none(sb: Sandbox) -> None:
    # a root worker outside namespaces could otherwise raise its own limits or read any file;
    # the bounding set (what an exec could gain) is emptied, not only the sets in force
    out, error = await run(sb, _CAPABILITIES)
    assert error is None
    assert out == "[] 0 [0, 0, 0, 0, 0, 0]"
    await assert_alive(sb)


async def test_stdout_flood_is_capped_at_the_source(
    make_sandbox: MakeSandbox, isolated_kind: str
) -> None:
    sb = await make_sandbox(isolated_kind, max_output_bytes=10_000)
    code = "chunk = 'x' * 10**6\nfor _ in range(2000): print(chunk)"  # 2 GB of prints
    result = await sb.execute(code)
    assert len(result.stdout) <= 10_000 and result.dropped_bytes >= 1_999_000_000
    result = await sb.execute("import os\nfor _ in range(1000): os.write(1, b'y' * 10**6)")
    assert result.error is None and "y" not in result.stdout  # fd 1 is /dev/null
    await assert_alive(sb)


async def test_malformed_frame_on_the_pipe_restarts_the_worker(sb: Sandbox) -> None:
    pipe = "llm_query.__self__._host_call.__self__._fd_out"
    code = f"import os\nos.write({pipe}, b'\\x00\\x00\\x00\\x03{{x}}')"
    result = await sb.execute(code)
    assert result.restarted and result.error is not None and "protocol" in result.error
    await assert_alive(sb)


async def test_ten_thousand_llm_queries_complete(
    make_sandbox: MakeSandbox, isolated_kind: str, bridge: FakeBridge
) -> None:
    # The claim is that they complete, not how fast: a timeout generous enough for a loaded CI
    # machine (the worker's own time between 10,000 round trips grows with the load).
    sb = await make_sandbox(isolated_kind, exec_timeout_s=120.0, hard_grace_s=5.0)
    out, error = await run(sb, "r = [llm_query(str(i)) for i in range(10_000)]\nlen(r), r[-1]")
    assert error is None and out == "(10000, 'answer:9999')"
    out, error = await run(sb, "len(llm_query_batched([str(i) for i in range(10_000)]))")
    assert out == "10000"
    assert bridge.llm_prompts == 20_000
    await assert_alive(sb)


async def test_segfault_restarts_the_worker(sb: Sandbox) -> None:
    result = await sb.execute("import ctypes; ctypes.string_at(0)")
    assert result.restarted and result.error is not None
    await assert_alive(sb)


async def test_os_exit_restarts_the_worker(sb: Sandbox) -> None:
    result = await sb.execute("import os; os._exit(0)")
    assert result.restarted
    await assert_alive(sb)


async def test_system_exit_and_keyboard_interrupt_stay_in_the_cell(sb: Sandbox) -> None:
    for code in ("raise SystemExit(3)", "raise KeyboardInterrupt", "import sys; sys.exit()"):
        out, error = await run(sb, code)
        assert error is not None
    await assert_alive(sb)


async def test_sigkill_to_own_process_is_survived_by_the_host(sb: Sandbox) -> None:
    result = await sb.execute(f"import os; os.kill(os.getpid(), {int(signal.SIGKILL)})")
    assert result.restarted
    await assert_alive(sb, CONTEXT)
