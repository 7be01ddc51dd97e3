"""The isolated sandbox as the engine sees it: kinds, layer names, the REPL API over the pipes,
the bridge, lifecycle, and doctor_report."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import fastrlm
from fastrlm import SandboxError, SandboxUnavailableError
from fastrlm.sandbox import (
    SandboxLimits,
    _layers,
    create_sandbox,
    doctor_report,
)
from fastrlm.sandbox._inprocess import InProcessSandbox
from fastrlm.sandbox._watchdog import descendants
from fastrlm.sandbox._worker import WorkerSandbox

from .helpers import CONTEXT, FakeBridge, MakeSandbox, assert_alive, skip_unless_available


def test_none_is_the_in_process_sandbox_and_says_it_is_unsafe() -> None:
    sb = create_sandbox("none")
    assert isinstance(sb, InProcessSandbox) and sb.unsafe


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown sandbox kind"):
        create_sandbox("firecracker")


def test_auto_never_plans_the_in_process_sandbox() -> None:
    try:
        plans = _layers.plans_for("auto")
    except SandboxUnavailableError:
        return
    assert all(p.kind in _layers.AUTO_KINDS for p in plans)
    assert [p.kind for p in plans] == [
        k for k in _layers.AUTO_KINDS if k in {p.kind for p in plans}
    ]


def test_auto_never_falls_back_to_the_process_layer_that_can_read_host_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_layers, "_problem", lambda kind: None if kind == "process" else "denied")
    with pytest.raises(SandboxUnavailableError, match="sandbox='process'"):
        _layers.plans_for("auto")
    assert [p.kind for p in _layers.plans_for("process")] == ["process"]


def test_layer_names_say_what_is_active() -> None:
    assert _layers.LayerPlan("bwrap", True).name == "bwrap+seccomp+rlimits"
    assert _layers.LayerPlan("landlock", True).name == "landlock+seccomp+rlimits"
    assert _layers.LayerPlan("process", False).name == "process+rlimits"


def test_memory_limit_grows_with_the_context() -> None:
    small = _layers.memory_limit_bytes(10, 10)
    wide = _layers.memory_limit_bytes(400_000_000, 100_000_000)
    assert small >= 1024**3 and wide >= small + 3 * 400_000_000


def test_doctor_report_covers_every_layer_with_a_reason() -> None:
    report = doctor_report()
    names = [s.name for s in report]
    assert names == [
        "bwrap", "landlock", "process", "docker", "podman", "seccomp", "rlimits", "memory",
        "disk", "auto", "none"
    ]
    assert all(s.reason for s in report)
    assert report[-1].available and "UNSAFE" in report[-1].reason


def test_bwrap_options_cut_the_network_and_bind_the_system_read_only() -> None:
    argv = _layers.bwrap_argv("bwrap")
    assert "--unshare-all" in argv and "--share-net" not in argv
    assert "--clearenv" in argv and argv[argv.index("--cap-drop") + 1] == "ALL"
    assert argv.index("--tmpfs") < min(i for i, a in enumerate(argv) if a == "--ro-bind")
    assert not any(a == "--bind" for a in argv)


@pytest.mark.sandbox
@pytest.mark.parametrize("kind", ["bwrap", "landlock", "process", "docker"])
async def test_each_isolated_kind_reports_its_layer(make_sandbox: MakeSandbox, kind: str) -> None:
    sb = await make_sandbox(kind)
    assert isinstance(sb, WorkerSandbox) and not sb.unsafe
    assert sb.layer.startswith(kind + "+") and sb.layer.endswith("rlimits")
    if _layers.seccomp_problem() is None:
        assert "+seccomp+" in sb.layer
    await assert_alive(sb)


@pytest.mark.sandbox
async def test_repl_api_goes_through_the_bridge(
    make_sandbox: MakeSandbox, bridge: FakeBridge
) -> None:
    sb = await make_sandbox("auto")
    result = await sb.execute(
        "a = llm_query('hi', model='small')\n"
        "b = llm_query_batched(['x', 'y'])\n"
        "c = rlm_query('q', context='sub')\n"
        "d = rlm_query_batched(['p1', 'p2'], contexts=[[1], {'k': 2}])\n"
        "print(a, b, c, d)"
    )
    assert result.error is None, result.error
    assert result.stdout.strip() == (
        "answer:hi ['answer:x', 'answer:y'] child:q|sub ['child:p1|[1]', \"child:p2|{'k': 2}\"]"
    )
    assert bridge.llm_calls == [(["hi"], "small"), (["x", "y"], None)]
    assert bridge.rlm_calls[1] == (["p1", "p2"], [[1], {"k": 2}], None)


@pytest.mark.sandbox
async def test_unsendable_rlm_context_is_a_type_error_in_the_cell(
    make_sandbox: MakeSandbox,
) -> None:
    sb = await make_sandbox("auto")
    result = await sb.execute("rlm_query('q', context=object())")
    assert result.error is not None and "TypeError" in result.error and not result.restarted
    await assert_alive(sb)


@pytest.mark.sandbox
async def test_final_answer_and_restored_names_cross_the_pipe(make_sandbox: MakeSandbox) -> None:
    sb = await make_sandbox("auto")
    result = await sb.execute("x = 'forty-two'\nFINAL_VAR('x')\nllm_query = 3")
    assert result.final is not None and result.final.text == "forty-two"
    assert result.final.source == "FINAL_VAR" and result.restored == ("llm_query",)
    result = await sb.execute("answer['content'] = 'draft'")
    assert result.final is None and result.answer_content == "draft"
    result = await sb.execute("answer.update(ready=True)")
    assert result.final is not None and result.final.source == "answer"
    assert "x: str" in await sb.show_vars()


@pytest.mark.sandbox
async def test_scratch_tmp_is_writable_and_threads_work(make_sandbox: MakeSandbox) -> None:
    sb = await make_sandbox("auto")
    result = await sb.execute(
        "import os, tempfile, threading\n"
        "p = os.path.join(tempfile.gettempdir(), 'notes.txt')\n"
        "open(p, 'w').write('kept')\n"
        "out = []\n"
        "ask = lambda i: out.append(llm_query(str(i)))\n"
        "ts = [threading.Thread(target=ask, args=(i,)) for i in range(4)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "print(open(p).read(), sorted(out))"
    )
    assert result.error is None, result.error
    assert result.stdout.strip() == "kept ['answer:0', 'answer:1', 'answer:2', 'answer:3']"


class RaisingBridge(FakeBridge):
    async def llm_query_batched(self, prompts: list[str], model: str | None) -> list[str]:
        raise RuntimeError("bridge bug")


@pytest.mark.sandbox
async def test_a_bridge_that_raises_gives_error_strings(
    make_sandbox: MakeSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    sb = await make_sandbox("auto", fake=RaisingBridge())
    result = await sb.execute("llm_query_batched(['a', 'b'])")
    assert (
        result.stdout.strip()
        == "['[error: host_error: RuntimeError: bridge bug]', "
        "'[error: host_error: RuntimeError: bridge bug]']"
    )
    assert "HostBridge raised" in caplog.text


@pytest.mark.sandbox
async def test_close_is_idempotent_and_execute_after_close_fails() -> None:
    sb = create_sandbox("auto", SandboxLimits())
    await sb.start(CONTEXT, FakeBridge())
    with pytest.raises(SandboxError):
        await sb.start(CONTEXT, FakeBridge())
    await sb.close()
    await sb.close()
    with pytest.raises(SandboxError):
        await sb.execute("1")


class BlockingBridge(FakeBridge):
    """Holds every llm_query until the test says so; ``entered`` is set on arrival."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def llm_query_batched(self, prompts: list[str], model: str | None) -> list[str]:
        self.entered.set()
        await self.release.wait()
        return await super().llm_query_batched(prompts, model)


@pytest.mark.sandbox
async def test_cancelled_execute_leaves_a_usable_sandbox(make_sandbox: MakeSandbox) -> None:
    blocking = BlockingBridge()
    sb = await make_sandbox("auto", fake=blocking)
    await sb.execute("before = 1")
    task = asyncio.create_task(sb.execute("llm_query('stuck')"))
    await blocking.entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    blocking.release.set()
    result = await sb.execute("'before' in globals(), len(context)")
    assert result.restarted and "cancelled" in str(result.extra["restart_reason"])
    assert result.stdout.strip() == f"(False, {len(CONTEXT)})"
    await assert_alive(sb)


def child_pids() -> set[int]:
    return set(descendants(os.getpid())[1:])


@pytest.mark.sandbox
@pytest.mark.parametrize("yields", [0, 2, 5, 13, 20, 40])
async def test_cancelling_start_leaks_no_worker(yields: int) -> None:
    skip_unless_available("auto")
    before = child_pids()
    sb = create_sandbox("auto")
    task = asyncio.create_task(sb.start("x" * 2_000_000, FakeBridge()))
    for _ in range(yields):
        await asyncio.sleep(0)  # a yield to the loop, not a wait: cancel at a different point
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await sb.close()
    assert child_pids() <= before


def broken_bwrap(
    bwrap: str, tmpfs_bytes: int = 0, env: object = (), mounts: object = ()
) -> list[str]:
    """Stands in for a bubblewrap that the probe passed but that fails for real (AppArmor)."""
    return ["/bin/sh", "-c", "echo 'bwrap: setting up uid map: Permission denied' >&2; exit 1"]


@pytest.mark.sandbox
async def test_auto_falls_back_to_the_next_layer_and_says_which(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    skip_unless_available("landlock")
    monkeypatch.setattr(_layers, "bwrap_argv", broken_bwrap)
    sb = WorkerSandbox(
        [_layers.LayerPlan("bwrap", True), _layers.LayerPlan("landlock", True)], SandboxLimits()
    )
    try:
        await sb.start(CONTEXT, FakeBridge())
        assert sb.layer == "landlock+seccomp+rlimits"
        assert "Permission denied" in caplog.text
        await assert_alive(sb)
    finally:
        await sb.close()


@pytest.mark.sandbox
async def test_a_named_layer_that_fails_is_an_unavailable_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_layers, "bwrap_argv", broken_bwrap)
    sb = WorkerSandbox([_layers.LayerPlan("bwrap", True)], SandboxLimits())
    with pytest.raises(SandboxUnavailableError, match="Permission denied"):
        await sb.start(CONTEXT, FakeBridge())
    await sb.close()


@pytest.mark.sandbox
async def test_a_model_thread_querying_across_cells_keeps_the_pipes_in_step(
    make_sandbox: MakeSandbox, bridge: FakeBridge
) -> None:
    sb = await make_sandbox("auto")
    result = await sb.execute(
        "import threading\nresults = []\n"
        "ask = lambda: [results.append(llm_query(str(i))) for i in range(300)]\n"
        "t = threading.Thread(target=ask)\nt.start()"
    )
    assert result.error is None
    for _ in range(5):
        result = await sb.execute("x = sum(range(10_000))\nlen(results) >= 0")
        assert not result.restarted and result.stdout.strip() == "True"
    result = await sb.execute("t.join()\nlen(results), results[-1]")
    assert not result.restarted, result.error
    assert result.stdout.strip() == "(300, 'answer:299')"
    await assert_alive(sb)


class SloppyBridge(FakeBridge):
    async def llm_query_batched(self, prompts: list[str], model: str | None) -> list[str]:
        return None if prompts[0] == "none" else ["only one"]  # type: ignore[return-value]


@pytest.mark.sandbox
async def test_a_bridge_breaking_its_contract_cannot_break_arity(make_sandbox: MakeSandbox) -> None:
    sb = await make_sandbox("auto", fake=SloppyBridge())
    result = await sb.execute("llm_query_batched(['none', 'x']), llm_query_batched(['a', 'b'])")
    assert result.error is None, result.error
    first, second = eval(result.stdout)
    assert len(first) == 2 and all(a.startswith("[error") for a in first)
    assert second[0] == "only one" and second[1].startswith("[error")


def test_doctor_says_which_memory_and_disk_mechanism_is_in_force_and_why() -> None:
    report = {s.name: s for s in doctor_report()}
    memory, disk = report["memory"].reason, report["disk"].reason
    assert "cgroup" in memory and "watchdog" in memory and "memfd_create" in memory
    if _layers.cgroup_problem() is not None:  # e.g. cgroup v1 or hybrid, as on the CI machines
        assert _layers.cgroup_problem() in memory
    assert "tmpfs" in disk and "reaper" in disk


def test_quota_reasons_name_the_limit_the_model_can_raise() -> None:
    from fastrlm.sandbox._watchdog import Quotas, over_quota

    quotas = Quotas(memory_bytes=256 << 20, scratch_bytes=64 << 20, scratch_files=100,
                    scratch_path=None)
    assert over_quota(quotas, 256 << 20, 64 << 20, 100) is None  # at a limit is within it
    assert "Limits.worker_memory_mb" in str(over_quota(quotas, (256 << 20) + 1, 0, 0))
    assert "Limits.scratch_mb" in str(over_quota(quotas, 0, (64 << 20) + 1, 0))
    assert "100 files" in str(over_quota(quotas, 0, 0, 101))


def test_the_heap_backstop_leaves_room_for_reserved_but_unused_memory() -> None:
    limit = 1 << 30
    assert _layers.heap_rlimit_bytes(limit) >= limit + (256 << 20)


_THROUGH_DOTDOT = """
import asyncio, sys
from fastrlm.sandbox import SandboxLimits, create_sandbox

class Bridge:
    async def llm_query(self, *a, **k): return ""
    async def llm_query_batched(self, *a, **k): return []
    async def rlm_query(self, *a, **k): return ""
    async def rlm_query_batched(self, *a, **k): return []
    async def call_tool(self, *a, **k): return None

async def main():
    assert ".." in sys.executable, sys.executable  # launched the way the issue says
    sb = create_sandbox(sys.argv[1], SandboxLimits())
    try:
        await sb.start("ctx", Bridge())
        print((await sb.execute("print(6 * 7)")).stdout.strip())
    finally:
        await sb.close()

asyncio.run(main())
"""


@pytest.mark.parametrize("kind", ["bwrap", "landlock", "process"])
def test_a_python_launched_through_dotdot_and_a_symlink_starts_the_worker(
    kind: str, tmp_path: Path,
) -> None:
    # bwrap ran sys.executable as given (/tmp/x/sub/../bin/python3): its first components are
    # not in the sandbox, so execvp failed ("namespaces denied") though only the real
    # interpreter's directory needs binding.
    skip_unless_available(kind)
    base = tmp_path
    (base / "sub").mkdir()
    (base / "bin").symlink_to(os.path.dirname(os.path.realpath(sys.executable)))
    name = os.path.basename(sys.executable)
    script = base / "probe.py"
    script.write_text(_THROUGH_DOTDOT)
    src = os.path.dirname(os.path.dirname(os.path.abspath(fastrlm.__file__)))
    done = subprocess.run(
        [f"../bin/{name}", str(script), kind], cwd=base / "sub", capture_output=True,
        text=True, timeout=100, env={**os.environ, "PYTHONPATH": src},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "42"


def test_bwrap_failing_to_run_the_interpreter_is_not_called_namespaces_denied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The '..' launch was diagnosed as "namespaces denied: bwrap: execvp ...".
    skip_unless_available("bwrap")
    monkeypatch.setattr(_layers, "interpreter", lambda: "/nonexistent/bin/python3")
    problem = _layers.bwrap_problem.__wrapped__()
    assert problem is not None and problem.startswith("bubblewrap could not run this Python")
    assert "execvp /nonexistent/bin/python3" in problem and "namespaces" not in problem


async def test_in_process_output_is_captured_after_the_app_replaced_stdout() -> None:
    # A second in-process sandbox, opened after the application replaced sys.stdout
    # (redirect_stdout, a test runner's capture) while a first one was open, found the router
    # "installed" by count: its cells printed into the application's stream and came back empty.
    import io

    first = create_sandbox("none")
    await first.start("a", FakeBridge())
    try:
        with contextlib.redirect_stdout(io.StringIO()) as app:
            second = create_sandbox("none")
            await second.start("b", FakeBridge())
            try:
                result = await second.execute("print('from the cell')")
            finally:
                await second.close()
        assert result.stdout.strip() == "from the cell"
        assert "from the cell" not in app.getvalue()
    finally:
        await first.close()


@pytest.mark.parametrize("kind", ["bwrap", "process"])
async def test_a_runs_first_root_call_goes_out_before_its_worker_is_spawned(
        kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's spawn (a fork and exec that block the event loop's thread) waits one turn
    of the loop, so the root's first request is out first and the model works while the worker
    starts (a large file's run asked the model ~20 ms later before)."""
    from fastrlm import RLM, Budget
    from fastrlm.sandbox import _worker
    from fastrlm.testing import ScriptedLM

    skip_unless_available(kind)
    order: list[str] = []
    spawn = _worker.WorkerSandbox._spawn

    async def spawning(self: _worker.WorkerSandbox) -> _worker.WorkerProcess:
        order.append("spawn")
        return await spawn(self)

    monkeypatch.setattr(_worker.WorkerSandbox, "_spawn", spawning)

    def root(messages: object) -> str:
        order.append("root")
        return "```repl\nFINAL(str(len(context)))\n```"

    rlm = RLM(ScriptedLM(root, model="scripted/root"), ScriptedLM(["ok"], model="scripted/sub"),
              sandbox=kind, budget=Budget(max_iterations=2), trace=False)
    result = await rlm.acompletion("How long?", context="x" * 1000)
    assert result.answer == "1000"
    assert order[:2] == ["root", "spawn"]


@pytest.mark.sandbox
@pytest.mark.parametrize("kind", ["process", "landlock"])
async def test_a_close_cancelled_before_its_clean_up_thread_starts_still_ends_the_reaper(
    kind: str,
) -> None:
    """A run that fails while its sandbox is still starting cancels that start, and with it
    the ``close()`` the start was in. The scratch reaper's clean-up is handed to a thread;
    every thread of the loop's pool is held busy here, so the cancel lands before that thread
    starts. The clean-up must still run: the reaper ended and reaped, its pipe closed (before,
    the queued job was dropped: a running reaper and an open fd for the life of the process)."""
    skip_unless_available(kind)
    loop = asyncio.get_running_loop()
    sb = create_sandbox(kind, SandboxLimits())
    assert isinstance(sb, WorkerSandbox)
    await sb.start(CONTEXT, FakeBridge())
    reaper, reaper_fd = sb._reaper, sb._reaper_fd  # noqa: SLF001 - what close must end
    assert reaper is not None and reaper_fd >= 0
    hold = threading.Event()
    busy = [loop.run_in_executor(None, hold.wait) for _ in range(64)]  # more than the pool
    closing = asyncio.create_task(sb.close())
    for _ in range(10_000):  # yields to the loop until close has taken the reaper, and queued
        if sb._reaper is None:  # its clean-up, at the same step  # noqa: SLF001
            break
        await asyncio.sleep(0)
    assert sb._reaper is None  # noqa: SLF001
    closing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await closing
    hold.set()
    await asyncio.gather(*busy)
    assert await asyncio.to_thread(reaper.wait, 60) is not None
    with pytest.raises(OSError):
        os.fstat(reaper_fd)  # closed by the clean-up
    await sb.close()


@pytest.mark.sandbox
async def test_the_worker_imports_no_event_loop(make_sandbox: MakeSandbox) -> None:
    """The worker shares ``_protocol`` with the host, whose waits on threads' futures use
    asyncio: imported there lazily, so a worker's start never pays for it (tens of ms)."""
    sb = await make_sandbox("process")
    result = await sb.execute("import sys; print('asyncio' in sys.modules)")
    assert result.stdout.strip() == "False", result.error
