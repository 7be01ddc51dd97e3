"""trec_coarse-style records whose labels are known by construction (spec §3, "Records").

A window of ``n_records(length)`` lines ``Date: {%b %d, %Y} || User: {id} || Instance: {text}``
(``|| Label: {label}`` appended in the labelled variant). Labels follow ``softmax(logits / T)``
with ``T = randint(2, 6)``; users are a Zipf pool of 5-digit IDs (``K = N / 3.4``, exponent 1.1:
the top 20% of IDs hold roughly 80% of lines); dates are uniform over 2022-01-01..2024-12-31.
Instance texts come from per-label question templates whose wh-word often disagrees with the
label ("What city ...?" is a location, "What year ...?" a number), so keyword rules are not enough.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

from ._instance import rng_for
from ._text import words

LABELS: tuple[str, ...] = (
    "abbreviation",
    "entity",
    "description and abstract concept",
    "human being",
    "location",
    "numeric value",
)
FIRST_DAY = date(2022, 1, 1)
LAST_DAY = date(2024, 12, 31)

_TEMPLATES: dict[str, tuple[str, ...]] = {
    "abbreviation": (
        "What does {ACR} stand for ?",
        "What is the full form of {ACR} ?",
        "What do the letters {ACR} mean on a {noun} ?",
        "What is the abbreviation for the {Adj} {Noun} Association ?",
        "What is the acronym for the {adj} {noun} standard ?",
        "How is the {Noun} {Noun2} Agency abbreviated ?",
    ),
    "entity": (
        "What {kind} is associated with the {adj} {noun} ?",
        "What is the name of the {kind} used to {verb} a {noun} ?",
        "Which {kind} do {plural} prefer ?",
        "What {kind} appears on the flag of {Place} ?",
        "Name a {kind} that can {verb} without a {noun} .",
        "What was the {adj} {noun} called in the old stories ?",
    ),
    "description and abstract concept": (
        "What is a {adj} {noun} ?",
        "Why do {plural} {verb} ?",
        "How does a {noun} {verb} ?",
        "What does it mean to {verb} a {noun} ?",
        "What is the origin of the {adj} {noun} ?",
        "What is the difference between a {noun} and a {noun2} ?",
    ),
    "human being": (
        "Who invented the {adj} {noun} ?",
        "Who was the first person to {verb} a {noun} ?",
        "What {profession} wrote about the {adj} {noun} ?",
        "Which team won the {Noun} Cup in {Place} ?",
        "What is the name of the {profession} who discovered the {noun} ?",
        "Name the {profession} who liked to {verb} {plural} .",
    ),
    "location": (
        "Where is the {adj} {noun} located ?",
        "What city has the largest {noun} ?",
        "In which country do {plural} {verb} ?",
        "What is the highest {noun} in {Place} ?",
        "What state is home to the {Adj} {Noun} ?",
        "Name a river that flows past the {adj} {noun} .",
    ),
    "numeric value": (
        "How many {plural} are in a {noun} ?",
        "What year was the {adj} {noun} built ?",
        "How far is {Place} from the {noun} ?",
        "What is the population of {Place} ?",
        "How much does a {adj} {noun} cost ?",
        "When did the {Adj} {Noun} Festival begin ?",
    ),
}
_KINDS = ("animal", "instrument", "dish", "color", "sport", "language", "plant", "game", "drink")
_PROFESSIONS = ("poet", "scientist", "painter", "general", "explorer", "composer", "judge")


@dataclass(frozen=True, slots=True)
class Record:
    """One line of a window: its date, user ID, question text and (hidden) label."""

    day: date
    user: int
    text: str
    label: str

    def line(self, labelled: bool = False) -> str:
        base = f"Date: {self.day:%b %d, %Y} || User: {self.user} || Instance: {self.text}"
        return base + (f" || Label: {self.label}" if labelled else "")


def n_records(length: int) -> int:
    """OOLONG's record count for a window of ``length`` tokens (39 tokens per example)."""
    return max(int((length * 0.95 - 168 - 250) // 39), 12)


def plural(noun: str) -> str:
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def instance_text(label: str, rng: random.Random) -> str:
    """A question whose TREC coarse label is ``label`` by construction."""
    nouns, adjs, verbs = words("noun"), words("adjective"), words("verb")
    noun, noun2 = rng.choice(nouns), rng.choice(nouns)
    adj = rng.choice(adjs)
    slots = {
        "noun": noun,
        "noun2": noun2,
        "Noun": noun.title(),
        "Noun2": noun2.title(),
        "adj": adj,
        "Adj": adj.title(),
        "verb": rng.choice(verbs),
        "plural": plural(noun),
        "kind": rng.choice(_KINDS),
        "profession": rng.choice(_PROFESSIONS),
        "Place": f"{rng.choice(adjs).title()} {rng.choice(nouns).title()}",
        "ACR": "".join(chr(65 + rng.randrange(26)) for _ in range(rng.randint(2, 4))),
    }
    return rng.choice(_TEMPLATES[label]).format(**slots)


@dataclass(frozen=True, slots=True)
class Window:
    """One generated context window: its records and the parameters that made it."""

    seed: int
    length: int
    index: int
    records: tuple[Record, ...]
    temperature: int

    def context(self, labelled: bool = False) -> str:
        n = len(self.records)
        head = (
            f"The following lines contain {n} general-knowledge questions, one per line. Each "
            "question has an answer that can be described as one of 6 categories: "
            + ", ".join(f"'{lab}'" for lab in LABELS)
            + (". Each line also shows its category after 'Label:'" if labelled else "")
            + f".\n\nYou will be asked to answer questions about the aggregate label statistics "
            f"across all {n} examples in this dataset. Do not try to guess, estimate, or "
            "approximate the result. Calculate the exact answer given these datapoints.\n\n"
        )
        body = "\n".join(r.line(labelled) for r in self.records)
        tail = (
            f"\n\nRecall: the preceding lines contain {n} general-knowledge questions, one per "
            "line, each with a date, a user ID and an instance."
        )
        return head + body + tail


@lru_cache(maxsize=8)
def window(seed: int, length: int, index: int, attempt: int = 0) -> Window:
    """Window ``index`` for ``(seed, length)``; ``attempt`` re-draws it (used to reject windows)."""
    rng = rng_for("oolong-window", seed, length, index, attempt)
    n = n_records(length)
    temperature = rng.randint(2, 6)
    logits = [rng.gauss(0.0, 1.0) for _ in LABELS]
    top = max(logits)
    weights = [math.exp((x - top) / temperature) for x in logits]
    n_users = max(2, round(n / 3.4))
    users = rng.sample(range(10_000, 100_000), n_users)
    user_weights = [1.0 / (rank + 1) ** 1.1 for rank in range(n_users)]
    span = (LAST_DAY - FIRST_DAY).days
    labels = rng.choices(LABELS, weights, k=n)
    owners = rng.choices(users, user_weights, k=n)
    records = tuple(
        Record(
            FIRST_DAY + timedelta(days=rng.randint(0, span)),
            owners[i],
            instance_text(lab, rng),
            lab,
        )
        for i, lab in enumerate(labels)
    )
    return Window(seed, length, index, records, temperature)
