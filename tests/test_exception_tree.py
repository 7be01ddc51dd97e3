"""The exception tree is drawn once: the drawing in ``fastrlm._foundation.errors`` is the one in
docs/architecture.md, and every exception class of the package stands in it under its parent."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import fastrlm
from fastrlm import RLMError
from fastrlm._foundation import errors as _exceptions

ARCHITECTURE = Path(__file__).parents[1] / "docs" / "architecture.md"


def _docstring_tree() -> list[str]:
    doc = _exceptions.__doc__ or ""
    block = doc.split("::\n\n", 1)[1].split("\n\n``", 1)[0]
    return [line[4:] if line.startswith("    ") else line for line in block.split("\n")]


def _architecture_tree() -> list[str]:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text.split("## Exception tree", 1)[1]
    return section.split("```\n", 2)[1].rstrip("\n").split("\n")


def _parents(lines: list[str]) -> dict[str, str]:
    """Class name -> the name of the class drawn above it, one level up."""
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in lines:
        match = re.match(r"^([│ ]*(?:├── |└── )?)([A-Za-z_.]+)", line)
        if match is None or not match.group(2)[0].isupper() and "." not in match.group(2):
            continue
        depth = len(match.group(1)) // 4
        name = match.group(2).rsplit(".", 1)[-1]
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            parents[name] = stack[-1][1]
        stack.append((depth, name))
    return parents


def test_the_module_and_the_architecture_draw_the_same_tree() -> None:
    assert _docstring_tree() == _architecture_tree()


def test_every_rlm_error_of_the_package_is_drawn_under_its_real_parent() -> None:
    for info in pkgutil.walk_packages(fastrlm.__path__, "fastrlm."):
        if info.name.endswith(("_worker_main", "__main__")):
            continue  # entry scripts, run as programs
        try:
            importlib.import_module(info.name)
        except ImportError as exc:  # an extra that is not installed here (litellm, ...)
            assert exc.name and not exc.name.startswith("fastrlm"), exc
    drawn = _parents(_docstring_tree())
    seen: list[type] = []
    todo = [RLMError]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("fastrlm") and sub not in seen:
                seen.append(sub)
                todo.append(sub)
    assert seen, "the walk found the package's exceptions"
    for cls in seen:
        assert cls.__name__ in drawn, f"{cls.__module__}.{cls.__name__} is not in the tree"
        base = next(b for b in cls.__mro__[1:] if issubclass(b, RLMError))
        assert drawn[cls.__name__] == base.__name__, cls
