"""``fastrlm bench`` runs every task x method offline with scripted models (the CI smoke test)."""

from __future__ import annotations

import json
from pathlib import Path

import click
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
    # every v3 row prints its Table-1 cell, with its cost, and the grid and plot are written
    from fastrlm.bench._grid import ROW_NAMES

    grid = result.output.split("Table 1 (", 1)[1]
    for method in METHODS:
        line = next(x for x in grid.splitlines() if x.startswith(f"| {ROW_NAMES[method]} |"))
        assert "n=2)" in line and "($" in line, line
    assert (out / "table1.md").exists() and (out / "cost_vs_score.svg").exists()
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
    [
        ("8192", 8192),
        ("8K", 8192),
        ("1M", 2**20),
        ("2^13", 8192),
        ("4.2M", 2**22),
        # the paper's labels of powers of two (they read 134,144 and 8,912,896 before)
        ("131K", 2**17),
        ("131k", 131_072),
        ("262K", 2**18),
        ("8.5M", 2**23),
        ("32K", 2**15),
        # a plain number is exact; a label far from any power of two keeps binary units
        ("131000", 131_000),
        ("10M", 10 * 2**20),
    ],
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


@pytest.mark.parametrize("text", ["131Q", "2^x", "", "-5K"])
def test_a_bad_length_says_how_to_write_one(text: str) -> None:
    with pytest.raises(click.BadParameter, match="131K"):
        parse_length(text)


FIXTURE = Path(__file__).parent / "fixtures" / "oolong_synth_validation.jsonl"


@pytest.mark.parametrize("method", ["all", "oracle"])
def test_pairs_on_real_data_runs_every_method_and_the_oracle_is_na(
    method: str, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        bench,
        ["oolong-pairs", "--data", str(FIXTURE), "--lengths", "1K", "--method", method,
         "--scripted", "--quiet", "--no-plot", "--out", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output  # was KeyError: 'seed'
    if method == "all":  # every method: CodeAct's BM25 and the shortcut need the bench extra
        pytest.importorskip("rank_bm25")
        pytest.importorskip("wonderwords")
    oracle = [line for line in result.output.splitlines() if line.startswith("| oracle |")]
    assert oracle and all("| N/A |" in line and "0.00" not in line for line in oracle)
    rows = json.loads((tmp_path / "summary.json").read_text())
    row = next(r for r in rows if r["method"] == "oracle" and r["length"] == "all")
    assert row["score"] is None and row["n"] == 0 and row["not_applicable"] == 20
    lines = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert all(r["stop_reason"] == "not_applicable" for r in lines if r["method"] == "oracle")
    assert not any(r["stop_reason"] == "error" for r in lines)


def test_lengths_that_select_nothing_in_the_data_are_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        bench,
        ["oolong", "--data", str(FIXTURE), "--lengths", "1K,131K", "--scripted", "--quiet",
         "--no-plot", "--out", str(tmp_path)],
    )
    assert result.exit_code != 0
    assert "131,072 selects no oolong instance" in result.output
    assert "1,024, 2,048" in result.output  # the lengths the file does hold
    assert not (tmp_path / "results.jsonl").exists() or not (
        tmp_path / "results.jsonl"
    ).read_text().strip()


@pytest.mark.parametrize(
    ("task", "data"),
    [("codeqa", ["--data", "longbench_v2.json"]),
     ("sniah", ["--data", "ruler_niah_single.jsonl"]),
     ("browsecomp", ["--data", "browsecomp_plus_decrypted.jsonl",
                     "--corpus", "browsecomp_plus_corpus.jsonl"])],
)
def test_lengths_on_data_whose_instances_have_their_own_are_refused(
    tmp_path: Path, task: str, data: list[str]
) -> None:
    # they were recorded under the asked length (a 131,072 row for a 2K LongBench question)
    args = [str(FIXTURE.parent / a) if a.endswith(".jsonl") or a.endswith(".json") else a
            for a in data]
    result = CliRunner().invoke(
        bench, [task, *args, "--lengths", "131K", "--scripted", "--quiet", "--no-plot",
                "--out", str(tmp_path)],
    )
    assert result.exit_code != 0
    assert "--lengths does not apply" in result.output and "leave --lengths out" in result.output
    assert not (tmp_path / "results.jsonl").exists() or not (
        tmp_path / "results.jsonl"
    ).read_text().strip()
