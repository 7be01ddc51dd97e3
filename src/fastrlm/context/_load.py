"""Loading a context from files, directories, globs, JSONL, PDFs and stdin.

``load_context(["notes.txt"])`` gives the file's text as a ``str``. Anything that is naturally a
collection gives a ``list[str]``: a directory (a codebase becomes one document per file, each
opening with a ``==> path <==`` header; ``.gitignore`` respected), a glob, a ``.jsonl`` file (one
document per line) or several paths. Each file is read once, one at a time. Binary files are
skipped and reported; invalid UTF-8 is decoded with replacement characters and reported.

Every file is opened once through :func:`.open_regular` and judged by what was opened:
only regular files are read (a FIFO, socket or device is skipped and reported like a binary),
and a file past :attr:`LoadLimits.max_file_bytes` is refused before it is read. Directories and
globs are walked by :class:`._open.TreeWalker` (symbolic links to directories not followed;
bounded by files, depth and time).

``within=[root, ...]`` confines loading to those directories (``fastrlm mcp --root``): the
descriptor each file was opened as must lie under a root (its real path read back from the
kernel, not the name re-resolved), and a file with more than one hard link is not read; one
named outright that lies outside is a :class:`~fastrlm.ContextError`, one found by walking a
directory or expanding a glob is skipped and reported.
"""

from __future__ import annotations

import fnmatch
import functools
import io
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from .._foundation.errors import ContextError, MissingExtraError
from .._foundation.files import (
    LoadLimits,
    TreeWalker,
    Unreadable,
    open_regular,
    over_total,
    read_opened,
    under,
)
from ._gitignore import GitIgnore
from ._info import wait_whole
from ._loaded import STDIN, LoadedContext, LoadReport, SkippedFile

SNIFF_BYTES = 8192
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})
#: Never descended into: version-control metadata and bytecode caches hold no readable text.
SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__"})
_GLOB_CHARS = frozenset("*?[")
_STDIN_CHUNK = 1 << 20


def _is_glob(text: str) -> bool:
    return any(c in _GLOB_CHARS for c in text)


def _split_glob(pattern: str) -> tuple[str, tuple[str, ...]]:
    """An absolute glob as (the directory it starts at, the pattern's parts below it)."""
    parts = Path(pattern).parts
    for i, part in enumerate(parts):
        if _is_glob(part):
            return str(Path(*parts[:i])), tuple(parts[i:])
    return str(Path(*parts[:-1])), (parts[-1],)


def _glob_match(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    """Whether the relative path ``parts`` matches the glob ``pattern`` as ``glob.glob``
    (recursive) would: ``**`` spans any number of directories, and a name starting with
    ``.`` is matched only by a pattern part that starts with ``.``. Memoised on positions, so
    a pattern of many ``**`` (a client's) costs len(pattern) x len(parts), not exponential."""

    @functools.cache
    def match(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(parts)
        head = pattern[i]
        if head == "**":
            return match(i + 1, j) or (
                j < len(parts) and not parts[j].startswith(".") and match(i, j + 1))
        if j == len(parts):
            return False
        name = parts[j]
        if name.startswith(".") and not head.startswith("."):
            return False
        return fnmatch.fnmatchcase(name, head) and match(i + 1, j + 1)

    return match(0, 0)


class _Loader:
    def __init__(
        self,
        stdin: IO[bytes] | None,
        gitignore: bool,
        within: tuple[str, ...] | None,
        limits: LoadLimits,
        shared: bool = False,
    ) -> None:
        self.stdin = stdin
        self.shared = shared
        self.gitignore = gitignore
        self.within = within
        self.limits = limits
        self.walker = TreeWalker(limits, confined=within is not None)
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

    def outside(self, path: Path | str) -> bool:
        """Whether ``path`` (symlinks resolved) lies outside every allowed root. A check by
        name, for a clear early message; what is read is checked again by what was opened."""
        if self.within is None:
            return False
        try:
            real = os.path.realpath(path)
        except OSError:  # it changed while resolved: what is opened is checked again
            return False
        return not under(real, self.within)

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
        elif path.exists() or path.is_symlink():
            self.file(path, spec, explicit=True)
        elif _is_glob(spec):
            self.glob(os.path.expanduser(spec), spec)
        else:
            raise ContextError(f"no such file or directory: {spec}")

    def glob(self, pattern: str, spec: str) -> None:
        """The matches of ``pattern`` (``*``, ``?``, ``[...]``, ``**``), found by the bounded
        walk from the directory it starts at (``glob.glob`` follows links into any tree)."""
        anchor, parts = _split_glob(os.path.abspath(pattern))
        deep = "**" in parts
        matches: list[tuple[str, bool]] = []
        skipped_before = len(self.report.skipped)

        def descend(path: str, rel: str) -> bool:
            rel_parts = tuple(rel.split("/"))
            if _glob_match(parts, rel_parts):
                return False  # loaded whole below
            return deep or len(rel_parts) < len(parts)

        def skip(rel: str, reason: str) -> None:
            if _glob_match(parts, tuple(rel.split("/"))):
                self.skip(os.path.join(anchor, rel), reason)

        if os.path.isdir(anchor):
            for path, rel, is_dir in self.walker.walk(anchor, descend=descend, skip=skip):
                if _glob_match(parts, tuple(rel.split("/"))):
                    matches.append((path, is_dir))
        if not matches:
            if len(self.report.skipped) > skipped_before:
                return  # matches there were, none readable: the report says why
            raise ContextError(f"no files match {spec!r}")
        self.as_list = True
        relative = not os.path.isabs(pattern)
        for match, is_dir in sorted(matches):
            shown = os.path.relpath(match) if relative else match  # as the user wrote it
            if self.outside(match):
                self.skip(shown, "outside the allowed roots")
            elif is_dir:
                self.directory(Path(match), shown)
            else:
                self.file(Path(match), shown, explicit=False)

    def stdin_source(self) -> None:
        if self.stdin_used:
            raise ContextError("stdin ('-') can be given only once")
        self.stdin_used = True
        stream = self.stdin if self.stdin is not None else sys.stdin.buffer
        cap = min(self.limits.max_file_bytes, self.room())
        chunks: list[bytes] = []
        size = 0
        while size <= cap and (chunk := stream.read(min(_STDIN_CHUNK, cap + 1 - size))):
            chunks.append(chunk)
            size += len(chunk)
        if size > self.limits.max_file_bytes:
            limit = self.limits.max_file_bytes
            raise ContextError(f"stdin: more than {limit:,} bytes, over the limit a file "
                               "(LoadLimits.max_file_bytes; --max-file-mb raises it)")
        if size > cap:
            raise over_total("<stdin>", size, self.room(), self.limits)
        data = b"".join(chunks)
        del chunks
        self.report.bytes_read += len(data)
        if b"\x00" in data[:SNIFF_BYTES]:  # the same test as for files
            self.skip("<stdin>", "binary")
            return
        self.add(self.decode(data, "<stdin>"))

    def directory(self, root: Path, shown: str) -> None:
        base = os.path.abspath(root)
        rules = GitIgnore()
        if self.gitignore:
            rules.add_ancestors(root, self.limits)
            rules.add_file(Path(base) / ".gitignore", self.limits)

        def descend(path: str, rel: str) -> bool:
            if os.path.basename(path) in SKIPPED_DIRS:
                return False
            if self.outside(path):  # a followed link out of the roots: not walked at all
                skip(rel, "outside the allowed roots")
                return False
            if self.gitignore:
                if rules.ignored(path, is_dir=True):
                    self.report.ignored += 1
                    return False
                rules.add_file(Path(path) / ".gitignore", self.limits)
            return True

        def skip(rel: str, reason: str) -> None:
            self.skip(os.path.join(shown, rel), reason)

        for path, rel, is_dir in self.walker.walk(base, descend=descend, skip=skip):
            if is_dir:
                continue
            if self.gitignore and rules.ignored(path, is_dir=False):
                self.report.ignored += 1
                continue
            self.file(Path(path), os.path.join(shown, rel), explicit=False)

    def skip(self, shown: str, reason: str) -> None:
        self.report.skipped.append(SkippedFile(shown, reason))

    def room(self) -> int:
        """Bytes left of :attr:`LoadLimits.max_total_bytes` for this load."""
        return self.limits.max_total_bytes - self.report.bytes_read

    def file(self, path: Path, shown: str, *, explicit: bool) -> None:
        if self.outside(path):  # a symlink met while walking a directory
            self.skip(shown, "outside the allowed roots")
            return
        self.walker.check_time(shown)
        suffix = path.suffix.lower()
        try:
            with open_regular(path, self.limits, within=self.within, room=self.room()) as opened:
                text = (self.shared_text(*opened, suffix, shown) if explicit and self.shared
                        else None)
                if text is not None:
                    self.report.bytes_read += opened[1]
                    self.report.files += 1
                    self.add(text, shown)
                    return
                data = read_opened(*opened, self.limits, path, room=self.room())
        except Unreadable as exc:
            if explicit:
                raise ContextError(f"cannot read {shown}: {exc}") from exc
            self.skip(shown, str(exc))
            return
        self.report.bytes_read += len(data)
        if suffix == ".pdf":
            text = self.pdf(data, shown, explicit)
            if text is not None:
                self.report.files += 1
                self.add(text, shown)
            return
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

    def shared_text(self, fd: int, size: int, suffix: str, shown: str) -> str | None:
        """A large ASCII text file named on its own, copied once into the buffer the sandbox
        maps (``sandbox._protocol.mapped_text``; its middle may still be copying when this
        returns), or None to read it as usual."""
        if suffix == ".pdf" or suffix in JSONL_SUFFIXES or b"\x00" in os.pread(fd, SNIFF_BYTES, 0):
            return None
        from ..sandbox import mapped_text

        try:
            text = mapped_text(fd, size, shown)
        except OSError as exc:
            raise Unreadable(f"unreadable: {exc.strerror or exc}") from exc
        if text is not None and text[:SNIFF_BYTES].isspace():
            wait_whole(text)  # whether it is all blank is asked of the whole text at once
        return text

    def jsonl(self, data: bytes, shown: str) -> None:
        text = self.decode(data, shown)
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except (ValueError, RecursionError):  # not JSON, too deep or a number past int's limit
                self.report.invalid_json_lines += 1
                self.add(line)
                continue
            self.add(value if isinstance(value, str) else line)

    def pdf(self, data: bytes, shown: str, explicit: bool) -> str | None:
        try:
            import pypdf
        except ImportError:
            if explicit:
                raise MissingExtraError("pdf", "pypdf", "reading PDF files") from None
            self.skip(shown, "PDF: pip install 'fastrlm[pdf]' to read it")
            return None
        try:
            reader = pypdf.PdfReader(io.BytesIO(data))
            pages = [page.extract_text() or "" for page in reader.pages]
        except Exception as exc:  # noqa: BLE001 - pypdf raises many types on broken files
            if explicit:
                raise ContextError(f"cannot read PDF {shown}: {exc}") from exc
            self.skip(shown, f"unreadable PDF: {exc}")
            return None
        return "\n\n".join(pages)


def load_context(
    paths: Sequence[str | os.PathLike[str]],
    *,
    stdin: IO[bytes] | None = None,
    gitignore: bool = True,
    within: Sequence[str | os.PathLike[str]] | None = None,
    limits: LoadLimits | None = None,
    shared: bool = False,
) -> LoadedContext:
    """Load the context named by ``paths`` (files, directories, globs, ``-`` for stdin).

    One plain file or stdin gives a ``str``; directories, globs, JSONL files and several sources
    give a ``list[str]``. Raises :class:`~fastrlm.ContextError` when a path does not exist, a glob
    matches nothing, or nothing readable is left (empty files, only binaries), and
    :class:`~fastrlm.MissingExtraError` for a PDF without the ``pdf`` extra. With ``within``
    (directories), a path named in ``paths`` that resolves outside all of them, or ``-``, raises
    :class:`~fastrlm.ContextError`; files met inside a directory or glob that resolve outside are
    skipped (``report.skipped``, reason ``outside the allowed roots``), and so are files with
    more than one hard link. ``limits`` (:class:`LoadLimits`) bounds each file's size and the
    walk; a file past ``max_file_bytes`` is refused (named outright) or skipped before it is read,
    a walk past ``max_files``, ``max_depth`` or ``max_seconds`` is a
    :class:`~fastrlm.ContextError` naming the bound. Only regular files are read: FIFOs,
    sockets and devices are skipped and reported (never opened for blocking reads).

    With ``shared``, a single file named alone whose text is ASCII and at least 1 MiB is held
    once: copied into the sealed buffer a sandbox maps, with the ``str`` living in that same
    memory (a 1 GB file costs 1 GB, not 2, and is not decoded). That memory stays for the life
    of the process: for a command that loads once (``fastrlm ask``), not for a server. The file
    is read once to check it is ASCII, then returned while a thread copies it (1 GiB: 0.05 s,
    then 0.4 s): pass the :class:`LoadedContext` itself to the run, whose first root request
    goes out during the copy; ``.value`` waits for the copy.
    """
    if not paths:
        raise ContextError("no context given: pass at least one file, directory, glob or '-'")
    roots = None if within is None else tuple(os.path.realpath(r) for r in within)
    loader = _Loader(stdin, gitignore, roots, limits or LoadLimits(), shared and len(paths) == 1)
    for spec in paths:
        loader.source(os.fspath(spec))
    report = loader.report
    report.documents = len(loader.docs)
    if report.chars == 0:
        why = ""
        if report.skipped:
            shown = "; ".join(f"{s.path}: {s.reason}" for s in report.skipped[:3])
            more = f"; and {len(report.skipped) - 3:,} more" if len(report.skipped) > 3 else ""
            why = f" ({len(report.skipped):,} file(s) skipped: {shown}{more})"
        elif report.ignored and not loader.docs:
            why = f" ({report.ignored} path(s) ignored by .gitignore)"
        raise ContextError(
            f"the context is empty: nothing readable in {', '.join(report.sources)}{why}"
        )
    return LoadedContext(loader.result(), report)
