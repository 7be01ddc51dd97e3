"""OOLONG-Pairs: the paper's 20 pair queries (P2 App. D.1) over OOLONG windows, scored by F1.

Inferred semantics (spec §4): "all X instances after D" holds vacuously for a user with no X;
"after"/"before" are strict; an asymmetric pair qualifies if ``A(u1) and B(u2)`` or ``A(u2) and
B(u1)``; a user's instances are pooled over the whole window. Instance ``i`` is query ``i % 20``
over window ``i // 20``. Every user has three lines (so line counts say nothing about the labels)
that mostly share the user's main label; a query that would be empty gets fresh users holding the
labels it needs, so every gold is non-empty by construction and no query is "all pairs".
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from functools import lru_cache
from itertools import combinations

from .. import ConfigurationError
from ._instance import Instance, SimpleTask, length_meta, rng_for
from ._records import (
    FIRST_DAY,
    LABELS,
    LAST_DAY,
    Record,
    Window,
    instance_text,
    n_records,
)
from ._score import pair_f1, parse_pairs

ABBR, ENT, DESC, HUM, LOC, NUM = LABELS

#: Every user holds the same number of lines, so a user's line count says nothing about which
#: queries it meets (three is the fewest that the paper's three-label sides need).
LINES_PER_USER = 3
#: The chance that a line takes its user's main label rather than a fresh draw.
STICK = 0.95
#: Label temperatures (flatter than OOLONG's 2-6, so no "X or Y" holds for most users).
TEMPERATURES = (6, 12)
#: Fewest users in a window: every query may need two planted users.
MIN_USERS = 45
#: Longest window generated (2^18 tokens: up to about 1.2M gold pairs, ~230 MB to score).
MAX_LENGTH = 2**18

Stats = dict[str, list[date]]  # label -> dates of that user's instances with the label
Pred = Callable[[Stats], bool]
Query = tuple[str, Pred, Pred | None]  # condition text, predicate A, predicate B


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


#: Month names as the paper writes them (``%B`` would follow the process's locale).
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")


def _either(a: str, b: str, dated: tuple[str, str, date] | None = None) -> Query:
    """A symmetric query: both users have an instance with label ``a`` or one with ``b``; with
    ``dated`` (label, ``"after"``/``"before"``, day), all their instances with that label also
    fall after/before the day. Its text and its predicate are made from the same values."""
    text, pred = f"both users have {_h(a)} or {_h(b)}", _or(_has(a), _has(b))
    if dated is None:
        return text, pred, None
    lab, when, day = dated
    noun = _N[lab]
    article = "an" if noun[0] in "aeiou" else "a"
    text += (f", and all instances that are {article} {noun} for both users must be {when} "
             f"{_MONTHS[day.month - 1]} {day.day}, {day.year}")
    return text, _and(pred, _all(lab, when, day)), None


#: (condition text, predicate A, predicate B or None for symmetric queries); P2 App. D.1 order.
QUERIES: tuple[Query, ...] = (
    _either(NUM, LOC),
    _either(ENT, HUM),
    _either(DESC, ABBR),
    _either(HUM, LOC, (HUM, "after", date(2023, 1, 6))),
    _either(ENT, NUM, (ENT, "before", date(2023, 3, 15))),
    _either(LOC, ABBR),
    _either(DESC, NUM, (NUM, "after", date(2023, 2, 1))),
    _either(HUM, DESC),
    _either(ENT, LOC, (LOC, "after", date(2023, 4, 10))),
    _either(NUM, ABBR, (ABBR, "before", date(2023, 5, 20))),
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

#: Labels given to fresh users when query ``q`` would be empty: one user's labels for a symmetric
#: query (never its dated label), a user per side for an asymmetric one.
PLANTS: tuple[tuple[tuple[str, ...], ...], ...] = (
    ((NUM, NUM, NUM),),
    ((ENT, ENT, ENT),),
    ((DESC, DESC, DESC),),
    ((LOC, LOC, LOC),),
    ((NUM, NUM, NUM),),
    ((LOC, LOC, LOC),),
    ((DESC, DESC, DESC),),
    ((HUM, HUM, HUM),),
    ((ENT, ENT, ENT),),
    ((NUM, NUM, NUM),),
    ((ENT, ABBR, ABBR), (ENT, LOC, LOC)),
    ((NUM, NUM, NUM), (LOC, HUM, HUM)),
    ((DESC, NUM, NUM), (ABBR, ENT, ENT)),
    ((HUM, NUM, NUM), (LOC, LOC, ENT)),
    ((ENT, LOC, ABBR), (NUM, HUM, HUM)),
    ((DESC, HUM, HUM), (ENT, ENT, ABBR)),
    ((NUM, LOC, LOC), (LOC, DESC, DESC)),
    ((ABBR, HUM, ABBR), (ENT, NUM, NUM)),
    ((LOC, LOC, ENT), (DESC, ABBR, HUM)),
    ((NUM, HUM, HUM), (LOC, ENT, ABBR)),
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


def _stats_of(labels: Sequence[str], sure: bool) -> Stats:
    """Stats for labels not yet dated; ``sure``: every instance dated both first and last day, so
    a date condition on a label the user has fails ("after" and "before" alike)."""
    out: Stats = {}
    for lab in labels:
        out.setdefault(lab, []).extend((FIRST_DAY, LAST_DAY) if sure else (FIRST_DAY,))
    return out


def _sides(q: int, users: dict[int, list[str]]) -> tuple[set[int], set[int]]:
    """Users sure to meet side A and side B of query ``q`` whatever dates their lines get."""
    _, pa, pb = QUERIES[q]
    if pb is None:  # symmetric: counts do not matter, date conditions must fail
        a = {u for u, labs in users.items() if pa(_stats_of(labs, True))}
        return a, a
    a = {u for u, labs in users.items() if pa(_stats_of(labs, False))}
    return a, {u for u, labs in users.items() if pb(_stats_of(labs, False))}


def _plant(q: int, users: dict[int, list[str]], free: list[int]) -> bool:
    """Give fresh users (taken from ``free``) the labels that make query ``q`` non-empty; whether
    any were needed. A planted user is never planted again."""
    a, b = _sides(q, users)
    if QUERIES[q][2] is None:
        need = max(0, 2 - len(a))
        for _ in range(need):
            users[free.pop()] = list(PLANTS[q][0])
        return need > 0
    if any(x != y for x in a for y in b):
        return False
    users[free.pop()] = list(PLANTS[q][0])
    users[free.pop()] = list(PLANTS[q][1])
    return True


@lru_cache(maxsize=8)
def valid_window(seed: int, length: int, index: int) -> Window:
    """Window ``index``: every user has :data:`LINES_PER_USER` lines; a user's lines mostly share
    its main label (:data:`STICK`), so "X or Y" holds for about a third of the users and the
    symmetric golds are about a ninth of all pairs; a query left empty gets fresh users with the
    labels it needs (:data:`PLANTS`), so every query is non-empty by construction."""
    rng = rng_for("oolong-pairs-window", seed, length, index)
    n_users = n_records(length) // LINES_PER_USER
    if n_users < MIN_USERS:
        raise ConfigurationError(
            f"oolong-pairs: a window of {length} tokens has {n_users} users, too few for 20 "
            f"non-trivial pair queries (at least {MIN_USERS}: use 8K or more; the paper's setting "
            "is 32K)"
        )
    temperature = rng.randint(*TEMPERATURES)
    logits = [rng.gauss(0.0, 1.0) for _ in LABELS]
    top = max(logits)
    weights = [math.exp((x - top) / temperature) for x in logits]
    ids = rng.sample(range(10_000, 100_000), n_users)
    users: dict[int, list[str]] = {}
    for u in ids:
        main = rng.choices(LABELS, weights)[0]
        users[u] = [
            main if rng.random() < STICK else rng.choices(LABELS, weights)[0]
            for _ in range(LINES_PER_USER)
        ]
    free = list(ids)
    rng.shuffle(free)
    while any([_plant(q, users, free) for q in range(len(QUERIES))]):
        pass  # a plant may overwrite a user an earlier query relied on: check them all again
    span = (LAST_DAY - FIRST_DAY).days
    rows = [(u, lab) for u in ids for lab in users[u]]
    rng.shuffle(rows)
    records = tuple(
        Record(FIRST_DAY + timedelta(days=rng.randint(0, span)), u, instance_text(lab, rng), lab)
        for u, lab in rows
    )
    total = n_users * (n_users - 1) // 2
    for q in range(len(QUERIES)):
        if not 0 < len(gold_pairs(records, q)) < total:
            raise ConfigurationError(  # pragma: no cover - planting makes every query non-empty
                f"oolong-pairs: window {index} of seed {seed} at {length} tokens has a trivial "
                f"query {q + 1}"
            )
    return Window(seed, length, index, records, temperature)


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
