"""The scorers against the official code itself, read from a local clone at test time (never
vendored): OOLONG's ``synth_process_response`` (``FASTRLM_OOLONG_REPO``, a clone of
abertsch72/oolong) and RULER's ``string_match_all`` (``FASTRLM_RULER_REPO``, a clone of
NVIDIA/RULER). Skipped without the clones."""

from __future__ import annotations

import ast
import datetime as dt
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import pytest

from fastrlm.bench._adapters import oolong_synth, ruler_niah

FIXTURES = Path(__file__).parent / "fixtures"


def _functions(env: str, relpath: str, names: tuple[str, ...],
               namespace: dict[str, Any]) -> dict[str, Any]:
    repo = os.environ.get(env)
    if not repo:
        pytest.skip(f"set {env} to a clone to compare with the official code")
    source = (Path(repo) / relpath).read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        tree = ast.parse(source)
    wanted = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names]
    assert {f.name for f in wanted} == set(names)
    exec(compile(ast.Module(wanted, []), relpath, "exec"), namespace)  # noqa: S102
    return namespace


OUTPUTS = [
    "Answer: 2", "answer: 3", "**Answer:** 2", "Answer: [location]", "location", "entity",
    "The answer is location", "Answer: location.", "Label: less common than",
    "Answer: it is less common than the other label by far", "Answer: more common",
    "Answer: 2023-04-01", "Answer: April 1, 2023", "Answer: Apr 01, 2023", "User: 50877",
    "The user is 50877 for sure, not anyone else", "Answer: 50877", "Answer: 5", "Answer: -1",
    "Answer: two", "", "Answer:", "1", "   2   ", "Answer: [datetime.date(2023, 4, 1)]",
    "Final answer: same frequency as", "Answer: 1\nThat is all: 1",
]


def test_oolong_scores_as_the_official_code_on_every_fixture_row_and_output() -> None:
    pytest.importorskip("dateutil.parser")  # the official scorer reads dates with it
    import dateutil.parser

    official = _functions(
        "FASTRLM_OOLONG_REPO", "src/eval/eval_helpers.py",
        ("synth_attempt_answer_parse", "synth_process_response"),
        {"ast": ast, "datetime": dt.datetime, "dateutil": dateutil},
    )["synth_process_response"]
    task = oolong_synth(FIXTURES / "oolong_synth_validation.jsonl")
    rows = {str(json.loads(x)["id"]): json.loads(x)
            for x in (FIXTURES / "oolong_synth_validation.jsonl").read_text().splitlines()}
    compared = 0
    for length in (1024, 2048):
        for inst in task.instances(0, length):
            row = rows[str(inst.meta["row_id"])]
            for out in OUTPUTS:
                if not out.strip() and ":" not in out:
                    continue  # the official parser raises IndexError on a blank reply
                want = float(official(row, out, "m")["score"])
                assert task.score(out, inst) == pytest.approx(want), (row["id"], out)
                compared += 1
    assert compared > 100


def test_ruler_string_match_all_matches_the_official_metric() -> None:
    official = _functions("FASTRLM_RULER_REPO", "scripts/eval/synthetic/constants.py",
                          ("string_match_all",), {})["string_match_all"]
    task = ruler_niah(FIXTURES / "ruler_niah_single.jsonl")
    items = task.instances(0, 0)
    preds = [f"It is {i.gold[0].upper()}" if n % 2 else "nothing" for n, i in enumerate(items)]
    refs = [i.gold for i in items]
    ours = round(100 * sum(task.score(p, i) for p, i in zip(preds, items, strict=True))
                 / len(items), 2)
    assert ours == official(preds, refs)
    assert re.fullmatch(r"\d+\.\d+|\d+", str(ours))


LONGBENCH_REPLIES = [
    "The correct answer is (B)", "**The correct answer is (C)**", "The correct answer is D.",
    "I think A. The correct answer is (B)", "The correct answer is (B) or maybe (C)",
    "the correct answer is (B)", "The correct answer is  (B)", "The correct answer is B, not C",
    "The correct answer is **(A)**", "The correct answer is (E)", "Answer: B", "B", "(C)",
    "Final answer: 2", "The correct answer is (b)",
]


def test_codeqa_agrees_with_longbench_wherever_longbench_finds_a_letter() -> None:
    from fastrlm.bench._score import parse_choice

    extract = _functions("FASTRLM_LONGBENCH_REPO", "pred.py", ("extract_answer",),
                         {"re": re})["extract_answer"]
    agreed = 0
    for reply in LONGBENCH_REPLIES:
        letter = extract(reply)
        if letter is not None:  # where LongBench finds none, ours reads the paper's 0-3 forms
            assert parse_choice(reply) == "ABCD".index(letter), reply
            agreed += 1
    assert agreed >= 6
