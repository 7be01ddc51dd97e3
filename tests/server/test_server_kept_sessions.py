"""Kept sessions (RLMServer(keep_sessions=DIR), `fastrlm serve --keep-sessions DIR`): a session
goes on after the server restarts, rebuilt from its run records (no model asked again for a
recorded turn), only for the key that made it; what cannot be rebuilt is told, never faked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from fastrlm import RLM, ConfigurationError
from fastrlm.server import RLMServer
from fastrlm.testing import FakeOpenAIServer, Fault, ScriptedLM
from fastrlm.testing._fake_server import FakeRequest, Reply

from .helpers import serving

SET = "```repl\nx = 41\nFINAL('set')\n```"
READ = "```repl\nFINAL(str(globals().get('x')) + '|' + str(len(context)))\n```"


def _root() -> ScriptedLM:
    def reply(messages: list[dict[str, str]]) -> str:
        return READ if "read" in messages[-1]["content"] else SET
    return ScriptedLM(reply, model="scripted/root")


async def _answer(client: openai.AsyncOpenAI, question: str, session: str,
                  context: Any = None) -> str:
    extra: dict[str, Any] = {"fastrlm": {"session": session}}
    if context is not None:
        extra["context"] = context
    reply = await client.chat.completions.create(
        model="rlm", messages=[{"role": "user", "content": question}], extra_body=extra)
    return str(reply.choices[0].message.content)


def _code(error: openai.APIStatusError) -> object:
    body = error.body
    return body.get("code") if isinstance(body, dict) else None


async def _first_life(keep: Path, *, key: str = "alice-key") -> None:
    """A session made, given two contexts, then the server shut down."""
    async with serving(_root(), keep_sessions=keep, client_key=key) as (_server, client):
        assert await _answer(client, "set it", "s1", "first") == "set"
        assert await _answer(client, "read it", "s1", ["a", "b", "c"]) == "41|3"


async def test_a_kept_session_goes_on_after_a_restart_and_replays_for_free(
        tmp_path: Path) -> None:
    await _first_life(tmp_path / "kept")
    again = _root()
    async with serving(again, keep_sessions=tmp_path / "kept",
                       client_key="alice-key") as (server, client):
        # the REPL's x and the latest context (the second question's) are back
        assert await _answer(client, "read once more", "s1") == "41|3"
        assert len(again.calls) == 1  # only the new question reached the model
        assert len(server.sessions) == 1


async def test_a_kept_session_is_resumed_only_for_the_key_that_made_it(tmp_path: Path) -> None:
    await _first_life(tmp_path / "kept")
    async with serving(_root(), keep_sessions=tmp_path / "kept",
                       client_key="bob-key") as (server, bob):
        # bob's "s1" is his own new session: alice's REPL is not rebuilt for him
        assert await _answer(bob, "read it", "s1", "xy") == "None|2"
        alice = openai.AsyncOpenAI(base_url=server.base_url, api_key="alice-key",
                                   max_retries=0)
        try:
            assert await _answer(alice, "read it", "s1") == "41|3"
        finally:
            await alice.close()
    folders = sorted(p.name for p in (tmp_path / "kept").iterdir())
    assert len(folders) == 2 and "alice-key" not in json.dumps(folders)  # digests, not keys


async def test_a_kept_session_that_cannot_be_rebuilt_gets_410_then_starts_anew(
        tmp_path: Path) -> None:
    await _first_life(tmp_path / "kept")
    [state] = (tmp_path / "kept").glob("*/*/session.json")
    state.write_text("{not json")
    async with serving(_root(), keep_sessions=tmp_path / "kept",
                       client_key="alice-key") as (_server, client):
        with pytest.raises(openai.APIStatusError) as lost:
            await _answer(client, "read it", "s1")
        assert (lost.value.status_code, _code(lost.value)) == (410, "session_lost")
        assert "cannot be read" in str(lost.value) and "anew" in str(lost.value)
        assert await _answer(client, "read it", "s1", "abcd") == "None|4"  # a fresh one


async def test_a_kept_session_whose_records_are_gone_is_lost_not_faked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await _first_life(tmp_path / "kept")
    monkeypatch.setenv("FASTRLM_HOME", str(tmp_path / "another-home"))  # the traces moved
    async with serving(_root(), keep_sessions=tmp_path / "kept",
                       client_key="alice-key") as (_server, client):
        with pytest.raises(openai.APIStatusError) as lost:
            await _answer(client, "read it", "s1")
        assert (lost.value.status_code, _code(lost.value)) == (410, "session_lost")
        assert "no recorded session" in str(lost.value)
    assert not list((tmp_path / "kept").glob("*/*"))  # forgotten


async def test_a_kept_session_idle_past_the_limit_while_down_is_closed(tmp_path: Path) -> None:
    await _first_life(tmp_path / "kept")
    [state] = (tmp_path / "kept").glob("*/*/session.json")
    kept = json.loads(state.read_text())
    state.write_text(json.dumps({**kept, "used": time.time() - 3600}))
    async with serving(_root(), keep_sessions=tmp_path / "kept", session_idle_s=60,
                       client_key="alice-key") as (_server, client):
        with pytest.raises(openai.APIStatusError) as closed:
            await _answer(client, "read it", "s1")
        assert (closed.value.status_code, _code(closed.value)) == (410, "session_closed")
        assert "--session-idle-s" in str(closed.value)


async def test_a_session_closed_for_a_reason_is_forgotten_on_disk(tmp_path: Path) -> None:
    keep = tmp_path / "kept"
    async with serving(_root(), keep_sessions=keep, max_sessions=1) as (_server, client):
        assert await _answer(client, "set it", "s1", "first") == "set"
        assert len(list(keep.glob("*/*/context_0.json"))) == 1
        assert await _answer(client, "set it", "s2", "second") == "set"  # s1 evicted
        [left] = keep.glob("*/*/session.json")
        assert json.loads(left.read_text())["id"] == "s2"


async def test_kept_contexts_are_private_files(tmp_path: Path) -> None:
    keep = tmp_path / "kept"
    await _first_life(keep)
    [folder] = keep.glob("*/*")
    assert folder.stat().st_mode & 0o077 == 0
    for path in folder.iterdir():
        assert path.stat().st_mode & 0o077 == 0
    assert json.loads((folder / "context_1.json").read_text()) == ["a", "b", "c"]


def test_keeping_sessions_needs_traces_on_disk(tmp_path: Path) -> None:
    rlm = RLM(_root(), ScriptedLM(lambda m: "sub", model="scripted/sub"), sandbox="none")
    with pytest.raises(ConfigurationError, match="--no-trace"):
        RLMServer(rlm, keep_sessions=tmp_path / "kept")


class _Upstream:
    """Root turns: "set" asks a sub-call and keeps its reply in x, "read" shows x, "HANG"
    stalls the first time (then answers). Sub-calls echo."""

    def __init__(self) -> None:
        self.hanging = threading.Event()

    def __call__(self, request: FakeRequest) -> Reply:
        if not request.is_root:
            return "sub:" + request.prompt[:8]
        asked = request.prompt
        if "HANG" in asked:
            if not self.hanging.is_set():
                self.hanging.set()
                return Fault.stall(60)
            return "```repl\nFINAL('done')\n```"
        if "read" in asked:
            return "```repl\nFINAL(str(globals().get('x')))\n```"
        return "```repl\nx = llm_query('remember ' + context[:5])\nFINAL('set')\n```"


def _start_serving(fake: FakeOpenAIServer, keep: Path, home: Path) -> tuple[Any, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastrlm.cli", "serve", "--port", "0", "--model",
         "openai/root-model", "--sub-model", "openai/sub-model", "--base-url", fake.base_url,
         "--sandbox", "none", "--keep-sessions", str(keep)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "FASTRLM_HOME": str(home), "OPENAI_API_KEY": "upstream"},
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "listening on " in line:
            return proc, line.split("listening on ", 1)[1].split(" ", 1)[0]
    pytest.fail(f"the server never listened (exit {proc.wait()})")


def _stop(proc: Any) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    proc.stderr.close()


def _ask_sync(url: str, key: str, question: str, context: str | None = None) -> str:
    extra: dict[str, Any] = {"fastrlm": {"session": "s1"}}
    if context is not None:
        extra["context"] = context
    with openai.OpenAI(base_url=url, api_key=key, max_retries=0) as client:
        reply = client.chat.completions.create(
            model="rlm", messages=[{"role": "user", "content": question}], extra_body=extra)
    return str(reply.choices[0].message.content)


def test_a_session_goes_on_after_the_server_is_sigkilled_mid_question(tmp_path: Path) -> None:
    upstream = _Upstream()
    keep, home = tmp_path / "kept", tmp_path / "home"
    with FakeOpenAIServer(handler=upstream) as fake:
        proc, url = _start_serving(fake, keep, home)
        try:
            assert _ask_sync(url, "alice", "set it", "first stuff") == "set"
            cut: list[BaseException] = []

            def hang() -> None:
                try:
                    _ask_sync(url, "alice", "HANG here")
                except openai.APIError as exc:  # the server dies under it
                    cut.append(exc)

            thread = threading.Thread(target=hang)
            thread.start()
            assert upstream.hanging.wait(timeout=60)  # the question is in flight: kill now
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
            thread.join(timeout=60)
            assert cut
        finally:
            _stop(proc)
        before = len(fake.completion_requests)
        proc, url = _start_serving(fake, keep, home)
        try:
            # the first question (a root turn and a sub-call) is replayed from its record;
            # the one cut off goes on from it: its root turn (never answered) is asked again
            assert _ask_sync(url, "alice", "read it") == "sub:remember"
            again = fake.completion_requests[before:]
            assert [r.prompt for r in again if not r.is_root] == []
            assert ["HANG" in r.prompt or "read" in r.prompt for r in again] == [True, True]
            # another key's "s1" is its own fresh session
            assert _ask_sync(url, "bob", "read it", "bob's") == "None"
        finally:
            _stop(proc)


async def test_a_request_waiting_on_a_session_that_fails_to_rebuild_is_told_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from fastrlm import Session
    from fastrlm.server import _sessions
    from fastrlm.trace import ReplayError

    await _first_life(tmp_path / "kept")
    release = asyncio.Event()
    rebuilding = asyncio.Event()

    async def failing_resume(self: Session, *args: Any, **kwargs: Any) -> list[Any]:
        rebuilding.set()
        await release.wait()
        raise ReplayError("a cell printed something else")

    monkeypatch.setattr(Session, "aresume", failing_resume)
    waiting = asyncio.Event()
    close_sessions = _sessions._close_sessions

    async def watched(sessions: list[Session]) -> None:
        # the last step of a request before it waits for the session's lock (no await
        # between): called while the first request is rebuilding, it is the second's
        await close_sessions(sessions)
        if rebuilding.is_set():
            waiting.set()

    monkeypatch.setattr(_sessions, "_close_sessions", watched)
    async with serving(_root(), keep_sessions=tmp_path / "kept",
                       client_key="alice-key") as (_server, client):
        first = asyncio.create_task(_answer(client, "read it", "s1"))
        await rebuilding.wait()
        second = asyncio.create_task(_answer(client, "read it", "s1"))
        await waiting.wait()  # the second request now waits for the session's lock
        release.set()
        told = []
        for task in (first, second):
            with pytest.raises(openai.APIStatusError) as lost:
                await task
            assert (lost.value.status_code, _code(lost.value)) == (410, "session_lost")
            told.append(str(lost.value))
        assert "something else" in told[0] and "could not be rebuilt" in told[1]
        assert await _answer(client, "read it", "s1", "abc") == "None|3"  # anew after


def test_kept_sessions_nobody_came_back_for_are_pruned_live_ones_kept(tmp_path: Path) -> None:
    from fastrlm.server._sessions import KeptSessions

    kept = KeptSessions(tmp_path / "kept")
    old, fresh, live = (kept.new("owner", name, "s-x") for name in ("old", "fresh", "live"))
    for stale in (old, live):
        stale.used = time.time() - 3600
    for each in (old, fresh, live):
        each.save()
    (kept.folder("owner", "bad") / "session.json").parent.mkdir()
    (kept.folder("owner", "bad") / "session.json").write_text("{")
    assert kept.prune(60, {live.folder}) == [("owner", "old")]
    left = {kept.folder("owner", name).name for name in ("fresh", "live", "bad")}
    assert {p.name for p in (tmp_path / "kept" / "owner").iterdir()} == left


async def test_a_drop_in_session_is_kept_too(tmp_path: Path) -> None:
    keep = tmp_path / "kept"

    async def ask(client: openai.AsyncOpenAI, question: str) -> str:
        reply = await client.chat.completions.create(
            model="rlm", messages=[{"role": "user", "content": question}],
            extra_body={"fastrlm": {"session": "chat"}})  # no context: the conversation is
        return str(reply.choices[0].message.content)

    async with serving(_root(), keep_sessions=keep) as (_server, client):
        assert await ask(client, "set it") == "set"
    again = _root()
    async with serving(again, keep_sessions=keep) as (_server, client):
        assert await ask(client, "read it") == "41|12"  # "user: set it", the first context
        assert len(again.calls) == 1


async def test_a_session_whose_state_cannot_be_written_is_served_unkept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from fastrlm.server import _sessions

    written = 0
    write_whole = _sessions._write_whole

    def full_disk(path: Path, text: str) -> None:
        nonlocal written
        written += 1
        if written > 1:  # the session's first state is written, its context is not
            raise OSError(28, "No space left on device")
        write_whole(path, text)

    monkeypatch.setattr(_sessions, "_write_whole", full_disk)
    keep = tmp_path / "kept"
    async with serving(_root(), keep_sessions=keep) as (_server, client):
        assert await _answer(client, "set it", "s1", "first") == "set"
        assert await _answer(client, "read it", "s1") == "41|5"  # served on, not retried
    assert written == 2
    assert not list(keep.glob("*/*"))  # nothing half kept for a restart to trip on
    assert "no longer kept" in caplog.text and "No space left" in caplog.text
