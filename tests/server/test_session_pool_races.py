"""SessionPool under concurrency: room made by closing one's own idle session is kept for the
request that made it, and an id reused by another key after eviction stays that key's."""

from __future__ import annotations

import asyncio

import pytest

from fastrlm import RLM
from fastrlm.server._http import HTTPError
from fastrlm.server._sessions import SessionPool
from fastrlm.testing import ScriptedLM


def _pool(**bounds: int) -> SessionPool:
    rlm = RLM(ScriptedLM(lambda _m: "```repl\nFINAL('x')\n```", model="scripted/root"),
              sandbox="none")
    return SessionPool(rlm, max_sessions=bounds.get("max_sessions", 2), idle_s=3600.0,
                       max_chars=bounds.get("max_chars", 10**6))


async def _open(pool: SessionPool, owner: str, sid: str, context: object = None) -> None:
    async with pool.use(owner, sid, context, drop_in=False):
        pass


def _stall_close(pool: SessionPool, owner: str, sid: str) -> tuple[asyncio.Event, asyncio.Event]:
    """Make the close of (owner, sid) wait: (started, release)."""
    session = pool._entries[(owner, sid)].session
    started, release = asyncio.Event(), asyncio.Event()
    original = session.aclose

    async def slow_close() -> None:
        started.set()
        await release.wait()
        await original()

    session.aclose = slow_close  # type: ignore[method-assign]
    return started, release


async def test_the_slot_a_key_frees_is_not_taken_by_another_key_racing_for_it() -> None:
    pool = _pool(max_sessions=2)
    await _open(pool, "alice", "a1")
    await _open(pool, "bob", "b1")
    started, release = _stall_close(pool, "alice", "a1")
    alice = asyncio.create_task(_open(pool, "alice", "a2"))  # closes her a1 for room
    await started.wait()
    # bob must close his own b1, not take the slot alice's a1 frees
    bob = await asyncio.gather(_open(pool, "bob", "b2"), return_exceptions=True)
    release.set()
    assert [*await asyncio.gather(alice, return_exceptions=True), *bob] == [None, None]
    assert sorted(pool._entries) == [("alice", "a2"), ("bob", "b2")]
    await pool.close()


async def test_context_room_a_key_frees_is_not_taken_by_another_key() -> None:
    pool = _pool(max_sessions=10, max_chars=100)
    await _open(pool, "alice", "a1", "x" * 60)
    await _open(pool, "alice", "a2")
    started, release = _stall_close(pool, "alice", "a1")
    alice = asyncio.create_task(_open(pool, "alice", "a2", "y" * 60))
    await started.wait()
    bob = await asyncio.gather(_open(pool, "bob", "b1", "z" * 60), return_exceptions=True)
    release.set()
    results = [*await asyncio.gather(alice, return_exceptions=True), *bob]
    assert results[0] is None, results
    assert isinstance(results[1], HTTPError) and results[1].status == 429
    assert pool.chars <= pool.max_chars
    await pool.close()


async def test_an_id_reused_by_another_key_after_eviction_leaves_the_owner_told() -> None:
    pool = _pool(max_sessions=4)
    pool.max_per_owner = 1
    await _open(pool, "alice", "s")
    await _open(pool, "alice", "t")  # alice's s closed for room, remembered for alice
    await _open(pool, "bob", "s")  # bob's own "s"
    bobs = pool._entries[("bob", "s")]
    with pytest.raises(HTTPError) as gone:
        await _open(pool, "alice", "s")
    assert (gone.value.status, gone.value.code) == (410, "session_closed")
    assert pool._entries[("bob", "s")] is bobs  # neither handed to alice nor closed
    await _open(pool, "bob", "s")  # bob is never told of alice's eviction
    await pool.close()


async def test_a_request_waiting_for_its_session_never_gets_it_closed_by_eviction() -> None:
    pool = _pool(max_sessions=2)
    await _open(pool, "alice", "s")
    holding = pool.use("alice", "t", None, drop_in=False)
    await holding.__aenter__()  # t busy: s is alice's only idle session
    first = pool.use("alice", "s", None, drop_in=False)
    await first.__aenter__()
    got: list[object] = []

    async def second() -> None:
        async with pool.use("alice", "s", None, drop_in=False) as (session, _):
            got.append(session.closed)

    waiting = asyncio.create_task(second())
    await asyncio.sleep(0)  # it queues on s's lock
    await first.__aexit__(None, None, None)  # s is released to the waiting request ...
    with pytest.raises(HTTPError) as full:  # ... before it runs: u's room never comes from s
        await _open(pool, "alice", "u")
    assert full.value.status == 429
    outcome = await asyncio.gather(waiting, return_exceptions=True)
    await holding.__aexit__(None, None, None)
    assert outcome == [None] and got == [False]
    assert sorted(pool._entries) == [("alice", "s"), ("alice", "t")]
    assert not pool._entries[("alice", "s")].session.closed
    await pool.close()
