"""Per-worker cgroup v2 limits, against a fake cgroup file system (a tmp directory whose
interface files are plain files): what is written, when the worker joins, what each failing
step falls back to, removal, and the OOM message. The real kernel path needs a cgroup v2 host
with delegation; on this project's (v1 hybrid) machines the fallback is checked as in force."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fastrlm.sandbox import SandboxLimits, _cgroup, _layers, doctor_report
from fastrlm.sandbox._worker import WorkerProcess, WorkerSandbox

from .helpers import CONTEXT, FakeBridge

MEMORY = 768 * 1024 * 1024


def fake_cgroup(root: Path, own: str, subtree: str = "", controllers: str = "memory pids",
                procs: str = "") -> Path:
    path = root / own
    path.mkdir(parents=True, exist_ok=True)
    (path / "cgroup.subtree_control").write_text(subtree)
    (path / "cgroup.controllers").write_text(controllers)
    (path / "cgroup.procs").write_text(procs)
    return path


def worker_cgroups(parent: Path) -> list[Path]:
    return sorted(p for p in parent.iterdir() if p.name.startswith("fastrlm-"))


# ----------------------------------------------------------------- where cgroups go
def test_v1_or_hybrid_hierarchy_is_a_reason(tmp_path: Path) -> None:
    with pytest.raises(_cgroup.CgroupError, match="cgroup v1"):
        _cgroup.locate(str(tmp_path), "12:memory:/\n0::/\n", os.getpid())


def test_a_cgroup_that_delegates_memory_takes_children(tmp_path: Path) -> None:
    own = fake_cgroup(tmp_path, "app", subtree="cpu memory pids")
    found = _cgroup.locate(str(tmp_path), "0::/app\n", os.getpid())
    assert found == _cgroup.Delegation(str(own), "child")


def test_a_delegating_parent_takes_siblings(tmp_path: Path) -> None:
    fake_cgroup(tmp_path, "box", subtree="memory pids")
    fake_cgroup(tmp_path, "box/init")
    found = _cgroup.locate(str(tmp_path), "0::/box/init\n", os.getpid())
    assert found == _cgroup.Delegation(str(tmp_path / "box"), "sibling")


def test_a_process_alone_in_its_cgroup_moves_into_a_leaf_then_delegates(tmp_path: Path) -> None:
    own = fake_cgroup(tmp_path, "solo", procs=f"{os.getpid()}\n")
    found = _cgroup.locate(str(tmp_path), "0::/solo\n", os.getpid())
    assert found == _cgroup.Delegation(str(own), "leaf")
    _cgroup.prepare(found, os.getpid())
    assert (own / _cgroup.HOST_LEAF / "cgroup.procs").read_text() == str(os.getpid())
    assert (own / "cgroup.subtree_control").read_text() == "+memory +pids"


def test_a_cgroup_shared_with_other_processes_is_a_reason(tmp_path: Path) -> None:
    fake_cgroup(tmp_path, "shared", procs=f"1\n{os.getpid()}\n")
    with pytest.raises(_cgroup.CgroupError, match="holds other processes"):
        _cgroup.locate(str(tmp_path), "0::/shared\n", os.getpid())


def test_no_memory_controller_anywhere_is_a_reason(tmp_path: Path) -> None:
    fake_cgroup(tmp_path, "bare", controllers="cpu")
    with pytest.raises(_cgroup.CgroupError, match="no writable cgroup"):
        _cgroup.locate(str(tmp_path), "0::/bare\n", os.getpid())


def test_doctor_names_the_cgroup_and_its_limits_when_one_is_delegated(tmp_path: Path) -> None:
    line = _layers.memory_mechanism(_cgroup.Delegation(str(tmp_path), "sibling"))
    assert line.startswith(f"cgroup v2 per worker under {tmp_path} (sibling)")
    assert "memory.swap.max = 0" in line and f"pids.max = {_cgroup.pids_limit()}" in line
    assert "watchdog stays as a second line" in line


def test_stale_worker_cgroups_of_dead_hosts_are_swept(tmp_path: Path) -> None:
    stale = tmp_path / "fastrlm-999999999-1"
    stale.mkdir()
    (stale / "memory.max").write_text("1")
    mine = tmp_path / f"fastrlm-{os.getpid()}-1"
    mine.mkdir()
    group = _cgroup.WorkerCgroup.create(str(tmp_path), "fastrlm-x", MEMORY, 10)
    assert not stale.exists() and mine.exists()
    assert group.remove() and not Path(group.path).exists()


# ----------------------------------------------------------------- the worker in its cgroup
@pytest.fixture
async def started() -> AsyncIterator[list[WorkerSandbox]]:
    made: list[WorkerSandbox] = []
    yield made
    for sb in made:
        await sb.close()


async def start(made: list[WorkerSandbox], cgroups: _cgroup.Delegation | str | None
                ) -> WorkerSandbox:
    plan = _layers.LayerPlan("process", _layers.seccomp_problem() is None)
    sb = WorkerSandbox([plan], SandboxLimits(memory_bytes=MEMORY), cgroups=cgroups)
    made.append(sb)
    await sb.start(CONTEXT, FakeBridge())
    return sb


@pytest.mark.sandbox
async def test_each_worker_gets_its_own_cgroup_and_joins_it_before_the_first_request(
    tmp_path: Path, started: list[WorkerSandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen_at_first_send: list[list[int]] = []
    original = WorkerProcess.send

    async def send(self: WorkerProcess, message: dict[str, Any]) -> None:
        if not seen_at_first_send and self.cgroup is not None and message["op"] == "exec":
            seen_at_first_send.extend([self.cgroup.members(), [self.proc.pid]])
        await original(self, message)

    monkeypatch.setattr(WorkerProcess, "send", send)
    sb = await start(started, _cgroup.Delegation(str(tmp_path), "child"))
    (group,) = worker_cgroups(tmp_path)
    assert (group / "memory.max").read_text() == str(MEMORY)
    assert (group / "memory.swap.max").read_text() == "0"
    assert (group / "pids.max").read_text() == str(_cgroup.pids_limit())
    result = await sb.execute(f"open({str(group / 'cgroup.procs')!r}).read().split()")
    procs, pid = seen_at_first_send
    assert procs == pid  # in its cgroup before the first request that runs model code
    assert result.stdout.strip() == repr([str(sb.worker_pid)])
    assert sb.memory_enforcement.startswith("cgroup v2 per worker")
    await sb.close()
    assert worker_cgroups(tmp_path) == []


@pytest.mark.sandbox
async def test_a_hard_killed_worker_leaves_no_cgroup_behind(
    tmp_path: Path, started: list[WorkerSandbox]
) -> None:
    sb = await start(started, _cgroup.Delegation(str(tmp_path), "child"))
    (first,) = worker_cgroups(tmp_path)
    result = await sb.execute("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert result.restarted and "SIGKILL" in (result.error or "")
    (second,) = worker_cgroups(tmp_path)
    assert second != first and not first.exists()
    assert (await sb.execute("1 + 1")).stdout.strip() == "2"


@pytest.mark.sandbox
async def test_a_cgroup_oom_kill_is_told_to_the_model(
    tmp_path: Path, started: list[WorkerSandbox]
) -> None:
    sb = await start(started, _cgroup.Delegation(str(tmp_path), "child"))
    await sb.execute("kept = 1")
    (group,) = worker_cgroups(tmp_path)
    # What the kernel does when a cell passes memory.max: count the OOM kill, SIGKILL it.
    events = str(group / "memory.events")
    result = await sb.execute(
        f"open({events!r}, 'w').write('low 0\\nhigh 0\\nmax 12\\noom 1\\noom_kill 1\\n')\n"
        "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    )
    assert result.restarted
    assert "cgroup OOM killer" in (result.error or "")
    assert f"{MEMORY >> 20:,} MiB (Limits.worker_memory_mb)" in (result.error or "")
    assert not group.exists()
    assert "NameError" in ((await sb.execute("kept")).error or "")


def failing_write(step: str) -> Any:
    original = _cgroup._write

    def write(path: str, text: str) -> None:
        if os.path.basename(path) == step:
            raise PermissionError(13, "Permission denied", path)
        original(path, text)
        if step == "cgroup.procs" and path.endswith("pids.max"):
            # A dangling link into a missing directory: the shell's write fails.
            os.symlink("/nonexistent/fastrlm", os.path.join(os.path.dirname(path), step))

    return write


@pytest.mark.sandbox
@pytest.mark.parametrize("step", ["mkdir", "memory.max", "memory.swap.max", "pids.max",
                                  "cgroup.procs", "prepare"])
@pytest.mark.sandbox
async def test_a_failing_cgroup_step_falls_back_to_the_watchdog_and_says_why(
    step: str, tmp_path: Path, started: list[WorkerSandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    delegation = _cgroup.Delegation(str(tmp_path), "child")
    if step == "mkdir":
        delegation = _cgroup.Delegation(str(tmp_path / "missing"), "child")
    elif step == "prepare":
        (tmp_path / _cgroup.HOST_LEAF).write_text("a file where the leaf should go")
        delegation = _cgroup.Delegation(str(tmp_path), "leaf")
    else:
        monkeypatch.setattr(_cgroup, "_write", failing_write(step))
    sb = await start(started, delegation)
    mechanism = sb.memory_enforcement
    assert mechanism.startswith("no cgroup (") and "watchdog" in mechanism
    expected = {"mkdir": "cannot create the worker cgroup", "prepare": "cannot move the host",
                "cgroup.procs": "could not join its cgroup"}.get(step, f"cannot write {step}")
    assert expected in mechanism
    assert (await sb.execute("1 + 1")).stdout.strip() == "2"
    if step != "prepare":
        assert worker_cgroups(tmp_path) == []


@pytest.mark.sandbox
async def test_a_worker_that_never_joined_its_cgroup_is_replaced_by_a_watchdog_one(
    tmp_path: Path, started: list[WorkerSandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_cgroup, "PLACE_SCRIPT", 'shift; exec "$@"')
    sb = await start(started, _cgroup.Delegation(str(tmp_path), "child"))
    assert "is not in" in sb.memory_enforcement and "cgroup.procs" in sb.memory_enforcement
    assert worker_cgroups(tmp_path) == []
    assert (await sb.execute("1 + 1")).stdout.strip() == "2"


@pytest.mark.sandbox
async def test_on_this_host_without_cgroup_v2_doctor_and_sandbox_say_the_watchdog_is_used(
    started: list[WorkerSandbox],
) -> None:
    problem = _layers.cgroup_problem()
    if problem is None:
        pytest.skip("this host delegates a cgroup v2 memory controller")
    memory = {s.name: s.reason for s in doctor_report()}["memory"]
    assert memory.startswith(f"no cgroup ({problem})") and "watchdog" in memory
    sb = await start(started, None)
    assert sb.memory_enforcement.startswith(f"no cgroup ({problem})")
