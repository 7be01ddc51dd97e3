"""BrowseComp-Plus's judge: the official grader prompt read from the user's copy (never shipped),
and the judge's reply read as the official ``parse_judge_response`` reads it, tricky cases first.

With ``FASTRLM_BCP_REPO`` naming a clone of texttron/BrowseComp-Plus, the reply reader is also
compared with the official function itself, taken from the clone's source at test time."""

from __future__ import annotations

import ast
import os
import re
import warnings
from pathlib import Path
from typing import Any

import pytest

from fastrlm import ConfigurationError
from fastrlm.bench._judge import judge_prompt, load_grader_template, parse_judgement

#: A made-up template in the official one's shape (the official text is read, never shipped).
TEMPLATE = (
    "Q={question}\nR={response}\n[correct_answer]: {correct_answer}\n"
    "extracted_final_answer: ...\nreasoning: ...\ncorrect: yes or no\nconfidence: 0-100"
)

#: (reply, correct, extracted, confidence): what the official reader makes of each.
REPLIES: list[tuple[str, bool | None, str | None, float | None]] = [
    ("extracted_final_answer: Foo\nreasoning: same\ncorrect: yes\nconfidence: 80%",
     True, "Foo", 80.0),
    ("extracted_final_answer: Foo\ncorrect: no\nconfidence: 80", False, "Foo", 80.0),
    ("**extracted_final_answer:** Foo\n**correct:** Yes\n**confidence:** 95%", True, "Foo", 95.0),
    ("**extracted_final_answer**: Foo\n**correct**: NO", False, "Foo", None),
    # the cases the reworded reader got wrong
    ("extracted_final_answer: Foo\ncorrect: **yes**\nconfidence: 90", None, "Foo", 90.0),
    ("correct: nope", False, None, None),  # "no" is its first two letters
    ("reasoning: it is correct: yes, broadly\ncorrect: no", True, None, None),
    ("reasoning: not correct: no match here\n**correct:** yes", True, None, None),
    ("incorrect: yes", True, None, None),
    ("Correct: yes, they match", True, None, None),
    ("correct: maybe", None, None, None),
    ("I cannot grade this.", None, None, None),
    ("", None, None, None),
    ("correct: yes\nconfidence: 250%", True, None, 100.0),
    ("**confidence**: 85.5 %\ncorrect:no", False, None, 85.5),
    ("extracted_final_answer:\nFoo Bar\ncorrect: yes", True, "Foo Bar", None),
    ("EXTRACTED_FINAL_ANSWER: the **Ivory** Tower  \ncorrect: YES", True, "the **Ivory** Tower",
     None),
    ("extracted_final_answer: None\nreasoning: no answer given\ncorrect: no\nconfidence: 0",
     False, "None", 0.0),
    ("correct:\nyes", True, None, None),  # whitespace, newline included, before the word
]


@pytest.mark.parametrize(("reply", "correct", "extracted", "confidence"), REPLIES)
def test_the_judge_reply_is_read_as_the_official_grader_reads_it(
    reply: str, correct: bool | None, extracted: str | None, confidence: float | None
) -> None:
    got = parse_judgement(reply)
    assert (got.correct, got.extracted, got.confidence) == (correct, extracted, confidence)
    assert got.parse_error is (correct is None)


def test_the_reasoning_ends_at_the_verdict_line() -> None:
    got = parse_judgement("reasoning: they agree\non the name\ncorrect: yes")
    assert got.reasoning == "they agree\non the name"


def _official_parser() -> Any:
    repo = os.environ.get("FASTRLM_BCP_REPO")
    if not repo:
        pytest.skip("set FASTRLM_BCP_REPO to a BrowseComp-Plus clone to compare with its code")
    source = (Path(repo) / "scripts_evaluation" / "evaluate_run.py").read_text()
    with warnings.catch_warnings():
        # its "\%" in a plain string
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        tree = ast.parse(source)
    [fn] = [n for n in tree.body
            if isinstance(n, ast.FunctionDef) and n.name == "parse_judge_response"]
    namespace: dict[str, Any] = {"re": re}
    exec(compile(ast.Module([fn], []), "evaluate_run.py", "exec"), namespace)  # noqa: S102
    return namespace["parse_judge_response"]


def test_the_reader_agrees_with_the_official_code_on_every_reply() -> None:
    official = _official_parser()
    battery = [r for r, *_ in REPLIES]
    words = ["yes", "no", "nope", "**yes**", "Yes.", "NO", " yes"]
    for label in ("correct:", "**correct:**", "**correct**:", "Correct :"):
        battery += [f"reasoning: fine\n{label} {w}\nconfidence: 7{w[:1]}%" for w in words]
    for reply in battery:
        want = official(reply)
        got = parse_judgement(reply)
        assert (got.correct, got.extracted, got.confidence, got.reasoning) == (
            want["correct"], want["extracted_final_answer"], want["confidence"],
            want["reasoning"]), reply
        assert got.parse_error is want["parse_error"]


def test_the_official_template_loads_from_a_clone() -> None:
    repo = os.environ.get("FASTRLM_BCP_REPO")
    if not repo:
        pytest.skip("set FASTRLM_BCP_REPO to a BrowseComp-Plus clone")
    template = load_grader_template(repo)
    assert template == template.strip() and "[correct_answer]: {correct_answer}" in template
    text = judge_prompt(template, "Which town?", "Exact Answer: Foo", "Bar")
    assert "[question]: Which town?" in text and "[response]: Exact Answer: Foo" in text


def _clone(tmp_path: Path, body: str) -> Path:
    (tmp_path / "scripts_evaluation").mkdir()
    (tmp_path / "scripts_evaluation" / "evaluate_run.py").write_text(body)
    return tmp_path


def test_the_template_is_read_from_a_clone_without_running_its_code(tmp_path: Path) -> None:
    clone = _clone(tmp_path, (
        "import vllm  # never imported: the file is parsed, not run\n"
        f"GRADER_TEMPLATE = '''\n{TEMPLATE}\n'''.strip()\n"
    ))
    assert load_grader_template(clone) == TEMPLATE
    assert load_grader_template(clone / "scripts_evaluation" / "evaluate_run.py") == TEMPLATE
    text = tmp_path / "grader.txt"
    text.write_text(TEMPLATE)
    assert load_grader_template(text) == TEMPLATE


def test_the_template_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "t.txt").write_text(TEMPLATE)
    monkeypatch.setenv("FASTRLM_JUDGE_TEMPLATE", str(tmp_path / "t.txt"))
    assert load_grader_template() == TEMPLATE


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        ("nothing", "does not ship"),
        ("empty dir", "is it a BrowseComp-Plus clone"),
        ("no template", "assigns no GRADER_TEMPLATE"),
        ("computed", "assigns no GRADER_TEMPLATE"),
        ("no placeholders", "lacks {response}"),
        ("bad python", "is not Python that parses"),
    ],
)
def test_a_missing_or_wrong_template_says_how_to_get_the_official_one(
    setup: str, match: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FASTRLM_JUDGE_TEMPLATE", raising=False)
    bodies = {
        "no template": "OTHER = 'x'\n",
        "computed": "GRADER_TEMPLATE = open('t').read()\n",
        "no placeholders": "GRADER_TEMPLATE = '{question} {correct_answer}'\n",
        "bad python": "GRADER_TEMPLATE = '''\n",
    }
    path: Path | None = None
    if setup == "empty dir":
        path = tmp_path
    elif setup in bodies:
        path = _clone(tmp_path, bodies[setup])
    with pytest.raises(ConfigurationError, match=re.escape(match)) as info:
        load_grader_template(path)
    assert "github.com/texttron/BrowseComp-Plus" in str(info.value)


def test_judge_without_a_template_is_refused_before_any_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("wonderwords")  # the generated task: the bench extra
    from click.testing import CliRunner

    from fastrlm.bench._cli import bench

    monkeypatch.delenv("FASTRLM_JUDGE_TEMPLATE", raising=False)
    result = CliRunner().invoke(bench, [
        "browsecomp", "--judge", "openai/gpt-4.1", "--model", "openai/gpt-5", "--lengths", "16K",
        "--n", "1", "--out", str(tmp_path), "--quiet", "--no-plot"])
    assert result.exit_code != 0 and "does not ship" in result.output
    assert not (tmp_path / "results.jsonl").exists()
