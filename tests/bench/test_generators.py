"""Every generator is valid and crash-free for any seed and length (a property test over seeds and
small-to-moderate lengths; large lengths in the per-task scale tests), and its gold is sound."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastrlm._foundation.errors import ConfigurationError
from fastrlm.bench import get_task
from fastrlm.bench._pairs import MAX_LENGTH
from fastrlm.bench._shortcut import SOLVERS

LIMITS = {
    "sniah": 400_000,
    "oolong": 200_000,
    "oolong-labelled": 200_000,
    "oolong-pairs": 48_000,
    "browsecomp": 300_000,
    "codeqa": 200_000,
}


@pytest.mark.parametrize("task", sorted(LIMITS))
def test_any_seed_and_length_generates_a_scorable_instance(task: str) -> None:
    t = get_task(task)

    @settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        seed=st.integers(0, 2**31),
        length=st.integers(8192, LIMITS[task]),
        index=st.integers(0, 99),
    )
    def check(seed: int, length: int, index: int) -> None:
        inst = t.instance(seed, length, index)
        again = t.instance(seed, length, index)
        assert (inst.context, inst.query, inst.gold) == (again.context, again.query, again.gold)
        assert inst.meta["tokens"] <= length * 1.35 + 2000
        answer = SOLVERS[task](inst.context, inst.query)  # the shortcut reads it without error
        assert 0.0 <= t.score(answer, inst) <= 1.0

    check()


def test_pairs_refuses_lengths_whose_gold_would_not_fit_any_answer() -> None:
    with pytest.raises(ConfigurationError, match="at most 262144 tokens"):
        get_task("oolong-pairs").instance(0, MAX_LENGTH + 1, 0)
