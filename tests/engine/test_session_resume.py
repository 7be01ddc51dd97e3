"""A recorded session resumes into a new one: its questions replay at no cost, its REPL is
rebuilt, and the next question goes on live."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastrlm import RLM, ConfigurationError
from fastrlm.testing import ScriptedLM
from fastrlm.trace import ReplayError

from .helpers import repl

FIRST = repl("x = len(context)\nFINAL(str(x))")
SECOND = repl("y = x * 2\nFINAL(str(y))")


def _rlm(home: Path, replies: list[str]) -> tuple[RLM, ScriptedLM]:
    root = ScriptedLM(replies, model="scripted/root")
    return RLM(root, ScriptedLM([], model="scripted/sub"), sandbox="none", trace=home), root


def _recorded_session(home: Path) -> str:
    rlm, _ = _rlm(home, [FIRST, SECOND])
    with rlm.session() as session:
        assert session.ask("len?", context="hello").answer == "5"
        assert session.ask("double?").answer == "10"
        return session.id


def test_a_resumed_session_replays_its_questions_free_then_asks_on_with_their_variables(
        tmp_path: Path) -> None:
    recorded = _recorded_session(tmp_path)
    rlm, root = _rlm(tmp_path, [repl("FINAL(str(x + y))")])
    with rlm.session() as session:
        replayed = session.resume(recorded[:6], context="hello")
        assert [r.answer for r in replayed] == ["5", "10"] and root.calls == []
        assert session.ask("sum?").answer == "15"  # x and y came back with the replay
    assert len(root.calls) == 1
    again, root = _rlm(tmp_path, [])
    newer = _newest(tmp_path, recorded)
    with again.session() as session:  # the resumed session was recorded in turn
        answers = [r.answer for r in session.resume(newer, context="hello")]
    assert answers == ["5", "10", "15"] and root.calls == []


def _newest(home: Path, old: str) -> str:
    from fastrlm.trace import read_head

    ids = {head["session"] for path in (home / "traces").glob("*.record")
           if (head := read_head(path)) is not None and head.get("session")}
    [new] = ids - {old}
    return str(new)


def test_a_session_resume_refuses_what_it_cannot_replay(tmp_path: Path) -> None:
    recorded = _recorded_session(tmp_path)
    rlm, _ = _rlm(tmp_path, [FIRST])
    with rlm.session() as session, pytest.raises(ReplayError, match="pass it again"):
        session.resume(recorded)
    with rlm.session() as session, pytest.raises(ReplayError, match="no recorded session"):
        session.resume("s-nosuch")
    with rlm.session() as session:
        session.ask("len?", context="hello")
        with pytest.raises(ConfigurationError, match="before its first ask"):
            session.resume(recorded, context="hello")


def test_a_session_whose_later_question_brought_a_context_resumes_given_the_contexts(
        tmp_path: Path) -> None:
    rlm, _ = _rlm(tmp_path, [FIRST, repl("FINAL(str(x) + '/' + str(len(context)))")])
    with rlm.session() as session:
        assert session.ask("len?", context="hello").answer == "5"
        assert session.ask("and this?", context=["a", "b", "c"]).answer == "5/3"
        recorded = session.id
    again, root = _rlm(tmp_path, [repl("FINAL(str(x) + '/' + str(len(context_1)))")])
    with again.session() as session, pytest.raises(ReplayError, match="up to question 1"):
        session.resume(recorded, context="hello")  # the second context is not in the trace
    with again.session() as session:
        replayed = session.resume(recorded, contexts={0: "hello", 1: ["a", "b", "c"]})
        assert [r.answer for r in replayed] == ["5", "5/3"] and root.calls == []
        assert session.ask("again?").answer == "5/3"
    with again.session() as session:  # a context other than the one recorded is found out
        with pytest.raises(ReplayError, match="question 2 .* not the one it was asked about"):
            session.resume(recorded, contexts={0: "hello", 1: ["a", "b"]})
    with again.session() as session, pytest.raises(ReplayError, match="question 1 "):
        session.resume(recorded, context="hellO")  # the first context is checked as well
