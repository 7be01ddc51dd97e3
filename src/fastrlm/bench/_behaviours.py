"""Small list-to-integer behaviours for CodeQA: each has a reference implementation (the truth),
several renderings as loop code (what the repository shows) and several plain-English
paraphrases (what a question says), grouped so that the distractors of a question do the same
kind of thing with the same operators.

The paraphrases avoid the words a program would key on (even, odd, largest, minimum, sum,
count, product, square ...): telling which function does what takes reading the code and the
question for meaning. A rendering is checked against its reference on random inputs before use
(:func:`verify`), so a gold is exact by execution, not by the generator's word.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Behaviour:
    key: str
    group: str
    reference: Callable[[list[int]], int]
    bodies: tuple[str, ...]  # loop code over ``{xs}`` (the parameter), result in ``{acc}``
    phrases: tuple[str, ...]


def _alt(xs: list[int]) -> int:
    return sum(v if i % 2 == 0 else -v for i, v in enumerate(xs))


BEHAVIOURS: tuple[Behaviour, ...] = (
    Behaviour(
        "sum_squares",
        "accumulate",
        lambda xs: sum(v * v for v in xs),
        (
            "{acc} = 0\n    for {v} in {xs}:\n        {acc} = {acc} + {v} * {v}",
            "{acc} = 0\n    for {v} in {xs}:\n        {acc} += {v} * {v}",
        ),
        (
            "gives back the total you get by multiplying every element by itself and adding "
            "the results",
            "returns what you obtain when each entry is raised to the second power and those "
            "powers are added together",
        ),
    ),
    Behaviour(
        "sum_doubled",
        "accumulate",
        lambda xs: sum(2 * v for v in xs),
        (
            "{acc} = 0\n    for {v} in {xs}:\n        {acc} = {acc} + {v} + {v}",
            "{acc} = 0\n    for {v} in {xs}:\n        {acc} += {v} + {v}",
        ),
        (
            "returns the combined value of all the entries, and then that much again",
            "gives back the grand total of the entries after each one is taken two times",
        ),
    ),
    Behaviour(
        "sum_abs",
        "accumulate",
        lambda xs: sum(abs(v) for v in xs),
        (
            "{acc} = 0\n    for {v} in {xs}:\n        {acc} += {v} if {v} >= 0 else -{v}",
            "{acc} = 0\n    for {v} in {xs}:\n        if {v} < 0:\n            {acc} -= {v}\n"
            "        else:\n            {acc} += {v}",
        ),
        (
            "adds up how far each entry lies from zero, ignoring signs",
            "returns the total distance from zero of the entries, treating negatives as if "
            "they were positive",
        ),
    ),
    Behaviour(
        "product",
        "accumulate",
        lambda xs: _product(xs),
        (
            "{acc} = 1\n    for {v} in {xs}:\n        {acc} = {acc} * {v}",
            "{acc} = 1\n    for {v} in {xs}:\n        {acc} *= {v}",
        ),
        (
            "returns the value reached by starting from one and scaling it by each entry in turn",
            "gives back what the entries come to when each one scales the running result",
        ),
    ),
    Behaviour(
        "count_even",
        "tally",
        lambda xs: sum(1 for v in xs if v % 2 == 0),
        (
            "{acc} = 0\n    for {v} in {xs}:\n        if {v} % 2 == 0:\n            {acc} += 1",
            "{acc} = 0\n    for {v} in {xs}:\n        if not {v} % 2:\n            {acc} += 1",
            "{acc} = 0\n    for {v} in {xs}:\n        if {v} % 2 != 1:\n            {acc} += 1",
        ),
        (
            "reports how many entries split into two equal whole halves",
            "tells how many of the entries leave no remainder when divided by two",
        ),
    ),
    Behaviour(
        "count_odd",
        "tally",
        lambda xs: sum(1 for v in xs if v % 2 == 1),
        (
            "{acc} = 0\n    for {v} in {xs}:\n        if {v} % 2 == 1:\n            {acc} += 1",
            "{acc} = 0\n    for {v} in {xs}:\n        if {v} % 2:\n            {acc} += 1",
            "{acc} = 0\n    for {v} in {xs}:\n        if {v} % 2 != 0:\n            {acc} += 1",
        ),
        (
            "reports how many entries cannot be split into two equal whole halves",
            "tells how many of the entries leave a remainder of one when divided by two",
        ),
    ),
    Behaviour(
        "count_negative",
        "tally",
        lambda xs: sum(1 for v in xs if v < 0),
        (
            "{acc} = 0\n    for {v} in {xs}:\n        if {v} < 0:\n            {acc} += 1",
            "{acc} = 0\n    for {v} in {xs}:\n        if 0 > {v}:\n            {acc} += 1",
        ),
        (
            "reports how many entries carry a minus sign",
            "tells how many of the entries lie under zero on the number line",
        ),
    ),
    Behaviour(
        "count_above_first",
        "tally",
        lambda xs: sum(1 for v in xs if v > xs[0]),
        (
            "{acc} = 0\n    for {v} in {xs}:\n        if {v} > {xs}[0]:\n            {acc} += 1",
            "{acc} = 0\n    for {v} in {xs}:\n        if {xs}[0] < {v}:\n            {acc} += 1",
        ),
        (
            "reports how many entries outdo the one that opens the list",
            "tells how many of the entries are strictly greater than the one at the front",
        ),
    ),
    Behaviour(
        "maximum",
        "extreme",
        lambda xs: max(xs),
        (
            "{acc} = {xs}[0]\n    for {v} in {xs}:\n        if {v} > {acc}:\n"
            "            {acc} = {v}",
            "{acc} = {xs}[0]\n    for {v} in {xs}:\n        if {acc} < {v}:\n"
            "            {acc} = {v}",
        ),
        (
            "returns the entry that no other entry exceeds",
            "gives back the top entry, the one at least as great as every other",
        ),
    ),
    Behaviour(
        "minimum",
        "extreme",
        lambda xs: min(xs),
        (
            "{acc} = {xs}[0]\n    for {v} in {xs}:\n        if {v} < {acc}:\n"
            "            {acc} = {v}",
            "{acc} = {xs}[0]\n    for {v} in {xs}:\n        if {acc} > {v}:\n"
            "            {acc} = {v}",
        ),
        (
            "returns the entry that no other entry falls below",
            "gives back the bottom entry, the one no greater than any other",
        ),
    ),
    Behaviour(
        "spread",
        "extreme",
        lambda xs: max(xs) - min(xs),
        (
            "{acc} = {xs}[0]\n    low = {xs}[0]\n    for {v} in {xs}:\n        if {v} > {acc}:\n"
            "            {acc} = {v}\n        if {v} < low:\n            low = {v}\n"
            "    {acc} = {acc} - low",
        ),
        (
            "returns the gap between the top entry and the bottom entry",
            "gives back how far apart the two outermost values of the entries lie",
        ),
    ),
    Behaviour(
        "first_minus_last",
        "extreme",
        lambda xs: xs[0] - xs[-1],
        (
            "{acc} = {xs}[0]\n    for {v} in {xs}:\n        last = {v}\n    {acc} = {acc} - last",
            "{acc} = {xs}[0] - {xs}[len({xs}) - 1]",
        ),
        (
            "returns the front entry less the entry at the back",
            "gives back the opening entry with the closing entry taken away",
        ),
    ),
    Behaviour(
        "sum_positive",
        "select",
        lambda xs: sum(v for v in xs if v > 0),
        (
            "{acc} = 0\n    for {v} in {xs}:\n        if {v} > 0:\n            {acc} += {v}",
            "{acc} = 0\n    for {v} in {xs}:\n        if 0 < {v}:\n            {acc} = {acc} + {v}",
        ),
        (
            "adds together only the entries lying to the right of zero on the number line",
            "returns the combined value of the entries that lie over zero, skipping the rest",
        ),
    ),
    Behaviour(
        "sum_even_positions",
        "select",
        lambda xs: sum(xs[0::2]),
        (
            "{acc} = 0\n    for i in range(0, len({xs}), 2):\n        {acc} += {xs}[i]",
            "{acc} = 0\n    for i, {v} in enumerate({xs}):\n        if i % 2 == 0:\n"
            "            {acc} += {v}",
        ),
        (
            "adds together the entries in the first, third, fifth ... places, leaving out those in "
            "between",
            "returns the combined value of the entries standing in the 1st, 3rd, 5th and later "
            "odd-numbered places",
        ),
    ),
    Behaviour(
        "alternating",
        "select",
        _alt,
        (
            "{acc} = 0\n    for i, {v} in enumerate({xs}):\n        if i % 2 == 0:\n"
            "            {acc} += {v}\n        else:\n            {acc} -= {v}",
            "{acc} = 0\n    sign = 1\n    for {v} in {xs}:\n        {acc} += sign * {v}\n"
            "        sign = -sign",
        ),
        (
            "adds the first entry, takes away the second, adds the third, and so on",
            "returns the running total in which entries are in turn added and subtracted, "
            "starting with an addition",
        ),
    ),
    Behaviour(
        "distinct",
        "select",
        lambda xs: len(set(xs)),
        (
            "seen = []\n    for {v} in {xs}:\n        if {v} not in seen:\n"
            "            seen.append({v})\n    {acc} = len(seen)",
        ),
        (
            "reports how many values occur among the entries, each counted once however often it "
            "repeats",
            "tells how many separate values the entries hold when repeats are ignored",
        ),
    ),
)
BY_KEY = {b.key: b for b in BEHAVIOURS}


def _product(xs: list[int]) -> int:
    out = 1
    for v in xs:
        out *= v
    return out


def render(b: Behaviour, name: str, param: str, rng: random.Random) -> str:
    """Source of function ``name(param)`` implementing ``b`` (one of its loop renderings)."""
    body = rng.choice(b.bodies).format(xs=param, acc="out", v="item")
    return f"def {name}({param}):\n    {body}\n    return out\n"


def verify(source: str, name: str, b: Behaviour, seed: int = 0, trials: int = 12) -> bool:
    """Whether ``name`` in ``source`` agrees with ``b``'s reference on random non-empty lists."""
    namespace: dict[str, object] = {}
    exec(compile(source, f"<{name}>", "exec"), namespace)  # our own rendered code only
    fn = namespace[name]
    assert callable(fn)
    rng = random.Random(seed)
    for _ in range(trials):
        xs = [rng.randint(-9, 9) for _ in range(rng.randint(1, 7))]
        if fn(list(xs)) != b.reference(list(xs)):
            return False
    return True


def separates(a: Behaviour, others: list[Behaviour], seed: int = 0) -> bool:
    """Whether ``a`` differs from each of ``others`` on some random input (so at most one
    choice matches a description)."""
    rng = random.Random(seed)
    inputs = [[rng.randint(-9, 9) for _ in range(rng.randint(2, 7))] for _ in range(40)]
    return all(any(a.reference(x) != o.reference(x) for x in inputs) for o in others)
