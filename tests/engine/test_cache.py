"""The sub-call cache through the engine: re-runs cost nothing, sampled models skip it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from fastrlm import RLM
from fastrlm.lm import SubcallCache
from fastrlm.testing import ScriptedLM, prompt_of

from .helpers import repl

SCRIPT = [repl("r = llm_query_batched([f'q{i}' for i in range(20)])\nFINAL('|'.join(r))")]


def sub_model(temperature: float | None = None) -> ScriptedLM:
    return ScriptedLM(lambda m: "a:" + prompt_of(m), model="scripted/sub",
                      temperature=temperature)


async def test_cached_rerun_sends_no_subcalls_and_gives_the_same_answer(tmp_path: Path) -> None:
    cache = SubcallCache(tmp_path / "cache.sqlite")
    first_sub, second_sub = sub_model(), sub_model()
    first = await RLM(ScriptedLM(SCRIPT), first_sub, sandbox="none", cache=cache).acompletion(
        "q", context="c")
    second = await RLM(ScriptedLM(SCRIPT), second_sub, sandbox="none",
                       cache=SubcallCache(tmp_path / "cache.sqlite")).acompletion("q", context="c")
    assert len(first_sub.calls) == 20
    assert second_sub.calls == []
    assert second.answer == first.answer
    assert second.usage.by_model["scripted/sub"].cache_hits == 20
    assert second.usage.by_model["scripted/sub"].cost_usd == 0


async def test_sampled_sub_model_bypasses_the_cache_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    for _ in range(2):
        hot = sub_model(temperature=0.7)
        await RLM(ScriptedLM(SCRIPT), hot, sandbox="none",
                  cache=SubcallCache(path)).acompletion("q", context="c")
        assert len(hot.calls) == 20
    opted_in = [sub_model(temperature=0.7) for _ in range(2)]
    for sub in opted_in:
        await RLM(ScriptedLM(SCRIPT), sub, sandbox="none", cache=SubcallCache(path),
                  cache_sampled=True).acompletion("q", context="c")
    assert len(opted_in[0].calls) == 20 and opted_in[1].calls == []


async def test_an_interrupted_run_resumes_from_the_cache(tmp_path: Path) -> None:
    from fastrlm import ProviderConnectionError, StopReason

    turns = [
        repl("parts = llm_query_batched([f'q{i}' for i in range(5)])"),
        repl("more = llm_query_batched([f'r{i}' for i in range(5)])"),
        repl("FINAL(str(len(parts) + len(more)))"),
    ]

    def script(fail_at: int | None) -> ScriptedLM:
        def reply(messages: list[dict[str, str]]) -> str | BaseException:
            turn = sum(m["role"] == "assistant" for m in messages)
            if turn == fail_at:
                return ProviderConnectionError("network went away")
            return turns[turn]
        return ScriptedLM(reply, model="scripted/root")

    path = tmp_path / "cache.sqlite"
    first_sub = sub_model()
    with pytest.raises(ProviderConnectionError) as failed:
        await RLM(script(fail_at=2), first_sub, sandbox="none",
                  cache=SubcallCache(path)).acompletion("q", context="c")
    first = failed.value.result
    assert first is not None and first.stop_reason is StopReason.ERROR
    assert len(first_sub.calls) == 10

    root, second_sub = script(fail_at=None), sub_model()
    second = await RLM(root, second_sub, sandbox="none",
                       cache=SubcallCache(path)).acompletion("q", context="c")
    assert second.answer == "10"
    assert second_sub.calls == []          # every sub-call was already paid for
    assert len(root.calls) == 1            # only the turn that failed is asked again
    assert second.subcalls == 10           # cache hits still count as sub-calls


async def test_cache_hits_count_against_the_subcall_cap_even_when_concurrent(
        tmp_path: Path) -> None:
    from fastrlm import Budget

    path = tmp_path / "cache.sqlite"
    await RLM(ScriptedLM(SCRIPT), sub_model(), sandbox="none",
              cache=SubcallCache(path)).acompletion("q", context="c")
    capped = await RLM(ScriptedLM(SCRIPT), sub_model(), sandbox="none", cache=SubcallCache(path),
                       budget=Budget(max_subcalls=5)).acompletion("q", context="c")
    assert capped.subcalls == 5
    assert capped.subcalls_refused == 15 and capped.partial
    assert capped.answer.count("a:q") == 5


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00\xffnot a database" * 500)


def _wrong_layout(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE subcalls (id INTEGER, note TEXT)")
        conn.execute("PRAGMA user_version = 1")
    conn.close()


@pytest.mark.parametrize("damage", [_garbage, _wrong_layout], ids=["garbage", "wrong_layout"])
def test_a_broken_cache_file_is_set_aside_and_the_run_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        damage: Callable[[Path], None]) -> None:
    path = tmp_path / "cache.sqlite"
    damage(path)
    sub = sub_model()
    result = RLM(ScriptedLM(SCRIPT), sub, sandbox="none",
                 cache=SubcallCache(path)).completion("q", context="c")
    assert result.answer == "|".join(f"a:q{i}" for i in range(20))
    assert len(sub.calls) == 20
    [warning] = [r.getMessage() for r in caplog.records if r.name == "fastrlm.cache"]
    assert "moved aside" in warning
    [aside] = tmp_path.glob("cache.sqlite.unusable-*")
    assert aside.stat().st_size > 0
    again = sub_model()  # the new file keeps this run's replies
    RLM(ScriptedLM(SCRIPT), again, sandbox="none",
        cache=SubcallCache(path)).completion("q", context="c")
    assert again.calls == []


class _BrokenCache:
    """A user's cache whose store is down: every look-up or store raises (one in three
    look-ups, so the failure hits some prompts of a batch, not all)."""

    def __init__(self) -> None:
        self.lookups = 0

    def key_for(self, lm: object, messages: object, max_tokens: int | None) -> str:
        return repr(messages)

    async def get(self, key: str) -> None:
        self.lookups += 1
        if self.lookups % 3 == 0:
            raise OSError("database is locked")
        return None

    async def put(self, key: str, response: object) -> None:
        raise RuntimeError("disk full")


async def test_a_cache_that_raises_is_a_miss_and_never_fails_the_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A cache's exception escaped the sub-call: the whole llm_query_batched failed.
    sub = sub_model()
    out = await RLM(ScriptedLM(SCRIPT), sub, sandbox="none",
                    cache=_BrokenCache()).acompletion("q", context="c")  # type: ignore[arg-type]
    assert out.answer == "|".join(f"a:q{i}" for i in range(20))
    assert len(sub.calls) == 20
    messages = [r.getMessage() for r in caplog.records]
    assert any("failed to look up" in m and "database is locked" in m for m in messages)
    assert any("failed to store" in m and "disk full" in m for m in messages)
