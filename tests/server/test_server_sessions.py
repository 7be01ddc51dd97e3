"""Sessions over HTTP: extra_body={"fastrlm": {"session": id}} keeps one REPL per (API key,
id), bounded in number and size, closed when idle, never shared across keys."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

from fastrlm.testing import ScriptedLM

from .helpers import serving

SET = "```repl\nx = 41\nFINAL('set')\n```"
READ = "```repl\nFINAL(str(globals().get('x')) + '|' + str(len(context)))\n```"


def _root() -> ScriptedLM:
    def reply(messages: list[dict[str, str]]) -> str:
        return READ if "read" in messages[-1]["content"] else SET
    return ScriptedLM(reply, model="scripted/root")


def _ask(client: openai.AsyncOpenAI, question: str, session: str | None,
         context: Any = "ctx") -> Any:
    extra: dict[str, Any] = {"context": context} if context is not None else {}
    if session is not None:
        extra["fastrlm"] = {"session": session}
    return client.chat.completions.create(
        model="rlm", messages=[{"role": "user", "content": question}], extra_body=extra)


async def _answer(client: openai.AsyncOpenAI, question: str, session: str | None,
                  context: Any = "ctx") -> str:
    reply = await _ask(client, question, session, context)
    return str(reply.choices[0].message.content)


async def test_a_session_keeps_variables_and_adds_contexts() -> None:
    async with serving(_root()) as (server, client):
        assert await _answer(client, "set it", "s1", "first") == "set"
        assert await _answer(client, "read it", "s1", ["a", "b", "c"]) == "41|3"
        assert await _answer(client, "read again", "s1", None) == "41|3"
        assert await _answer(client, "read it", None) == "None|3"  # no session: fresh
        assert len(server.sessions) == 1


async def test_the_same_id_under_two_api_keys_is_two_sessions() -> None:
    async with serving(_root()) as (server, alice):
        bob = openai.AsyncOpenAI(base_url=server.base_url, api_key="bob-key", max_retries=0)
        try:
            assert await _answer(alice, "set it", "shared-id") == "set"
            assert await _answer(bob, "read it", "shared-id") == "None|3"
            assert await _answer(alice, "read it", "shared-id") == "41|3"
        finally:
            await bob.close()
        assert len(server.sessions) == 2


async def test_the_pool_is_bounded_in_number_and_size() -> None:
    async with serving(_root(), max_sessions=1, max_session_chars=100) as (server, client):
        assert await _answer(client, "set it", "a") == "set"
        assert await _answer(client, "set it", "b") == "set"  # a was idle: closed for b
        with pytest.raises(openai.APIStatusError) as gone:
            await _answer(client, "read it", "a")  # says so, never a silent fresh REPL
        assert (gone.value.status_code, _code(gone.value)) == (410, "session_closed")
        assert "--max-sessions" in str(gone.value)
        assert await _answer(client, "read it", "a") == "None|3"  # asked again: a starts anew
        with pytest.raises(openai.APIStatusError) as raised:
            await _answer(client, "read it", "c", "x" * 500)
        assert raised.value.status_code == 413
        assert len(server.sessions) <= 1


def _code(error: openai.APIStatusError) -> object:
    body = error.body
    return body.get("code") if isinstance(body, dict) else None


def _client(server: Any, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key=key, max_retries=0)


async def test_one_key_never_evicts_another_keys_sessions() -> None:
    async with serving(_root(), max_sessions=2) as (server, alice):
        mallory = _client(server, "mallory-key")
        try:
            assert await _answer(alice, "set it", "mine") == "set"
            assert await _answer(alice, "set it", "also-mine") == "set"
            with pytest.raises(openai.RateLimitError) as full:  # no idle session of its own
                await _answer(mallory, "set it", "m1")
            assert _code(full.value) == "sessions_full"
            assert "2 sessions in all (--max-sessions)" in str(full.value)
            assert await _answer(alice, "read it", "mine") == "41|3"  # alice's REPLs intact
            assert await _answer(alice, "read it", "also-mine") == "41|3"
        finally:
            await mallory.close()
        assert len(server.sessions) == 2


async def test_one_keys_contexts_never_evict_another_keys_session() -> None:
    async with serving(_root(), max_session_chars=100) as (server, alice):
        bob = _client(server, "bob-key")
        try:
            assert await _answer(alice, "set it", "a", "x" * 60) == "set"
            with pytest.raises(openai.RateLimitError, match="max_session_chars"):
                await _answer(bob, "set it", "b", "y" * 60)
            assert await _answer(alice, "read it", "a", None) == "41|60"
        finally:
            await bob.close()


async def test_a_key_at_its_own_quota_closes_its_own_oldest_idle_session() -> None:
    async with serving(_root(), max_sessions=4, max_sessions_per_key=1) as (server, alice):
        bob = _client(server, "bob-key")
        try:
            assert await _answer(alice, "set it", "a") == "set"
            assert await _answer(bob, "set it", "b1") == "set"
            assert await _answer(bob, "set it", "b2") == "set"  # bob's b1 made room, not a
            assert await _answer(alice, "read it", "a") == "41|3"
            with pytest.raises(openai.APIStatusError) as gone:
                await _answer(bob, "read it", "b1")
            assert (gone.value.status_code, _code(gone.value)) == (410, "session_closed")
            assert "--max-sessions-per-key" in str(gone.value)
        finally:
            await bob.close()


async def test_one_key_closing_many_sessions_cannot_make_the_server_forget_anothers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from fastrlm.server import _sessions

    monkeypatch.setattr(_sessions, "REMEMBERED_PER_KEY", 2)
    async with serving(_root(), max_sessions=4, max_sessions_per_key=1) as (server, alice):
        mallory = _client(server, "mallory-key")
        try:
            assert await _answer(alice, "set it", "a1") == "set"
            assert await _answer(alice, "set it", "a2") == "set"  # a1 closed, remembered
            for n in range(6):  # each closes mallory's previous one
                assert await _answer(mallory, "set it", f"m{n}") == "set"
            with pytest.raises(openai.APIStatusError) as gone:
                await _answer(alice, "read it", "a1")
            assert gone.value.status_code == 410
        finally:
            await mallory.close()


async def test_a_streamed_request_for_a_closed_session_is_told_so() -> None:
    async with serving(_root(), max_sessions=1) as (_, client):
        assert await _answer(client, "set it", "a") == "set"
        assert await _answer(client, "set it", "b") == "set"
        with pytest.raises(openai.APIError, match="was closed"):
            stream = await client.chat.completions.create(
                model="rlm", messages=[{"role": "user", "content": "read it"}], stream=True,
                extra_body={"context": "ctx", "fastrlm": {"session": "a"}})
            async for _ in stream:
                pass


async def test_an_idle_session_is_closed() -> None:
    async with serving(_root(), session_idle_s=0.1) as (server, client):
        assert await _answer(client, "set it", "idle") == "set"
        for _ in range(600):  # the sweeper's own period; generous, never a timing assert
            if len(server.sessions) == 0:
                break
            await asyncio.sleep(0.05)
        assert len(server.sessions) == 0
        with pytest.raises(openai.APIStatusError) as gone:
            await _answer(client, "read it", "idle")
        assert gone.value.status_code == 410 and "idle (--session-idle-s)" in str(gone.value)
        assert await _answer(client, "read it", "idle") == "None|3"


@pytest.mark.parametrize("session", ["", "has space", "x" * 129, 5, "slash/id"])
async def test_a_bad_session_id_is_a_400(session: object) -> None:
    async with serving(_root()) as (_, client):
        with pytest.raises(openai.BadRequestError, match="fastrlm.session"):
            await client.chat.completions.create(
                model="rlm", messages=[{"role": "user", "content": "q"}],
                extra_body={"context": "c", "fastrlm": {"session": session}})


async def test_a_streamed_request_uses_its_session_too() -> None:
    async with serving(_root()) as (_, client):
        assert await _answer(client, "set it", "st") == "set"
        stream = await client.chat.completions.create(
            model="rlm", messages=[{"role": "user", "content": "read it"}], stream=True,
            extra_body={"context": "ctx", "fastrlm": {"session": "st", "progress": False}})
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "41|3"


async def test_concurrent_first_requests_to_one_session_share_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from fastrlm.server import _sessions

    def reply(messages: list[dict[str, str]]) -> str:
        if "read" in messages[-1]["content"]:
            return "```repl\nFINAL(str(count))\n```"
        return "```repl\ncount = globals().get('count', 0) + 1\nFINAL('set')\n```"

    async with serving(ScriptedLM(reply, model="scripted/root")) as (server, client):
        close_sessions = _sessions._close_sessions

        async def slow_close(sessions: list[Any]) -> None:
            await asyncio.sleep(0.05)  # closing idle sessions yields: let the others catch up
            await close_sessions(sessions)

        monkeypatch.setattr(_sessions, "_close_sessions", slow_close)
        answers = await asyncio.gather(*(_answer(client, "set it", "same") for _ in range(3)))
        assert answers == ["set"] * 3
        assert len(server.sessions) == 1
        assert await _answer(client, "read it", "same") == "3"  # one REPL took all three


async def test_a_later_drop_in_message_too_long_to_show_is_the_next_context_and_counted(
) -> None:
    long = "line\n" * 20_000 + "read it"  # 100,007 characters
    root = _root()
    async with serving(root, max_session_chars=150_000) as (server, client):
        assert await _answer(client, "set it", "s", None) == "set"
        assert await _answer(client, long, "s", None) == f"41|{len(long)}"
        told = root.calls[-1][-1]["content"]
        assert len(told) < 5_000 and "`context_1`" in told
        assert server.sessions.chars >= len(long)  # the pool counts what the REPL holds
        with pytest.raises(openai.APIStatusError) as raised:
            await _answer(client, "x" * 200_000 + "read it", "s", None)
        assert raised.value.status_code == 413
