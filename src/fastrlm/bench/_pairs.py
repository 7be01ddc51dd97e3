"""OOLONG-Pairs: the paper's 20 pair queries (P2 App. D.1) over OOLONG windows, scored by F1.

Inferred semantics (spec §4): "all X instances after D" holds vacuously for a user with no X;
"after"/"before" are strict; an asymmetric pair qualifies if ``A(u1) and B(u2)`` or ``A(u2) and
B(u1)``; a user's instances are pooled over the whole window. Instance ``i`` is query ``i % 20``
over window ``i // 20``; a window is re-drawn (``attempt``) until every query's gold is non-empty
and not "all pairs", so no query is trivial.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import date
from itertools import combinations

from .._exceptions import ConfigurationError
from ._instance import Instance, SimpleTask, length_meta
from ._records import LABELS, Record, Window, window
from ._score import pair_f1, parse_pairs

ABBR, ENT, DESC, HUM, LOC, NUM = LABELS

#: Users: most hold one or two lines, so whether a user "has" a label is not implied by how
#: many lines the user has (with OOLONG's 3.4 lines a user, almost every user has every pair).
RECORDS_PER_USER = 1.3
#: Longest window generated (2^18 tokens: up to about 1.2M gold pairs, ~230 MB to score).
MAX_LENGTH = 2**18
USER_ZIPF = 0.5

Stats = dict[str, list[date]]  # label -> dates of that user's instances with the label
Pred = Callable[[Stats], bool]


def _has(lab: str) -> Pred:
    return lambda s: len(s.get(lab, ())) >= 1


def _cnt(lab: str, op: str, k: int) -> Pred:
    if op == "=":
        return lambda s: len(s.get(lab, ())) == k
    return lambda s: len(s.get(lab, ())) >= k


def _all(lab: str, when: str, d: date) -> Pred:
    if when == "after":
        return lambda s: all(x > d for x in s.get(lab, ()))
    return lambda s: all(x < d for x in s.get(lab, ()))


def _and(*ps: Pred) -> Pred:
    return lambda s: all(p(s) for p in ps)


def _or(*ps: Pred) -> Pred:
    return lambda s: any(p(s) for p in ps)


_N = {
    ABBR: "abbreviation",
    ENT: "entity",
    DESC: "description and abstract concept",
    HUM: "human being",
    LOC: "location",
    NUM: "numeric value",
}


def _h(lab: str) -> str:
    return f"at least one instance with a {_N[lab]}"


#: (condition text, predicate A, predicate B or None for symmetric queries); P2 App. D.1 order.
QUERIES: tuple[tuple[str, Pred, Pred | None], ...] = (
    (f"both users have {_h(NUM)} or {_h(LOC)}", _or(_has(NUM), _has(LOC)), None),
    (f"both users have {_h(ENT)} or {_h(HUM)}", _or(_has(ENT), _has(HUM)), None),
    (f"both users have {_h(DESC)} or {_h(ABBR)}", _or(_has(DESC), _has(ABBR)), None),
    (
        f"both users have {_h(HUM)} or {_h(LOC)}, and all instances that are a human being for "
        "both users must be after January 6, 2023",
        _and(_or(_has(HUM), _has(LOC)), _all(HUM, "after", date(2023, 1, 6))),
        None,
    ),
    (
        f"both users have {_h(ENT)} or {_h(NUM)}, and all instances that are an entity for both "
        "users must be before March 15, 2023",
        _and(_or(_has(ENT), _has(NUM)), _all(ENT, "before", date(2023, 3, 15))),
        None,
    ),
    (f"both users have {_h(LOC)} or {_h(ABBR)}", _or(_has(LOC), _has(ABBR)), None),
    (
        f"both users have {_h(DESC)} or {_h(NUM)}, and all instances that are a numeric value for "
        "both users must be after February 1, 2023",
        _and(_or(_has(DESC), _has(NUM)), _all(NUM, "after", date(2023, 2, 1))),
        None,
    ),
    (f"both users have {_h(HUM)} or {_h(DESC)}", _or(_has(HUM), _has(DESC)), None),
    (
        f"both users have {_h(ENT)} or {_h(LOC)}, and all instances that are a location for both "
        "users must be after April 10, 2023",
        _and(_or(_has(ENT), _has(LOC)), _all(LOC, "after", date(2023, 4, 10))),
        None,
    ),
    (
        f"both users have {_h(NUM)} or {_h(ABBR)}, and all instances that are an abbreviation for "
        "both users must be before May 20, 2023",
        _and(_or(_has(NUM), _has(ABBR)), _all(ABBR, "before", date(2023, 5, 20))),
        None,
    ),
    (
        "one user has at least one instance with entity and one with abbreviation, and the other "
        "user has exactly one instance with entity",
        _and(_has(ENT), _has(ABBR)),
        _cnt(ENT, "=", 1),
    ),
    (
        "one user has at least two instances with numeric value, and the other user has at least "
        "one instance with location and at least one instance with human being",
        _cnt(NUM, ">=", 2),
        _and(_has(LOC), _has(HUM)),
    ),
    (
        "one user has exactly one instance with description and abstract concept, and the other "
        "user has at least one instance with abbreviation and at least one with entity",
        _cnt(DESC, "=", 1),
        _and(_has(ABBR), _has(ENT)),
    ),
    (
        "one user has at least one instance with human being and at least one with numeric value, "
        "and the other user has exactly two instances with location",
        _and(_has(HUM), _has(NUM)),
        _cnt(LOC, "=", 2),
    ),
    (
        "one user has at least one instance with entity, at least one with location, and at least "
        "one with abbreviation, and the other user has exactly one instance with numeric value",
        _and(_has(ENT), _has(LOC), _has(ABBR)),
        _cnt(NUM, "=", 1),
    ),
    (
        "one user has at least one instance with description and abstract concept and at least one "
        "with human being, and the other user has at least two instances with entity and exactly "
        "one instance with abbreviation",
        _and(_has(DESC), _has(HUM)),
        _and(_cnt(ENT, ">=", 2), _cnt(ABBR, "=", 1)),
    ),
    (
        "one user has exactly one instance with numeric value, and the other user has at least one "
        "instance with location and at least one with description and abstract concept",
        _cnt(NUM, "=", 1),
        _and(_has(LOC), _has(DESC)),
    ),
    (
        "one user has at least one instance with abbreviation and exactly one instance with human "
        "being, and the other user has at least one instance with entity and at least one with "
        "numeric value",
        _and(_has(ABBR), _cnt(HUM, "=", 1)),
        _and(_has(ENT), _has(NUM)),
    ),
    (
        "one user has at least two instances with location and at least one with entity, and the "
        "other user has exactly one instance with description and abstract concept and exactly one "
        "with abbreviation",
        _and(_cnt(LOC, ">=", 2), _has(ENT)),
        _and(_cnt(DESC, "=", 1), _cnt(ABBR, "=", 1)),
    ),
    (
        "one user has at least one instance with numeric value and at least one with human being, "
        "and the other user has at least one instance with location, at least one with entity, and "
        "exactly one with abbreviation",
        _and(_has(NUM), _has(HUM)),
        _and(_has(LOC), _has(ENT), _cnt(ABBR, "=", 1)),
    ),
)

_TAIL = (
    " Each of the questions can be labelled as one of the labels (the data does not provide the "
    "labels, you need to figure out the label from the semantics of the question): description "
    "and abstract concept, entity, human being, numeric value, location, abbreviation. In your "
    "answer, list all pairs in the format (user_id_1, user_id_2), separated by newlines. Your "
    "answer must be sorted by first user ID, then by second user ID. If there is no answer, "
    "return an empty list []."
)


def query_text(q: int) -> str:
    cond = QUERIES[q][0]
    verb = "where" if QUERIES[q][2] is None else "such that"
    return (
        "In the above data, list all pairs of user IDs (no duplicate pairs, list lower ID "
        f"first) {verb} {cond}." + _TAIL
    )


def user_stats(records: Sequence[Record]) -> dict[int, Stats]:
    out: dict[int, Stats] = defaultdict(dict)
    for r in records:
        out[r.user].setdefault(r.label, []).append(r.day)
    return dict(out)


def gold_pairs(records: Sequence[Record], q: int) -> list[tuple[int, int]]:
    """The exact gold of query ``q`` (0-based): sorted ``(lower, higher)`` user-ID pairs."""
    _, pa, pb = QUERIES[q]
    stats = user_stats(records)
    users = sorted(stats)
    a = {u for u in users if pa(stats[u])}
    b = a if pb is None else {u for u in users if pb(stats[u])}
    if pb is None:
        return list(combinations(sorted(a), 2))
    return sorted({(min(x, y), max(x, y)) for x in a for y in b if x != y})


def valid_window(seed: int, length: int, index: int) -> Window:
    """The first re-draw of window ``index`` on which no query is empty or "all pairs"."""
    for attempt in range(100):
        win = window(seed, length, index, attempt, RECORDS_PER_USER, USER_ZIPF)
        n_users = len({r.user for r in win.records})
        total = n_users * (n_users - 1) // 2
        if all(0 < len(gold_pairs(win.records, q)) < total for q in range(len(QUERIES))):
            return win
    raise ConfigurationError(
        f"oolong-pairs: no window at length {length} gives 20 non-trivial pair queries "
        "(use 2K or more; the paper's setting is 32K)"
    )


def records_of(inst: Instance) -> tuple[Record, ...]:
    """The records (with their hidden labels) behind a generated instance."""
    return valid_window(inst.meta["seed"], inst.meta["length"], inst.meta["window"]).records


def generate(seed: int, length: int, index: int) -> Instance:
    """Instance ``index``: query ``index % 20`` over window ``index // 20``. Raises
    :class:`ConfigurationError` above :data:`MAX_LENGTH`."""
    if length > MAX_LENGTH:
        raise ConfigurationError(
            f"oolong-pairs: at most {MAX_LENGTH} tokens (2^18, Figure 1's largest): gold pair "
            "sets grow with the square of the users (about 1.2M pairs at 2^18, an answer far "
            f"beyond any output limit); got {length}. The paper's setting is 32K."
        )
    win = valid_window(seed, length, index // len(QUERIES))
    q = index % len(QUERIES)
    gold = [list(p) for p in gold_pairs(win.records, q)]
    context = win.context(labelled=False)
    query = query_text(q)
    meta = length_meta(context, len(query))
    meta.update(
        {
            "length": length,
            "seed": seed,
            "window": win.index,
            "query": q + 1,
            "records": len(win.records),
            "gold_pairs": len(gold),
        }
    )
    return Instance(
        f"oolong-pairs-{seed}-{length}-{index}", "oolong-pairs", context, query, gold, "PAIRS", meta
    )


def score(pred: str, inst: Instance) -> float:
    gold = {(int(a), int(b)) for a, b in inst.gold}
    return pair_f1(parse_pairs(pred), gold)


TASK = SimpleTask(
    "oolong-pairs",
    (32768,),
    20,
    generate,
    score,
    "OOLONG-Pairs: 20 pair queries over trec_coarse-style records, F1",
)
