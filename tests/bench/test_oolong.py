"""OOLONG: determinism, golds recomputed from the labelled text, no ties, the official scorer."""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from datetime import date, datetime

import pytest

from fastrlm.bench import _oracle
from fastrlm.bench._oolong import BUILDERS, generate, score
from fastrlm.bench._oolong_score import parse_answer, score_answer
from fastrlm.bench._records import LABELS, n_records, window

LINE = re.compile(r"Date: (.+?) \|\| User: (\d+) \|\| Instance: (.*?) \|\| Label: (.+)")


def parse_labelled(context: str) -> list[tuple[date, int, str]]:
    return [
        (datetime.strptime(d, "%b %d, %Y").date(), int(u), lab)
        for d, u, _, lab in LINE.findall(context)
    ]


def test_same_seed_same_bytes() -> None:
    a, b = generate(3, 16384, 7), generate(3, 16384, 7)
    digest = hashlib.sha256
    assert digest(a.context.encode()).digest() == digest(b.context.encode()).digest()
    assert (a.query, a.gold) == (b.query, b.gold)
    assert generate(4, 16384, 7).context != a.context


def test_record_counts_follow_oolongs_formula() -> None:
    assert n_records(131072) == 3182
    assert n_records(32768) == 787


def test_the_labelled_variant_has_the_same_records_and_golds() -> None:
    for i in range(15):
        plain, labelled = generate(0, 8192, i), generate(0, 8192, i, labelled=True)
        assert plain.gold == labelled.gold
        assert "|| Label:" not in plain.context
        assert len(parse_labelled(labelled.context)) == n_records(8192)


@pytest.mark.parametrize("length", [8192, 32768])
def test_every_gold_is_recomputed_by_the_independent_solver(length: int) -> None:
    for i in range(2 * len(BUILDERS)):
        inst = generate(11, length, i, labelled=True)
        answer = _oracle.solve(inst.context, inst.query)
        assert score(answer, inst) == 1.0, (inst.meta["kind"], inst.gold, answer)


def test_counts_recomputed_directly_from_the_text() -> None:
    inst = generate(5, 32768, 0, labelled=True)  # builder 0: a label count
    rows = parse_labelled(inst.context)
    label = inst.meta["params"]["label"]
    assert inst.gold == sum(1 for _, _, lab in rows if lab == label)


def test_argmax_questions_are_never_tied() -> None:
    for i in range(50):
        inst = generate(9, 16384, i, labelled=True)
        rows = parse_labelled(inst.context)
        if inst.meta["kind"] == "user_rank":
            label = inst.meta["params"]["label"]
            counts = sorted(Counter(u for _, u, lab in rows if lab == label).values(), reverse=True)
            rank = inst.meta["params"]["rank"]
            assert counts.count(counts[rank]) == 1
        if inst.meta["kind"] in ("most_common_label", "least_common_label"):
            counts = Counter(lab for _, _, lab in rows)
            values = [counts.get(lab, 0) for lab in LABELS]
            target = max(values) if inst.meta["kind"] == "most_common_label" else min(values)
            assert values.count(target) == 1


def test_fifty_questions_cover_the_three_families() -> None:
    families = Counter(generate(0, 8192, i).meta["family"] for i in range(50))
    assert set(families) == {"counting", "user", "timeline"}


def test_users_are_zipfian_and_ids_five_digits() -> None:
    w = window(0, 131072, 0)
    counts = sorted(Counter(r.user for r in w.records).values(), reverse=True)
    top = sum(counts[: max(len(counts) // 5, 1)]) / sum(counts)
    assert 0.6 < top < 0.95
    assert all(10_000 <= r.user < 100_000 for r in w.records)


def test_a_ten_million_token_window_is_generated_within_seconds() -> None:
    started = time.perf_counter()
    inst = generate(0, 10_000_000, 0)
    assert time.perf_counter() - started < 60  # about 6 s here: 243K records
    assert inst.meta["records"] == n_records(10_000_000)


# -- the official scorer -------------------------------------------------------------------


def test_parse_takes_the_text_after_the_last_colon_without_markup() -> None:
    assert parse_answer("Reasoning... Answer: **[42]**") == "42"
    assert parse_answer("Label: location") == "location"
    assert parse_answer("short") == "short"  # no colon, under 20 chars: all of it
    assert parse_answer("no colon here and quite a long sentence 17") == "17"
    long = "Answer: entity is more common than numeric value"
    assert parse_answer(long) == "more common"


def test_numeric_partial_credit_is_0_75_to_the_distance() -> None:
    assert score_answer("Answer: 10", 10, "NUMERIC") == 1.0
    assert score_answer("Answer: 12", 10, "NUMERIC") == pytest.approx(0.75**2)
    assert score_answer("Answer: 7", 10, "NUMERIC") == pytest.approx(0.75**3)
    assert score_answer("Answer: ten", 10, "NUMERIC") == 0.0
    assert score_answer("Answer: 10.0", 10, "NUMERIC") == 0.0  # official: int() or nothing


def test_comparison_phrases_match_as_substrings_of_the_gold() -> None:
    gold = "more common than"
    assert score_answer("Answer: entity is more common than location", gold, "COMPARISON") == 1.0
    assert score_answer("Answer: more common", gold, "COMPARISON") == 1.0
    assert score_answer("Answer: less common", gold, "COMPARISON") == 0.0
    assert score_answer("Answer: same frequency", "same frequency as", "COMPARISON") == 1.0


def test_labels_users_and_dates() -> None:
    assert (
        score_answer(
            "Label: description and abstract concept", "description and abstract concept", "LABEL"
        )
        == 1.0
    )
    assert score_answer("Label: location", "entity", "LABEL") == 0.0
    assert score_answer("User: 12345", "12345", "USER") == 1.0
    assert score_answer("Date: Apr 01, 2023", "2023-04-01", "DATE") == 1.0
    assert score_answer("Date: 2023-04-01", "2023-04-01", "DATE") == 1.0
    assert score_answer("Date: Apr 02, 2023", "2023-04-01", "DATE") == 0.0
    assert score_answer("Date: not a date", "2023-04-01", "DATE") == 0.0
    assert score_answer("Answer: March 2023", "March 2023", "MONTH") == 1.0
    assert score_answer("Answer: Mar 2023", "March 2023", "MONTH") == 1.0
    assert score_answer("Answer: April 2023", "March 2023", "MONTH") == 0.0
