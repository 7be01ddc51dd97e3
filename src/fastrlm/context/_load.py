"""Loading a context from files, directories, globs, JSONL, PDFs and stdin.

``load_context(["notes.txt"])`` gives the file's text as a ``str``. Anything that is naturally a
collection gives a ``list[str]``: a directory (a codebase becomes one document per file, each
opening with a ``==> path <==`` header; ``.gitignore`` respected), a glob, a ``.jsonl`` file (one
document per line) or several paths. Each file is read once, one at a time. Binary files are
skipped and reported; invalid UTF-8 is decoded with replacement characters and reported.

``within=[root, ...]`` confines loading to those directories (``fastrlm mcp --root``): every file
and directory is checked by its real path (symlinks resolved) just before it is read; one named
outright that lies outside is a :class:`~fastrlm.ContextError`, one found by walking a directory
or expanding a glob is skipped and reported.
"""

from __future__ import annotations

import glob
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .._exceptions import ContextError, MissingExtraError
from ._gitignore import GitIgnore

STDIN = "-"
SNIFF_BYTES = 8192
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})
#: Never descended into: version-control metadata and bytecode caches hold no readable text.
SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__"})
_GLOB_CHARS = frozenset("*?[")


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


@dataclass(slots=True)
class LoadedContext:
    """``value`` is what the engine gets as ``context``; ``report`` says how it was built."""

    value: str | list[str]
    report: LoadReport


def _human(n: int) -> str:
    for unit, size in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _is_glob(text: str) -> bool:
    return any(c in _GLOB_CHARS for c in text)


class _Loader:
    def __init__(
        self, stdin: IO[bytes] | None, gitignore: bool, within: tuple[str, ...] | None = None
    ) -> None:
        self.stdin = stdin
        self.gitignore = gitignore
        self.within = within
        self.report = LoadReport()
        self.docs: list[str] = []
        self.names: list[str | None] = []  # the header each document gets inside a list
        self.as_list = False
        self.stdin_used = False

    def decode(self, data: bytes, name: str) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            self.report.replaced.append(name)
            return data.decode("utf-8", errors="replace")

    def add(self, text: str, name: str | None = None) -> None:
        self.docs.append(text)
        self.names.append(name)
        self.report.chars += len(text)

    def result(self) -> str | list[str]:
        if not self.as_list and len(self.docs) == 1:
            return self.docs[0]
        docs, self.docs = self.docs, []
        for i, name in enumerate(self.names):
            if name is not None:
                docs[i] = f"==> {name} <==\n{docs[i]}"
        return docs

    def outside(self, path: Path) -> bool:
        """Whether ``path`` (symlinks resolved) lies outside every allowed root."""
        if self.within is None:
            return False
        real = os.path.realpath(path)
        return not any(os.path.commonpath((real, root)) == root for root in self.within)

    def refuse_outside(self, path: Path, shown: str) -> None:
        if self.outside(path):
            raise ContextError(
                f"{shown} is outside the allowed roots ({', '.join(self.within or ())}), "
                "symlinks resolved; name a path inside one of them"
            )

    def source(self, spec: str) -> None:
        self.report.sources.append(spec)
        if spec == STDIN:
            if self.within is not None:
                raise ContextError("stdin ('-') cannot be read when loading is confined to roots")
            self.stdin_source()
            return
        path = Path(spec).expanduser()
        if path.exists():
            self.refuse_outside(path, spec)
        if path.is_dir():
            self.as_list = True
            self.directory(path, spec)
        elif path.exists():
            self.file(path, spec, explicit=True)
        elif _is_glob(spec):
            matches = sorted(glob.glob(os.path.expanduser(spec), recursive=True))
            if not matches:
                raise ContextError(f"no files match {spec!r}")
            self.as_list = True
            for match in matches:
                mpath = Path(match)
                if self.outside(mpath):
                    self.skip(match, "outside the allowed roots")
                    continue
                if mpath.is_dir():
                    self.directory(mpath, match)
                else:
                    self.file(mpath, match, explicit=False)
        else:
            raise ContextError(f"no such file or directory: {spec}")

    def stdin_source(self) -> None:
        if self.stdin_used:
            raise ContextError("stdin ('-') can be given only once")
        self.stdin_used = True
        stream = self.stdin if self.stdin is not None else sys.stdin.buffer
        data = stream.read()
        self.report.bytes_read += len(data)
        if b"\x00" in data[:SNIFF_BYTES]:  # the same test as for files
            self.skip("<stdin>", "binary")
            return
        self.add(self.decode(data, "<stdin>"))

    def directory(self, root: Path, shown: str) -> None:
        rules = GitIgnore()
        if self.gitignore:
            rules.add_ancestors(root)
        for path, name in self.walk(root, rules):
            self.file(path, os.path.join(shown, name), explicit=False)

    def walk(self, root: Path, rules: GitIgnore) -> Iterator[tuple[Path, str]]:
        base = os.path.abspath(root)
        for dirpath, dirnames, filenames in os.walk(base):
            if self.gitignore:
                rules.add_file(Path(dirpath) / ".gitignore")
            kept = []
            for d in sorted(dirnames):
                full = os.path.join(dirpath, d)
                if d in SKIPPED_DIRS:
                    continue
                if self.gitignore and rules.ignored(full, is_dir=True):
                    self.report.ignored += 1
                    continue
                kept.append(d)
            dirnames[:] = kept
            for f in sorted(filenames):
                full = os.path.join(dirpath, f)
                if self.gitignore and rules.ignored(full, is_dir=False):
                    self.report.ignored += 1
                    continue
                yield Path(full), os.path.relpath(full, base)

    def skip(self, shown: str, reason: str) -> None:
        self.report.skipped.append(SkippedFile(shown, reason))

    def file(self, path: Path, shown: str, *, explicit: bool) -> None:
        if self.outside(path):  # a symlink met while walking a directory
            self.skip(shown, "outside the allowed roots")
            return
        suffix = path.suffix.lower()
        if suffix == ".pdf":
            text = self.pdf(path, shown, explicit)
            if text is not None:
                self.report.files += 1
                self.add(text, shown)
            return
        try:
            data = path.read_bytes()
        except OSError as exc:
            if explicit:
                raise ContextError(f"cannot read {shown}: {exc.strerror or exc}") from exc
            self.skip(shown, f"unreadable: {exc.strerror or exc}")
            return
        self.report.bytes_read += len(data)
        if b"\x00" in data[:SNIFF_BYTES]:
            self.skip(shown, "binary")
            return
        self.report.files += 1
        if suffix in JSONL_SUFFIXES:
            self.as_list = True
            self.jsonl(data, shown)
            return
        text = self.decode(data, shown)
        del data
        self.add(text, shown)

    def jsonl(self, data: bytes, shown: str) -> None:
        text = self.decode(data, shown)
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except (json.JSONDecodeError, RecursionError):  # too deep to parse: kept as text
                self.report.invalid_json_lines += 1
                self.add(line)
                continue
            self.add(value if isinstance(value, str) else line)

    def pdf(self, path: Path, shown: str, explicit: bool) -> str | None:
        try:
            import pypdf
        except ImportError:
            if explicit:
                raise MissingExtraError("pdf", "pypdf", "reading PDF files") from None
            self.skip(shown, "PDF: pip install 'fastrlm[pdf]' to read it")
            return None
        try:
            reader = pypdf.PdfReader(str(path))
            pages = [page.extract_text() or "" for page in reader.pages]
        except Exception as exc:  # noqa: BLE001 - pypdf raises many types on broken files
            if explicit:
                raise ContextError(f"cannot read PDF {shown}: {exc}") from exc
            self.skip(shown, f"unreadable PDF: {exc}")
            return None
        self.report.bytes_read += path.stat().st_size
        return "\n\n".join(pages)


def load_context(
    paths: Sequence[str | os.PathLike[str]],
    *,
    stdin: IO[bytes] | None = None,
    gitignore: bool = True,
    within: Sequence[str | os.PathLike[str]] | None = None,
) -> LoadedContext:
    """Load the context named by ``paths`` (files, directories, globs, ``-`` for stdin).

    One plain file or stdin gives a ``str``; directories, globs, JSONL files and several sources
    give a ``list[str]``. Raises :class:`~fastrlm.ContextError` when a path does not exist, a glob
    matches nothing, or nothing readable is left (empty files, only binaries), and
    :class:`~fastrlm.MissingExtraError` for a PDF without the ``pdf`` extra. With ``within``
    (directories), a path named in ``paths`` that resolves outside all of them, or ``-``, raises
    :class:`~fastrlm.ContextError`; files met inside a directory or glob that resolve outside are
    skipped (``report.skipped``, reason ``outside the allowed roots``).
    """
    if not paths:
        raise ContextError("no context given: pass at least one file, directory, glob or '-'")
    roots = None if within is None else tuple(os.path.realpath(r) for r in within)
    loader = _Loader(stdin, gitignore, roots)
    for spec in paths:
        loader.source(os.fspath(spec))
    report = loader.report
    report.documents = len(loader.docs)
    if report.chars == 0:
        why = ""
        if report.skipped:
            why = f" ({len(report.skipped)} file(s) skipped: {report.skipped[0].reason}, ...)"
        elif report.ignored and not loader.docs:
            why = f" ({report.ignored} path(s) ignored by .gitignore)"
        raise ContextError(
            f"the context is empty: nothing readable in {', '.join(report.sources)}{why}"
        )
    return LoadedContext(loader.result(), report)
