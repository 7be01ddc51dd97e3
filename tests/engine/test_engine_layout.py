"""The engine is split by role (issue 24): the root loop takes turns and knows nothing of
sessions, outcomes are made once, refusals come back as values, and the public session door
needs no back door into the facade."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

import fastrlm
from fastrlm import StopReason
from fastrlm._core import run_loop
from fastrlm._core.bridge import Answers, SubcallBridge
from fastrlm._core.call_tree import SubcallOutcome
from fastrlm._core.run_values import Outcome

CORE = Path(fastrlm.__file__).parent / "_core"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_the_root_loop_never_branches_on_a_session() -> None:
    """No name or attribute ``session`` in the loop: it asks its continuation instead."""
    tree = ast.parse((CORE / "run_loop.py").read_text(encoding="utf-8"))
    named = [getattr(node, "id", None) or getattr(node, "attr", None) for node in ast.walk(tree)
             if isinstance(node, (ast.Name, ast.Attribute))]
    sessions = {"session", "SessionState", "SessionQuestion", "QuestionSpan", "compact_questions"}
    assert [name for name in named if name in sessions] == []


def test_the_session_door_needs_no_protocol_over_the_facade() -> None:
    path = CORE / "session.py"
    assert "facade" not in _imports(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    protocols = [node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
                 and any(getattr(b, "id", "") == "Protocol" for b in node.bases)]
    assert protocols == []


def test_an_outcome_is_made_once() -> None:
    outcome = Outcome("a", StopReason.FINAL, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.answer = "b"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        SubcallOutcome("a").text = "b"  # type: ignore[misc]
    assert outcome.with_stop(StopReason.TIMEOUT).stop_reason is StopReason.TIMEOUT
    assert outcome.stop_reason is StopReason.FINAL


def test_a_run_keeps_no_refusal_of_its_own_and_the_bridge_returns_them() -> None:
    fields = {f.name for f in dataclasses.fields(run_loop.Run)}
    assert "limit_hit" not in fields and "session" not in fields
    assert "refused" in {f.name for f in dataclasses.fields(Answers)}
    assert SubcallBridge.ask_llms.__annotations__["return"] == "Answers"


def test_no_module_is_over_500_lines_without_a_reason_at_its_top() -> None:
    over = []
    for path in sorted(CORE.parent.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 500 and "over 500 lines" not in text[:4000]:
            over.append(f"{path.relative_to(CORE.parent)}: {text.count(chr(10))} lines")
    assert over == []
