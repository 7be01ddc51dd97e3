"""`fastrlm serve` forks each request's sandbox worker from one warm process (issue 31): every
request still gets a fresh worker that holds nothing of the one before, sessions keep theirs,
and a server without a warm process (cold workers, or one that died) answers the same."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import openai
import pytest

from fastrlm.testing import ScriptedLM, skip_unless_sandbox

from .helpers import serving

SET = "```repl\nsecret = 'hunter2'\nopen('left.txt', 'w').write('hunter2')\nFINAL('set')\n```"
READ = ("```repl\nimport os\nFINAL(str(globals().get('secret')) + '|' + "
        "str(os.path.exists('left.txt')) + '|' + context)\n```")


def _root() -> ScriptedLM:
    def reply(messages: list[dict[str, str]]) -> str:
        return READ if "read it" in messages[-1]["content"] else SET
    return ScriptedLM(reply, model="scripted/root")


async def _answer(client: openai.AsyncOpenAI, question: str, context: str,
                  session: str | None = None) -> str:
    extra: dict[str, Any] = {"context": context}
    if session is not None:
        extra["fastrlm"] = {"session": session}
    reply = await client.chat.completions.create(
        model="rlm", messages=[{"role": "user", "content": question}], extra_body=extra)
    return str(reply.choices[0].message.content)


async def test_a_request_cannot_read_the_previous_requests_variables_or_files() -> None:
    skip_unless_sandbox("auto")
    async with serving(_root(), sandbox="auto") as (server, client):
        warm = server._warm.warm if server._warm is not None else None
        if warm is None:
            pytest.skip(f"no warm worker here: {server._warm.problem if server._warm else ''}")
        assert await _answer(client, "set it", "first") == "set"
        assert await _answer(client, "read it", "second") == "None|False|second"
        # concurrent requests: each its own worker, none sees another's secret
        answers = await asyncio.gather(*(
            _answer(client, "set it" if i % 2 else "read it", f"c{i}") for i in range(8)))
        assert [a for i, a in enumerate(answers) if i % 2 == 0] == [
            f"None|False|c{i}" for i in range(0, 8, 2)]
        assert warm.forks == 10


async def test_a_session_keeps_its_forked_worker_and_another_key_never_sees_it() -> None:
    skip_unless_sandbox("auto")
    async with serving(_root(), sandbox="auto") as (server, alice):
        if server._warm is None or server._warm.warm is None:
            pytest.skip("no warm worker here")
        bob = openai.AsyncOpenAI(base_url=server.base_url, api_key="bob", max_retries=0)
        try:
            assert await _answer(alice, "set it", "a", session="s") == "set"
            assert (await _answer(alice, "read it", "b", session="s")).startswith("hunter2|")
            assert await _answer(bob, "read it", "c", session="s") == "None|False|c"
        finally:
            await bob.close()


async def test_a_dead_warm_process_leaves_the_server_answering_with_cold_workers() -> None:
    skip_unless_sandbox("auto")
    async with serving(_root(), sandbox="auto") as (server, client):
        held = server._warm
        if held is None or held.warm is None or held.warm._proc is None:
            pytest.skip("no warm worker here")
        os.killpg(held.warm._proc.pid, signal.SIGKILL)
        held.warm._proc.wait(30)
        assert await _answer(client, "read it", "after") == "None|False|after"


async def test_cold_workers_answer_the_same() -> None:
    skip_unless_sandbox("auto")
    async with serving(_root(), sandbox="auto", warm_workers=False) as (server, client):
        assert server._warm is None
        assert await _answer(client, "set it", "x") == "set"
        assert await _answer(client, "read it", "y") == "None|False|y"


async def test_sessions_holding_workers_past_the_run_slots_each_keep_their_whole_scratch() -> None:
    """Under bubblewrap the forked workers share the warm process's /tmp: a key whose sessions
    fill their scratch up to the quota must not leave another key's run without its own."""
    from fastrlm import Limits

    skip_unless_sandbox("auto")
    fill = "```repl\nopen('f.bin', 'wb').write(bytes(6 * 2**20))\nFINAL('filled')\n```"

    def reply(messages: list[dict[str, str]]) -> str:
        return fill if "fill" in messages[-1]["content"] else SET

    async with serving(ScriptedLM(reply, model="scripted/root"), sandbox="auto",
                       limits=Limits(scratch_mb=8), max_concurrent_runs=1,
                       max_sessions=4) as (server, client):
        if server._warm is None or server._warm.warm is None:
            pytest.skip("no warm worker here")
        for session in ("a", "b", "c"):  # three kept workers, each near its quota
            assert await _answer(client, "fill it", "x", session=session) == "filled"
        assert await _answer(client, "fill it", "y") == "filled"  # and one more run
