"""BrowseComp-like: unique answers in the world, evidence present, near misses, EM, 10M scale."""

from __future__ import annotations

import time

import pytest

from fastrlm.bench._browsecomp import extract_answer, generate, normalize, score
from fastrlm.bench._wording import DESCRIBE
from fastrlm.bench._world import world


def test_same_seed_same_bytes() -> None:
    a, b = generate(0, 20_000, 1), generate(0, 20_000, 1)
    assert a.context == b.context and a.query == b.query and a.gold == b.gold
    assert generate(1, 20_000, 1).query != a.query or generate(1, 20_000, 1).gold != a.gold


@pytest.mark.parametrize("index", range(8))
def test_the_start_entity_is_unique_in_the_world_and_the_chain_gives_the_gold(index: int) -> None:
    inst = generate(0, 20_000, index)
    w = world(0)
    start = inst.meta["start"]
    category, kind, lo, hi = start["category"], start["kind"], start["lo"], start["hi"]
    assert hi - lo >= 2  # a real range: never "between 2001 and 2001"
    matches = [
        e for e in w.entities if e.kind == kind and e.category == category and lo <= e.year <= hi
    ]
    assert len(matches) == 1
    # the question describes the category in words no document of that category uses
    described = [d for d in DESCRIBE[category] if d in inst.query]
    assert len(described) == 1
    assert not any(described[0] in d for d in inst.context)
    # every hop is a functional relation: follow the evidence documents' stated facts
    docs = {d.split("\n", 1)[0].removeprefix("docid: "): d for d in inst.context}
    evidence = [docs[i] for i in inst.meta["evidence_docids"]]
    assert any(matches[0].name in d.split("\n")[1] for d in evidence)
    assert any(str(inst.gold[0]) in d for d in evidence)  # the last hop's doc names the answer
    assert sum(1 for e in w.entities if e.name == inst.gold[0]) == 1


def test_near_miss_documents_are_included() -> None:
    inst = generate(0, 20_000, 0)
    assert len(inst.meta["negative_docids"]) >= 2
    assert inst.meta["docs"] == len(inst.context) >= 20


def test_answers_differ_across_queries() -> None:
    golds = [generate(2, 10_000, i).gold[0] for i in range(20)]
    assert len(set(golds)) >= 18


def test_full_size_has_a_thousand_documents_and_is_generated_within_seconds() -> None:
    started = time.perf_counter()
    inst = generate(0, 8_500_000, 0)
    assert time.perf_counter() - started < 30  # about 0.5 s here
    assert inst.meta["docs"] == 1000
    assert 6_000_000 <= inst.meta["tokens"] <= 11_000_000


def test_normalised_exact_match() -> None:
    assert normalize("The  Quiet-Harbor!") == "quietharbor"
    assert normalize("An Apple a day") == "apple day"
    inst = generate(0, 10_000, 0)
    gold = inst.gold[0]
    assert score(f"Explanation: ...\nExact Answer: {gold.upper()}.\nConfidence: 90%", inst) == 1.0
    assert score(f"Exact Answer: {gold} Company", inst) == 0.0
    assert score(f"blah\n{gold}", inst) == 1.0  # no field: the last line
    assert extract_answer("Exact Answer: A\nExact Answer: B") == "B"


def test_the_question_states_the_start_range_in_one_of_its_wordings() -> None:
    from fastrlm.bench._wording import RANGES

    for i in range(20):
        inst = generate(3, 12_000, i)
        lo, hi = inst.meta["start"]["lo"], inst.meta["start"]["hi"]
        stated = [r for r in RANGES if r.format(lo=lo, hi=hi, lo0=lo - 1, hi1=hi + 1) in inst.query]
        assert len(stated) == 1
