"""Summaries: bootstrap intervals, n, N/A rows, the tokenizer named, and what the CLI prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fastrlm.bench import format_table, summarize
from fastrlm.bench._cli import GENERATED_NOTE, SCRIPTED_NOTE, bench
from fastrlm.bench._report import bootstrap_ci
from fastrlm.bench._tokens import PROXY, count_tokens, tokenizer


def _rec(method: str, score: float, **kw: Any) -> dict[str, Any]:
    base = {
        "method": method,
        "model": "m",
        "length": 1024,
        "score": score,
        "cost_usd": 0.01,
        "input_tokens": 10,
        "output_tokens": 2,
        "subcalls": 0,
        "duration_s": 0.1,
        "stop_reason": "final",
        "context_tokens": 900,
        "tokenizer": PROXY,
    }
    base.update(kw)
    return base


def test_bootstrap_interval_is_deterministic_and_brackets_the_mean() -> None:
    xs = [1.0] * 6 + [0.0] * 4
    first, again = bootstrap_ci(xs), bootstrap_ci(xs)
    assert first == again
    lo, hi = first
    assert lo < 0.6 < hi and 0.0 <= lo and hi <= 1.0


def test_rows_with_equal_scores_get_equal_intervals() -> None:
    scores = [1.0, 0.0, 1.0, 1.0, 0.0, 0.5, 1.0, 0.0]
    recs = [_rec("rlm", x) for x in scores] + [_rec("summary", x) for x in reversed(scores)]
    recs += [_rec("base", x, length=2048) for x in scores]
    rows = summarize(recs)
    intervals = {tuple(r["score_ci"]) for r in rows}
    assert len(intervals) == 1, rows  # seeded per row before: each row its own interval
    assert bootstrap_ci(scores) == bootstrap_ci(list(reversed(scores)))


def test_the_bootstrap_interval_still_depends_on_the_scores() -> None:
    assert bootstrap_ci([1.0, 0.0] * 5) != bootstrap_ci([1.0, 0.0, 0.0] * 4)


def test_na_records_are_left_out_of_the_score_and_shown_as_na() -> None:
    na = {"not_applicable": "no hidden truth", "stop_reason": "not_applicable", "cost_usd": 0.0}
    rows = summarize([_rec("oracle", 0.0, **na)] * 3)
    row = next(r for r in rows if r["length"] == 1024)
    assert row["score"] is None and row["n"] == 0 and row["not_applicable"] == 3
    line = [ln for ln in format_table([row]).splitlines() if ln.startswith("| oracle")][0]
    assert "| N/A |" in line and "0.00" not in line
    mixed = summarize([_rec("oracle", 1.0), _rec("oracle", 0.0, **na)])
    assert next(r for r in mixed if r["length"] == 1024)["score"] == 100.0


def test_an_na_row_brings_no_evidence_recall_column_and_a_task_without_evidence_shows_none(
) -> None:
    na = {"not_applicable": "no hidden truth", "stop_reason": "not_applicable", "cost_usd": 0.0}
    rows = summarize([_rec("oracle", 0.0, **na), _rec("base", 0.0)])
    assert all(r["evidence_recall"] is None for r in rows)
    assert "evidence recall" not in format_table(rows)
    mixed = summarize([_rec("rlm", 1.0, evidence_recall=0.5), _rec("base", 0.0)])
    lines = format_table(mixed).splitlines()
    assert "evidence recall" in lines[0]
    assert "| 50.0 |" in next(ln for ln in lines if ln.startswith("| rlm | 1024"))
    assert "| - |" in next(ln for ln in lines if ln.startswith("| base | 1024"))


def test_error_answers_are_counted_and_flagged_in_the_table() -> None:
    recs = [_rec("rlm", 1.0), _rec("rlm", 0.0, error_answer="prompt_too_long")]
    row = next(r for r in summarize(recs) if r["length"] == 1024)
    assert row["error_answers"] == 1
    assert "1 error answer(s)!" in format_table([row])


def test_bootstrap_interval_is_degenerate_for_constant_or_single_scores() -> None:
    assert bootstrap_ci([1.0] * 20) == (1.0, 1.0)
    assert bootstrap_ci([0.5]) == (0.5, 0.5)
    assert bootstrap_ci([]) == (0.0, 0.0)


def test_bootstrap_interval_narrows_with_more_instances() -> None:
    small = bootstrap_ci([1.0, 0.0] * 5)
    large = bootstrap_ci([1.0, 0.0] * 500)
    assert (large[1] - large[0]) < (small[1] - small[0]) / 5


def test_summary_rows_carry_n_and_the_interval_and_the_table_shows_them() -> None:
    recs = [_rec("rlm", s) for s in (1.0, 1.0, 0.0, 1.0)]
    rows = [r for r in summarize(recs) if r["length"] == 1024]
    assert rows[0]["n"] == 4 and rows[0]["score"] == 75.0
    lo, hi = rows[0]["score_ci"]
    assert lo <= 75.0 <= hi and hi - lo > 0
    table = format_table(rows)
    assert f"| 75.00 [{lo:.2f}, {hi:.2f}] |" in table
    assert f"Context tokens counted with: {PROXY}" in table


def test_a_base_model_over_its_window_is_not_applicable_not_a_score() -> None:
    recs = [_rec("base", 0.0, exceeded=True, cost_usd=0.0, stop_reason="context_exceeded")] * 3
    row = [r for r in summarize(recs) if r["length"] == 1024][0]
    assert row["exceeded"] == 3
    line = [ln for ln in format_table([row]).splitlines() if ln.startswith("| base")][0]
    assert "0.00*" in line and "N/A (over window)" in line


def test_partly_exceeded_rows_show_a_star_and_the_na_count() -> None:
    recs = [_rec("base", 1.0), _rec("base", 0.0, exceeded=True, cost_usd=0.0)]
    row = [r for r in summarize(recs) if r["length"] == 1024][0]
    line = format_table([row]).splitlines()[2]
    assert "50.00*" in line and "(1 N/A)" in line


@pytest.mark.extra("bench")
def test_the_scripted_run_says_once_that_it_measures_plumbing_and_prints_its_paths(
    tmp_path: Path,
) -> None:
    args = ["sniah", "--method", "base", "--scripted", "--lengths", "1K", "--n", "2",
            "--out", str(tmp_path), "--quiet", "--no-plot"]
    result = CliRunner().invoke(bench, args)
    assert result.exit_code == 0, result.output
    assert result.output.count(SCRIPTED_NOTE) == 1
    # a generated task says plainly that a program knowing the generator solves it
    assert result.output.count(GENERATED_NOTE) == 1
    assert (tmp_path / "summary.md").read_text().startswith(GENERATED_NOTE)
    assert str(tmp_path / "results.jsonl") in result.output
    assert str(tmp_path / "summary.md") in result.output
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert all("score_ci" in r and r["tokenizer"] == tokenizer().name for r in rows)
    records = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert {r["tokenizer"] for r in records} == {tokenizer().name}


def test_proxy_counts_are_ceil_chars_over_four(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTRLM_TOKENIZER", "proxy")
    tokenizer.cache_clear()
    try:
        tok = tokenizer()
        assert tok.name == PROXY and not tok.exact
        assert count_tokens("x" * 9) == 3 and count_tokens("") == 0
    finally:
        tokenizer.cache_clear()


def test_real_counts_when_a_tokenizer_loads_offline() -> None:
    tok = tokenizer()
    if not tok.exact:
        pytest.skip("no o200k_base available offline (install fastrlm[tokens])")
    assert tok.name.startswith("o200k_base")
    assert count_tokens("hello world") == 2
    # special-token text is ordinary text here, and long texts are counted in pieces
    assert count_tokens("<|endoftext|>") > 1
    long = "alpha beta\n" * 200_000
    assert abs(count_tokens(long) - 2 * 200_000 - 200_000) <= 5


def test_tiktoken_is_used_only_from_its_cache_never_downloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastrlm.bench import _tokens

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    assert _tokens._tiktoken_cache_file().parent == tmp_path
    assert _tokens._tiktoken() is None  # no cached table: not even imported


def test_counting_can_stop_once_past_a_limit() -> None:
    text = "alpha beta\n" * 300_000  # 3.3M chars, several pieces
    full = count_tokens(text)
    early = count_tokens(text, stop_above=10)
    assert early > 10
    if tokenizer().exact:
        assert early < full  # it stopped after the first piece
    else:
        assert early == full  # the proxy is one division anyway


def test_the_cost_of_a_partly_exceeded_row_is_over_the_instances_that_ran() -> None:
    recs = [_rec("base", 1.0, cost_usd=0.3), _rec("base", 0.0, exceeded=True, cost_usd=0.0)]
    row = [r for r in summarize(recs) if r["length"] == 1024][0]
    assert row["cost_mean"] == 0.3 and row["cost_std"] == 0.0


def test_a_real_data_run_carries_no_generated_task_note(tmp_path: Path) -> None:
    fixture = Path(__file__).parent / "fixtures" / "oolong_synth_validation.jsonl"
    args = ["oolong", "--data", str(fixture), "--lengths", "1K", "--method", "base",
            "--scripted", "--out", str(tmp_path), "--quiet", "--no-plot"]
    result = CliRunner().invoke(bench, args)
    assert result.exit_code == 0, result.output
    assert GENERATED_NOTE not in result.output
