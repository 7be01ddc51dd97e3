"""The model-free adversary for OOLONG and OOLONG-Pairs: a keyword answer-type classifier, then
exact counting on its labels (stdlib only).

The classifier is what a program written from the context alone can do: it knows the line format
and reads the wording (it strips the decoy half of "X, not the Y" / "Y, or rather X" asks with the
contrast markers it can see in the text) and classifies the wanted phrase with a generic English
answer-type lexicon in the style of rule-based TREC classifiers (Li & Roth's cue words). It does not
embed the generator's vocabulary tables: a program that does is the generator itself.
"""

from __future__ import annotations

import re

from . import _oracle

LABELS = _oracle.LABELS
ABBR, ENT, DESC, HUM, LOC, NUM = LABELS

#: Generic cue words per answer type (stems, matched at word starts), strongest first.
CUES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        ABBR,
        ("abbreviat", "acronym", "stand for", "stands for", "initial", "short for", "short form"),
    ),
    (
        NUM,
        (
            "how many",
            "how much",
            "how long",
            "how far",
            "how old",
            "year",
            "date",
            "when",
            "number",
            "population",
            "height",
            "length",
            "weight",
            "price",
            "cost",
            "age",
            "distance",
            "percent",
            "size",
            "speed",
            "temperature",
            "budget",
            "capacity",
            "count",
            "speed",
            "rate",
            "fee",
            "amount",
            "total",
            "area",
            "volume",
        ),
    ),
    (
        HUM,
        (
            "who",
            "whom",
            "person",
            "people",
            "founder",
            "inventor",
            "author",
            "writer",
            "president",
            "king",
            "queen",
            "leader",
            "owner",
            "actor",
            "singer",
            "player",
            "mayor",
            "captain",
            "coach",
            "scientist",
            "painter",
            "composer",
            "architect",
            "engineer",
            "mother",
            "father",
            "son",
            "daughter",
            "wife",
            "husband",
            "keeper",
            "master",
            "man",
            "woman",
            "boy",
            "girl",
        ),
    ),
    (
        LOC,
        (
            "where",
            "city",
            "country",
            "state",
            "capital",
            "location",
            "place",
            "town",
            "river",
            "mountain",
            "island",
            "region",
            "continent",
            "birthplace",
            "address",
            "port",
            "site",
            "village",
            "valley",
            "harbour",
            "harbor",
            "coast",
            "street",
            "county",
            "province",
            "land",
            "lake",
            "bay",
        ),
    ),
    (
        DESC,
        (
            "why",
            "meaning",
            "definition",
            "define",
            "purpose",
            "reason",
            "origin",
            "explain",
            "explanation",
            "describe",
            "significance",
            "difference",
            "idea",
            "theme",
            "concept",
            "lesson",
        ),
    ),
    (
        ENT,
        (
            "animal",
            "food",
            "dish",
            "colour",
            "color",
            "sport",
            "song",
            "game",
            "instrument",
            "plant",
            "drink",
            "vehicle",
            "flower",
            "book",
            "name of the",
        ),
    ),
)
#: People nouns by ending (teacher, pianist, librarian, actress ...), tried after the cues.
_PERSON_SUFFIX = re.compile(r"\b\w{3,}(?:ist|ian|or|er|ess|smith|wife)\b", re.I)
_COMPILED = tuple(
    (lab, re.compile(r"\b(?:" + "|".join(re.escape(c) for c in cues) + r")", re.I))
    for lab, cues in CUES
)
#: Contrast markers seen in the data: the phrase they introduce is the one not wanted ...
_UNWANTED_AFTER = re.compile(
    r"\((?:not the [^)]*|the [^)]*is already known)\)|, rather than the [^,]*,|-- never mind the "
    r"[^-]*--| and not the \S+(?: \S+)?|, as opposed to the [^,]*,",
    re.I,
)
# ... or the phrase they follow is the one not wanted (the wanted one comes after the marker)
_WANTED_AFTER = re.compile(
    r"(?:, or rather the|-- no, sorry, the|; correction: the|and so the|and instead the"
    r"|today I want the) (.+?)(?:,| --| of the | of | \?| \.|$)",
    re.I,
)
_INSTANCE = re.compile(r"Instance: (.*?)(?: \|\| Label:|$)")


def wanted_phrase(text: str) -> str:
    """The part of a question that names what is wanted, decoys removed when a marker shows."""
    m = _WANTED_AFTER.search(text)
    if m:
        return m.group(1)
    return _UNWANTED_AFTER.sub(" ", text)


_HEAD = re.compile(r"(?:\bthe|\bits) (.+?)(?: of the | of |,| \(| --| \?| \.|;|$)")


def head_phrase(text: str) -> str:
    """The wanted phrase cut to its head: up to the first ' of ', comma, bracket or end."""
    phrase = wanted_phrase(text)
    m = _WANTED_AFTER.search(text)
    if m:
        return phrase
    # the ask sits after the frame's verb ("What is the X of ...", "... what is its X ?")
    asks = list(
        re.finditer(
            r"(?:what (?:is|was|would you say is)|name|find|know|tell me)"
            r" (?:the|its) ",
            phrase,
            re.I,
        )
    )
    if asks:
        rest = phrase[asks[-1].start() :]
        h = _HEAD.search(rest)
        if h:
            return h.group(1)
    return phrase


def classify(text: str) -> str:
    """The answer type of one question: the cue class found first in its head phrase, then a
    person-noun ending, then the cue class first found anywhere (entity by default)."""
    head = head_phrase(text)
    for scope in (head, text):
        best = _first_cue(scope)
        if best is not None:
            return best
        if scope is head and _PERSON_SUFFIX.search(head):
            return HUM
    return ENT


def _first_cue(phrase: str) -> str | None:
    best: tuple[int, str] | None = None
    for lab, pattern in _COMPILED:
        hit = pattern.search(phrase)
        if hit and (best is None or hit.start() < best[0]):
            best = (hit.start(), lab)
    return best[1] if best else None


def label_context(context: str) -> str:
    """``context`` with ``|| Label: X`` appended to every record line, X from :func:`classify`."""
    out = []
    for line in context.split("\n"):
        if line.startswith("Date: ") and "|| Instance: " in line:
            text = line.split("|| Instance: ", 1)[1]
            out.append(f"{line} || Label: {classify(text)}")
        else:
            out.append(line)
    return "\n".join(out)


def solve_oolong(context: str, question: str) -> str:
    return _oracle.solve(label_context(context), question)


def solve_pairs(context: str, question: str) -> str:
    return _oracle.solve_pairs(label_context(context), question)
