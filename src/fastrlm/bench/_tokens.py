"""Token counts: a real tokenizer (o200k_base, GPT-4o/GPT-5's) when one loads offline, else the
``ceil(chars / 4)`` proxy. Every count says which it is.

Where o200k_base comes from, in order:

1. ``bpe-openai`` (PyPI, MIT): ships ``o200k_base.tiktoken.gz`` inside the wheel, so it never
   touches the network.
2. ``tiktoken``, only when its cache already holds the o200k_base file (``TIKTOKEN_CACHE_DIR``, or
   ``DATA_GYM_CACHE_DIR``, or ``$TMPDIR/data-gym-cache``); tiktoken would otherwise download it
   on first use, and a benchmark must not depend on the network.
3. Neither: the proxy.

``FASTRLM_TOKENIZER=proxy`` forces the proxy (for comparisons and tests).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PROXY = "chars/4 proxy"
_O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
#: Texts are counted in pieces of at most this many characters (bpe-openai refuses 1M+).
_PIECE = 500_000


@dataclass(frozen=True, slots=True)
class Tokenizer:
    """A token counter and its name (``"o200k_base (bpe-openai)"``, or :data:`PROXY`)."""

    name: str
    encode: Callable[[str], int] | None

    @property
    def exact(self) -> bool:
        return self.encode is not None


def _bpe_openai() -> Callable[[str], int] | None:
    try:
        with warnings.catch_warnings():  # its loader uses a deprecated importlib.resources call
            warnings.simplefilter("ignore", DeprecationWarning)
            import bpe_openai  # type: ignore[import-untyped, import-not-found, unused-ignore]

            enc = bpe_openai.get_encoding("o200k_base")
    except ImportError:
        return None
    except Exception:  # noqa: BLE001 - any failure to load means: not available offline
        return None

    def count(text: str) -> int:
        return len(enc.encode(text, disallowed_special=()))

    return count


def _tiktoken_cache_file() -> Path:
    root = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    base = Path(root) if root else Path(tempfile.gettempdir()) / "data-gym-cache"
    return base / hashlib.sha1(_O200K_URL.encode()).hexdigest()  # the name tiktoken gives it


def _tiktoken() -> Callable[[str], int] | None:
    if not _tiktoken_cache_file().is_file():
        return None
    try:
        import tiktoken  # type: ignore[import-untyped, import-not-found, unused-ignore]

        enc = tiktoken.get_encoding("o200k_base")
    except Exception:  # noqa: BLE001 - not importable, or the cached file is unusable
        return None

    def count(text: str) -> int:
        return len(enc.encode(text, disallowed_special=()))

    return count


@cache
def tokenizer() -> Tokenizer:
    """The best token counter available offline (cached for the process)."""
    if os.environ.get("FASTRLM_TOKENIZER", "").lower() == "proxy":
        return Tokenizer(PROXY, None)
    for label, load in (("bpe-openai", _bpe_openai), ("tiktoken", _tiktoken)):
        encode = load()
        if encode is not None:
            return Tokenizer(f"o200k_base ({label})", encode)
    return Tokenizer(PROXY, None)


def count_tokens(text: str, tok: Tokenizer | None = None, stop_above: int | None = None) -> int:
    """Tokens in ``text``: o200k_base when available, else ``ceil(chars / 4)``. Long texts are
    counted in 500K-character pieces cut at a newline or space, so memory stays bounded; the sum
    can differ from one whole-text encoding by at most a token per cut. With ``stop_above``,
    counting stops once the total passes it (the result is then some number above it)."""
    tok = tok or tokenizer()
    if tok.encode is None:
        return (len(text) + 3) // 4
    total, start = 0, 0
    while start < len(text):
        end = min(start + _PIECE, len(text))
        if end < len(text):
            cut = max(text.rfind("\n", start, end), text.rfind(" ", start, end))
            end = cut + 1 if cut > start else end
        total += tok.encode(text[start:end])
        start = end
        if stop_above is not None and total > stop_above:
            break
    return total


def context_tokens(context: str | list[str], question: str = "") -> int:
    """Tokens of a whole prompt: the context (each document counted on its own) plus the
    question."""
    if isinstance(context, str):
        return count_tokens(context) + count_tokens(question)
    tok = tokenizer()
    return sum(count_tokens(d, tok) for d in context) + count_tokens(question, tok)
