"""Pure reply parsing and output shaping (no event loop)."""

from __future__ import annotations

import pytest

from fastrlm._core import parsing
from fastrlm._core.parsing import (
    extract_code_blocks,
    find_prose_final,
    nests_deeper,
    truncate_output,
    unquote_literal,
    without_final_calls,
)


def test_repl_python_and_py_fences_all_run_in_order() -> None:
    text = "a\n```repl\nx = 1\n```\nb\n```python\ny = 2\n```\n```py\nz = 3\n```\n"
    assert extract_code_blocks(text).blocks == ("x = 1", "y = 2", "z = 3")


def test_other_languages_are_not_run() -> None:
    reply = extract_code_blocks("```json\n{\"a\": 1}\n```\n```bash\nrm -rf /\n```")
    assert reply.blocks == ()
    assert reply.other_fences == 2


def test_backticks_inside_a_string_do_not_end_the_block_early() -> None:
    code = 's = """\n```\nnot the end\n"""\nprint(len(s))'
    text = f"```repl\n{code}\n```\nafter"
    assert extract_code_blocks(text).blocks == (code,)


def test_inline_triple_backticks_in_code_do_not_end_the_block() -> None:
    code = "fence = '```'\nprint(fence)"
    assert extract_code_blocks(f"```repl\n{code}\n```").blocks == (code,)


def test_unclosed_block_runs_to_the_end() -> None:
    assert extract_code_blocks("```repl\nprint(1)\n").blocks == ("print(1)\n".rstrip("\n"),)


def test_longer_fences_close_only_with_as_many_backticks() -> None:
    code = "x = '''\n```\n'''"
    assert extract_code_blocks(f"````repl\n{code}\n````").blocks == (code,)


def test_final_mentioned_in_a_plan_is_not_an_answer() -> None:
    assert find_prose_final("I will call FINAL(answer) later, once I know.") is None


def test_final_alone_on_a_line_is_the_strict_fallback() -> None:
    found = find_prose_final("Done.\nFINAL(The answer is f(g(x)) = 3)\n")
    assert found is not None
    assert found.kind == "FINAL"
    assert found.argument == "The answer is f(g(x)) = 3"


def test_final_var_on_its_own_line() -> None:
    found = find_prose_final("FINAL_VAR(result)")
    assert found is not None and found.kind == "FINAL_VAR" and found.argument == "result"


def test_quoted_final_argument_is_unquoted_with_nested_quotes_kept() -> None:
    assert unquote_literal('"He said \\"(hi)\\" twice"') == 'He said "(hi)" twice'
    assert unquote_literal("plain (words)") == "plain (words)"


def test_truncation_keeps_head_and_tail_and_states_the_true_length() -> None:
    text = "H" * 5000 + "M" * 10_000 + "T" * 5000
    shown = truncate_output(text, 2000)
    assert shown.startswith("H" * 500)
    assert shown.endswith("T" * 500)
    assert "20,000 characters in all" in shown
    assert len(shown) <= 2000


def test_short_output_is_unchanged() -> None:
    assert truncate_output("hello", 2000) == "hello"


@pytest.mark.parametrize(
    ("text", "depth"),
    [("", 0), ("42", 0), ("[1, {\"a\": [2]}]", 3), ('{"a": "[[[\\"[", "b": [1, [2]]}', 3),
     ("[['it\\'s [', ()]]", 2), ("[[[", 3), ("(" * 100 + "[1]", 1), ("]]] [", 1),
     ("[" * 100_000, 100_000),
     ("[" * 65 + "1," * 1000 + "]" * 65, 65)],
)
def test_nests_deeper_measures_brackets_outside_strings(text: str, depth: int) -> None:
    assert nests_deeper(text, depth - 1) if depth else True
    assert not nests_deeper(text, depth)


def test_nests_deeper_counts_parentheses_only_for_python_literals() -> None:
    assert not nests_deeper(":( " * 100, 64)
    assert nests_deeper("(" * 65 + ")" * 65, 64, parens=True)
    assert not nests_deeper("((1,),)", 2, parens=True) and nests_deeper("((1,),)", 1, parens=True)


def test_a_prose_final_literal_too_deep_to_parse_is_kept_as_text() -> None:
    deep = "[" * 5000 + "]" * 5000
    assert unquote_literal(deep) == deep
    assert unquote_literal("{'a': (1, 2)}") == '{"a": [1, 2]}'


def test_without_final_calls_drops_the_lines_that_hold_one() -> None:
    assert without_final_calls("so: FINAL_VAR(s).") == ""
    text = "Total: 12.\nFINAL (x)\nThat is all."
    assert without_final_calls(text) == "Total: 12.\nThat is all."
    kept = "the FINAL answer is 3\nMY_FINAL(x)"
    assert without_final_calls(kept) == kept


def test_a_block_with_one_possible_closing_line_is_not_parsed_to_choose_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # parsing is only how a block picks among several closing lines; with one, there is no
    # choice to make (a reply's every block was parsed here, then again where it runs)
    parsed: list[str] = []
    real = parsing.ast.parse
    monkeypatch.setattr(parsing.ast, "parse", lambda code, *a, **k: (parsed.append(code),
                                                                     real(code, *a, **k))[1])
    one = extract_code_blocks("first\n```repl\nx = (\n```\nthen")
    assert one.blocks == ("x = (",) and parsed == []  # kept as written: its run says why
    two = extract_code_blocks("```repl\ns = '''\n```\n'''\nprint(s)\n```")
    assert two.blocks == ("s = '''\n```\n'''\nprint(s)",) and parsed  # chosen by parsing
