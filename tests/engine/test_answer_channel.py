"""FINAL, FINAL_VAR and the answer dict: peers.md bugs 1 and 3, and their edge cases."""

from __future__ import annotations

import pytest

from fastrlm import StopReason
from fastrlm.testing import skip_unless_sandbox

from .helpers import make_rlm, repl

LAYERS = ["bwrap", "landlock", "none"]


skip_unless_available = skip_unless_sandbox


async def test_final_var_returns_the_value_not_a_tuple_or_the_name() -> None:
    rlm, _ = make_rlm([repl("result = 'forty two'\nFINAL_VAR('result')")])
    out = await rlm.acompletion("q", context="ctx")
    assert out.answer == "forty two"
    assert out.stop_reason is StopReason.FINAL


async def test_final_inside_a_code_fence_returns_the_value_of_the_expression() -> None:
    rlm, _ = make_rlm([repl("answer_text = 'value'\nFINAL(answer_text)")])
    assert (await rlm.acompletion("q", context="c")).answer == "value"


async def test_nested_parentheses_and_quotes_in_final_survive() -> None:
    text = 'f(g(x)) == "(a, (b))" and \'it\'s\' )('
    rlm, _ = make_rlm([repl(f"FINAL({text!r})")])
    assert (await rlm.acompletion("q", context="c")).answer == text


async def test_nested_parentheses_in_prose_final_fallback() -> None:
    rlm, _ = make_rlm(["I know it.\nFINAL(max(f(1), g((2, 3))))"])
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "max(f(1), g((2, 3)))"
    assert out.stop_reason is StopReason.FINAL


async def test_final_mentioned_in_the_plan_does_not_end_the_run() -> None:
    rlm, root = make_rlm([
        "Plan: explore, then I will call FINAL(answer) when done.\n" + repl("x = 1"),
        repl("FINAL('real')"),
    ])
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "real"
    assert len(root.calls) == 2


async def test_prose_final_var_reads_the_variable_from_the_repl() -> None:
    rlm, _ = make_rlm([repl("total = 7"), "FINAL_VAR(total)"])
    assert (await rlm.acompletion("q", context="c")).answer == "7"


async def test_final_var_of_an_unknown_name_is_an_error_the_model_sees() -> None:
    rlm, root = make_rlm([repl("FINAL_VAR('nope')"), repl("FINAL('fixed')")])
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "fixed"
    feedback = root.calls[1][-1]["content"]
    assert "no variable named 'nope'" in feedback


async def test_final_var_of_a_5mb_list_is_delivered_whole() -> None:
    rlm, _ = make_rlm([repl("big = ['x' * 99 for _ in range(50_000)]\nFINAL_VAR('big')")])
    out = await rlm.acompletion("q", context="c")
    assert len(out.answer) > 5_000_000
    assert out.answer.startswith('["xxx')


async def test_answer_dict_item_assignment_ends_the_run() -> None:
    rlm, _ = make_rlm([repl("answer['content'] = 'dict answer'\nanswer['ready'] = True")])
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "dict answer"
    assert out.stop_reason is StopReason.FINAL


async def test_answer_update_with_ready_is_detected() -> None:
    rlm, _ = make_rlm([repl("answer.update({'content': 'via update', 'ready': True})")])
    assert (await rlm.acompletion("q", context="c")).answer == "via update"


async def test_answer_content_without_ready_does_not_end_the_run() -> None:
    rlm, root = make_rlm([repl("answer['content'] = 'draft'"), repl("FINAL('done')")])
    assert (await rlm.acompletion("q", context="c")).answer == "done"
    assert len(root.calls) == 2


@pytest.mark.parametrize(
    "name", ["context", "llm_query", "FINAL", "FINAL_VAR", "llm_query_batched"]
)
async def test_rebinding_reserved_names_is_restored_and_the_model_told(name: str) -> None:
    rlm, root = make_rlm([
        repl(f"{name} = 'clobbered'"),
        repl("FINAL(str(type(context).__name__) + ':' + str(callable(llm_query)) + ':' + "
             "str(callable(FINAL)))"),
    ])
    out = await rlm.acompletion("q", context="the context")
    assert out.answer == "str:True:True"
    assert f"`{name}`" in root.calls[1][-1]["content"]
    assert "restored" in root.calls[1][-1]["content"]


async def test_first_final_in_a_cell_wins_and_later_blocks_do_not_run() -> None:
    reply = repl("FINAL('first')\nFINAL('second')") + repl("raise SystemExit('must not run')")
    rlm, _ = make_rlm([reply])
    assert (await rlm.acompletion("q", context="c")).answer == "first"


@pytest.mark.parametrize(
    ("last_reply", "answer"),
    [("FINAL_VAR(s)", "hello"),
     (repl("1 / 0") + "FINAL_VAR(s)", "hello"),  # no later turn to fix the block in
     ("FINAL_VAR(missing)", ""),
     ("The answer is FINAL_VAR(s).", ""),
     ("FINAL(s).", ""),
     ("The total is 12.\nFINAL_VAR(missing)", "The total is 12.")],
    ids=["resolved", "after-a-failed-block", "unknown-name", "inside-a-sentence", "trailing",
         "prose-kept"],
)
async def test_the_answer_at_max_iterations_is_never_a_final_expression(
    last_reply: str, answer: str,
) -> None:
    from fastrlm import Budget

    rlm, _ = make_rlm([repl("s = 'hello'"), last_reply], budget=Budget(max_iterations=1))
    out = await rlm.acompletion("q", context="c")
    assert out.stop_reason is StopReason.MAX_ITERATIONS
    assert out.answer == answer


async def test_a_prose_final_of_a_literal_delivers_what_the_same_call_in_a_block_does() -> None:
    for code in ('FINAL({"a": [1, "x"], "b": None})', "FINAL([1, 2])", "FINAL(3.5)",
                 "FINAL(True)"):
        in_block, _ = make_rlm([repl(code)])
        in_prose, _ = make_rlm([code])
        expected = (await in_block.acompletion("q", context="c")).answer
        assert (await in_prose.acompletion("q", context="c")).answer == expected, code


@pytest.mark.parametrize("layer", LAYERS)
async def test_every_channel_delivers_a_dict_as_json(layer: str) -> None:
    skip_unless_available(layer)
    for code in ("FINAL(d)", "FINAL_VAR('d')", "answer['content'] = d\nanswer['ready'] = True"):
        rlm, _ = make_rlm([repl("d = {'a': [1, None], 'b': 'x'}\n" + code)], sandbox=layer)
        out = await rlm.acompletion("q", context="c", output={"type": "object"})
        assert out.value == {"a": [1, None], "b": "x"}, code


@pytest.mark.parametrize("layer", LAYERS)
async def test_a_value_too_deep_to_write_out_is_an_error_the_model_sees(layer: str) -> None:
    skip_unless_available(layer)
    make_deep = "d = []\nfor _ in range(100_000):\n    d = [d]\n"
    for code in ("FINAL(d)", "FINAL_VAR('d')", "answer['content'] = d\nanswer['ready'] = True"):
        rlm, root = make_rlm([repl(make_deep + code), repl("FINAL('flat')")], sandbox=layer)
        out = await rlm.acompletion("q", context="c")
        assert out.answer == "flat", code
        assert "nests too deep to deliver" in root.calls[1][-1]["content"], code
