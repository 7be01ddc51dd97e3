"""What a load gives back: the context (:class:`LoadedContext`) and how it was built
(:class:`LoadReport`, with the files it skipped)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._info import wait_whole

#: The path that names standard input.
STDIN = "-"


@dataclass(frozen=True, slots=True)
class SkippedFile:
    path: str
    reason: str


@dataclass(slots=True)
class LoadReport:
    """What loading found: shown to the user before a run starts."""

    sources: list[str] = field(default_factory=list)
    files: int = 0
    documents: int = 0
    chars: int = 0
    bytes_read: int = 0
    ignored: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    invalid_json_lines: int = 0

    @property
    def est_tokens(self) -> int:
        """About 4 characters a token."""
        return (self.chars + 3) // 4

    def summary(self) -> str:
        """One or a few human lines: sizes, then anything skipped or repaired."""
        lines = [
            f"context: {self.chars:,} chars (~{_human(self.est_tokens)} tokens) from "
            f"{self.files:,} file(s)"
            + (", stdin" if STDIN in self.sources else "")
            + (f", {self.documents:,} documents" if self.documents > 1 else "")
        ]
        if self.ignored:
            lines.append(f"  {self.ignored:,} path(s) ignored by .gitignore")
        if self.skipped:
            shown = "; ".join(f"{s.path} ({s.reason})" for s in self.skipped[:5])
            more = f"; … {len(self.skipped) - 5} more" if len(self.skipped) > 5 else ""
            lines.append(f"  skipped {len(self.skipped):,}: {shown}{more}")
        if self.replaced:
            shown = ", ".join(self.replaced[:5])
            more = f", … {len(self.replaced) - 5} more" if len(self.replaced) > 5 else ""
            lines.append(
                f"  invalid UTF-8 replaced with U+FFFD in {len(self.replaced):,}: {shown}{more}"
            )
        if self.invalid_json_lines:
            lines.append(f"  {self.invalid_json_lines:,} JSONL line(s) were not JSON; kept as text")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sources": list(self.sources),
            "files": self.files,
            "documents": self.documents,
            "chars": self.chars,
            "est_tokens": self.est_tokens,
            "bytes_read": self.bytes_read,
            "ignored": self.ignored,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "invalid_utf8": list(self.replaced),
            "invalid_json_lines": self.invalid_json_lines,
        }


class LoadedContext:
    """What :func:`load_context` built: ``value``, the context, and ``report``, how it was built.

    Give the LoadedContext itself to a run (``rlm.completion(question, context=loaded)``, a
    session's ``ask``, ``resume``): a large file loaded with ``shared=True`` is still being
    copied into its buffer when :func:`load_context` returns, and a run given the LoadedContext
    sends its first root request at once; its sandbox reads the text when the copy is done.
    ``value`` waits for that copy first (raising :class:`~fastrlm.ContextError` when the file
    changed during it), so the text it gives is always whole."""

    __slots__ = ("_value", "report")

    def __init__(self, value: str | list[str], report: LoadReport) -> None:
        self._value = value
        self.report = report

    @property
    def value(self) -> str | list[str]:
        """The context, whole (waits for a shared file's copy to end)."""
        wait_whole(self._value)
        return self._value

    @property
    def in_flight(self) -> str | list[str]:
        """The context as it is now: a shared file's str may still be filling between its two
        ends. For the engine, whose readers wait where they read (``sandbox.text_whole``)."""
        return self._value

    def __reduce__(self) -> tuple[Any, ...]:  # a copy or pickle carries the whole text
        return (LoadedContext, (self.value, self.report))

    def __eq__(self, other: object) -> bool:  # as when it was a dataclass: by value and report
        if not isinstance(other, LoadedContext):
            return NotImplemented
        return self.report == other.report and self.value == other.value

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass was

    def __repr__(self) -> str:
        return (f"LoadedContext({type(self._value).__name__} of {self.report.chars:,} "
                f"characters from {', '.join(self.report.sources)})")


def as_context(context: object) -> object:
    """What a run answers from: a :class:`LoadedContext`'s context as it is now (the run waits
    for a shared file's copy where it reads the text), any other object as it is."""
    return context.in_flight if isinstance(context, LoadedContext) else context


def _human(n: int) -> str:
    for unit, size in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)
