"""A session never closed (``rlm.session()`` without ``with``, compat ``persistent=True``
without ``close()``) does not hang the interpreter at exit: its worker is killed without
waiting, no process of it is left, and a ResourceWarning says so. Each case runs in a child
interpreter that asks once and exits with the session still open."""

from __future__ import annotations

import gc
import os
import select
import subprocess
import sys
import textwrap

import pytest

from fastrlm.sandbox._watchdog import descendants
from fastrlm.testing import skip_unless_sandbox

PRELUDE = """
import asyncio, os, sys

# one pass over /proc/*/stat: a thread that ends mid-scan cannot fail it
from fastrlm.sandbox._watchdog import descendants

REPLY = "```repl\\nFINAL('ok')\\n```"
kind = sys.argv[1]
"""

SCRIPTS = {
    "sync": """
from fastrlm import RLM
from fastrlm.testing import ScriptedLM
session = RLM(ScriptedLM(lambda m: REPLY), sandbox=kind).session()
print(session.ask("q", context="c").answer)
print(*descendants(os.getpid())[1:], flush=True)
""",
    "async": """
from fastrlm import RLM
from fastrlm.testing import ScriptedLM

async def main():
    session = RLM(ScriptedLM(lambda m: REPLY), sandbox=kind).session()
    print((await session.aask("q", context="c")).answer)
    print(*descendants(os.getpid())[1:], flush=True)
    return session

kept = asyncio.run(main())
""",
    "compat": """
from fastrlm.compat.rlms import RLM
from fastrlm.testing import FakeOpenAIServer
server = FakeOpenAIServer(default=REPLY).__enter__()
rlm = RLM(backend_kwargs={"model_name": "fake-model", "base_url": server.base_url,
                          "api_key": "sk-fake"}, persistent=True, sandbox=kind)
print(rlm.completion("c", root_prompt="q").response)
print(*descendants(os.getpid())[1:], flush=True)
""",
}



def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie not yet reaped by init counts as exited): waits on
    its pidfd, with a generous bound only as a safety net."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], 30.0)[0])
    finally:
        os.close(fd)


@pytest.mark.parametrize("kind", ["none", "bwrap", "landlock", "docker"])
@pytest.mark.parametrize("form", ["sync", "async", "compat"])
def test_unclosed_session_exits_promptly_kills_its_worker_and_warns(form: str, kind: str) -> None:
    skip_unless_sandbox(kind)
    script = textwrap.dedent(PRELUDE) + textwrap.dedent(SCRIPTS[form])
    done = subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", "-c", script, kind],
        capture_output=True, text=True, timeout=60,  # a safety net: the check is that it exits
    )
    assert done.returncode == 0, done.stderr
    answer, pids = done.stdout.splitlines()
    assert answer == "ok"
    assert "ResourceWarning: fastrlm session" in done.stderr
    assert "was never closed" in done.stderr
    assert "Task was destroyed" not in done.stderr
    if kind != "none":
        assert pids, "the isolated worker should be a child process"
    assert [pid for pid in map(int, pids.split()) if not _gone(pid)] == []


def test_a_closed_session_is_not_warned_about() -> None:
    script = textwrap.dedent(PRELUDE) + textwrap.dedent("""
        from fastrlm import RLM
        from fastrlm.testing import ScriptedLM
        with RLM(ScriptedLM(lambda m: REPLY), sandbox="none").session() as session:
            print(session.ask("q", context="c").answer)
    """)
    done = subprocess.run([sys.executable, "-W", "always::ResourceWarning", "-c", script, "none"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert "ResourceWarning" not in done.stderr


def _children() -> list[int]:
    return descendants(os.getpid())[1:]


@pytest.mark.parametrize("kind", ["bwrap", "landlock", "docker"])
def test_a_dropped_session_is_reclaimed_when_collected(kind: str) -> None:
    skip_unless_sandbox(kind)
    from fastrlm import RLM
    from fastrlm.testing import ScriptedLM

    before = set(_children())
    session = RLM(ScriptedLM(lambda m: "```repl\nFINAL('ok')\n```"), sandbox=kind).session()
    assert session.ask("q", context="c").answer == "ok"
    workers = set(_children()) - before
    assert workers
    with pytest.warns(ResourceWarning, match="was never closed"):
        del session
        gc.collect()
    assert [pid for pid in workers if not _gone(pid)] == []
