"""S-NIAH: deterministic bytes, a unique needle with an exact gold, RULER's metric, 10M scale."""

from __future__ import annotations

import hashlib
import re
import time

import pytest

from fastrlm.bench._sniah import CONFIGS, DEPTHS, NOISE, generate, score, string_match_all


def _digest(inst: object) -> str:
    return hashlib.sha256(repr(inst).encode()).hexdigest()


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not() -> None:
    a, b = generate(7, 8192, 3), generate(7, 8192, 3)
    assert _digest(a) == _digest(b)
    assert generate(8, 8192, 3).context != a.context


def test_the_three_ruler_configurations_cycle_by_index() -> None:
    configs = [generate(0, 4096, i).meta["config"] for i in range(6)]
    assert configs == sorted(CONFIGS) * 2
    noise = generate(0, 4096, 0)
    assert noise.context.startswith(NOISE)
    uuid_inst = generate(0, 4096, 2)
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", uuid_inst.gold
    )


@pytest.mark.parametrize("index", range(9))
def test_the_needle_key_and_value_occur_exactly_once(index: int) -> None:
    inst = generate(1, 8192, index)
    key = inst.meta["key"]
    assert inst.context.count(str(inst.gold)) == 1
    assert inst.context.count(key) == 1
    needle = f"One of the special magic {inst.meta['value_kind']} for {key} is: {inst.gold}."
    assert inst.context.count(needle) == 1
    assert key in inst.query and str(inst.gold) not in inst.query
    assert inst.meta["depth"] in DEPTHS


def test_needles_and_golds_are_unique_across_a_set() -> None:
    insts = [generate(2, 4096, i) for i in range(50)]
    assert len({i.gold for i in insts}) == 50
    assert len({i.meta["key"] for i in insts}) == 50


def test_depths_are_rulers_forty_and_the_needle_sits_at_its_depth() -> None:
    assert len(DEPTHS) == 40 and DEPTHS[0] == 0 and DEPTHS[-1] == 100
    inst = generate(3, 32768, 0)
    where = inst.context.index(str(inst.gold)) / len(inst.context)
    assert abs(where - inst.meta["depth"] / 100) < 0.02


@pytest.mark.parametrize("length", [2**13, 2**16, 2**18])
def test_the_prompt_length_matches_the_target_in_proxy_tokens(length: int) -> None:
    for index in range(3):
        tokens = generate(0, length, index).meta["tokens"]
        assert 0.97 * length <= tokens <= 1.01 * length


def test_a_ten_million_token_instance_is_generated_within_seconds() -> None:
    for index in (0, 1):  # noise and text haystacks
        started = time.perf_counter()
        inst = generate(0, 10_000_000, index)
        elapsed = time.perf_counter() - started
        assert 9_700_000 <= inst.meta["tokens"] <= 10_100_000
        assert inst.context.count(str(inst.gold)) == 1
        assert elapsed < 20, elapsed  # about 0.1 s (noise) and 0.6 s (text) here


def test_string_match_all_is_rulers_metric() -> None:
    assert string_match_all("The number is 1234567.", ["1234567"]) == 1.0
    assert string_match_all("nothing", ["1234567"]) == 0.0
    assert string_match_all("ABC-def", ["abc-DEF"]) == 1.0  # case-insensitive
    assert string_match_all("a and b", ["a", "b", "c"]) == pytest.approx(2 / 3)
    assert string_match_all("anything", []) == 0.0


def test_score_uses_the_gold_value() -> None:
    inst = generate(0, 4096, 0)
    assert score(f"The special magic number is {inst.gold}", inst) == 1.0
    assert score("The special magic number is 42", inst) == 0.0
