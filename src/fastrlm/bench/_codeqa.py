"""CodeQA: four-choice questions over a synthetic repository about what functions *do* (spec §6).

The repository text comes from :mod:`fastrlm.bench._repo`. Each question describes in plain
words a behaviour of :mod:`fastrlm.bench._behaviours` ("tells how many of the entries leave no
remainder when divided by two") and offers four functions of one behaviour group under
meaningless names; the gold is the one that does it. Every choice's source is cut from its
rendered file and run against the references (exactly one matches), so a gold is exact by
execution. The structural families of the spec (callers, defaults, constants, bases, call
chains) are gone: ``ast`` answered them exactly. The prompt follows the paper (P2 E.4): options
indexed 0-3. The scorer accepts an index 0-3 or LongBench's letter formats.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from ._behaviours import BY_KEY, separates, verify
from ._instance import Instance, SimpleTask, length_meta, rng_for
from ._repo import generate_repo
from ._score import parse_choice

PROMPT = (
    "You are a helpful assistant that can answer questions about code repositories. You must "
    "answer the given question: {question} based on the repository provided in the context. "
    "You must answer with exactly one number choice using only the choices provided:\n\n"
    "{choices}\n\n(indexed from 0 to 3). End your answer with 'Answer: <index>'."
)
HEADER = "### File: {path}\n"


@dataclass(frozen=True, slots=True)
class MCQ:
    family: str
    question: str
    choices: tuple[str, str, str, str]
    gold: int


_ASK = (
    "Which of these functions {phrase}?",
    "Given a non-empty list of integers, which function {phrase}?",
    "One of the following functions {phrase}. Which one?",
    "A caller needs a function that {phrase}. Which function should it use?",
)


def q_behaviour(
    files: dict[str, str], behaviours: dict[str, tuple[str, str]], rng: random.Random
) -> MCQ | None:
    """Which of four behaviour functions (same group, different behaviours) does what the
    question describes in words. Each choice is checked by running its own source from the
    rendered file against the references (so exactly one choice matches)."""
    by_group: dict[str, dict[str, list[str]]] = {}
    for name, (_, key) in sorted(behaviours.items()):
        by_group.setdefault(BY_KEY[key].group, {}).setdefault(key, []).append(name)
    groups = [g for g, keys in sorted(by_group.items()) if len(keys) >= 4]
    if not groups:
        return None
    keys = by_group[rng.choice(groups)]
    picked = rng.sample(sorted(keys), 4)
    names = [rng.choice(keys[k]) for k in picked]
    for name, key in zip(names, picked, strict=True):
        if not verify(_function_source(files[behaviours[name][0]], name), name, BY_KEY[key]):
            raise AssertionError(f"codeqa: {name} does not implement {key}")
    if not separates(BY_KEY[picked[0]], [BY_KEY[k] for k in picked[1:]]):
        return None
    phrase = rng.choice(BY_KEY[picked[0]].phrases)
    question = rng.choice(_ASK).format(phrase=phrase)
    labels = [f"`{n}` in `{behaviours[n][0]}`" for n in names]
    right, wrong = labels[0], labels[1:]
    gold = rng.randrange(4)
    options = list(wrong)
    rng.shuffle(options)
    options.insert(gold, right)
    return MCQ("behaviour", question, (options[0], options[1], options[2], options[3]), gold)


def _function_source(source: str, name: str) -> str:
    """The text of top-level function ``name`` in ``source``, cut at the next top-level line.
    Plain text slicing, not ``ast``: generation runs in worker threads, and CPython 3.11's
    ``ast.parse`` is not thread-safe (a concurrent parse raises "AST constructor recursion depth
    mismatch")."""
    m = re.search(rf"^def {re.escape(name)}\(.*?(?=^\S|\Z)", source, flags=re.M | re.S)
    if m is None:
        raise AssertionError(f"codeqa: no function {name} in its file")
    return m.group(0)


FAMILIES: tuple[str, ...] = ("behaviour",)


def render(files: dict[str, str]) -> str:
    return "".join(HEADER.format(path=p) + s + "\n" for p, s in files.items())


def generate(seed: int, length: int, index: int) -> Instance:
    """Instance ``index``: a fresh repository of about ``length`` proxy tokens, family
    ``index % 6`` (re-drawn on a degenerate draw)."""
    rng = rng_for("codeqa", seed, length, index)
    mcq = None
    attempts = 0
    while mcq is None and attempts < 50:
        attempts += 1
        files, behaviours = generate_repo(rng, max(length * 4 - 800, 2000))
        mcq = q_behaviour(files, behaviours, rng)
    if mcq is None:  # pragma: no cover - a 6-file repository has about 9 behaviour functions
        raise RuntimeError("codeqa: no behaviour question in 50 repositories")
    choices = "\n".join(f"{i}: {c}" for i, c in enumerate(mcq.choices))
    query = PROMPT.format(question=mcq.question, choices=choices)
    context = render(files)
    meta = length_meta(context, len(query))
    meta.update(
        {
            "length": length,
            "seed": seed,
            "family": mcq.family,
            "files": len(files),
            "attempts": attempts,
            "choices": list(mcq.choices),
        }
    )
    return Instance(
        f"codeqa-{seed}-{length}-{index}", "codeqa", context, query, mcq.gold, "CHOICE", meta
    )


def score(pred: str, inst: Instance) -> float:
    return 1.0 if parse_choice(pred) == inst.gold else 0.0


TASK = SimpleTask(
    "codeqa",
    (23_000, 131_072, 1_048_576, 4_200_000),
    13,
    generate,
    score,
    "Multiple choice over a synthetic code repository, golds from ast",
)
