"""Offline text sources (spec §7): wonderwords word lists and stdlib prose. No downloads.

- :func:`words` reads ``wonderwords/assets/{noun,adjective,verb}list.txt`` through
  ``importlib.resources`` (the bench extra ships wonderwords; RULER's keys come from these lists).
- :func:`prose_sentences` cuts ``pydoc_data.topics`` (the Python reference, stdlib, ~465K chars)
  into prose sentences with a regex, replacing RULER's downloaded Paul Graham essays.
- :func:`filler` returns arbitrarily long prose, starting at a chosen sentence, in O(output) time.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from importlib import resources

from .. import MissingExtraError

_EXTRA_BANNED = frozenset({"intercourse", "sex", "breast", "rape", "slave", "slavery", "drug"})
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_PROSE_OK = re.compile(r"^[A-Z][^\n]+[a-z)][.!?]$")
_ODD = re.compile(r"[^A-Za-z0-9 ,.;:'\"()\-]")


@cache
def words(kind: str) -> tuple[str, ...]:
    """Sorted, de-duplicated lowercase alphabetic words of ``kind`` (noun, adjective, verb)."""
    try:
        assets = resources.files("wonderwords").joinpath("assets")
    except ModuleNotFoundError as exc:  # pragma: no cover - the bench extra is missing
        raise MissingExtraError("bench", "wonderwords", "The benchmarks") from exc
    text = assets.joinpath(f"{kind}list.txt").read_text(encoding="utf-8")
    banned = {w.strip().lower() for w in assets.joinpath("profanitylist.txt").read_text().split()}
    banned |= _EXTRA_BANNED
    return tuple(sorted({w.strip().lower() for w in text.split() if w.strip().isalpha()} - banned))


@lru_cache(maxsize=1)
def prose_sentences() -> tuple[str, ...]:
    """Prose-like sentences of the Python reference (code, grammar and headings dropped)."""
    from pydoc_data.topics import topics

    out: list[str] = []
    for key in sorted(topics):
        for para in re.split(r"\n\s*\n", topics[key]):
            if ">>>" in para or "::=" in para or "*****" in para or "=====" in para:
                continue
            if para.endswith("::") or para.lstrip().startswith(("*", "-", "+")):
                continue
            flat = " ".join(para.split())
            for sent in _SENTENCE.split(flat):
                if 30 <= len(sent) <= 300 and _PROSE_OK.match(sent) and not _odd(sent):
                    out.append(sent)
    return tuple(out)


def filler(chars: int, start: int = 0, sep: str = " ") -> list[str]:
    """Whole prose sentences, cycling from sentence ``start``, totalling at least ``chars`` chars
    (separators included). Returns the sentences so callers can insert at sentence boundaries."""
    sents = prose_sentences()
    out: list[str] = []
    total = 0
    i = start % len(sents)
    while total < chars:
        s = sents[i]
        out.append(s)
        total += len(s) + len(sep)
        i = (i + 1) % len(sents)
    return out


def filler_text(chars: int, start: int = 0) -> str:
    """:func:`filler` joined with spaces and cut to exactly ``chars`` at a word boundary or less."""
    text = " ".join(filler(chars, start))
    if len(text) <= chars:
        return text
    cut = text.rfind(" ", 0, chars)
    return text[: cut if cut > 0 else chars]


def _odd(sent: str) -> bool:
    return len(_ODD.findall(sent)) > len(sent) // 40
