"""The container layer (docker, podman): its command line, its image checks, ``auto``'s choice,
and, where a daemon answers with a current image, containers that never outlive their worker
or their host."""

from __future__ import annotations

import asyncio
import os
import select
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from fastrlm import RLM, ContextError, SandboxUnavailableError
from fastrlm.sandbox import SandboxLimits, _container, _container_image, _layers, create_sandbox
from fastrlm.sandbox._worker import WorkerSandbox
from fastrlm.testing import ScriptedLM

from .helpers import CONTEXT, FakeBridge, assert_alive, skip_unless_available

IMAGE = _container.ImageInfo("img:tag", "sha256:abc", "/usr/bin/python3", "3.11.7", "digest")
LIMITS = _container.ContainerLimits(
    memory_bytes=256 << 20, scratch_bytes=64 << 20, scratch_files=300, pids=80, cpus=2.0,
    open_files=256,
)


def option(argv: list[str], name: str) -> list[str]:
    """Every value given to ``name`` in ``argv``."""
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == name]


# ------------------------------------------------------------------ without a daemon
def test_run_command_locks_the_container_down() -> None:
    container = _container.Container("docker", IMAGE)
    argv = container.run_argv(
        LIMITS, {"HOME": "/tmp", "USER_VAR": "1"}, ("/data/ctx",), '{"x": 1}'
    )
    container.release()
    assert not os.path.exists(container.workdir)
    assert argv[1:3] == ["run", "-i"]
    assert option(argv, "--network") == ["none"] and "--read-only" in argv
    assert option(argv, "--cap-drop") == ["ALL"]
    assert option(argv, "--security-opt") == ["no-new-privileges"]
    assert option(argv, "--user") == ["65534:65534"] and option(argv, "--ipc") == ["none"]
    assert option(argv, "--memory") == option(argv, "--memory-swap") == [str(256 << 20)]
    assert option(argv, "--pids-limit") == ["80"] and option(argv, "--cpus") == ["2"]
    assert option(argv, "--pull") == ["never"] and option(argv, "--ulimit") == ["nofile=256:256"]
    (tmpfs,) = option(argv, "--tmpfs")
    assert tmpfs.startswith("/tmp:") and f"size={64 << 20}" in tmpfs and "nr_inodes=316" in tmpfs
    assert option(argv, "--mount") == ["type=bind,source=/data/ctx,target=/data/ctx,readonly"]
    assert sorted(option(argv, "--env")) == ["HOME=/tmp", "USER_VAR=1"]
    labels = option(argv, "--label")
    assert f"{_container.LABEL}=1" in labels
    assert f"{_container.OWNER_LABEL}={_container.owner_tag()}" in labels
    assert option(argv, "--entrypoint") == ["/usr/bin/python3"]
    # the image is named by the id checked at start: a tag moved since cannot swap it
    entry = f"{_container.IMAGE_PACKAGE}/sandbox/_container_entry.py"
    assert argv[-8:] == ["sha256:abc", "-I", "-S", "-B", "-X", "utf8", entry, '{"x": 1}']


def test_owner_tags_name_live_and_dead_processes() -> None:
    assert not _container.owner_gone(_container.owner_tag())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    tag = _container.owner_tag(child.pid)
    child.wait()
    assert _container.owner_gone(tag)  # the process ended
    host, boot, pid, started = _container.owner_tag().split("/")
    assert _container.owner_gone(f"{host}/another-boot/{pid}/{started}")
    assert not _container.owner_gone(f"another-host/{boot}/1/0")  # not ours to judge
    assert not _container.owner_gone("garbage")  # an owner it cannot read: left alone


def test_an_image_with_other_worker_code_is_refused_with_the_command_to_rebuild(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_container, "server_version", lambda runtime: "28.0")
    monkeypatch.setattr(_container, "inspect_image", lambda runtime, name: IMAGE)
    monkeypatch.delenv(_container.IMAGE_ENV, raising=False)
    _container.ready_image.cache_clear()
    try:
        found = _container.ready_image("docker", _container.image_name())
    finally:
        _container.ready_image.cache_clear()
    assert isinstance(found, str)
    assert "other fastrlm worker code" in found and "fastrlm sandbox build" in found


@pytest.mark.parametrize("named", [False, True])
def test_an_image_is_pulled_only_when_the_user_names_it(
    monkeypatch: pytest.MonkeyPatch, named: bool
) -> None:
    pulled: list[str] = []

    def pull(runtime: str, name: str) -> str | None:
        pulled.append(name)
        return f"cannot pull {name}: no registry answers"

    monkeypatch.setattr(_container, "server_version", lambda runtime: "28.0")
    monkeypatch.setattr(_container, "inspect_image", lambda runtime, name: (
        f"image {name} is not there (No such image): build it with `fastrlm sandbox build`"))
    monkeypatch.setattr(_container, "_pull", pull)
    if named:
        monkeypatch.setenv(_container.IMAGE_ENV, "registry.example/mine:1")
    else:
        monkeypatch.delenv(_container.IMAGE_ENV, raising=False)
    _container.ready_image.cache_clear()
    try:
        found = _container.ready_image("docker", _container.image_name())
    finally:
        _container.ready_image.cache_clear()
    assert isinstance(found, str)
    if named:  # the user named it: one pull, and why it failed
        assert pulled == ["registry.example/mine:1"] and "no registry answers" in found
    else:  # the default image is built locally, never fetched
        assert pulled == [] and "fastrlm sandbox build" in found


def test_a_missing_daemon_is_named_with_how_to_start_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_container, "server_version",
                        lambda runtime: ("the docker daemon does not answer (...): start it",))
    _container.ready_image.cache_clear()
    try:
        found = _container.ready_image("docker", _container.image_name())
    finally:
        _container.ready_image.cache_clear()
    assert isinstance(found, str) and "daemon does not answer" in found


def test_podman_with_crun_on_a_hybrid_cgroup_host_is_refused_saying_to_use_runc() -> None:
    why = _container.crun_refuses("crun", "hugetlb\n")
    assert why is not None and 'runtime = "runc"' in why and "containers.conf" in why
    assert _container.crun_refuses("runc", "hugetlb\n") is None  # runc works there
    assert _container.crun_refuses("crun", "\n") is None  # a v2 hierarchy with no controllers
    assert _container.crun_refuses("crun", None) is None  # not a hybrid host


def test_doctor_names_the_daemon_the_image_its_packages_and_the_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_container, "runtime_cli", lambda runtime: f"/usr/bin/{runtime}")
    monkeypatch.setattr(_container, "server_version", lambda runtime: "28.2.2")
    with_pandas = _container.ImageInfo("fastrlm-sandbox:latest", "sha256:0123456789abcdef",
                                       "/usr/bin/python3", "3.11.7", "d", "pandas==3.1.1,six==1")
    monkeypatch.setattr(_container, "ready_image", lambda runtime, name: with_pandas)
    works, line = _container.doctor_line("docker")
    assert works
    for part in ("daemon 28.2.2", "image fastrlm-sandbox:latest (0123456789ab", "Python 3.11.7",
                 "with pandas==3.1.1, six==1", "--network none", "read-only root",
                 "no capabilities", "no-new-privileges", "pids ", "CPUs", "10,000 files"):
        assert part in line, part
    monkeypatch.setattr(_container, "ready_image", lambda runtime, name: "image x is not there")
    assert _container.doctor_line("docker") == (False, "daemon 28.2.2; image x is not there")
    monkeypatch.setattr(_container, "server_version",
                        lambda runtime: ("the docker daemon does not answer: start it",))
    assert _container.doctor_line("docker") == (
        False, "the docker daemon does not answer: start it")
    monkeypatch.setattr(_container, "runtime_cli", lambda runtime: None)
    assert _container.doctor_line("podman") == (
        False, "podman is not installed (no podman on PATH)")


@pytest.fixture
def no_namespaces(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host where bubblewrap and Landlock cannot work (macOS, a locked-down Linux)."""
    monkeypatch.setattr(_layers, "bwrap_problem", lambda: "namespaces denied: (simulated)")
    monkeypatch.setattr(_layers, "landlock_problem", lambda: "the kernel has no Landlock")


def test_auto_picks_docker_only_where_no_namespace_layer_works(
    monkeypatch: pytest.MonkeyPatch, no_namespaces: None
) -> None:
    monkeypatch.setattr(_container, "problem",
                        lambda runtime: None if runtime == "docker" else "not installed")
    assert _layers.plans_for("auto") == [_layers.LayerPlan("docker", True)]
    monkeypatch.setattr(_container, "problem", lambda runtime: "no daemon answers")
    with pytest.raises(SandboxUnavailableError) as caught:
        _layers.plans_for("auto")
    assert "docker: no daemon answers" in str(caught.value)
    assert "fastrlm sandbox build" in str(caught.value)


def test_auto_does_not_ask_a_container_runtime_where_namespaces_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def asked(runtime: str) -> str | None:
        raise AssertionError(f"{runtime} was probed although a namespace layer works")

    monkeypatch.setattr(_layers, "bwrap_problem", lambda: None)
    monkeypatch.setattr(_container, "problem", asked)
    assert [plan.kind for plan in _layers.plans_for("auto")][0] == "bwrap"


def test_the_worker_code_digest_covers_what_the_worker_imports() -> None:
    files = {rel for rel, _ in _container._worker_files()}
    for needed in ("sandbox/_worker_main.py", "sandbox/_container_entry.py",
                   "sandbox/_runtime.py", "sandbox/_protocol.py", "_foundation/errors.py"):
        assert needed in files
    assert len(_container.worker_code_digest()) == 64


# ------------------------------------------------------------------ with a daemon
docker = pytest.mark.sandbox


def container_names() -> set[str]:
    listed = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label={_container.LABEL}", "--format",
         "{{.Names}}"], capture_output=True, text=True, timeout=60, check=True)
    return set(listed.stdout.split())


def exists(path: str) -> bool:
    return os.path.exists(path)


def worker_sandbox(**limits: float) -> WorkerSandbox:
    sandbox = create_sandbox("docker", SandboxLimits(**limits))  # type: ignore[arg-type]
    assert isinstance(sandbox, WorkerSandbox)
    return sandbox


@docker
async def test_containers_are_removed_after_a_hard_kill_and_at_close() -> None:
    skip_unless_available("docker")
    sb = worker_sandbox(exec_timeout_s=0.5, hard_grace_s=0.5)
    await sb.start(CONTEXT, FakeBridge())
    try:
        assert sb.layer == "docker+seccomp+rlimits"
        assert sb._worker is not None and sb._worker.container is not None
        first = sb._worker.container.name
        assert first in container_names()
        result = await sb.execute(
            "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True: pass")
        assert result.restarted
        assert sb._worker is not None and sb._worker.container is not None
        second = sb._worker.container.name
        names = container_names()
        assert first not in names and second in names
        await assert_alive(sb)
    finally:
        await sb.close()
    assert second not in container_names()


KILLED_HOST = textwrap.dedent(
    """
    import asyncio, os, signal
    from fastrlm.sandbox import _container, create_sandbox

    class DyingBridge:
        sandbox = None

        async def llm_query_batched(self, prompts, model):
            container = self.sandbox._worker.container
            print(container.name, container.workdir, flush=True)
            # its guard dies too (a killed session, a crash): only the next start can clean up
            os.kill(_container.guards["docker"], signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)

        async def rlm_query_batched(self, prompts, contexts, model):
            return []

    async def main():
        bridge = DyingBridge()
        bridge.sandbox = sb = create_sandbox("docker")
        await sb.start("context", bridge)
        await sb.execute(
            "import signal, threading\\n"
            "signal.signal(signal.SIGALRM, signal.SIG_IGN)\\n"
            "threading.Thread(target=llm_query, args=('die',), daemon=True).start()\\n"
            "while True: pass"
        )

    asyncio.run(main())
    """
)


@docker
async def test_a_container_left_by_a_killed_host_is_reaped_by_the_next_start() -> None:
    skip_unless_available("docker")
    host = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", KILLED_HOST], capture_output=True, text=True,
        timeout=90)
    assert host.returncode == -9, host.stderr
    left, workdir = host.stdout.split()
    assert left.startswith("fastrlm-") and "fastrlm-container-" in workdir
    # its worker spins and its guard is dead: only a start reaps it (this one, or, with tests
    # in parallel, another process's that came first)
    sb = worker_sandbox()
    await sb.start(CONTEXT, FakeBridge())
    try:
        assert left not in container_names()
        assert not exists(workdir)
        await assert_alive(sb)
    finally:
        await sb.close()


@docker
async def test_a_directory_context_is_bound_read_only() -> None:
    skip_unless_available("docker")
    with tempfile.TemporaryDirectory() as made:  # under /tmp, which every user may enter
        root = Path(made)
        (root / "notes.txt").write_text("inside")
        os.chmod(made, 0o700)
        if os.getuid() == 0:  # the worker is nobody: a root-only directory is refused, and why
            sb = worker_sandbox()
            with pytest.raises(ContextError, match="chmod -R o\\+rX"):
                await sb.start(root, FakeBridge())
        os.chmod(made, 0o755)
        sb = worker_sandbox()
        await sb.start(root, FakeBridge())
        try:
            result = await sb.execute("print(context['notes.txt'])")
            assert result.stdout.strip() == "inside", result.error
            result = await sb.execute(f"open({str(root / 'new')!r}, 'w')")
            assert result.error is not None and "Read-only file system" in result.error
            assert not (root / "new").exists()
        finally:
            await sb.close()


@docker
async def test_a_large_context_is_streamed_in_whole() -> None:
    skip_unless_available("docker")
    text = "é" + "x" * (32 << 20)
    sb = worker_sandbox()
    await sb.start(text, FakeBridge())
    try:
        result = await sb.execute("print(len(context), context[0], context.count('x'))")
        assert result.stdout.split() == [str(len(text)), "é", str(32 << 20)], result.error
    finally:
        await sb.close()


@docker
def test_rlm_runs_end_to_end_in_docker() -> None:
    skip_unless_available("docker")
    code = "FINAL(str(context.count('fox')) + ' ' + str(os.getuid()))"
    rlm = RLM(ScriptedLM([f"```repl\nimport os\n{code}\n```"]), sandbox="docker")
    result = rlm.completion("how many foxes?", CONTEXT)
    uid = _container.worker_user().partition(":")[0]  # nobody for a root host, not root
    assert result.answer == f"{CONTEXT.count('fox')} {uid}"


def test_a_missing_image_says_how_to_build_it() -> None:
    if _container.runtime_cli("docker") is None:
        pytest.skip("docker is not installed")
    found = _container.inspect_image("docker", "fastrlm-no-such-image:never")
    if isinstance(found, str) and "not there" not in found:
        pytest.skip(f"no docker daemon answers: {found}")
    assert isinstance(found, str) and "fastrlm sandbox build" in found


# ------------------------------------------------------------------ the host's packages (--with)
def test_with_takes_a_package_and_what_it_requires_not_its_extras() -> None:
    pytest.importorskip("dateutil")
    files, versions = _container_image.package_files(("dateutil",))  # a module name
    names = [v.partition("==")[0].lower() for v in versions]
    assert names == ["python-dateutil", "six"]  # six: python-dateutil requires it
    rels = {rel for _, rel in files}
    assert "dateutil/parser/_parser.py" in rels and "six.py" in rels
    # the bytecode beside each module (the image is read-only: nothing is compiled at start)
    assert any(rel.startswith("dateutil/__pycache__/") for rel in rels)
    assert not any(rel.startswith("..") for rel in rels)  # scripts outside site-packages


def test_with_an_uninstalled_package_says_how_to_get_it() -> None:
    with pytest.raises(SandboxUnavailableError, match="pip install it here first"):
        _container_image.package_files(("fastrlm-no-such-package",))


def test_with_on_a_base_image_is_refused_saying_what_to_do_instead() -> None:
    with pytest.raises(SandboxUnavailableError, match="install them in the base image"):
        _container_image.build_image("docker", "x:y", "python:3.11-slim", "python3", ("six",))


@docker
async def test_a_package_built_in_with_with_imports_in_the_container(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    skip_unless_available("docker")
    pytest.importorskip("six")
    name = f"fastrlm-test-with:{os.getpid()}"
    info = await asyncio.to_thread(_container_image.build_image, "docker", name, None, "python3",
                                   ("six",))
    try:
        assert info.packages.startswith("six==")
        monkeypatch.setenv(_container.IMAGE_ENV, name)
        _container.ready_image.cache_clear()
        sb = worker_sandbox()
        await sb.start(CONTEXT, FakeBridge())
        try:
            result = await sb.execute("import six\nprint(six.__file__)")
            assert result.stdout.strip() == f"{_container.IMAGE_SITE}/six.py", result.error
        finally:
            await sb.close()
    finally:
        _container.ready_image.cache_clear()
        await asyncio.to_thread(subprocess.run, ["docker", "rmi", "-f", name],
                                capture_output=True, timeout=60, check=False)


@docker
def test_auto_on_a_host_without_namespaces_runs_the_rlm_in_docker(no_namespaces: None) -> None:
    skip_unless_available("docker")
    code = "FINAL(str(context.count('fox')) + ' ' + str(os.getuid()))"
    events: list[object] = []
    rlm = RLM(ScriptedLM([f"```repl\nimport os\n{code}\n```"]), sandbox="auto",
              on_event=events.append)
    result = rlm.completion("how many foxes?", CONTEXT)
    uid = _container.worker_user().partition(":")[0]  # nobody for a root host, not root
    assert result.answer == f"{CONTEXT.count('fox')} {uid}", result.error
    assert any("docker+seccomp+rlimits" in repr(event) for event in events)


def test_the_guard_waits_for_its_host_whatever_fd_its_pipe_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard removes a killed host's containers when the host's pipe closes, and not
    before. Its pipe had the host's fd number, which Debian's sh (dash) cannot redirect from
    past 9: in a host with ten fds open the guard exited at once ("Bad fd number"), so a
    SIGKILLed host left its containers until the next start. No daemon: a fake CLI records."""
    record = tmp_path / "calls"
    cli = tmp_path / "docker"
    cli.write_text(f'#!/bin/sh\necho "$@" >> {record}\n[ "$1" = ps ] && echo c0ffee\nexit 0\n')
    cli.chmod(0o755)
    monkeypatch.setattr(_container, "runtime_cli", lambda runtime: str(cli))
    monkeypatch.setattr(_container, "guards", {})
    monkeypatch.setattr(_container, "_guard_fds", [])
    spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(12)]  # the pipe gets fds >= 12
    try:
        _container.guard("docker")
    finally:
        for fd in spare:
            os.close(fd)
    pid = _container.guards["docker"]
    pidfd = os.pidfd_open(pid)
    try:
        # the old guard ended by itself at once; this one waits (a bound, not a timing)
        assert select.select([pidfd], [], [], 1.0)[0] == [], record.read_text()
        assert not record.exists()
        for fd in _container._guard_fds:  # the host ends: its end of the pipe closes
            os.close(fd)
        assert select.select([pidfd], [], [], 60.0)[0] == [pidfd]
    finally:
        os.close(pidfd)
    calls = record.read_text().splitlines()
    assert calls[0].startswith("ps -aq --filter label=") and calls[1] == "rm -f c0ffee"
