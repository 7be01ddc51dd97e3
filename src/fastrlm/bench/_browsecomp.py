"""BrowseComp-Plus analogue (spec §5): multi-hop questions over a synthetic world, answered from a
list of documents (1,000 per query at full size), scored by normalised exact match.

A question picks a start entity, identified uniquely in the whole world by its kind, category and
an inclusive year range (verified by brute force), and follows 2-4 functional relations; the gold
is the name of the last entity. The question describes the category in words no document uses
and words the range and the hops variously; documents state each fact in one of several
phrasings next to look-alike sentences (a cousin born in another town, a rival's head office)
that name other documents' entities of the same kind (:mod:`fastrlm.bench._wording`).
Documents: one per chain entity (the evidence; the last two name the answer), near-miss start
entities (one of the same category with the year just outside the range, the rest in range with
another category) with their whole chains (hard negatives), then random entities up to the
document count, each padded with offline prose to its length. ``length`` is the total in proxy
tokens: ``min(1000, length // 1000)`` documents (at least what the evidence and negatives need)
of ``length / docs`` tokens each, drawn within +-30% (the paper's 1K-document setting is
``length`` of about 8.5M: 6-11M tokens).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ._instance import Instance, SimpleTask, length_meta, rng_for
from ._score import exact_match
from ._score import extract_answer as extract_answer
from ._score import normalize as normalize
from ._text import filler
from ._wording import (
    ABOUT,
    DESCRIBE,
    FACTS,
    HOPS,
    LOOKALIKES,
    NOUN_OF,
    STARTS,
    question_description,
    year_range,
)
from ._world import RELATIONS, Entity, World, world

FORMAT = (
    "Your response should be in the following format:\nExplanation: {your explanation}\n"
    "Exact Answer: {your succinct, final answer}\nConfidence: {your confidence score "
    "between 0% and 100% for your answer}"
)


def _unique_start(w: World, rng: random.Random, kind: str) -> tuple[Entity, int, int] | None:
    e = w.entities[rng.choice(w.by_kind[kind])]
    lo = e.year - rng.randint(0, 6)
    hi = max(e.year + rng.randint(0, 6), lo + 2)  # a real range, never "between Y and Y"
    hits = [
        x
        for x in w.by_kind[kind]
        if w.entities[x].category == e.category and lo <= w.entities[x].year <= hi
    ]
    return (e, lo, hi) if hits == [e.id] else None


def _chain(w: World, rng: random.Random, start: Entity, hops: int) -> list[tuple[str, Entity]]:
    out: list[tuple[str, Entity]] = []
    cur, seen = start, {start.id}
    for _ in range(hops):
        options = [r for (k, r) in RELATIONS if k == cur.kind and cur.rel[r] not in seen]
        if not options:
            return []
        rel = rng.choice(sorted(options))
        cur = w.entities[cur.rel[rel]]
        seen.add(cur.id)
        out.append((rel, cur))
    return out


@dataclass(frozen=True, slots=True)
class Question:
    text: str
    start: Entity
    chain: list[tuple[str, Entity]]
    lo: int
    hi: int
    description: int  # which description of the start's category the question uses


def question(w: World, rng: random.Random) -> Question:
    """A question with a unique answer: the start described (category in other words, the year
    range in varied wording), then each hop in varied wording."""
    while True:
        kind = rng.choice(("work", "event", "org", "person"))
        picked = _unique_start(w, rng, kind)
        if picked is None:
            continue
        start, lo, hi = picked
        chain = _chain(w, rng, start, rng.randint(2, 4))
        if not chain or chain[-1][1].kind == chain[0][1].kind == start.kind:
            continue
        described, k = question_description(start.category, rng)
        parts = [STARTS[kind].format(d=described, r=year_range(lo, hi, rng))]
        for rel, _ in chain:
            parts.append(rng.choice(HOPS[rel]))
        parts.append(f"What is the name of that {NOUN_OF[chain[-1][1].kind]}?")
        return Question(" ".join(parts), start, chain, lo, hi, k)


def _near_misses(w: World, start: Entity, lo: int, hi: int, k: int) -> list[Entity]:
    out = []
    for x in w.by_kind[start.kind]:
        e = w.entities[x]
        if e.id == start.id:
            continue
        year_off = e.category == start.category and (lo - 3 <= e.year < lo or hi < e.year <= hi + 3)
        cat_off = e.category != start.category and lo <= e.year <= hi
        if year_off or cat_off:
            out.append(e)
    out.sort(key=lambda e: (e.category != start.category, e.id))
    # one of the same category with the year just outside, the rest in range with another one
    same = [e for e in out if e.category == start.category][:1]
    other = [e for e in out if e.category != start.category][: k - len(same)]
    return same + other


def _follow(w: World, e: Entity, rels: list[str]) -> list[Entity]:
    """The entities reached from ``e`` along ``rels`` (stopping where a relation is missing)."""
    out = []
    for rel in rels:
        if rel not in e.rel:
            break
        e = w.entities[e.rel[rel]]
        out.append(e)
    return out


def _sentences(
    w: World, e: Entity, corpus: dict[str, list[Entity]], avoid: tuple[str, int], rng: random.Random
) -> list[str]:
    """What a document about ``e`` says: its category and year, each relation in one of its
    phrasings, and look-alike sentences naming other documents' entities of the same kind."""
    name = e.name if e.kind != "event" else f"the {e.name}"
    descs = [d for i, d in enumerate(DESCRIBE[e.category]) if (e.category, i) != avoid]
    about = rng.choice(ABOUT[e.kind]).format(s=name, y=e.year, c=e.category, d=rng.choice(descs))
    out = [about[0].upper() + about[1:]]
    for rel, target in sorted(e.rel.items()):
        t = w.entities[target]
        tname = t.name if t.kind != "event" else f"the {t.name}"
        fact = rng.choice(FACTS[rel]).format(s=name, t=tname)
        out.append(fact[0].upper() + fact[1:])
        decoys = [x for x in corpus.get(t.kind, []) if x.id not in (t.id, e.id)]
        for decoy in rng.sample(decoys, min(len(decoys), rng.randint(2, 4))):
            dname = decoy.name if decoy.kind != "event" else f"the {decoy.name}"
            look = rng.choice(LOOKALIKES[rel]).format(s=name, t=dname)
            out.append(look[0].upper() + look[1:])
    return out


def _document(sentences: list[str], title: str, docid: str, chars: int, rng: random.Random) -> str:
    body = filler(max(chars - sum(map(len, sentences)), 0), start=rng.randrange(10_000))
    for sentence in sentences:
        body.insert(rng.randint(0, len(body)), sentence)
    return f"docid: {docid}\ntitle: {title}\n" + " ".join(body)


def generate(seed: int, length: int, index: int, docs: int | None = None) -> Instance:
    """Instance ``index`` at ``length`` proxy tokens (``docs`` overrides the document count)."""
    w = world(seed)
    rng = rng_for("browsecomp", seed, length, index)
    q = question(w, rng)
    answer = q.chain[-1][1]
    evidence = [q.start] + [e for _, e in q.chain]
    rels = [rel for rel, _ in q.chain]
    chosen = {e.id for e in evidence}
    negatives: list[Entity] = []
    # near misses with their whole chains, so "the chain that is all in the corpus" is no tell
    for miss in _near_misses(w, q.start, q.lo, q.hi, 5):
        for e in [miss, *_follow(w, miss, rels)]:
            if e.id not in chosen:
                chosen.add(e.id)
                negatives.append(e)
    n_docs = max(docs or min(1000, max(length // 1000, 1)), len(evidence) + len(negatives))
    others: list[Entity] = []
    while len(evidence) + len(negatives) + len(others) < n_docs:
        e = w.entities[rng.randrange(len(w.entities))]
        if e.id not in chosen:
            chosen.add(e.id)
            others.append(e)
    everyone = evidence + negatives + others
    corpus: dict[str, list[Entity]] = {}
    for e in everyone:
        corpus.setdefault(e.kind, []).append(e)
    order = list(range(len(everyone)))
    rng.shuffle(order)
    per_doc = length * 4 / n_docs
    docs_out: list[str] = [""] * len(everyone)
    docids = {}
    avoid = (q.start.category, q.description)
    for pos, k in enumerate(order):
        e = everyone[k]
        docid = str(10_000 + pos)
        docids[e.id] = docid
        title = e.name if e.kind != "event" else f"The {e.name}"
        sentences = _sentences(w, e, corpus, avoid, rng)
        chars = int(per_doc * rng.uniform(0.7, 1.3))
        docs_out[pos] = _document(sentences, title, docid, chars, rng)
    query = q.text + "\n\n" + FORMAT
    meta = length_meta(docs_out, len(query))
    meta.update(
        {
            "length": length,
            "seed": seed,
            "docs": len(docs_out),
            "hops": len(q.chain),
            "start": {"kind": q.start.kind, "category": q.start.category, "lo": q.lo, "hi": q.hi},
            "evidence_docids": [docids[e.id] for e in evidence[:-1]],
            "gold_docids": [docids[e.id] for e in evidence[-2:]],
            "negative_docids": [docids[e.id] for e in negatives],
        }
    )
    return Instance(
        f"browsecomp-{seed}-{length}-{index}",
        "browsecomp",
        docs_out,
        query,
        [answer.name],
        "NAME",
        meta,
    )


def score(pred: str, inst: Instance) -> float:
    return exact_match(pred, [str(g) for g in inst.gold])


TASK = SimpleTask(
    "browsecomp",
    (8_500_000,),
    150,
    generate,
    score,
    "BrowseComp-Plus analogue: multi-hop questions over 1,000 synthetic documents",
)
