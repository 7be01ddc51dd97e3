"""What an MCP client may ask of ``fastrlm mcp``: paths inside the roots, budgets below the
server's. Pure checks, no I/O beyond resolving paths (an early refusal by name; what is read
is checked again by what was opened, in :mod:`fastrlm._foundation.files`); every refusal is a
:class:`ToolRefusal` whose text tells the client what to do instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .._foundation.budget import BUDGET_KEYS, Budget
from .._foundation.errors import InvalidSettingError
from .._foundation.validate import BUDGET_RULES

_GLOB_CHARS = frozenset("*?[")


class ToolRefusal(ValueError):
    """A tool call the server will not run; its text goes back to the client as the error."""


class Roots:
    """The directories the server may read (``--root DIR``, symlinks resolved at start).

    :meth:`check` turns a client's path (absolute, or relative to the first root; a glob is
    allowed) into an absolute one, refusing ``-``, ``..`` and anything whose real path is
    outside every root. That check is by name, for a clear early refusal; the guarantee is the
    loader's (``load_context(within=roots.paths)``): it opens each file once and checks the
    opened descriptor's own path, so a symlink met inside a directory, or one swapped in after
    this check, is never read through.
    """

    def __init__(self, roots: Sequence[str | os.PathLike[str]]) -> None:
        if not roots:
            raise ValueError("give at least one --root DIR: the directories clients may read")
        resolved = []
        for root in roots:
            real = Path(os.path.realpath(Path(root).expanduser()))
            if not real.is_dir():
                raise ValueError(f"--root {root}: not a directory")
            resolved.append(str(real))
        self.paths: tuple[str, ...] = tuple(dict.fromkeys(resolved))

    def contains(self, path: str) -> bool:
        real = os.path.realpath(path)
        return any(os.path.commonpath((real, root)) == root for root in self.paths)

    def check(self, spec: str) -> str:
        """The absolute form of ``spec``, or :class:`ToolRefusal` saying why it is refused."""
        if not isinstance(spec, str) or not spec.strip():
            raise ToolRefusal("a path must be a non-empty string")
        if spec == "-":
            raise ToolRefusal("'-' (stdin) is not available over MCP: pass the text as `text`")
        if "\x00" in spec:
            raise ToolRefusal("a path may not contain NUL bytes")
        if ".." in Path(spec).parts:
            raise ToolRefusal(f"{spec!r}: '..' is not allowed in paths; name the path from a "
                              f"root ({self._listed()})")
        path = Path(spec).expanduser()
        absolute = path if path.is_absolute() else Path(self.paths[0]) / path
        # A glob is checked by the directory it starts from; its matches by the loader.
        anchor = _glob_anchor(absolute)
        if not self.contains(str(anchor)):
            raise ToolRefusal(f"{spec!r} is outside the server's roots ({self._listed()}), "
                              "symlinks resolved; ask for a path inside one of them")
        return str(absolute)

    def _listed(self) -> str:
        return ", ".join(self.paths)


def _glob_anchor(path: Path) -> Path:
    parts = path.parts
    for i, part in enumerate(parts):
        if any(c in _GLOB_CHARS for c in part):
            return Path(*parts[:i]) if i else Path(path.anchor or ".")
    return path


def lowered_budget(server: Budget, requested: Mapping[str, Any] | None) -> Budget:
    """The server's budget with a call's ``budget`` argument put in. Each key must be one of
    :data:`~fastrlm._foundation.budget.BUDGET_KEYS`, pass its
    :data:`~fastrlm._foundation.validate.BUDGET_RULES`
    rule, and be at most the server's limit (a limit the server leaves unset may be set);
    anything else is a :class:`ToolRefusal`. ``None`` values keep the server's limit."""
    if requested is None:
        return server
    if not isinstance(requested, Mapping):
        raise ToolRefusal("budget must be an object such as {\"max_usd\": 0.1}")
    changes: dict[str, Any] = {}
    for key, value in requested.items():
        if key not in BUDGET_KEYS:
            raise ToolRefusal(f"unknown budget key {key!r} (known: {', '.join(BUDGET_KEYS)})")
        try:
            checked = BUDGET_RULES[key].check(f"budget.{key}", value)
        except InvalidSettingError as exc:
            raise ToolRefusal(str(exc)) from exc
        if checked is None:
            continue
        current = server.request_cap if key == "max_requests" else getattr(server, key)
        if current is not None and checked > current:
            raise ToolRefusal(f"budget.{key}={checked} is above the server's limit of "
                              f"{current}: a call may only lower the server's budget")
        changes[key] = checked
    return replace(server, **changes)


def budget_schema() -> dict[str, Any]:
    """The JSON schema of a call's ``budget`` argument, from the same rules
    :func:`lowered_budget` applies (:data:`~fastrlm._foundation.validate.BUDGET_RULES`): each
    key of :data:`~fastrlm._foundation.budget.BUDGET_KEYS` typed (integer or number) with its
    bounds, no other key. The server's own limits are a further upper bound, checked per call."""
    properties: dict[str, Any] = {}
    for key in BUDGET_KEYS:
        rule = BUDGET_RULES[key]
        kind = "integer" if rule.kind == "int" else "number"
        prop: dict[str, Any] = {"type": [kind, "null"] if rule.optional else kind,
                                "description": f"{rule.describe()}; at most the server's"}
        if rule.minimum is not None:
            prop["minimum"] = rule.minimum
        if rule.above is not None:
            prop["exclusiveMinimum"] = rule.above
        if rule.maximum is not None:
            prop["maximum"] = rule.maximum
        properties[key] = prop
    return {"type": "object", "properties": properties, "additionalProperties": False,
            "description": "Optional limits for this call, each at most the server's "
                           "(rlm_status shows them); a call may lower them, never raise them."}
