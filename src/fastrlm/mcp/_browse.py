"""The model-free tools over a loaded context (``rlm_grep``, ``rlm_read``, ``rlm_stats``): pure
functions over the documents a handle holds, cheap enough for a coding agent to call before (or
instead of) a run. Every result is bounded (matches, lines, characters per line) whatever the
context's size; a client's regular expression runs under a time limit (the ``regex`` package's
``timeout``), so a pattern that backtracks without end is refused, not a hung server.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._policy import ToolRefusal

_HEADER = re.compile(r"==> (.*) <==\n")
#: A line longer than this is clipped in what goes back (the match stays inside the window).
LINE_CHARS = 400
MAX_MATCHES = 500
MAX_CONTEXT_LINES = 20
MAX_READ_LINES = 2000
READ_CHARS = 100_000
PATTERN_CHARS = 1000
#: Characters of matched and context lines one rlm_grep returns at most (then ``truncated``).
GREP_CHARS = 200_000
#: Seconds a client's regular expression may run over the whole context.
REGEX_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Document:
    """One document of a context: its index, its name (a file's path, from the loader's
    ``==> path <==`` header, or the handle's source) and its text without that header."""

    index: int
    name: str
    text: str


def documents(value: str | list[str], source: str) -> list[Document]:
    """The documents of a loaded context (``LoadedContext.value``); ``source`` names a lone
    text (the path it was loaded from)."""
    texts = [value] if isinstance(value, str) else value
    out = []
    for i, text in enumerate(texts):
        header = _HEADER.match(text)
        if header is not None:
            out.append(Document(i, header.group(1), text[header.end():]))
        else:
            out.append(Document(i, source if len(texts) == 1 else f"#{i}", text))
    return out


def _clip(line: str, column: int = 0) -> str:
    """``line`` at most :data:`LINE_CHARS` long, the window around ``column`` kept."""
    if len(line) <= LINE_CHARS:
        return line
    start = max(0, min(column - LINE_CHARS // 4, len(line) - LINE_CHARS))
    return ("…" if start else "") + line[start:start + LINE_CHARS] + (
        "…" if start + LINE_CHARS < len(line) else "")


def _bounded(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ToolRefusal(f"{name} must be an integer from {low} to {high}, not {value!r}")
    return value


def _matcher(pattern: str, regex: bool, ignore_case: bool) -> Callable[[str], int]:
    """``line -> column of the first match, or -1``."""
    if not isinstance(pattern, str) or not pattern:
        raise ToolRefusal("pattern must be a non-empty string")
    if len(pattern) > PATTERN_CHARS:
        raise ToolRefusal(f"pattern has {len(pattern):,} characters, over the limit of "
                          f"{PATTERN_CHARS:,}: search for a shorter one")
    if not regex:
        needle = pattern.casefold() if ignore_case else pattern

        def find(line: str) -> int:
            return (line.casefold() if ignore_case else line).find(needle)

        return find
    try:
        import regex as regex_module  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        raise ToolRefusal("regex=true needs the `regex` package on the server (pip install "
                          "'fastrlm[mcp]'); search with regex=false for the literal text") from None
    try:
        compiled = regex_module.compile(pattern, regex_module.IGNORECASE if ignore_case else 0)
    except regex_module.error as exc:
        raise ToolRefusal(f"pattern is not a valid regular expression: {exc}") from None
    return _timed_search(compiled)


def grep(docs: Sequence[Document], pattern: str, *, regex: bool = False,
         ignore_case: bool = False, context_lines: int = 2,
         max_matches: int = 50) -> dict[str, Any]:
    """The lines of ``docs`` matching ``pattern`` (literal text, or a regular expression with
    ``regex``), each with ``context_lines`` lines either side, at most ``max_matches`` and
    about :data:`GREP_CHARS` characters; line numbers start at 1. ``truncated`` says more
    matched. Raises :class:`ToolRefusal` for a bad
    argument or a regular expression that runs past :data:`REGEX_SECONDS`."""
    context_lines = _bounded("context_lines", context_lines, 0, MAX_CONTEXT_LINES)
    max_matches = _bounded("max_matches", max_matches, 1, MAX_MATCHES)
    find = _matcher(pattern, regex, ignore_case)
    matches: list[dict[str, Any]] = []
    truncated = False
    size = 0
    for doc in docs:
        lines = doc.text.splitlines()
        for number, line in enumerate(lines):
            column = find(line)
            if column < 0:
                continue
            if len(matches) == max_matches or size > GREP_CHARS:
                truncated = True
                break
            low, high = max(0, number - context_lines), number + context_lines + 1
            text = _clip(line, column)
            before = [_clip(x) for x in lines[low:number]]
            after = [_clip(x) for x in lines[number + 1:high]]
            size += len(text) + sum(len(x) for x in before + after)
            matches.append({"document": doc.index, "name": doc.name, "line": number + 1,
                            "text": text, "before": before, "after": after})
        if truncated:
            break
    return {"pattern": pattern, "matches": matches, "count": len(matches),
            "truncated": truncated}


def _timed_search(compiled: Any) -> Callable[[str], int]:
    """A line matcher whose searches share one :data:`REGEX_SECONDS` budget."""
    deadline = time.monotonic() + REGEX_SECONDS

    def find(line: str) -> int:
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            found = compiled.search(line, timeout=left)
        except TimeoutError:
            raise ToolRefusal(
                f"the regular expression ran past {REGEX_SECONDS:g} s over this context: "
                "simplify it (nested repeats such as (a+)+ backtrack without end) or search "
                "for literal text (regex=false)") from None
        return -1 if found is None else int(found.start())

    return find


def pick(docs: Sequence[Document], document: int | str) -> Document:
    """The document at index ``document`` or named ``document``; :class:`ToolRefusal` else."""
    if isinstance(document, int) and not isinstance(document, bool):
        if 0 <= document < len(docs):
            return docs[document]
        raise ToolRefusal(f"document {document} does not exist: this context has "
                          f"{len(docs):,} (0 to {len(docs) - 1}); rlm_stats lists them")
    if isinstance(document, str):
        for doc in docs:
            if doc.name == document:
                return doc
        raise ToolRefusal(f"no document is named {document!r}; rlm_stats and rlm_grep name "
                          "them, or give its index")
    raise ToolRefusal("document must be an index (0, 1, ...) or a document's name")


def read(docs: Sequence[Document], document: int | str = 0, start_line: int = 1,
         max_lines: int = 200, start_char: int = 0) -> dict[str, Any]:
    """Lines ``start_line`` .. ``start_line + max_lines - 1`` of one document (numbered from
    1), the first from its character ``start_char``, cut at :data:`READ_CHARS` characters.
    ``next_line`` is where to go on, or None at the end; a line longer than the cut (a
    minified file is one line) goes on at the same ``next_line`` from ``next_char``."""
    doc = pick(docs, document)
    max_lines = _bounded("max_lines", max_lines, 1, MAX_READ_LINES)
    lines = doc.text.splitlines()
    start_line = _bounded("start_line", start_line, 1, max(1, len(lines)))
    first = lines[start_line - 1] if lines else ""
    start_char = _bounded("start_char", start_char, 0, max(0, len(first) - 1))
    taken: list[str] = []
    size = 0
    next_char = 0
    for offset, line in enumerate(lines[start_line - 1:start_line - 1 + max_lines]):
        if offset == 0:
            line = line[start_char:]
        if taken and size + len(line) + 1 > READ_CHARS:
            break
        taken.append(line[:READ_CHARS])
        size += len(taken[-1]) + 1
        if len(line) > READ_CHARS:  # only ever the first: a later one would not fit
            next_char = start_char + READ_CHARS  # the rest of this line is the next read
            break
    end = start_line - 1 + len(taken)
    if next_char:
        go_on: int | None = end
    else:
        go_on = end + 1 if end < len(lines) else None
    return {"document": doc.index, "name": doc.name, "start_line": start_line,
            "start_char": start_char, "end_line": end, "total_lines": len(lines),
            "next_line": go_on, "next_char": next_char, "text": "\n".join(taken)}


def _line_count(text: str) -> int:
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


def stats(docs: Sequence[Document], *, largest: int = 10) -> dict[str, Any]:
    """Sizes: documents, characters, lines, about how many tokens, and the ``largest``
    documents by characters."""
    sizes = [(len(d.text), _line_count(d.text), d) for d in docs]
    chars = sum(s[0] for s in sizes)
    top = sorted(sizes, key=lambda s: (-s[0], s[2].index))[:largest]
    return {"documents": len(docs), "chars": chars, "lines": sum(s[1] for s in sizes),
            "est_tokens": (chars + 3) // 4,
            "largest": [{"document": d.index, "name": d.name, "chars": c, "lines": n}
                        for c, n, d in top]}
