"""S-NIAH: RULER's single needle in a haystack (spec §2), generated offline.

Needle ``"One of the special magic {numbers|uuids} for {adj}-{noun} is: {value}."`` inserted at a
sentence boundary at a depth drawn from RULER's 40 depths, in a ``noise`` haystack (RULER's
repeated sentences) or a ``text`` haystack (stdlib prose in place of the downloaded Paul Graham
essays). The three RULER single-needle configurations are cycled by instance index unless one is
chosen. The length is the whole prompt (template + context) in proxy tokens (chars / 4).
Scoring is RULER's ``string_match_all``.
"""

from __future__ import annotations

import uuid
from typing import Literal

from ._instance import Instance, SimpleTask, length_meta, rng_for
from ._score import string_match_all
from ._text import filler, words

DEPTHS: tuple[int, ...] = tuple(round(i * 100 / 39) for i in range(40))
NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
#: RULER's single-needle configurations: (haystack, value kind).
CONFIGS: dict[str, tuple[Literal["noise", "text"], Literal["numbers", "uuids"]]] = {
    "niah_single_1": ("noise", "numbers"),
    "niah_single_2": ("text", "numbers"),
    "niah_single_3": ("text", "uuids"),
}
PREAMBLE = (
    "A special magic {kind} is hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the {kind} afterwards."
)
QUESTION = "What is the special magic {kind} for {key} mentioned in the provided text?"

_TEMPLATE_OVERHEAD = len(PREAMBLE) * 2 + len(QUESTION) + 40


def generate(seed: int, length: int, index: int, config: str | None = None) -> Instance:
    """Instance ``index`` at ``length`` proxy tokens. ``config`` picks a RULER configuration;
    by default instance ``i`` uses the ``i % 3``-th. The needle key and value occur exactly once.
    """
    name = config or sorted(CONFIGS)[index % len(CONFIGS)]
    haystack, value_kind = CONFIGS[name]
    rng = rng_for("sniah", seed, length, index, name)
    kind = "number" if value_kind == "numbers" else "uuid"
    adjectives, nouns = words("adjective"), words("noun")
    target = max(length * 4 - _TEMPLATE_OVERHEAD, 200)
    if haystack == "noise":
        n_blocks = max(target // (len(NOISE) + 1), 1)
        sentences = [NOISE] * n_blocks
        sep = "\n"
        body_for_check = NOISE
    else:
        sentences = filler(target, start=rng.randrange(10_000))
        sep = " "
        body_for_check = ""
    text = sep.join(sentences) if haystack == "text" else body_for_check
    while True:
        key = f"{rng.choice(adjectives)}-{rng.choice(nouns)}"
        if value_kind == "numbers":
            value = str(rng.randint(10**6, 10**7 - 1))
        else:
            value = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if key not in text and value not in text:
            break
    depth = rng.choice(DEPTHS)
    at = int(len(sentences) * depth / 100)
    needle = f"One of the special magic {value_kind} for {key} is: {value}."
    context = sep.join([*sentences[:at], needle, *sentences[at:]])
    query = PREAMBLE.format(kind=kind) + "\n\n" + QUESTION.format(kind=kind, key=key)
    meta = length_meta(context, len(query))
    meta.update(
        {
            "length": length,
            "config": name,
            "haystack": haystack,
            "value_kind": value_kind,
            "depth": depth,
            "key": key,
            "seed": seed,
        }
    )
    return Instance(
        f"sniah-{seed}-{length}-{index}", "sniah", context, query, value, "STRING", meta
    )


def score(pred: str, inst: Instance) -> float:
    gold = inst.gold if isinstance(inst.gold, list) else [inst.gold]
    return string_match_all(pred, [str(g) for g in gold])


TASK = SimpleTask(
    "sniah",
    tuple(2**k for k in range(13, 19)),
    50,
    generate,
    score,
    "RULER single needle in a haystack (noise/text haystacks, 7-digit and UUID values)",
)
