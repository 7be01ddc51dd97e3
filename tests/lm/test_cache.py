"""SubcallCache: keys, persistence, concurrency, processes, and a re-run with zero HTTP calls."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from fastrlm import TokenUsage
from fastrlm.lm import LMResponse, SubcallCache
from fastrlm.testing import FakeOpenAIServer, FakeRequest

from .helpers import openai_lm


def _response(text: str = "answer") -> LMResponse:
    usage = TokenUsage(100, 20, cached_input_tokens=10, reasoning_tokens=5)
    return LMResponse(text, usage, "openai/gpt-5-mini", latency_s=1.5, finish_reason="stop")


async def test_a_stored_reply_comes_back_marked_cached(tmp_path: Path) -> None:
    cache = SubcallCache(tmp_path / "c.sqlite")
    assert await cache.get("k") is None
    await cache.put("k", _response())
    hit = await cache.get("k")
    assert hit is not None
    assert hit.cached and hit.latency_s == 0.0
    assert (hit.text, hit.usage, hit.model) == ("answer", _response().usage, "openai/gpt-5-mini")
    assert (cache.hits, cache.misses) == (1, 1)
    cache.close()


async def test_the_default_file_lives_under_fastrlm_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FASTRLM_HOME", str(tmp_path / "home"))
    cache = SubcallCache()
    assert cache.path == tmp_path / "home" / "cache.sqlite"
    assert not cache.path.exists()  # created on first use, not by the constructor
    await cache.put("k", _response())
    assert cache.path.exists()
    cache.close()


async def test_keys_cover_model_endpoint_sampling_messages_and_max_tokens() -> None:
    async with FakeOpenAIServer() as server:
        base = openai_lm(server, "openai/gpt-4.1-mini")
        other_model = openai_lm(server, "openai/gpt-4.1")
        hot = openai_lm(server, "openai/gpt-4.1-mini", temperature=0.9)
        same = openai_lm(server, "openai/gpt-4.1-mini")
        msgs = [{"role": "user", "content": "q"}]
        key = SubcallCache.key_for(base, msgs, 100)  # type: ignore[arg-type]
        assert key == SubcallCache.key_for(same, msgs, 100)  # type: ignore[arg-type]
        variants = {
            SubcallCache.key_for(other_model, msgs, 100),  # type: ignore[arg-type]
            SubcallCache.key_for(hot, msgs, 100),  # type: ignore[arg-type]
            SubcallCache.key_for(base, [{"role": "user", "content": "q2"}], 100),
            SubcallCache.key_for(base, [{"role": "system", "content": "q"}], 100),
            SubcallCache.key_for(base, msgs, 200),  # type: ignore[arg-type]
        }
        assert key not in variants and len(variants) == 5
        assert len(key) == 64
        for lm in (base, other_model, hot, same):
            await lm.aclose()


async def test_many_tasks_share_one_cache(tmp_path: Path) -> None:
    cache = SubcallCache(tmp_path / "c.sqlite")
    await asyncio.gather(*(cache.put(f"k{i}", _response(f"t{i}")) for i in range(200)))
    hits = await asyncio.gather(*(cache.get(f"k{i}") for i in range(200)))
    assert [h.text for h in hits if h is not None] == [f"t{i}" for i in range(200)]
    assert len(cache) == 200
    cache.close()


async def test_another_process_sees_what_this_one_wrote_and_vice_versa(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    cache = SubcallCache(path)
    await cache.put("mine", _response("from parent"))
    script = (
        "import asyncio, sys\n"
        "from fastrlm.lm import SubcallCache, LMResponse\n"
        "from fastrlm import TokenUsage\n"
        "async def main():\n"
        f"    c = SubcallCache({str(path)!r})\n"
        "    hit = await c.get('mine')\n"
        "    assert hit is not None and hit.text == 'from parent', hit\n"
        "    await c.put('theirs', LMResponse('from child', TokenUsage(1, 1), 'openai/m'))\n"
        "    c.close()\n"
        "asyncio.run(main())\n"
    )
    await asyncio.to_thread(subprocess.run, [sys.executable, "-c", script], check=True, timeout=60)
    hit = await cache.get("theirs")
    assert hit is not None and hit.text == "from child"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cache.close()


async def test_an_unreadable_row_is_a_miss(tmp_path: Path) -> None:
    cache = SubcallCache(tmp_path / "c.sqlite")
    await cache.put("k", _response())
    cache.close()
    with sqlite3.connect(tmp_path / "c.sqlite") as conn:
        conn.execute("UPDATE subcalls SET response = '{not json'")
    assert await cache.get("k") is None
    cache.close()


async def _cached_batch(
    lm_server: FakeOpenAIServer, cache: SubcallCache, prompts: list[str]
) -> list[str]:
    """What the engine does per sub-call: look up, else call and store."""
    lm = openai_lm(lm_server, "openai/gpt-5-mini")

    async def one(prompt: str) -> str:
        messages = [{"role": "user", "content": prompt}]
        key = SubcallCache.key_for(lm, messages, 256)  # type: ignore[arg-type]
        hit = await cache.get(key)
        if hit is not None:
            return hit.text
        response = await lm.complete(messages, max_tokens=256)  # type: ignore[arg-type]
        await cache.put(key, response)
        return response.text

    try:
        return await asyncio.gather(*(one(p) for p in prompts))
    finally:
        await lm.aclose()


async def test_a_cached_rerun_makes_zero_http_calls(tmp_path: Path) -> None:
    prompts = [f"summarise chunk {i}" for i in range(12)]

    def answer(request: FakeRequest) -> str:
        return "summary of " + request.prompt

    async with FakeOpenAIServer(handler=answer) as server:
        first_cache = SubcallCache(tmp_path / "c.sqlite")
        first = await _cached_batch(server, first_cache, prompts)
        first_cache.close()
        calls_after_first = len(server.completion_requests)
        second_cache = SubcallCache(tmp_path / "c.sqlite")  # a new run, same file
        second = await _cached_batch(server, second_cache, prompts)
        calls_after_second = len(server.completion_requests)
    assert first == second == ["summary of " + p for p in prompts]
    assert calls_after_first == 12
    assert calls_after_second == 12
    assert second_cache.hits == 12
    second_cache.close()
