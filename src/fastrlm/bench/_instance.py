"""The value every task produces and every method consumes, plus the seeding rules.

Contract (spec §8): a generator is a pure function ``(seed, params, index) -> Instance``. Its
randomness comes only from :func:`rng_for`, a ``random.Random`` seeded from the sha256 of its
arguments (never the builtin ``hash()``, which is salted per process), so the same arguments give
the same bytes on every machine and in every process (for the same :func:`text_sources`: the
stdlib prose and word lists are those of the installed Python and wonderwords).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol

#: Bumped whenever a generator's output for a given seed changes.
GENERATOR_VERSION = "3"

JSON = Any  # a JSON-serialisable value (str, int, float, list, dict, None)


@dataclass(frozen=True, slots=True)
class Instance:
    """One benchmark question over one context.

    - ``id``: unique within (task, seed, length); stable across runs.
    - ``context``: what an RLM gets as ``context`` (a string, or a list of documents/files).
    - ``query``: the question as the task's prompt format states it (no context inside).
    - ``gold``: the exact answer, JSON-serialisable; the task's scorer knows its shape.
    - ``answer_type``: a task-specific tag (``NUMERIC``, ``LABEL``, ``PAIRS``, ``CHOICE`` ...).
    - ``meta``: length in proxy tokens and chars, generator version, parameters, anything a
      report might group by. Never contains the context.
    """

    id: str
    task: str
    context: str | list[str]
    query: str
    gold: JSON
    answer_type: str
    meta: dict[str, JSON] = field(default_factory=dict)

    @property
    def context_chars(self) -> int:
        if isinstance(self.context, str):
            return len(self.context)
        return sum(len(c) for c in self.context)


def rng_for(*parts: object) -> random.Random:
    """A ``random.Random`` seeded from the sha256 of ``parts`` joined with ``|``."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def proxy_tokens(chars: int) -> int:
    """The offline token proxy used for every length in the harness: ``ceil(chars / 4)``."""
    return (chars + 3) // 4


@cache
def text_sources() -> str:
    """What the offline text depends on: the Python minor version (``pydoc_data.topics``, the
    stdlib prose) and the wonderwords version (word lists). Same seed, same bytes holds for equal
    values."""
    import sys
    from importlib.metadata import PackageNotFoundError, version

    try:
        ww = version("wonderwords")
    except PackageNotFoundError:  # pragma: no cover - the bench extra is missing
        ww = "missing"
    return f"python{sys.version_info[0]}.{sys.version_info[1]}+wonderwords{ww}"


def length_meta(context: str | list[str], extra_chars: int = 0) -> dict[str, JSON]:
    """``chars`` and ``tokens`` (proxy) of a context plus ``extra_chars`` of prompt, with the
    generator version and :func:`text_sources`."""
    chars = len(context) if isinstance(context, str) else sum(len(c) for c in context)
    chars += extra_chars
    return {
        "chars": chars,
        "tokens": proxy_tokens(chars),
        "generator_version": GENERATOR_VERSION,
        "text_sources": text_sources(),
    }


class Task(Protocol):
    """A benchmark: a lazy instance generator plus its scorer.

    ``instance(seed, length, index)`` builds instance ``index`` (0-based) of the set for ``seed``
    at ``length`` proxy tokens; ``score(pred, inst)`` returns a float in [0, 1]. ``default_lengths``
    and ``default_n`` describe the paper's setting (Table 1 / Figure 1).
    """

    @property
    def name(self) -> str: ...

    @property
    def default_lengths(self) -> tuple[int, ...]: ...

    @property
    def default_n(self) -> int: ...

    def instance(self, seed: int, length: int, index: int) -> Instance: ...

    def score(self, pred: str, inst: Instance) -> float: ...


@dataclass(frozen=True, slots=True)
class SimpleTask:
    """A :class:`Task` assembled from two functions (what every built-in task is)."""

    name: str
    default_lengths: tuple[int, ...]
    default_n: int
    build: Callable[[int, int, int], Instance]
    scorer: Callable[[str, Instance], float]
    description: str = ""

    def instance(self, seed: int, length: int, index: int) -> Instance:
        return self.build(seed, length, index)

    def score(self, pred: str, inst: Instance) -> float:
        return self.scorer(pred, inst)
