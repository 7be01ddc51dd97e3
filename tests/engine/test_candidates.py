"""Program search, RLM(candidates=k): k trajectories over one context and one budget, the answer
picked by vote, judge or a function; every candidate recorded; a failing one does not fail the
run; the trace holds them all under the search's run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastrlm import Budget, CandidateResult, ConfigurationError, StopReason
from fastrlm._core.candidates import judge_verdict, normalised, vote
from fastrlm.events import Event, RunFinished, RunStarted
from fastrlm.lm import ChatMessage
from fastrlm.testing import ScriptedLM, prompt_of

from .helpers import echo_sub, make_rlm, repl

_HINTS = ("(Take a different", "(Check your answer", "(Work from the details")


def _root(answers: list[str]) -> ScriptedLM:
    """Candidate i (told by its question's hint) answers ``answers[i]``; ``!`` raises."""
    def reply(messages: list[ChatMessage]) -> str:
        first = next(m["content"] for m in messages if m["role"] == "user")
        index = next((i + 1 for i, hint in enumerate(_HINTS) if hint in first), 0)
        answer = answers[index]
        if answer == "!":
            raise RuntimeError("this candidate's model broke")
        return repl(f"FINAL({answer!r})")

    return ScriptedLM(reply, model="scripted/root")


def _candidate(index: int, answer: str, reason: StopReason = StopReason.FINAL) -> CandidateResult:
    return CandidateResult(index, f"r{index}", answer, reason, 0.0, 0, 1)


def test_the_vote_compares_normalised_answers_and_breaks_ties_by_order() -> None:
    assert normalised("  The Answer. ") == normalised("the answer")
    assert normalised("1,000") == normalised("1000.0") == "1000"
    picked = vote([_candidate(0, "Paris"), _candidate(1, "1,000"), _candidate(2, "1000.")])
    assert picked == 1
    assert vote([_candidate(0, "a"), _candidate(1, "b")]) == 0
    assert vote([_candidate(0, "x", StopReason.ERROR), _candidate(1, "")]) is None
    # an answered FINAL wins over partial answers
    assert vote([_candidate(0, "b", StopReason.MAX_ITERATIONS),
                 _candidate(1, "b", StopReason.MAX_ITERATIONS), _candidate(2, "a")]) == 2


def test_a_judges_verdict_is_read_or_refused() -> None:
    assert judge_verdict("Answer 2", 3) == 1
    assert judge_verdict("7", 3) is None and judge_verdict("none", 3) is None


async def test_vote_picks_the_majority_and_the_result_records_every_candidate() -> None:
    events: list[Event] = []
    rlm, _ = make_rlm(_root(["42", "41", "42.0"]), events=events, candidates=3)
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "42"
    assert [c.answer for c in out.candidates] == ["42", "41", "42.0"]
    assert [c.selected for c in out.candidates] == [True, False, False]
    assert all(c.stop_reason is StopReason.FINAL for c in out.candidates)
    started = [e for e in events if isinstance(e, RunStarted)]
    search = started[0]
    assert search.parent_run_id is None and search.candidate is None
    assert sorted(e.candidate for e in started[1:]) == [0, 1, 2]  # type: ignore[type-var]
    assert all(e.parent_run_id == search.run_id for e in started[1:])
    last = events[-1]
    assert isinstance(last, RunFinished) and last.run_id == search.run_id
    assert last.answer == "42"
    assert out.to_dict()["candidates"][0]["selected"] is True  # type: ignore[index]


async def test_a_failing_candidate_does_not_fail_the_run() -> None:
    rlm, _ = make_rlm(_root(["!", "yes", "no"]), candidates=3)
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "yes" and out.stop_reason is StopReason.FINAL
    assert out.candidates[0].stop_reason is StopReason.ERROR
    assert out.candidates[0].error and "broke" in out.candidates[0].error


async def test_the_judge_picks_the_answer_it_names_through_the_budget() -> None:
    judge = ScriptedLM(lambda m: "2" if "Reply with only the number" in prompt_of(m)
                       else "ok", model="scripted/sub")
    rlm, _ = make_rlm(_root(["red", "blue", "green"]), sub=judge, candidates=3,
                      select="judge")
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "blue" and out.candidates[1].selected
    assert out.subcalls == 1 and len(judge.calls) == 1  # the judge is one sub-call
    assert "Answer 3:\ngreen" in prompt_of(judge.calls[0])


async def test_an_unusable_judge_verdict_falls_back_to_the_vote() -> None:
    judge = ScriptedLM(lambda m: "I cannot tell", model="scripted/sub")
    rlm, _ = make_rlm(_root(["a", "b", "b"]), sub=judge, candidates=3, select="judge")
    assert (await rlm.acompletion("q", context="c")).answer == "b"


async def test_a_selector_function_sees_every_candidate() -> None:
    seen: list[tuple[str, ...]] = []

    def longest(question: str, candidates: object) -> int:
        answers = tuple(c.answer for c in candidates)  # type: ignore[attr-defined]
        seen.append(answers)
        return max(range(len(answers)), key=lambda i: len(answers[i]))

    rlm, _ = make_rlm(_root(["a", "abc", "ab"]), candidates=3, select=longest)
    assert (await rlm.acompletion("q", context="c")).answer == "abc"
    assert seen == [("a", "abc", "ab")]


async def test_the_budget_holds_over_all_candidates_together() -> None:
    code = "r = llm_query_batched(['x'] * 4)\nFINAL('done')"
    rlm, _ = make_rlm([repl(code)] * 20, sub=echo_sub(), candidates=4,
                      budget=Budget(max_subcalls=6))
    out = await rlm.acompletion("q", context="c")
    assert out.subcalls == 6
    assert sum(c.subcalls for c in out.candidates) == 6


def test_bad_candidate_settings_are_refused_saying_what_is_accepted() -> None:
    with pytest.raises(ConfigurationError, match="candidates must be a whole number"):
        make_rlm([], candidates=0)
    with pytest.raises(ConfigurationError, match="select must be 'vote', 'judge'"):
        make_rlm([], candidates=2, select="best")


def test_the_trace_holds_every_candidate_under_the_search(tmp_path: Path) -> None:
    rlm, _ = make_rlm(_root(["x", "y", "x"]), candidates=3, trace=str(tmp_path))
    out = rlm.completion("q", context="c")
    assert out.trace_path is not None
    records = [json.loads(line) for line in Path(out.trace_path).read_text().splitlines()]
    starts = [r for r in records if r["type"] == "run.started"]
    assert starts[0]["candidate"] is None
    assert sorted(r["candidate"] for r in starts[1:]) == [0, 1, 2]
    finished = [r for r in records if r["type"] == "run.finished"]
    assert len(finished) == 4  # each candidate's, then the search's
    assert records[-1]["type"] == "run.finished" and records[-1]["answer"] == "x"


def test_the_viewer_shows_the_candidates_side_by_side(tmp_path: Path) -> None:
    from fastrlm.trace import read_trace
    from fastrlm.trace._html import render_html

    rlm, _ = make_rlm(_root(["first answer", "second answer", "first answer"]), candidates=3,
                      trace=str(tmp_path))
    out = rlm.completion("q", context="c")
    page = render_html(read_trace(Path(str(out.trace_path))))
    table = page.split("<h2>Candidates</h2>", 1)[1].split("</table>", 1)[0]
    assert table.count("<tr>") == 4  # the head and one row per candidate
    assert table.count("second answer") == 1 and table.count("first answer") == 2
    assert table.count("✓") == 2  # the chosen answer, as the two who gave it
    for candidate in out.candidates:  # each candidate's own run is drawn below
        assert f'id="run-{candidate.run_id}"' in page


async def test_the_candidates_read_one_copy_of_the_context() -> None:
    context = "a long document " * 1000
    root = ScriptedLM(lambda m: repl("FINAL(str(id(context)))"), model="scripted/root")
    rlm, _ = make_rlm(root, candidates=4)
    out = await rlm.acompletion("q", context=context)
    assert {c.answer for c in out.candidates} == {str(id(context))}
