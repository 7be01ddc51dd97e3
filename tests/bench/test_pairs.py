"""OOLONG-Pairs: the 20 queries' golds by brute force from the labelled text, and set F1."""

from __future__ import annotations

from datetime import date
from itertools import combinations

import pytest

from fastrlm.bench._pairs import QUERIES, generate, pair_f1, parse_pairs, score, valid_window

NUM, LOC, ENT, HUM, DESC, ABBR = (
    "numeric value",
    "location",
    "entity",
    "human being",
    "description and abstract concept",
    "abbreviation",
)


def _spec(q: int, u: dict[str, list[date]]) -> tuple[bool, bool]:
    """(A(u), B(u)) for query q (1-based), written straight from the paper's table."""
    c = {lab: len(u.get(lab, [])) for lab in (NUM, LOC, ENT, HUM, DESC, ABBR)}

    def after(lab: str, d: date) -> bool:
        return all(x > d for x in u.get(lab, []))

    def before(lab: str, d: date) -> bool:
        return all(x < d for x in u.get(lab, []))

    sym = {
        1: c[NUM] > 0 or c[LOC] > 0,
        2: c[ENT] > 0 or c[HUM] > 0,
        3: c[DESC] > 0 or c[ABBR] > 0,
        4: (c[HUM] > 0 or c[LOC] > 0) and after(HUM, date(2023, 1, 6)),
        5: (c[ENT] > 0 or c[NUM] > 0) and before(ENT, date(2023, 3, 15)),
        6: c[LOC] > 0 or c[ABBR] > 0,
        7: (c[DESC] > 0 or c[NUM] > 0) and after(NUM, date(2023, 2, 1)),
        8: c[HUM] > 0 or c[DESC] > 0,
        9: (c[ENT] > 0 or c[LOC] > 0) and after(LOC, date(2023, 4, 10)),
        10: (c[NUM] > 0 or c[ABBR] > 0) and before(ABBR, date(2023, 5, 20)),
    }
    if q in sym:
        return sym[q], sym[q]
    asym = {
        11: (c[ENT] > 0 and c[ABBR] > 0, c[ENT] == 1),
        12: (c[NUM] >= 2, c[LOC] > 0 and c[HUM] > 0),
        13: (c[DESC] == 1, c[ABBR] > 0 and c[ENT] > 0),
        14: (c[HUM] > 0 and c[NUM] > 0, c[LOC] == 2),
        15: (c[ENT] > 0 and c[LOC] > 0 and c[ABBR] > 0, c[NUM] == 1),
        16: (c[DESC] > 0 and c[HUM] > 0, c[ENT] >= 2 and c[ABBR] == 1),
        17: (c[NUM] == 1, c[LOC] > 0 and c[DESC] > 0),
        18: (c[ABBR] > 0 and c[HUM] == 1, c[ENT] > 0 and c[NUM] > 0),
        19: (c[LOC] >= 2 and c[ENT] > 0, c[DESC] == 1 and c[ABBR] == 1),
        20: (c[NUM] > 0 and c[HUM] > 0, c[LOC] > 0 and c[ENT] > 0 and c[ABBR] == 1),
    }
    return asym[q]


def brute_force(records: list[tuple[date, int, str]], q: int) -> set[tuple[int, int]]:
    users: dict[int, dict[str, list[date]]] = {}
    for d, u, lab in records:
        users.setdefault(u, {}).setdefault(lab, []).append(d)
    out = set()
    for a, b in combinations(sorted(users), 2):
        a1, b1 = _spec(q, users[a])
        a2, b2 = _spec(q, users[b])
        if (a1 and b2) or (a2 and b1):
            out.add((a, b))
    return out


def test_there_are_twenty_queries_each_asking_for_all_pairs() -> None:
    assert len(QUERIES) == 20
    inst = generate(0, 32768, 0)
    assert inst.query.startswith("In the above data, list all pairs of user IDs")
    assert "(user_id_1, user_id_2)" in inst.query


def test_every_gold_matches_the_brute_force_over_the_labelled_window() -> None:
    win = valid_window(0, 32768, 0)
    labelled = [(r.day, r.user, r.label) for r in win.records]
    n_users = len({u for _, u, _ in labelled})
    for q in range(20):
        inst = generate(0, 32768, q)
        gold = {(a, b) for a, b in inst.gold}
        assert gold == brute_force(labelled, q + 1), q + 1
        assert 0 < len(gold) < n_users * (n_users - 1) // 2  # never empty, never "all pairs"


def test_same_seed_same_bytes_and_the_window_is_shared_by_the_twenty() -> None:
    a, b = generate(1, 32768, 5), generate(1, 32768, 5)
    assert (a.context, a.gold) == (b.context, b.gold)
    assert generate(1, 32768, 0).context == a.context
    assert generate(1, 32768, 20).context != a.context  # the next window


@pytest.mark.parametrize(
    ("pred", "gold", "f1"),
    [
        (set(), set(), 1.0),
        ({(1, 2)}, set(), 0.0),
        (set(), {(1, 2)}, 0.0),
        ({(1, 2), (3, 4)}, {(1, 2), (3, 4)}, 1.0),
        ({(1, 2)}, {(1, 2), (3, 4)}, 2 * 1.0 * 0.5 / 1.5),
        ({(1, 2), (5, 6)}, {(1, 2), (3, 4)}, 0.5),
    ],
)
def test_pair_f1(pred: set[tuple[int, int]], gold: set[tuple[int, int]], f1: float) -> None:
    assert pair_f1(pred, gold) == pytest.approx(f1)


def test_parsing_orders_pairs_drops_self_pairs_and_duplicates() -> None:
    text = "(20, 10)\n(10,20)\n( 30 , 40 )\n(5, 5)\nno pair (x, y)"
    assert parse_pairs(text) == {(10, 20), (30, 40)}


def test_score_is_f1_against_the_gold() -> None:
    inst = generate(0, 32768, 3)
    perfect = "\n".join(f"({a}, {b})" for a, b in inst.gold)
    assert score(perfect, inst) == 1.0
    half = "\n".join(f"({a}, {b})" for a, b in inst.gold[: len(inst.gold) // 2])
    assert 0.5 < score(half, inst) < 1.0
    assert score("[]", inst) == 0.0


def test_a_dated_symmetric_query_reads_as_the_paper_writes_it_and_checks_what_it_says() -> None:
    text, first, second = QUERIES[3]
    assert text == (
        "both users have at least one instance with a human being or at least one instance with "
        "a location, and all instances that are a human being for both users must be after "
        "January 6, 2023"
    )
    assert second is None
    assert first({"location": [date(2022, 1, 1)]})
    assert not first({"location": [date(2022, 1, 1)], "human being": [date(2023, 1, 6)]})
    assert QUERIES[9][0].endswith("all instances that are an abbreviation for both users must "
                                  "be before May 20, 2023")
