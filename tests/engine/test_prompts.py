"""The system prompts: the default one's examples and sizing, and the paper presets' facts."""

from __future__ import annotations

import pytest

from fastrlm import Prompts

from .helpers import make_rlm, repl


def _render(p: Prompts, subcalls: bool = True, window: int = 766_848) -> str:
    return p.render_system(output_chars=20_000, window_chars=window, subcalls=subcalls,
                           recursive=False, budget_text="left: 30 turns.")


def test_the_default_prompt_has_worked_examples_and_sizing_from_the_window() -> None:
    text = _render(Prompts(), window=300_000)
    assert "300,000 characters" in text and "150,000 characters" in text
    assert "size = 150000" in text  # the map example uses the real half-window
    assert "llm_query_batched([ask + p for p in parts])" in text
    assert 'FINAL_VAR("final_answer")' in text
    assert "refused" in text and "[error: ...]" in text


def test_the_default_prompt_without_subcalls_never_mentions_them() -> None:
    text = _render(Prompts(), subcalls=False)
    assert "llm_query" not in text and "rlm_query" not in text
    assert "re.finditer" in text and "Budget for this run" in text


@pytest.mark.parametrize("preset", ["gpt-5", "qwen3-coder", "qwen3-8b"])
def test_every_paper_preset_carries_the_papers_facts(preset: str) -> None:
    text = _render(Prompts.paper(preset))
    for fact in (
        "type, its total length in characters and the character length of each of its chunks",
        "`context`",
        "`llm_query(prompt)`",
        "truncated copy of the output (at most 20,000 characters)",
        "buffers",
        "one last llm_query over the buffers",
        "```repl",
        "FINAL(your answer)",
        "FINAL_VAR(variable_name)",
        "already exists because an earlier block made it",
        "Do not write either tag while you are still planning",
        "answer the original query explicitly",
    ):
        assert fact in text, (preset, fact)


def test_the_gpt5_preset_states_500k_chars_ten_documents_and_four_examples() -> None:
    text = _render(Prompts.paper("gpt-5"))
    assert "about 500,000 characters" in text and "about ten documents a call" in text
    assert "context[:10000]" in text and 'split("\\n\\nChapter ")' in text
    assert "len(context) // 10" in text and 're.split(r"(?m)^#+ ", context)' in text
    assert text.count("```repl\n") == 4
    assert "200,000" not in text  # the batching line is Qwen3-Coder's only


def test_the_qwen3_coder_preset_adds_the_batching_paragraph() -> None:
    text = _render(Prompts.paper("qwen3-coder"))
    assert "roughly 200,000 characters into each llm_query call" in text
    assert "200 calls instead of 1,000" in text


def test_the_qwen3_8b_preset_has_a_small_window_and_an_explicit_final_var_line() -> None:
    text = _render(Prompts.paper("qwen3-8b"))
    assert "about 100,000 characters" in text and "500,000" not in text
    assert "two or three documents, or 10,000-15,000 characters" in text
    assert "context[:2000]" in text and "\nFINAL_VAR(final_answer)\n" in text


@pytest.mark.parametrize("preset", ["gpt-5", "qwen3-coder", "qwen3-8b"])
def test_a_preset_never_states_more_than_the_enforced_window(preset: str) -> None:
    text = _render(Prompts.paper(preset), window=49_152)  # Qwen3-8B as its own sub-model
    assert "about 49,152 characters" in text
    assert "500,000" not in text and "100,000" not in text


def test_the_ablation_prompt_has_no_sub_llm_and_its_own_examples() -> None:
    text = _render(Prompts.paper_no_subcalls(), subcalls=False)
    assert "llm_query" not in text and "sub-LLM" not in text
    assert "nothing but the FINAL tag" in text
    assert "re.search(" in text and "context[:10000]" in text


def test_paper_presets_are_chosen_by_model_name_and_unknown_names_refused() -> None:
    assert "200 calls instead" in _render(Prompts.paper_for("fireworks/qwen3-coder-480b"))
    assert "about 100,000 characters" in _render(Prompts.paper_for("qwen/qwen3-8b"))
    assert "about 500,000 characters" in _render(Prompts.paper_for("anthropic/claude-x"))
    with pytest.raises(ValueError, match="expected one of gpt-5, qwen3-coder, qwen3-8b"):
        Prompts.paper("gpt-4")


async def test_an_rlm_run_with_the_paper_preset_shows_chunk_lengths_first() -> None:
    rlm, root = make_rlm([repl("FINAL(str(len(context)))")], prompts=Prompts.paper("gpt-5"))
    out = await rlm.acompletion("How many?", context=["ab", "cde", "f"])
    assert out.answer == "3"
    system, first = root.calls[0][0]["content"], root.calls[0][1]["content"]
    assert system.startswith("You are given a query about a context")
    assert "list with 6 total characters, in 3 chunks" in first and "[2, 3, 1]" in first


def test_a_question_within_the_limit_is_shown_whole() -> None:
    from fastrlm._core.prompts import DROP_IN_QUESTION, question_home, shown_question

    assert question_home("q" * 4_000, "unrelated", 4_000) is None
    assert shown_question("short?", None, DROP_IN_QUESTION) == "short?"


@pytest.mark.parametrize(("context", "home"), [
    ("Q", "`context`"),
    ("user: hello\n\nuser: Q", "`context[19:5018]`"),
    (["a", "Q", "b"], "`context[1]`"),
])
def test_a_long_question_is_pointed_at_where_the_repl_holds_it(context: object,
                                                               home: str) -> None:
    from fastrlm._core.prompts import DROP_IN_QUESTION, question_home, shown_question

    question = "x" * 4_980 + "What is asked here?"
    context = ([question if c == "Q" else c for c in context] if isinstance(context, list)
               else str(context).replace("Q", question))
    found = question_home(question, context, 4_000)
    assert found == home
    shown = shown_question(question, found, DROP_IN_QUESTION)
    assert home in shown and "4,999 characters" in shown and "What is asked here?" in shown
    assert len(shown) < 2_000


def test_a_long_question_the_context_does_not_hold_is_refused_with_the_setting() -> None:
    from fastrlm import ContextError
    from fastrlm._core.prompts import question_home

    with pytest.raises(ContextError, match=r"5,000 characters.*\(4,000, Limits\.question_chars\)"):
        question_home("x" * 5_000, {"doc": "x" * 5_000}, 4_000)


def test_a_custom_drop_in_template_with_only_the_tail_still_renders() -> None:
    from fastrlm._core.prompts import shown_question

    assert shown_question("x" * 5_000 + "end", "`context`", "tail: {tail}").endswith("xend")
