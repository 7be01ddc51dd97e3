"""The loop forgives what real models do wrong (issue 14's robustness cases), each scripted."""

from __future__ import annotations

import json

import pytest

from fastrlm import Budget, StopReason
from fastrlm._core.parsing import looks_like_plan
from fastrlm.events import Event

from .helpers import make_rlm, repl


async def test_code_then_a_prose_final_line_runs_the_code_first_then_takes_final() -> None:
    events: list[Event] = []
    rlm, root = make_rlm([repl("result = 6 * 7\nprint('computed')") + "FINAL(result)"],
                         events=events)
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "42" and out.stop_reason is StopReason.FINAL
    assert len(root.calls) == 1
    codes = [e.to_dict()["code"] for e in events if e.type == "code.executed"]
    assert codes[0].startswith("result = 6 * 7")  # the model's code ran before the FINAL


async def test_code_then_a_prose_final_literal_is_taken_after_the_code() -> None:
    events: list[Event] = []
    rlm, _ = make_rlm([repl("print('side effect')") + 'FINAL("Paris, France")'],
                      events=events)
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "Paris, France"
    assert [e.type for e in events].count("code.executed") == 1


async def test_code_then_prose_final_var_delivers_the_variable_made_by_the_code() -> None:
    rlm, _ = make_rlm([repl("summary = 'made in this reply'") + "FINAL_VAR(summary)"])
    assert (await rlm.acompletion("q", context="c")).answer == "made in this reply"


async def test_a_prose_final_after_a_failed_block_is_not_taken_and_the_model_told() -> None:
    rlm, root = make_rlm([repl("1 / 0") + "FINAL(premature)", repl("FINAL('fixed')")])
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "fixed"
    feedback = root.calls[1][-1]["content"]
    assert "ZeroDivisionError" in feedback and "was not taken because a block failed" in feedback


async def test_final_of_a_variable_name_in_code_delivers_the_value_and_says_final_var() -> None:
    events: list[Event] = []
    rlm, _ = make_rlm([repl("total = sum(range(5))\nFINAL('total')")], events=events)
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "10"
    output = next(e.to_dict()["output"] for e in events if e.type == "code.executed")
    assert "FINAL_VAR('total')" in output


async def test_bare_prose_final_of_a_variable_name_delivers_the_variable() -> None:
    rlm, _ = make_rlm([repl("best = {'name': 'Ada'}"), "The answer is ready.\nFINAL(best)"])
    out = await rlm.acompletion("q", context="c")
    assert json.loads(out.answer) == {"name": "Ada"}


async def test_final_of_a_word_that_is_no_variable_stays_the_word() -> None:
    rlm, _ = make_rlm([repl("other = 1"), "FINAL(Paris)"])
    assert (await rlm.acompletion("q", context="c")).answer == "Paris"


async def test_final_of_a_string_equal_to_its_own_variable_is_the_string() -> None:
    rlm, _ = make_rlm([repl("x = 'x'\nFINAL('x')")])
    assert (await rlm.acompletion("q", context="c")).answer == "x"


async def test_final_var_of_a_missing_name_lists_the_variables_and_the_run_goes_on() -> None:
    rlm, root = make_rlm([repl("results = [1]\nresult_count = 1\nFINAL_VAR('result')"),
                          repl("FINAL_VAR('results')")])
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "[1]" and out.stop_reason is StopReason.FINAL
    feedback = root.calls[1][-1]["content"]
    assert "no variable named 'result'" in feedback
    assert "results" in feedback and "result_count" in feedback


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("FINAL({'a': [1, 2], 'b': None, 'c': 'é'})", {"a": [1, 2], "b": None, "c": "é"}),
        ("FINAL([True, 1.5, 'x'])", [True, 1.5, "x"]),
        ("d = {'k': (1, 2)}\nFINAL_VAR('d')", {"k": [1, 2]}),
    ],
)
async def test_final_of_a_dict_or_list_is_json_not_a_python_repr(
        code: str, expected: object) -> None:
    rlm, _ = make_rlm([repl(code)])
    out = await rlm.acompletion("q", context="c")
    assert json.loads(out.answer) == expected


async def test_final_of_a_list_json_cannot_hold_falls_back_to_its_text() -> None:
    rlm, _ = make_rlm([repl("FINAL([{1, 2}])")])
    assert (await rlm.acompletion("q", context="c")).answer == "[{1, 2}]"


async def test_a_plan_only_final_is_rejected_once_with_a_note_and_the_run_goes_on() -> None:
    rlm, root = make_rlm([
        repl("FINAL('I will now search the context for the dates.')"),
        repl("FINAL('1999')"),
    ])
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "1999" and out.stop_reason is StopReason.FINAL
    assert len(root.calls) == 2
    assert "only a plan" in root.calls[1][-1]["content"]


async def test_a_second_plan_only_final_is_accepted() -> None:
    rlm, root = make_rlm([
        "Let me check the rest.\nFINAL(Let me check the rest of the file)",
        repl("FINAL('Next, I will read chapter 2.')"),
    ])
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "Next, I will read chapter 2." and out.stop_reason is StopReason.FINAL
    assert len(root.calls) == 2


@pytest.mark.parametrize("text", ["I will now read the context.", "Let me look at part 2.",
                                  "Next, I will count them.", "OK, I'll summarise next.",
                                  "  I'm going to split the file."])
def test_plans_are_recognised(text: str) -> None:
    assert looks_like_plan(text)


@pytest.mark.parametrize("text", ["42", "I will be 30 in May: " + "x" * 400, "Paris",
                                  "The answer is: I will not attend.", "Willow", ""])
def test_answers_are_not_plans(text: str) -> None:
    assert not looks_like_plan(text)


async def test_out_of_iterations_one_extraction_call_gives_the_best_answer_marked_partial(
) -> None:
    rlm, root = make_rlm([repl("x = 1"), repl("x = 2"), repl("FINAL('best so far')")],
                         budget=Budget(max_iterations=2))
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "best so far"
    assert out.stop_reason is StopReason.MAX_ITERATIONS and out.partial
    assert len(root.calls) == 3 and out.requests == 3  # the extraction call went through the ledger
    assert root.calls[-1][-1]["role"] == "user"


async def test_the_extraction_call_is_skipped_when_the_budget_refuses_it() -> None:
    rlm, root = make_rlm([repl("answer['content'] = 'draft'")] * 5,
                         budget=Budget(max_iterations=1, max_requests=1))
    out = await rlm.acompletion("q", context="c")
    assert len(root.calls) == 1  # nothing was sent past the limit
    assert out.stop_reason is StopReason.BUDGET_REQUESTS  # the limit that refused it is named
    assert out.partial and out.answer == "draft"
