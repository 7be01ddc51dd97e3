"""A self-contained solver for labelled OOLONG questions (stdlib only).

Its *source* is what the scripted "oracle" root model writes into the RLM's REPL
(:func:`fastrlm.bench._scripted.oracle_lm`): it parses ``context`` (the ``|| Label:`` lines) and
answers the question from the text alone, never from the generator's golds, so it doubles as an
independent recomputation of every OOLONG gold.
"""

import re
from collections import Counter
from datetime import date, datetime
from typing import Any

Row = tuple[date, int, str]

LABELS = (
    "abbreviation",
    "entity",
    "description and abstract concept",
    "human being",
    "location",
    "numeric value",
)
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
LINE = re.compile(r"Date: (.+?) \|\| User: (\d+) \|\| Instance: .*? \|\| Label: (.+)")


def parse(context: str) -> list[Row]:
    rows: list[Row] = []
    for m in LINE.finditer(context):
        rows.append(
            (datetime.strptime(m.group(1), "%b %d, %Y").date(), int(m.group(2)), m.group(3).strip())
        )
    return rows


def top(counts: Any, keys: Any, which: int = 0, least: bool = False) -> Any:
    ranked = sorted(((counts.get(k, 0), k) for k in keys), key=lambda t: t[0], reverse=not least)
    return ranked[which][1]


def day(text: str) -> date:
    return datetime.strptime(text, "%b %d, %Y").date()


def cmp(a: int, b: int) -> str:
    return "more common than" if a > b else "less common than" if a < b else "same frequency as"


def months(rows: list[Row]) -> dict[tuple[int, int], Counter[str]]:
    out: dict[tuple[int, int], Counter[str]] = {
        (y, m): Counter() for y in range(2022, 2025) for m in range(1, 13)
    }
    for d, _, lab in rows:
        out[(d.year, d.month)][lab] += 1
    return out


def solve(context: str, question: str) -> str:
    rows = parse(context)
    labels = re.findall(r"label '([^']+)'", question)
    by_label: Counter[str]
    by_user: Counter[int]
    sub = re.search(r"associated with user IDs ([\d, ]+)\.", question)
    if sub:
        users = {int(u) for u in sub.group(1).split(",")}
        rows = [r for r in rows if r[1] in users]
        if "how many data points" in question:
            return f"Answer: {sum(1 for r in rows if r[2] == labels[0])}"
        return f"Label: {top(Counter(r[2] for r in rows), LABELS)}"
    rng = re.search(r"between (\w{3} \d\d, \d{4}) and (\w{3} \d\d, \d{4}), inclusive", question)
    if rng:
        d1, d2 = day(rng.group(1)), day(rng.group(2))
        return f"Answer: {sum(1 for d, _, lab in rows if d1 <= d <= d2 and lab == labels[0])}"
    if "how many data points" in question:
        return f"Answer: {sum(1 for r in rows if r[2] == labels[0])}"
    month = re.search(r"occur in (\w+) of any year", question)
    if month:
        k = MONTHS.index(month.group(1)) + 1
        return f"Label: {top(Counter(r[2] for r in rows if r[0].month == k), LABELS)}"
    m = re.search(r"labels is the (most|least) common", question)
    if m:
        least = m.group(1) == "least"
        return f"Label: {top(Counter(r[2] for r in rows), LABELS, least=least)}"
    m = re.search(r"frequency before (\w{3} \d\d, \d{4})", question)
    if m:
        t = day(m.group(1))
        before = sum(1 for d, _, lab in rows if lab == labels[0] and d < t)
        after = sum(1 for d, _, lab in rows if lab == labels[0] and d > t)
        return f"Answer: {cmp(before, after).rsplit(' ', 1)[0]}"
    if "or the same frequency as label" in question:
        by_label = Counter(r[2] for r in rows)
        verdict = cmp(by_label[labels[0]], by_label[labels[1]])
        return f"Answer: {labels[0]} is {verdict} {labels[1]}"
    m = re.search(r"label '[^']+': (User \d+.*)\?", question)
    if m:
        by_user = Counter(r[1] for r in rows if r[2] == labels[0])
        named = [int(u) for u in re.findall(r"User (\d+)", m.group(1))]
        return f"User: {top(by_user, named)}"
    if "which user has the second most instances" in question:
        by_user = Counter(r[1] for r in rows if r[2] == labels[0])
        return f"User: {top(by_user, list(by_user), which=1)}"
    if "which user has the most instances" in question:
        by_user = Counter(r[1] for r in rows if r[2] == labels[0])
        return f"User: {top(by_user, list(by_user))}"
    if "occur most often?" in question:
        by_month = Counter((r[0].year, r[0].month) for r in rows if r[2] == labels[0])
        y, mo = top(by_month, sorted(months(rows)))
        return f"Answer: {MONTHS[mo - 1]} {y}"
    if "occur more frequently than" in question:
        n = sum(1 for c in months(rows).values() if c[labels[0]] > c[labels[1]])
        return f"Answer: {n}"
    if "single most frequently occurring" in question:
        n = 0
        for c in months(rows).values():
            ranked = sorted((c.get(k, 0) for k in LABELS), reverse=True)
            if ranked[0] != ranked[1] and top(c, LABELS) == labels[0]:
                n += 1
        return f"Answer: {n}"
    m = re.search(r"in which month of (\d{4}) does label", question)
    if m:
        year = int(m.group(1))
        per_month = months(rows)
        gap = {
            (year, k): per_month[(year, k)][labels[0]] - per_month[(year, k)][labels[1]]
            for k in range(1, 13)
        }
        y, mo = top(gap, sorted(gap))
        return f"Answer: {MONTHS[mo - 1]} {y}"
    if "how many distinct users have at least one instance" in question:
        return f"Answer: {len({r[1] for r in rows if r[2] == labels[0]})}"
    return "Answer: unknown"


_LABEL_ALT = "|".join(sorted((re.escape(x) for x in LABELS), key=len, reverse=True))
_COND = re.compile(rf"(at least |exactly |)(one|two) (?:instances? )?with (?:an? )?({_LABEL_ALT})")
_ALL = re.compile(
    rf"all instances that are an? ({_LABEL_ALT}) for both users must be (after|before) "
    r"(\w+ \d+, \d{4})"
)


def _conds(text: str) -> list[tuple[str, int, str]]:
    # "... and one with X" leaves "at least" implied
    return [
        (op.strip() or "at least", 1 if k == "one" else 2, lab)
        for op, k, lab in _COND.findall(text)
    ]


def _holds(conds: list[tuple[str, int, str]], counts: Counter[str]) -> list[bool]:
    return [counts[lab] >= k if op == "at least" else counts[lab] == k for op, k, lab in conds]


def solve_pairs(context: str, question: str) -> str:
    """The pairs of an OOLONG-Pairs query, computed from the labelled ``context``."""
    rows = parse(context)
    counts: dict[int, Counter[str]] = {}
    dates: dict[int, dict[str, list[date]]] = {}
    for d, u, lab in rows:
        counts.setdefault(u, Counter())[lab] += 1
        dates.setdefault(u, {}).setdefault(lab, []).append(d)
    users = sorted(counts)
    cond = question.split(" such that ", 1)[-1].split(" where ", 1)[-1].split(". Each", 1)[0]
    if cond.startswith("both users have"):
        first = cond.split(", and all", 1)[0]
        ors = _conds(first)
        ok = {u for u in users if any(_holds(ors, counts[u]))}
        m = _ALL.search(cond)
        if m:
            lab, when = m.group(1), m.group(2)
            t = datetime.strptime(m.group(3), "%B %d, %Y").date()
            ok = {
                u
                for u in ok
                if all((x > t) if when == "after" else (x < t) for x in dates[u].get(lab, []))
            }
        a = b = ok
    else:
        left, right = cond.split(", and the other user has", 1)
        ca, cb = _conds(left), _conds(right)
        a = {u for u in users if all(_holds(ca, counts[u]))}
        b = {u for u in users if all(_holds(cb, counts[u]))}
    pairs = sorted({(min(x, y), max(x, y)) for x in a for y in b if x != y})
    return "\n".join(f"({x}, {y})" for x, y in pairs) if pairs else "[]"


__all__ = ["date", "solve", "solve_pairs"]
