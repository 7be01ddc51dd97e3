"""When the host dies (SIGKILL, no cleanup), its workers die too, even one spinning in a loop
that ignores SIGALRM and never reads its pipe."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import textwrap

import pytest

from .helpers import skip_unless_available

pytestmark = pytest.mark.sandbox

HOST = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from fastrlm.sandbox import create_sandbox
    from fastrlm.sandbox._watchdog import descendants

    class DyingBridge:
        async def llm_query_batched(self, prompts, model):
            print(*descendants(os.getpid())[1:], flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        async def rlm_query_batched(self, prompts, contexts, model):
            return []

    async def main():
        sb = create_sandbox(sys.argv[1])
        await sb.start("context", DyingBridge())
        await sb.execute(
            "import os, signal, threading\\n"
            "signal.signal(signal.SIGALRM, signal.SIG_IGN)\\n"
            "os._exit = lambda code: None\\n"  # the thread's EOF exit must not end the worker
            "threading.Thread(target=llm_query, args=('die',)).start()\\n"
            "while True: pass"
        )

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("kind", ["bwrap", "landlock", "process", "docker"])
def test_workers_die_with_a_killed_host(kind: str) -> None:
    """docker: the host's child is the run command; the container guard (a process of its
    own) removes the container, whose worker spins, and that ends the run command."""
    skip_unless_available(kind)
    host = subprocess.run(
        [sys.executable, "-c", HOST, kind], capture_output=True, text=True, timeout=60
    )
    assert host.returncode == -9, host.stderr
    pids = [int(p) for p in host.stdout.split()]
    assert pids, "the host saw no worker process"
    for pid in pids:
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue  # already gone
        try:
            ready, _, _ = select.select([pidfd], [], [], 10.0)
            assert ready, f"worker process {pid} outlived its host"
        finally:
            os.close(pidfd)
