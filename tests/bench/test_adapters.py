"""Real-data adapters read local files only and score with the tasks' scorers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastrlm import ConfigurationError
from fastrlm.bench import get_task
from fastrlm.bench._adapters import records_from_labelled_text
from fastrlm.bench._records import window


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_oolong_synth_rows_keep_their_official_answers(tmp_path: Path) -> None:
    rows = [
        {
            "id": 1,
            "dataset": "trec_coarse",
            "context_len": 1024,
            "context_window_id": 7,
            "context_window_text": "ctx",
            "question": "how many?",
            "answer": "[12]",
            "answer_type": "ANSWER_TYPE.NUMERIC",
            "task_group": "counting",
            "task": "t",
        },
        {
            "id": 2,
            "dataset": "trec_coarse",
            "context_len": 1024,
            "context_window_id": 7,
            "context_window_text": "ctx",
            "question": "when?",
            "answer": "[datetime.date(2023, 4, 1)]",
            "answer_type": "ANSWER_TYPE.DATE",
        },
        {"id": 3, "dataset": "spam", "context_len": 1024, "answer": "[1]"},
    ]
    task = get_task("oolong", data=_jsonl(tmp_path / "o.jsonl", rows))
    first, second = task.instance(0, 1024, 0), task.instance(0, 1024, 1)
    assert first.gold == 12 and first.answer_type == "NUMERIC"
    assert task.score("Answer: 11", first) == pytest.approx(0.75)
    assert second.gold == "2023-04-01" and task.score("Date: Apr 01, 2023", second) == 1.0
    with pytest.raises(IndexError):
        task.instance(0, 1024, 2)


def test_pairs_golds_come_from_the_labelled_window_text(tmp_path: Path) -> None:
    win = window(0, 32768, 0)
    row = {
        "dataset": "trec_coarse",
        "context_len": 32768,
        "context_window_id": 1,
        "context_window_text": win.context(),
        "context_window_text_with_labels": win.context(labelled=True),
        "question": "q",
        "answer": "[0]",
    }
    parsed = records_from_labelled_text(win.context(labelled=True))
    assert [(r.day, r.user, r.label) for r in parsed] == [
        (r.day, r.user, r.label) for r in win.records
    ]
    task = get_task("oolong-pairs", data=_jsonl(tmp_path / "p.jsonl", [row]))
    inst = task.instance(0, 32768, 0)
    assert inst.gold and task.score("\n".join(f"({a}, {b})" for a, b in inst.gold), inst) == 1.0


def test_longbench_codeqa_uses_the_papers_zero_based_choices(tmp_path: Path) -> None:
    rows = [
        {
            "_id": "x",
            "domain": "Code Repository Understanding",
            "question": "Which?",
            "choice_A": "a",
            "choice_B": "b",
            "choice_C": "c",
            "choice_D": "d",
            "answer": "C",
            "context": "def f(): pass",
            "difficulty": "hard",
            "length": "short",
        },
        {"_id": "y", "domain": "Other", "answer": "A"},
    ]
    path = tmp_path / "lb.json"
    path.write_text(json.dumps(rows))
    task = get_task("codeqa", data=path)
    inst = task.instance(0, 0, 0)
    assert inst.gold == 2 and "0: a\n1: b\n2: c\n3: d" in inst.query
    assert task.score("Answer: 2", inst) == 1.0 and task.score("(C)", inst) == 1.0


def test_browsecomp_plus_keeps_evidence_and_fills_to_the_document_count(tmp_path: Path) -> None:
    corpus = _jsonl(
        tmp_path / "corpus.jsonl", [{"docid": str(i), "text": f"document {i}"} for i in range(50)]
    )
    queries = _jsonl(
        tmp_path / "q.jsonl",
        [
            {
                "query_id": "q1",
                "query": "Who?",
                "answer": "Ada Lovelace",
                "evidence_docs": [{"docid": "3", "text": "..."}],
                "gold_docs": ["7"],
            },
        ],
    )
    from fastrlm.bench._adapters import browsecomp_plus

    task = browsecomp_plus(queries, corpus, docs=10)
    inst = task.instance(0, 0, 0)
    assert len(inst.context) == 10
    assert any(d.startswith("docid: 3\n") for d in inst.context)
    assert any(d.startswith("docid: 7\n") for d in inst.context)
    assert task.score("Exact Answer: ada lovelace", inst) == 1.0


def test_browsecomp_with_data_needs_a_corpus_and_labelled_oolong_has_no_adapter(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigurationError, match="--corpus"):
        get_task("browsecomp", data=tmp_path / "q.jsonl")
    with pytest.raises(ConfigurationError, match="no real-data adapter"):
        get_task("oolong-labelled", data=tmp_path / "x.jsonl")
