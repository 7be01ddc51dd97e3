"""``.gitignore`` matching, enough of git's rules for loading a codebase as a context.

Supported: comments, escaped ``#``/``!``, negation, directory-only patterns (``build/``), anchored
patterns (a leading or inner ``/``), ``*``, ``?``, ``[...]`` and ``**`` (``**/x``, ``x/**``,
``a/**/b``). Rules of deeper ``.gitignore`` files come later, so they win; the last matching rule
decides. As in git, a file inside an ignored directory cannot be re-included: the loader never
descends into an ignored directory.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .._foundation.files import LoadLimits, Unreadable, read_regular

_DEFAULT_LIMITS = LoadLimits()


@dataclass(frozen=True, slots=True)
class _Rule:
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool


def _translate(pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                if i + 2 < n and pattern[i + 2] == "/":
                    out.append("(?:.*/)?")
                    i += 3
                    continue
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end + 1
                continue
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def parse_rule(line: str) -> _Rule | None:
    """One ``.gitignore`` line as a rule, or ``None`` for blanks and comments."""
    line = line.rstrip("\n").rstrip("\r")
    stripped = line.rstrip(" ")
    if stripped.endswith("\\") and len(line) > len(stripped):
        stripped += " "  # "foo\ " keeps its escaped trailing space
    line = stripped
    if not line or line.startswith("#"):
        return None
    negate = line.startswith("!")
    if negate:
        line = line[1:]
    dir_only = line.endswith("/")
    line = line.rstrip("/")
    if not line:
        return None
    anchored = "/" in line
    line = line.lstrip("/")
    body = _translate(line)
    prefix = "^" if anchored or line.startswith("**") else "^(?:.*/)?"
    return _Rule(re.compile(prefix + body + "$", re.DOTALL), negate, dir_only)


class GitIgnore:
    """Rules gathered from the ``.gitignore`` files that apply to one walk, in order."""

    def __init__(self) -> None:
        self._sets: list[tuple[str, list[_Rule]]] = []

    def add_file(self, path: Path, limits: LoadLimits = _DEFAULT_LIMITS) -> None:
        """Add the rules of ``path`` (a ``.gitignore``), relative to its directory; one that is
        missing, not a regular file or past ``limits.max_file_bytes`` adds none."""
        try:
            text = read_regular(path, limits).decode("utf-8", errors="replace")
        except Unreadable:
            return
        rules = [r for r in map(parse_rule, text.splitlines()) if r is not None]
        if rules:
            self._sets.append((os.path.abspath(path.parent), rules))

    def add_ancestors(self, directory: Path, limits: LoadLimits = _DEFAULT_LIMITS) -> None:
        """Add ``.gitignore`` files above ``directory`` up to its repository root (if any)."""
        start = Path(os.path.abspath(directory))
        chain: list[Path] = []
        for parent in start.parents:
            chain.append(parent)
            if (parent / ".git").exists():
                break
        else:
            return  # not inside a repository: ancestors' ignore files do not apply
        for parent in reversed(chain):
            self.add_file(parent / ".gitignore", limits)

    def ignored(self, path: str, is_dir: bool) -> bool:
        """Whether ``path`` (absolute) is ignored."""
        verdict = False
        for base, rules in self._sets:
            rel = os.path.relpath(path, base)
            if rel.startswith(".."):
                continue
            rel = rel.replace(os.sep, "/")
            for rule in rules:
                if rule.dir_only and not is_dir:
                    continue
                if rule.regex.match(rel):
                    verdict = not rule.negate
        return verdict
