"""OOLONG trec_coarse-style aggregation questions over a generated window (spec §3).

Questions come from the counting, user and timeline families; each gold is computed with plain
counters over the records (whose labels are known by construction). Questions whose argmax/argmin
is tied are rejected and re-drawn, so every gold is unique; only the comparison family keeps
"same frequency". Instance ``i`` of a set is question ``i % 50`` over window ``i // 50``, the
paper's 50 tasks over one 131K window. Scoring follows the official OOLONG parser
(``synth_process_response``): see :mod:`fastrlm.bench._oolong_score`.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from ._instance import Instance, SimpleTask, length_meta, rng_for
from ._oolong_score import score_answer
from ._oracle import MONTHS
from ._records import FIRST_DAY, LABELS, LAST_DAY, Record, Window, n_records, window

QUESTIONS_PER_WINDOW = 50

FORMATS = {
    "NUMERIC": "Give your final answer in the form 'Answer: number'.",
    "LABEL": "Give your final answer in the form 'Label: answer'.",
    "USER": "Give your final answer in the form 'User: id'.",
    "DATE": "Give your final answer in the form 'Date: Mon DD, YYYY' (e.g. 'Date: Jan 05, 2023').",
    "MONTH": "Give your final answer in the form 'Answer: Month YYYY' (e.g. 'Answer: March 2023').",
}
UNLABELLED_NOTE = (
    "Each line has a User ID, which is not necessarily unique: the same user can appear on many "
    "lines. The instances are not explicitly labelled, so you need to figure out the label from "
    "the semantics of each question."
)


@dataclass(frozen=True, slots=True)
class Question:
    """A question with its exact gold. ``params`` lets an independent checker recompute it."""

    family: str
    kind: str
    text: str
    gold: str | int
    answer_type: str
    params: dict[str, Any]


def _unique_top(
    counts: Counter[Any], keys: Sequence[Any], which: int = 0, least: bool = False
) -> Any:
    """The key ranked ``which`` (0 = first) by count, or None if that rank is tied."""
    ranked = sorted(((counts.get(k, 0), k) for k in keys), key=lambda t: t[0], reverse=not least)
    if len(ranked) <= which:
        return None
    value = ranked[which][0]
    if sum(1 for c, _ in ranked if c == value) != 1:
        return None
    return ranked[which][1]


def _compare(a: int, b: int) -> str:
    return "more common than" if a > b else "less common than" if a < b else "same frequency as"


def _month_key(d: date) -> tuple[int, int]:
    return (d.year, d.month)


def _all_months() -> list[tuple[int, int]]:
    return [(y, m) for y in range(FIRST_DAY.year, LAST_DAY.year + 1) for m in range(1, 13)]


def _labels(rs: Sequence[Record]) -> Counter[str]:
    return Counter(r.label for r in rs)


# Each builder: (records, rng) -> Question | None (None = tie or degenerate; the caller re-draws).
Builder = Callable[[Sequence[Record], random.Random], "Question | None"]


def q_count_label(rs: Sequence[Record], rng: random.Random) -> Question | None:
    lab = rng.choice(LABELS)
    text = f"In the above data, how many data points should be classified as label '{lab}'?"
    return Question("counting", "count_label", text, _labels(rs)[lab], "NUMERIC", {"label": lab})


def q_extreme_label(rs: Sequence[Record], rng: random.Random) -> Question | None:
    least = rng.random() < 0.5
    gold = _unique_top(_labels(rs), LABELS, least=least)
    word = "least" if least else "most"
    text = f"In the above data, which of the labels is the {word} common?"
    return (
        None
        if gold is None
        else Question("counting", f"{word}_common_label", text, gold, "LABEL", {})
    )


def q_compare_labels(rs: Sequence[Record], rng: random.Random) -> Question | None:
    a, b = rng.sample(LABELS, 2)
    c = _labels(rs)
    text = (
        f"In the above data, is label '{a}' more common, less common, or the same frequency "
        f"as label '{b}'? Give your final answer in the form 'Answer: {a} is [X] {b}', where "
        "[X] is 'more common than', 'less common than', or 'same frequency as'."
    )
    return Question(
        "counting", "compare_labels", text, _compare(c[a], c[b]), "COMPARISON", {"a": a, "b": b}
    )


def q_user_most_label(rs: Sequence[Record], rng: random.Random) -> Question | None:
    lab = rng.choice(LABELS)
    counts = Counter(r.user for r in rs if r.label == lab)
    gold = _unique_top(counts, list(counts))
    text = f"In the above data, which user has the most instances with the label '{lab}'?"
    return (
        None
        if gold is None
        else Question("user", "user_most_label", text, str(gold), "USER", {"label": lab})
    )


def q_user_rank(rs: Sequence[Record], rng: random.Random) -> Question | None:
    lab = rng.choice(LABELS)
    counts = Counter(r.user for r in rs if r.label == lab)
    gold = _unique_top(counts, list(counts), which=1)
    text = f"In the above data, which user has the second most instances with the label '{lab}'?"
    return (
        None
        if gold is None
        else Question("user", "user_rank", text, str(gold), "USER", {"rank": 1, "label": lab})
    )


def q_user_vs(rs: Sequence[Record], rng: random.Random) -> Question | None:
    # four users with the same number of lines, so their totals say nothing about the answer
    totals = Counter(r.user for r in rs)
    by_total: dict[int, list[int]] = {}
    for u, c in sorted(totals.items()):
        by_total.setdefault(c, []).append(u)
    groups = [us for c, us in sorted(by_total.items()) if c >= 2 and len(us) >= 4]
    if not groups:
        return None
    four = rng.sample(rng.choice(groups), 4)
    lab = rng.choice(LABELS)
    counts = Counter(r.user for r in rs if r.label == lab)
    gold = _unique_top(counts, four)
    if gold is None:
        return None
    names = ", ".join(f"User {u}" for u in four[:-1]) + f" or User {four[-1]}"
    text = f"In the above data, which user has more instances with the label '{lab}': {names}?"
    return Question("user", "user_vs", text, str(gold), "USER", {"label": lab, "users": four})


def q_user_subset(rs: Sequence[Record], rng: random.Random) -> Question | None:
    users = sorted({r.user for r in rs})
    subset = sorted(rng.sample(users, min(len(users), rng.randint(10, 25))))
    sub = [r for r in rs if r.user in subset]
    prefix = (
        "For the following question, only consider the subset of instances that are "
        f"associated with user IDs {', '.join(map(str, subset))}. "
    )
    params: dict[str, Any] = {"users": subset}
    if rng.random() < 0.5:
        lab = rng.choice(LABELS)
        params["label"] = lab
        text = (
            prefix + "Among instances associated with these users, how many data points "
            f"should be classified as label '{lab}'?"
        )
        return Question("user", "subset_count", text, _labels(sub)[lab], "NUMERIC", params)
    gold = _unique_top(_labels(sub), LABELS)
    text = prefix + "Among instances associated with these users, which label is the most common?"
    return None if gold is None else Question("user", "subset_most", text, gold, "LABEL", params)


def _random_range(rng: random.Random) -> tuple[date, date]:
    span = (LAST_DAY - FIRST_DAY).days
    a, b = sorted(rng.sample(range(span + 1), 2))
    return FIRST_DAY.fromordinal(FIRST_DAY.toordinal() + a), FIRST_DAY.fromordinal(
        FIRST_DAY.toordinal() + b
    )


def q_range_count(rs: Sequence[Record], rng: random.Random) -> Question | None:
    d1, d2 = _random_range(rng)
    if (d2 - d1).days < (LAST_DAY - FIRST_DAY).days // 3:
        return None  # short ranges hold so few lines that any guess of a small count scores
    lab = rng.choice(LABELS)
    gold = sum(1 for r in rs if d1 <= r.day <= d2 and r.label == lab)
    text = (
        f"In the above data, considering only instances that occur between {d1:%b %d, %Y} and "
        f"{d2:%b %d, %Y}, inclusive, how many data points should be classified as label '{lab}'?"
    )
    return Question(
        "timeline",
        "range_count",
        text,
        gold,
        "NUMERIC",
        {"start": d1.isoformat(), "end": d2.isoformat(), "label": lab},
    )


def q_month_most(rs: Sequence[Record], rng: random.Random) -> Question | None:
    month = rng.randint(1, 12)
    gold = _unique_top(_labels([r for r in rs if r.day.month == month]), LABELS)
    text = (
        f"In the above data, considering only instances that occur in {MONTHS[month - 1]} of "
        "any year, which of the labels is the most common?"
    )
    return (
        None
        if gold is None
        else Question("timeline", "month_most", text, gold, "LABEL", {"month": month})
    )


def _by_month(rs: Sequence[Record]) -> dict[tuple[int, int], Counter[str]]:
    out: dict[tuple[int, int], Counter[str]] = {m: Counter() for m in _all_months()}
    for r in rs:
        out[_month_key(r.day)][r.label] += 1
    return out


def q_months_more(rs: Sequence[Record], rng: random.Random) -> Question | None:
    a, b = rng.sample(LABELS, 2)
    gold = sum(1 for c in _by_month(rs).values() if c[a] > c[b])
    text = (
        f"In the above data, for how many months (calendar months of {FIRST_DAY.year}-"
        f"{LAST_DAY.year}) does label '{a}' occur more frequently than label '{b}'?"
    )
    return Question("timeline", "months_more", text, gold, "NUMERIC", {"a": a, "b": b})


def q_months_single_most(rs: Sequence[Record], rng: random.Random) -> Question | None:
    lab = rng.choice(LABELS)
    gold = sum(1 for c in _by_month(rs).values() if _unique_top(c, LABELS) == lab)
    text = (
        f"In the above data, for how many months (calendar months of {FIRST_DAY.year}-"
        f"{LAST_DAY.year}) is label '{lab}' the single most frequently occurring label?"
    )
    return Question("timeline", "months_single_most", text, gold, "NUMERIC", {"label": lab})


def q_month_gap(rs: Sequence[Record], rng: random.Random) -> Question | None:
    a, b = rng.sample(LABELS, 2)
    year = rng.randint(FIRST_DAY.year, LAST_DAY.year)
    months = [(year, m) for m in range(1, 13)]
    by_month = _by_month(rs)
    gap = Counter({k: by_month[k][a] - by_month[k][b] for k in months})
    gold = _unique_top(gap, months)
    if gold is None:
        return None
    text = (
        f"In the above data, in which month of {year} does label '{a}' outnumber label '{b}' "
        f"by the most (the largest count of '{a}' minus count of '{b}')?"
    )
    return Question(
        "timeline",
        "month_gap",
        text,
        f"{MONTHS[gold[1] - 1]} {year}",
        "MONTH",
        {"a": a, "b": b, "year": year},
    )


def q_before_after(rs: Sequence[Record], rng: random.Random) -> Question | None:
    lab = rng.choice(LABELS)
    # a date near the median of all lines, so the totals before and after are about equal
    days = sorted(r.day for r in rs)
    t = days[len(days) // 2 + rng.randint(-2, 2)] if len(days) > 8 else _random_range(rng)[0]
    before = sum(1 for r in rs if r.label == lab and r.day < t)
    after = sum(1 for r in rs if r.label == lab and r.day > t)
    text = (
        f"In the above data, was label '{lab}' more common, less common, or the same "
        f"frequency before {t:%b %d, %Y}, as compared to after {t:%b %d, %Y}? (Instances on "
        "that date count for neither side.) Give your final answer in the form 'Answer: [X]', "
        "where [X] is 'more common', 'less common' or 'same frequency'."
    )
    gold = _compare(before, after).removesuffix(" than").removesuffix(" as")
    return Question(
        "timeline", "before_after", text, gold, "COMPARISON", {"label": lab, "date": t.isoformat()}
    )


def q_users_with_label(rs: Sequence[Record], rng: random.Random) -> Question | None:
    lab = rng.choice(LABELS)
    gold = len({r.user for r in rs if r.label == lab})
    text = (
        "In the above data, how many distinct users have at least one instance with the label "
        f"'{lab}'?"
    )
    return Question("user", "users_with_label", text, gold, "NUMERIC", {"label": lab})


def q_date_rank(rs: Sequence[Record], rng: random.Random) -> Question | None:
    lab = rng.choice(LABELS)
    counts = Counter(_month_key(r.day) for r in rs if r.label == lab)
    gold = _unique_top(counts, _all_months())
    text = (
        f"In the above data, in which month (of the calendar months of {FIRST_DAY.year}-"
        f"{LAST_DAY.year}) does the label '{lab}' occur most often?"
    )
    if gold is None:
        return None
    y, m = gold
    return Question("timeline", "month_rank", text, f"{MONTHS[m - 1]} {y}", "MONTH", {"label": lab})


BUILDERS: tuple[Builder, ...] = (
    q_count_label,
    q_extreme_label,
    q_compare_labels,
    q_user_most_label,
    q_user_rank,
    q_user_vs,
    q_user_subset,
    q_range_count,
    q_month_most,
    q_months_more,
    q_months_single_most,
    q_month_gap,
    q_before_after,
    q_users_with_label,
    q_date_rank,
)


def question(rs: Sequence[Record], seed: int, length: int, index: int) -> Question:
    """Question ``index`` over ``rs``: builder ``index % 15``, re-drawn on ties (falls back to a
    label count, which never ties)."""
    builder = BUILDERS[index % len(BUILDERS)]
    for attempt in range(64):
        q = builder(rs, rng_for("oolong-question", seed, length, index, attempt))
        if q is not None:
            return q
    q = q_count_label(rs, rng_for("oolong-question", seed, length, index, "fallback"))
    assert q is not None
    return q


def task_window(seed: int, length: int, index: int) -> Window:
    """Window ``index`` of the set; its busiest ``n_users / 40`` users are equally busy, so no
    one user tops every label's count."""
    n_users = round(n_records(length) / 3.4)
    return window(seed, length, index, flat_head=max(5, n_users // 40))


def records_of(inst: Instance) -> tuple[Record, ...]:
    """The records (with their hidden labels) behind a generated instance."""
    return task_window(inst.meta["seed"], inst.meta["length"], inst.meta["window"]).records


def generate(seed: int, length: int, index: int, labelled: bool = False) -> Instance:
    """Instance ``index``: question ``index % 50`` over window ``index // 50``."""
    win = task_window(seed, length, index // QUESTIONS_PER_WINDOW)
    q = question(win.records, seed, length, index)
    fmt = FORMATS.get(q.answer_type, "")
    query = q.text + (" " + fmt if fmt else "")
    if not labelled:
        query = UNLABELLED_NOTE + "\n\n" + query
    context = win.context(labelled)
    meta = length_meta(context, len(query))
    meta.update(
        {
            "length": length,
            "seed": seed,
            "window": win.index,
            "records": len(win.records),
            "family": q.family,
            "kind": q.kind,
            "params": q.params,
            "labelled": labelled,
        }
    )
    name = "oolong-labelled" if labelled else "oolong"
    return Instance(
        f"{name}-{seed}-{length}-{index}", name, context, query, q.gold, q.answer_type, meta
    )


def score(pred: str, inst: Instance) -> float:
    return score_answer(pred, inst.gold, inst.answer_type)


TASK = SimpleTask(
    "oolong",
    (131072,),
    50,
    generate,
    score,
    "OOLONG trec_coarse-style aggregation (counting, user, timeline)",
)
LABELLED_TASK = SimpleTask(
    "oolong-labelled",
    (131072,),
    50,
    lambda seed, length, index: generate(seed, length, index, labelled=True),
    score,
    "OOLONG with '|| Label:' on every line: solvable by code alone",
)
