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
from ._oracle import LABELS as ORACLE_LABELS
from ._text import words

#: OOLONG's six trec_coarse labels. They are defined in :mod:`._oracle`, whose source runs on
#: its own inside the REPL (stdlib only), and shared from there.
LABELS: tuple[str, ...] = ORACLE_LABELS
FIRST_DAY = date(2022, 1, 1)
LAST_DAY = date(2024, 12, 31)

#: What a question asks for, per label: the answer type is the meaning of this head phrase.
HEADS: dict[str, tuple[str, ...]] = {
    "abbreviation": (
        "contracted name",
        "shorthand",
        "clipped name",
        "clipped form",
        "truncated title",
        "compressed name",
        "spelled-out name",
        "long form of its letters",
        "expanded name",
        "unabridged name",
        "full wording of its letters",
        "abridged name",
        "compact name",
    ),
    "entity": (
        "mascot",
        "emblem",
        "heirloom",
        "trophy",
        "anthem",
        "delicacy",
        "pastry",
        "livery",
        "insignia",
        "talisman",
        "tapestry",
        "hymn",
        "figurehead carving",
        "coat of arms",
        "totem",
    ),
    "description and abstract concept": (
        "gist",
        "rationale",
        "essence",
        "backstory",
        "premise",
        "symbolism",
        "motive",
        "nature",
        "appeal",
        "philosophy",
        "allure",
        "underlying logic",
        "ethos",
        "spirit",
    ),
    "human being": (
        "steward",
        "chaplain",
        "heir",
        "widow",
        "nephew",
        "niece",
        "bride",
        "monk",
        "squire",
        "baron",
        "sheriff",
        "vicar",
        "abbot",
        "cousin",
        "orphan",
        "pilgrim",
        "hermit",
        "tenant",
        "midwife",
    ),
    "location": (
        "parish",
        "estuary",
        "hinterland",
        "borough",
        "peninsula",
        "lagoon",
        "oasis",
        "archipelago",
        "fjord",
        "moorland",
        "delta",
        "isthmus",
        "plateau",
        "headland",
    ),
    "numeric value": (
        "tonnage",
        "wingspan",
        "headcount",
        "mileage",
        "acreage",
        "turnout",
        "wattage",
        "circumference",
        "shelf life",
        "boiling point",
        "annual rainfall",
        "elevation",
        "dosage",
        "voltage",
    ),
}
#: Everyday answer-type words (what keyword classifiers key on), used only inside descriptions of
#: the thing asked about, where they say nothing about the answer type.
_DISTRACTORS: dict[str, tuple[str, ...]] = {
    "hum": ("founder", "inventor", "mayor", "captain", "author", "president", "owner"),
    "num": ("population", "height", "price", "founding year", "length", "age", "number"),
    "ent": ("favourite colour", "national animal", "signature dish", "currency", "flag"),
    "loc": ("capital", "birthplace", "location", "home city", "country"),
    "desc": ("meaning", "purpose", "origin", "definition", "reason"),
}
#: Question frames shared by every label (the wh-word says nothing about the answer type).
_FRAMES = (
    "What is the {H} of {Y} ?",
    "Name the {H} of {Y} .",
    "For {Y} , what is the {H} ?",
    "Do you know the {H} of {Y} ?",
    "{Y} -- what is its {H} ?",
    "I am trying to find the {H} of {Y} .",
    "Tell me the {H} of {Y} .",
    "Which was the {H} of {Y} ?",
    "Someone asked about {Y} ; what was its {H} ?",
    "What would you say is the {H} of {Y} ?",
)
#: How a question names what it wants next to a decoy it does not want ({T}: wanted, {D}:
#: decoy of another label). The decoy comes first as often as last, so its position says nothing.
_ASKS = (
    "{T} (not the {D})",
    "{T}, rather than the {D},",
    "{T} -- never mind the {D} --",
    "{T} and not the {D}",
    "{T}, as opposed to the {D},",
    "{T} (the {D} is already known)",
    "{D}, or rather the {T},",
    "{D} -- no, sorry, the {T} --",
    "{D}; correction: the {T}",
    "{D} (which I know) and so the {T}",
    "{D}, which is well documented, and instead the {T}",
    "{D} I asked about yesterday; today I want the {T}",
)
#: Descriptions of the thing asked about, carrying other labels' vocabulary as distractors.
_ABOUT = (
    "the {adj} {noun}",
    "the {adj} {noun} that the {hum} built near {Place}",
    "the {noun} built in {year} by the {hum}",
    "the {noun} known by its initials {ACR}",
    "the {noun} in {Place} whose {num} puzzled the {hum}",
    "the {adj} {noun} described in the {ACR} report",
    "the {noun} where the {ent} of {Place} was kept",
    "the {adj} {noun} whose {desc} the {hum} never explained",
    "the {noun} that moved to {Place} in {year}",
    "the {noun} that the {loc} of the {hum} is famous for",
)


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
    """A question whose TREC coarse label is ``label`` by construction: the label is the answer
    type of the wanted head phrase (``HEADS``), named next to a decoy head of another label with
    varied contrast wording; frames are shared by all labels; the description of what is asked
    about carries other labels' words too (a founder, a year, a place, initials)."""
    nouns, adjs = words("noun"), words("adjective")
    slots = {
        "adj": rng.choice(adjs),
        "noun": rng.choice(nouns),
        "Place": f"{rng.choice(adjs).title()} {rng.choice(nouns).title()}",
        "ACR": "".join(chr(65 + rng.randrange(26)) for _ in range(rng.randint(2, 4))),
        "year": str(rng.randint(1700, 2020)),
        **{slot: rng.choice(cues) for slot, cues in _DISTRACTORS.items()},
    }
    about = rng.choice(_ABOUT).format(**slots)
    decoy = rng.choice([lab for lab in LABELS if lab != label])
    ask = rng.choice(_ASKS).format(T=rng.choice(HEADS[label]), D=rng.choice(HEADS[decoy]))
    return " ".join(rng.choice(_FRAMES).format(H=ask, Y=about).split())


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
def window(
    seed: int,
    length: int,
    index: int,
    attempt: int = 0,
    records_per_user: float = 3.4,
    zipf: float = 1.1,
    flat_head: int = 1,
) -> Window:
    """Window ``index`` for ``(seed, length)``; ``attempt`` re-draws it (used to reject windows).
    Users: a pool of ``n / records_per_user`` IDs drawn with Zipf weights
    ``1 / max(rank, flat_head) ** zipf`` (the ``flat_head`` busiest users are equally busy)."""
    rng = rng_for("oolong-window", seed, length, index, attempt)
    n = n_records(length)
    temperature = rng.randint(2, 6)
    logits = [rng.gauss(0.0, 1.0) for _ in LABELS]
    top = max(logits)
    weights = [math.exp((x - top) / temperature) for x in logits]
    n_users = max(2, round(n / records_per_user))
    users = rng.sample(range(10_000, 100_000), n_users)
    user_weights = [1.0 / max(rank + 1, flat_head) ** zipf for rank in range(n_users)]
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
