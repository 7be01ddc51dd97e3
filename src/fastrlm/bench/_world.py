"""A seeded synthetic world for the BrowseComp-Plus analogue (spec §5): entities and functional
relations.

Kinds: person (born, profession, birthplace -> town, employer -> org), town (founded, region),
org (founded, sector, hq -> town, founder -> person), work (published, genre, author -> person),
event (first held, type, host -> town, first winner -> person). Names are unique in the world.
How documents and questions word these facts: :mod:`fastrlm.bench._wording`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from ._instance import rng_for
from ._text import words

CATEGORIES: dict[str, tuple[str, ...]] = {
    "person": (
        "painter",
        "surveyor",
        "chemist",
        "novelist",
        "architect",
        "sailor",
        "judge",
        "cartographer",
        "violinist",
        "botanist",
    ),
    "town": ("coastal", "mountain", "river", "desert", "valley", "island", "forest", "lake"),
    "org": (
        "shipping",
        "publishing",
        "mining",
        "banking",
        "textile",
        "railway",
        "brewing",
        "insurance",
    ),
    "work": ("mystery", "poetry", "travel", "history", "satire", "romance", "science", "drama"),
    "event": ("music", "film", "chess", "rowing", "cooking", "recital", "kite", "lantern"),
}
YEARS: dict[str, tuple[int, int]] = {
    "person": (1900, 1990),
    "town": (1200, 1900),
    "org": (1850, 2010),
    "work": (1950, 2020),
    "event": (1900, 2015),
}
#: (kind, relation) -> target kind; every relation is functional.
RELATIONS: dict[tuple[str, str], str] = {
    ("person", "birthplace"): "town",
    ("person", "employer"): "org",
    ("org", "hq"): "town",
    ("org", "founder"): "person",
    ("work", "author"): "person",
    ("event", "host"): "town",
    ("event", "first_winner"): "person",
}
SIZES = {"person": 4000, "town": 1500, "org": 1500, "work": 2000, "event": 1000}


@dataclass(slots=True)
class Entity:
    id: int
    kind: str
    name: str
    year: int
    category: str
    rel: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class World:
    entities: list[Entity]
    by_kind: dict[str, list[int]]


def _name(kind: str, rng: object, nouns: tuple[str, ...], adjs: tuple[str, ...]) -> str:
    import random

    assert isinstance(rng, random.Random)
    syl = (
        "ar",
        "bel",
        "cor",
        "dan",
        "el",
        "fen",
        "gar",
        "hal",
        "is",
        "jor",
        "kel",
        "lor",
        "mar",
        "nor",
        "or",
        "pel",
        "quin",
        "ros",
        "sil",
        "tor",
        "ul",
        "ver",
        "wen",
        "yor",
        "zan",
    )
    if kind == "person":
        first = "".join(rng.choice(syl) for _ in range(2)).title()
        last = "".join(rng.choice(syl) for _ in range(rng.randint(2, 3))).title()
        return f"{first} {last}"
    if kind == "town":
        return f"{rng.choice(adjs).title()}{rng.choice(nouns)}"
    if kind == "org":
        suffix = rng.choice(("Company", "Society", "Institute", "Guild", "Works", "Trust"))
        return f"{rng.choice(nouns).title()} {rng.choice(nouns).title()} {suffix}"
    if kind == "work":
        return f"The {rng.choice(adjs).title()} {rng.choice(nouns).title()}"
    return f"{rng.choice(adjs).title()} {rng.choice(nouns).title()} Festival"


@lru_cache(maxsize=4)
def world(seed: int) -> World:
    """The world for ``seed`` (about 10,000 entities)."""
    rng = rng_for("browsecomp-world", seed)
    nouns, adjs = words("noun"), words("adjective")
    entities: list[Entity] = []
    by_kind: dict[str, list[int]] = {k: [] for k in SIZES}
    taken: set[str] = set()
    for kind, size in SIZES.items():
        for _ in range(size):
            name = _name(kind, rng, nouns, adjs)
            while name.lower() in taken:
                name = _name(kind, rng, nouns, adjs)
            taken.add(name.lower())
            lo, hi = YEARS[kind]
            e = Entity(len(entities), kind, name, rng.randint(lo, hi), rng.choice(CATEGORIES[kind]))
            entities.append(e)
            by_kind[kind].append(e.id)
    for e in entities:
        for (kind, rel), target in RELATIONS.items():
            if kind == e.kind:
                e.rel[rel] = rng.choice(by_kind[target])
    return World(entities, by_kind)
