"""``fastrlm bench`` runs every task x method offline with scripted models (the CI smoke test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fastrlm.bench import METHODS
from fastrlm.bench._cli import bench, parse_length

#: Small sizes: each task's smallest sensible context, so the whole matrix runs in seconds.
SMALL = {
    "sniah": "2K",
    "oolong": "4K",
    "oolong-labelled": "4K",
    "oolong-pairs": "8K",
    "browsecomp": "16K",
    "codeqa": "4K",
}


@pytest.mark.extra("bench")
@pytest.mark.parametrize("task", sorted(SMALL))
def test_every_method_runs_offline_on_every_task(task: str, tmp_path: Path) -> None:
    out = tmp_path / task
    result = CliRunner().invoke(
        bench,
        [
            task,
            "--method",
            "all",
            "--scripted",
            "--lengths",
            SMALL[task],
            "--n",
            "2",
            "--seed",
            "1",
            "--out",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted({r["method"] for r in records}) == sorted(METHODS)
    assert len(records) == len(METHODS) * 2
    assert all(r["error"] is None for r in records), [r["error"] for r in records if r["error"]]
    assert all(0.0 <= r["score"] <= 1.0 for r in records)
    assert (out / "score_vs_length.png").read_bytes()[:4] == b"\x89PNG"
    rows = json.loads((out / "summary.json").read_text())
    assert {r["method"] for r in rows} == set(METHODS)
    assert "| method | length |" in result.output
    if task == "oolong-labelled":  # the scripted RLM root writes the oracle program
        assert {r["score"] for r in records if r["method"].startswith("rlm")} == {1.0}


@pytest.mark.extra("bench")
def test_method_lists_are_comma_separated_and_the_rerun_resumes(tmp_path: Path) -> None:
    args = [
        "sniah",
        "--method",
        "base,summary",
        "--scripted",
        "--lengths",
        "1K,2K",
        "--n",
        "2",
        "--out",
        str(tmp_path),
        "--quiet",
        "--no-plot",
    ]
    assert CliRunner().invoke(bench, args).exit_code == 0
    assert CliRunner().invoke(bench, args).exit_code == 0
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 2 * 2 * 2
    assert not (tmp_path / "score_vs_length.png").exists()


def test_bad_input_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        bench, ["sniah", "--method", "magic", "--scripted", "--out", str(tmp_path)]
    )
    assert result.exit_code != 0 and "unknown method" in result.output


@pytest.mark.parametrize(
    ("text", "value"),
    [("8192", 8192), ("8K", 8192), ("1M", 2**20), ("2^13", 8192), ("4.2M", int(4.2 * 2**20))],
)
def test_lengths_accept_suffixes_and_powers(text: str, value: int) -> None:
    assert parse_length(text) == value


def test_a_length_too_small_for_pairs_is_a_clean_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        bench,
        [
            "oolong-pairs",
            "--scripted",
            "--lengths",
            "1K",
            "--n",
            "1",
            "--out",
            str(tmp_path),
            "--quiet",
        ],
    )
    assert result.exit_code == 1 and "non-trivial pair queries" in result.output


@pytest.mark.extra("bench")
def test_prompt_paper_runs_the_rlm_methods_with_the_papers_prompt(tmp_path: Path) -> None:
    args = ["oolong-labelled", "--method", "rlm,rlm-no-subcalls", "--scripted", "--prompt",
            "paper", "--lengths", "4K", "--n", "2", "--out", str(tmp_path), "--quiet",
            "--no-plot"]
    result = CliRunner().invoke(bench, args)
    assert result.exit_code == 0, result.output
    records = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert {r["score"] for r in records} == {1.0}  # the oracle program still runs under it
