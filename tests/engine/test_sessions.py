"""Sessions: one REPL and one conversation across questions, contexts that accumulate, a
conversation kept under its limit, a restart mid-session, and the two budget modes."""

from __future__ import annotations

import asyncio

import pytest

from fastrlm import RLM, Budget, ConfigurationError, ContextError, Limits, StopReason
from fastrlm.events import Event, RunStarted
from fastrlm.testing import ScriptedLM, skip_unless_sandbox

from .helpers import repl

KINDS = ["none", "auto"]



def _script(messages: list[dict[str, str]]) -> str:
    """Question 1 sets x = 500 (the recorded trajectory), later ones read it back."""
    last = messages[-1]["content"]
    if "New question (2" in last:
        return repl("FINAL(str(x + 1) + '|' + str(context) + '|' + context_0)")
    if "New question (3" in last:
        return repl("FINAL(str(x) + '|' + str(context == context_1))")
    return repl("x = 500\nFINAL('set')")


@pytest.mark.parametrize("kind", [*KINDS, "docker"])  # docker: one warm container throughout
def test_variables_and_contexts_persist_across_questions(kind: str) -> None:
    skip_unless_sandbox(kind)
    events: list[Event] = []
    root = ScriptedLM(_script)
    with RLM(root, sandbox=kind, on_event=events.append).session() as session:
        first = session.ask("set x", context="the first context")
        second = session.ask("read x", context=["second", "doc"])
        third = session.ask("read again")
    assert [first.answer, second.answer, third.answer] == [
        "set", "501|['second', 'doc']|the first context", "500|True"]
    assert session.closed
    told = root.calls[1][-1]["content"]
    assert "bound as `context_1` (and `context`)" in told
    assert "`context_0` (str, 17 characters); `context_1` (list of 2, 9 characters)" in told
    assert "`context` is `context_1`" in root.calls[2][-1]["content"]
    # one conversation: the second question's call carries the first question's turns
    assert [m["role"] for m in root.calls[1]] == ["system", "user", "assistant", "user"]
    started = [e for e in events if isinstance(e, RunStarted) and e.depth == 0]
    assert {e.session_id for e in started} == {session.id}
    assert [e.session_question for e in started] == [1, 2, 3]
    assert len({e.run_id for e in started}) == 3


async def test_an_async_session_and_one_question_at_a_time() -> None:
    root = ScriptedLM(_script)
    async with RLM(root, sandbox="none").session() as session:
        assert (await session.aask("set x", "ctx")).answer == "set"
        answer = await session.aask("read x", ["b"])
        assert answer.answer.startswith("501|")
    with pytest.raises(ConfigurationError, match="closed"):
        await session.aask("more")


@pytest.mark.sandbox
def test_a_restart_mid_session_tells_the_model_what_was_lost() -> None:
    kind = "auto"  # a hard kill needs a worker process
    skip_unless_sandbox(kind)
    hang = "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True: pass"

    def script(messages: list[dict[str, str]]) -> str:
        last = messages[-1]["content"]
        if "New question (2" in last:
            return repl(hang)
        if "was restarted" in last:
            return repl("FINAL(str([k for k in ('x', 'context_0', 'context_1') "
                        "if k in globals()]) + context_0 + str(context_1))")
        return repl("x = 1\nFINAL('ok')")

    root = ScriptedLM(script)
    budget = Budget(exec_timeout_s=0.3)
    with RLM(root, sandbox=kind, budget=budget,
             limits=Limits(max_concurrency=4)).session() as session:
        session.ask("one", context="zero")
        result = session.ask("two", context=["one"])
    assert result.answer == "['context_0', 'context_1']zero['one']"
    note = next(m["content"] for m in root.calls[-1] if "was restarted" in m["content"])
    assert "in this question and earlier ones, is lost" in note
    assert "`context_0`, `context_1`, `context`" in note


def test_fifty_questions_stay_under_the_history_limit() -> None:
    def script(messages: list[dict[str, str]]) -> str:
        if "Output of block" in messages[-1]["content"]:
            return repl("FINAL('done ' + str(len(big)))")
        return repl("big = 'y' * 3000\nprint(big)")  # every question prints 3,000 chars

    root = ScriptedLM(script)
    limit = 12_000
    with RLM(root, sandbox="none", limits=Limits(history_chars=limit)).session() as session:
        for number in range(50):
            assert session.ask(f"question {number}", context="c" if number == 0 else None
                               ).answer == "done 3000"
    sizes = [sum(len(m["content"]) for m in call) for call in root.calls]
    assert max(sizes) < limit + 10_000  # the last question's own turns may add to the limit
    last = root.calls[-1]
    assert any("[Question 1, earlier in this session" in m["content"] for m in last)
    assert "question 49" in last[-3]["content"] or "question 49" in last[-1]["content"]


def test_per_question_budgets_and_a_session_budget() -> None:
    never = repl("x = llm_query('hi')")
    root = ScriptedLM(lambda m: never)
    sub = ScriptedLM(lambda m: "sub")
    rlm = RLM(root, sub, sandbox="none")
    with rlm.session() as per_question:
        one = per_question.ask("q", "ctx", budget=Budget(max_subcalls=2, max_iterations=5))
        two = per_question.ask("q2", budget=Budget(max_subcalls=2, max_iterations=5))
    assert one.subcalls == 2 and two.subcalls == 2  # each question has its own budget
    with rlm.session(budget=Budget(max_subcalls=3, max_iterations=5)) as whole:
        first = whole.ask("q", "ctx")
        second = whole.ask("q2")
        with pytest.raises(ConfigurationError, match="session-wide budget"):
            whole.ask("q3", budget=Budget(max_subcalls=1))
    assert first.subcalls == 3 and second.subcalls == 3  # the ledger is the session's
    assert second.limited_by is StopReason.BUDGET_SUBCALLS


def test_a_later_context_that_is_not_json_is_refused_clearly() -> None:
    root = ScriptedLM(lambda m: repl("FINAL('x')"))
    with RLM(root, sandbox="none").session() as session:
        session.ask("q", "text")
        with pytest.raises(ContextError, match="later question's context"):
            session.ask("q2", context=b"bytes")
        assert session.ask("q3", context={"k": 1}).answer == "x"


def test_a_blocking_session_refuses_a_running_loop_and_typed_answers_work() -> None:
    root = ScriptedLM([repl("FINAL('a')"), repl("FINAL({'n': 2})")])
    session = RLM(root, sandbox="none").session()
    try:
        assert session.ask("q", "c").answer == "a"
        result = session.ask("q2", output={"type": "object", "required": ["n"]})
        assert result.value == {"n": 2}

        async def inside() -> None:
            session.ask("q3")

        with pytest.raises(RuntimeError, match="running event loop"):
            asyncio.run(inside())
    finally:
        session.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.extra("dataframes")
def test_non_text_contexts_reach_the_repl_through_completion(kind: str, tmp_path: object) -> None:
    """The context kinds through the public API (the engine's own path, not just the
    sandbox's): bytes, a DataFrame, a directory."""
    skip_unless_sandbox(kind)
    import pathlib

    import pandas as pd

    folder = pathlib.Path(str(tmp_path)) / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("alpha")
    cases = [
        (b"\x00\x01raw", "FINAL(str(type(context).__name__) + str(len(context)))", "bytes5"),
        (pd.DataFrame({"n": [1, 2, 3]}), "FINAL(str(int(context['n'].sum())))", "6"),
        (folder, "FINAL(context['a.txt'])", "alpha"),
    ]
    for context, code, expected in cases:
        root = ScriptedLM([repl(code)])
        result = RLM(root, sandbox=kind).completion("q", context)
        assert result.answer == expected, result.error


def _long_follow_up(messages: list[dict[str, str]]) -> str:
    if "New question (2" in messages[-1]["content"]:
        return repl("FINAL(str(x) + '|' + str(len(context_1)) + '|' + context[-9:])")
    return repl("x = 7\nFINAL('set')")


@pytest.mark.parametrize("kind", ["none", "bwrap", "landlock"])
def test_a_later_question_too_long_to_show_is_the_next_context(kind: str) -> None:
    if kind != "none":
        skip_unless_sandbox(kind)
    follow_up = "row,1\n" * 50_000 + "how many?"
    root = ScriptedLM(_long_follow_up)
    with RLM(root, sandbox=kind).session() as session:
        assert session.ask("set x", context="the first context").answer == "set"
        assert session.ask(follow_up).answer == f"7|{len(follow_up)}|how many?"
    told = root.calls[1][-1]["content"]
    assert len(told) < 5_000, f"the root was shown {len(told):,} characters of the question"
    assert "how many?" in told and "bound as `context_1`" in told


def test_a_short_follow_up_still_asks_about_the_latest_context() -> None:
    root = ScriptedLM(lambda m: repl("FINAL(context)"))
    with RLM(root, sandbox="none").session() as session:
        session.ask("first", context="the document")
        assert session.ask("and again?").answer == "the document"
