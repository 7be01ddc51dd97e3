"""What the root model is told about the context: its shape and size, never its text."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from .._foundation.errors import ContextError

HEAD_CHARS = 500
LISTED_CHUNKS = 20


@dataclass(frozen=True, slots=True)
class ContextInfo:
    """Metadata of a context: ``type`` (``str``, ``list``, ``dict``, ...), ``total_chars``,
    ``chunk_lengths`` (one per list element / dict entry; one for a str), ``sha256`` of its
    canonical bytes, ``size_bytes`` and a short ``head``."""

    type: str
    total_chars: int
    chunk_lengths: tuple[int, ...]
    sha256: str
    size_bytes: int
    head: str
    #: What the root is told about a context that is not text or JSON (bytes, an image, a
    #: DataFrame or Table, files): its shape, dtypes and columns, file tree, image size.
    summary: str = ""

    @property
    def hashed(self) -> bool:
        return bool(self.sha256)

    @property
    def n_chunks(self) -> int:
        return len(self.chunk_lengths)

    def to_dict(self) -> dict[str, Any]:
        lengths = list(self.chunk_lengths[:LISTED_CHUNKS])
        return {
            "type": self.type,
            "total_chars": self.total_chars,
            "n_chunks": self.n_chunks,
            "chunk_lengths": lengths,
            "chunk_lengths_truncated": self.n_chunks > LISTED_CHUNKS,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
        }

    def describe(self) -> str:
        """The metadata block of the root's first message."""
        if self.summary:
            return self.summary
        n = self.n_chunks
        lines = [f"Your context is a {self.type} with {self.total_chars:,} total characters"]
        if self.type != "str":
            shown = ", ".join(f"{x:,}" for x in self.chunk_lengths[:LISTED_CHUNKS])
            more = f", ... ({n - LISTED_CHUNKS:,} more)" if n > LISTED_CHUNKS else ""
            lines[0] += f", in {n:,} chunks"
            lines.append(f"Chunk lengths (characters): [{shown}{more}]")
            if n:
                lines.append(
                    f"Shortest chunk {min(self.chunk_lengths):,}, longest "
                    f"{max(self.chunk_lengths):,} characters."
                )
        lines[0] += "."
        head_chars = min(HEAD_CHARS, len(self.head))
        lines.append(f"The first {head_chars:,} characters, for orientation:")
        lines.append(f"<head>\n{self.head}\n</head>")
        return "\n".join(lines)


def canonical_bytes(context: object) -> bytes:
    """The bytes a context is hashed as: UTF-8 for a str, the bytes themselves, the memfd
    payload of a DataFrame, Table or image (Arrow IPC, encoded image), the listing (paths,
    sizes, modification times) of a file tree, JSON for the rest. Raises
    :class:`ContextError` for values that cannot be a context."""
    if isinstance(context, str):
        return context.encode("utf-8", "surrogatepass")
    from ..sandbox import kinds

    if kinds.is_rich(context):
        return _rich_bytes(context)
    with _as_context_error():
        named = kinds.is_named(context)
    if named:  # each input's bytes, length-prefixed after its name
        assert isinstance(context, dict)
        parts = []
        for name, value in context.items():
            data = canonical_bytes(value)
            parts += [name.encode(), b"\0", str(len(data)).encode(), b"\0", data]
        return b"".join(parts)
    with _as_context_error():
        return json.dumps(context, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _rich_bytes(context: object) -> bytes:
    from ..sandbox import kinds

    with _as_context_error():
        encoded = kinds.encode(context)
    assert encoded is not None
    if encoded.kind in (kinds.KIND_FILES, kinds.KIND_PARQUET):
        listing = []
        for path in encoded.mounts if encoded.kind == kinds.KIND_PARQUET else [
            os.path.join(encoded.meta["root"], f) for f in encoded.meta["files"]
        ]:
            stat = os.stat(path)
            listing.append([path, stat.st_size, stat.st_mtime_ns])
        return json.dumps([encoded.meta, listing]).encode("utf-8", "surrogatepass")
    return b"".join(bytes(part) for part in encoded.payload)


@contextlib.contextmanager
def _as_context_error() -> Iterator[None]:
    """Reading a context's shape or bytes: what the value cannot give is a :class:`ContextError`
    that lists what a context may be."""
    from ..sandbox import kinds

    try:
        yield
    except kinds.KindError as exc:
        raise ContextError(str(exc)) from exc
    except (TypeError, ValueError) as exc:
        raise ContextError(
            f"this context cannot be used ({exc}). A context may be: {kinds.ACCEPTED}"
        ) from exc
    except RecursionError:
        raise too_deep() from None


def too_deep() -> ContextError:
    """The error for a context nested deeper than JSON (and the worker) can carry."""
    return ContextError(
        "context is nested too deeply: lists and dicts inside one another more than about "
        f"{sys.getrecursionlimit():,} levels deep cannot be sent to the sandbox. Flatten it "
        "(a list of str, or one str) before passing it"
    )


def describe_context(context: object, data: bytes | None = None) -> ContextInfo:
    """Compute :class:`ContextInfo`. Pass ``data`` when the canonical bytes already exist."""
    shape = describe_shape(context)
    if data is not None:
        return replace(shape, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    digest, size = context_digest(context)
    return replace(shape, sha256=digest, size_bytes=size)


def wait_whole(context: object) -> None:
    """Wait (blocking) until the text of ``context`` is all there: a large file's str from
    ``load_context(shared=True)`` is handed out while a thread still copies its middle (its
    length and ends are right at once). Raises :class:`ContextError` when that copy failed (the
    file changed meanwhile). Returns at once for any other context. The run's readers of a
    whole text call this or ``sandbox.text_whole`` (the same, awaited); its sandbox waits for the
    same copy."""
    from ..sandbox import text_filling

    filling = text_filling(context)
    if filling is not None:
        filling.result()


def context_digest(context: object) -> tuple[str, int]:
    """sha256 and size of the context's canonical bytes. A large ASCII str is hashed from its
    own storage (no UTF-8 copy); hashlib releases the GIL, so this suits a worker thread. A
    text still being copied in (:func:`wait_whole`) is hashed once it is whole."""
    wait_whole(context)
    if isinstance(context, str):
        from ..sandbox import utf8_view  # a zero-copy view of ASCII text

        data: bytes | memoryview = utf8_view(context)
    else:
        data = canonical_bytes(context)
    return hashlib.sha256(data).hexdigest(), len(data)


def describe_shape(context: object) -> ContextInfo:
    """Type, sizes and head of a context, without hashing it (``sha256`` is empty): what the
    root's first message needs, in microseconds even for a 400 MB str."""
    from ..sandbox import kinds
    from . import _describe

    if context is None:
        raise ContextError(f"context is None. A context may be: {kinds.ACCEPTED}")
    with _as_context_error():
        if kinds.is_rich(context):
            kind, summary, size = _describe.describe(context)
            return ContextInfo(kind, 0, (), "", size, "", summary)
        if kinds.input_names(context) is not None:
            assert isinstance(context, dict)
            summary, size = _describe.describe_named(context)
            shape = _shape({k: v for k, v in context.items() if not kinds.is_rich(v)} or "")
            lengths = tuple(_input_chars(v) for v in context.values())
            return ContextInfo("dict", sum(lengths), lengths, "", size, shape.head, summary)
        return _shape(context)


def _input_chars(value: object) -> int:
    """Characters of a text input (0 for a rich one: its size is in bytes)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        return sum(len(x) for x in value)
    return 0


def _shape(context: object) -> ContextInfo:
    if isinstance(context, str):
        lengths: tuple[int, ...] = (len(context),)
        head = context[:HEAD_CHARS]
        kind = "str"
    elif isinstance(context, (list, tuple)):
        lengths = tuple(len(x) if isinstance(x, str) else len(json.dumps(x)) for x in context)
        first = context[0] if context else ""
        head = (first if isinstance(first, str) else json.dumps(first))[:HEAD_CHARS]
        kind = "list"
    elif isinstance(context, dict):
        lengths = tuple(
            len(v) if isinstance(v, str) else len(json.dumps(v, ensure_ascii=False))
            for v in context.values()
        )
        head = json.dumps(context, ensure_ascii=False)[:HEAD_CHARS]
        kind = "dict"
    else:
        text = json.dumps(context)
        lengths = (len(text),)
        head = text[:HEAD_CHARS]
        kind = type(context).__name__
    size = len(context) if isinstance(context, str) and context.isascii() else 0
    return ContextInfo(kind, sum(lengths), lengths, "", size, head)


def context_problem(context: object) -> tuple[str, str] | None:
    """Why ``context`` cannot be answered from, or None when it can: ``("missing", ...)`` for
    ``None``, ``("empty", ...)`` for empty text, bytes or collections and for text that is only
    whitespace. The one rule every door applies (the engine, the server, the loaders)."""
    if context is None:
        return "missing", "is None: pass a str, a list of str, or a JSON-able value"
    if isinstance(context, str | list | tuple | dict | bytes) and len(context) == 0:
        return "empty", "is empty: there is nothing to answer from"
    # isspace, not strip: it stops at the first other character, where strip copies a whole
    # context that ends in a newline (a log file of 1 GB: 1 GB more, before the first request)
    if isinstance(context, str) and context.isspace():
        return "empty", "is blank (only whitespace): there is nothing to answer from"
    return None
