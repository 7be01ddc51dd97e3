"""BrowseComp-Plus analogue (spec §5): multi-hop questions over a synthetic world, answered from a
list of documents (1,000 per query at full size), scored by normalised exact match.

A question picks a start entity, identified uniquely in the whole world by its kind, category and
an inclusive year range (verified by brute force), and follows 2-4 functional relations; the gold
is the name of the last entity. Documents: one per chain entity (the evidence; the last two name
the answer), the documents of near-miss start entities (same kind, one constraint off) and of
their next hop (hard negatives), then random entities up to the document count, each padded with
offline prose to its length. ``length`` is the total in proxy tokens: ``min(1000, length // 1000)``
documents (at least what the evidence and negatives need) of ``length / docs`` tokens each, drawn
within +-30% (the paper's 1K-document setting is ``length`` of about 8.5M: 6-11M tokens).
"""

from __future__ import annotations

import random

from ._instance import Instance, SimpleTask, length_meta, rng_for
from ._score import exact_match
from ._score import extract_answer as extract_answer
from ._score import normalize as normalize
from ._text import filler
from ._world import HOP_TEXT, NOUN_OF, RELATIONS, Entity, World, world

FORMAT = (
    "Your response should be in the following format:\nExplanation: {your explanation}\n"
    "Exact Answer: {your succinct, final answer}\nConfidence: {your confidence score "
    "between 0% and 100% for your answer}"
)


def _unique_start(w: World, rng: random.Random, kind: str) -> tuple[Entity, int, int] | None:
    e = w.entities[rng.choice(w.by_kind[kind])]
    lo, hi = e.year - rng.randint(0, 6), e.year + rng.randint(0, 6)
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


def question(
    w: World, rng: random.Random
) -> tuple[str, Entity, list[tuple[str, Entity]], int, int]:
    """(question text, start entity, chain, year lo, year hi) with a unique answer."""
    while True:
        kind = rng.choice(("work", "event", "org", "person"))
        picked = _unique_start(w, rng, kind)
        if picked is None:
            continue
        start, lo, hi = picked
        chain = _chain(w, rng, start, rng.randint(2, 4))
        if not chain or chain[-1][1].kind == chain[0][1].kind == start.kind:
            continue
        what = {
            "work": f"a {start.category} work first published",
            "event": f"a {start.category} event first held",
            "org": f"a {start.category} organisation founded",
            "person": f"a {start.category} born",
        }[kind]
        parts = [f"Consider {what} between {lo} and {hi} inclusive (there is exactly one)."]
        prev = start
        for rel, ent in chain:
            parts.append(HOP_TEXT[(prev.kind, rel)])
            prev = ent
        parts.append(f"What is the name of that {NOUN_OF[prev.kind]}?")
        return " ".join(parts), start, chain, lo, hi


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
    return out[:k]


def _document(w: World, e: Entity, docid: str, chars: int, rng: random.Random) -> str:
    facts = w.facts(e)
    body = filler(max(chars - sum(map(len, facts)), 0), start=rng.randrange(10_000))
    for fact in facts:
        body.insert(rng.randint(0, len(body)), fact)
    title = e.name if e.kind != "event" else f"The {e.name}"
    return f"docid: {docid}\ntitle: {title}\n" + " ".join(body)


def generate(seed: int, length: int, index: int, docs: int | None = None) -> Instance:
    """Instance ``index`` at ``length`` proxy tokens (``docs`` overrides the document count)."""
    w = world(seed)
    rng = rng_for("browsecomp", seed, length, index)
    text, start, chain, lo, hi = question(w, rng)
    answer = chain[-1][1]
    evidence = [start] + [e for _, e in chain]
    negatives: list[Entity] = []
    for miss in _near_misses(w, start, lo, hi, 3):
        negatives.append(miss)
        hop = w.entities[miss.rel[chain[0][0]]]
        negatives.append(hop)
    chosen = {e.id for e in evidence}
    kept: list[Entity] = []
    for e in negatives:
        if e.id not in chosen:
            chosen.add(e.id)
            kept.append(e)
    negatives = kept
    n_docs = max(docs or min(1000, max(length // 1000, 1)), len(evidence) + len(negatives))
    others: list[Entity] = []
    while len(evidence) + len(negatives) + len(others) < n_docs:
        e = w.entities[rng.randrange(len(w.entities))]
        if e.id not in chosen:
            chosen.add(e.id)
            others.append(e)
    everyone = evidence + negatives + others
    order = list(range(len(everyone)))
    rng.shuffle(order)
    per_doc = length * 4 / n_docs
    docs_out: list[str] = [""] * len(everyone)
    docids = {}
    for pos, k in enumerate(order):
        docid = str(10_000 + pos)
        docids[everyone[k].id] = docid
        docs_out[pos] = _document(w, everyone[k], docid, int(per_doc * rng.uniform(0.7, 1.3)), rng)
    query = text + "\n\n" + FORMAT
    meta = length_meta(docs_out, len(query))
    meta.update(
        {
            "length": length,
            "seed": seed,
            "docs": len(docs_out),
            "hops": len(chain),
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
