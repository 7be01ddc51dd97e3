"""The exception tree is drawn once: the drawing in ``fastrlm._foundation.errors`` is the one in
docs/architecture.md, and every exception class of the package stands in it under its parent."""

from __future__ import annotations

import ast
import importlib
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


def _modules_deriving_from(names: set[str]) -> set[str]:
    """The package's modules that define a class deriving, through the package's own classes,
    from one of ``names``: read from the source (``ast``), so only those few are imported
    (importing every module loaded every extra: Ray, DSPy, LiteLLM... 40 s of the suite)."""
    root = Path(fastrlm.__file__).parent
    classes: dict[str, tuple[str, set[str]]] = {}  # class -> (module, the names of its bases)
    for path in root.rglob("*.py"):
        module = ".".join(("fastrlm", *path.relative_to(root).with_suffix("").parts))
        module = module.removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases}
                classes[f"{module}:{node.name}"] = (module, bases)
    known = set(names)
    found: set[str] = set()
    while True:  # to a fixed point: a subclass of a subclass is found on a later pass
        new = {key for key, (_, bases) in classes.items() if bases & known and key not in found}
        if not new:
            return {classes[key][0] for key in found}
        found |= new
        known |= {key.split(":", 1)[1] for key in new}


def test_every_rlm_error_of_the_package_is_drawn_under_its_real_parent() -> None:
    modules = _modules_deriving_from({"RLMError"})
    assert "fastrlm._foundation.errors" in modules
    for name in sorted(modules):
        if name.endswith(("_worker_main", "__main__")):
            continue  # entry scripts, run as programs
        try:
            importlib.import_module(name)
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
