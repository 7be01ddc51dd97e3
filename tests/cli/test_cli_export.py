"""``fastrlm export``: runs of `fastrlm ask` written as training data and an evaluation log."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from fastrlm.cli import ExitCode, cli

from .helpers import FANOUT, ROOT, model_args, server


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_export_writes_valid_chat_examples_and_an_eval_log(tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("The festival happens in Lisbon every June. " * 20)
    with server([FANOUT]) as srv:
        asked = invoke(["ask", "Where?", "-c", str(doc), "--json", *model_args(srv)])
    run_id = json.loads(asked.stdout)["trace_id"]
    out = tmp_path / "turns.jsonl"
    exported = invoke(["export", "--format", "sft-turns", "-o", str(out)])
    assert exported.exit_code == ExitCode.OK, exported.stderr
    assert "exported 1 example(s) from 1 of 1 run(s)" in exported.stderr
    [example] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [m["role"] for m in example["messages"]] == ["system", "user", "assistant"]
    assert example["meta"]["run_id"] == run_id
    subcalls = invoke(["export", run_id, "--format", "subcalls"])
    assert len(subcalls.stdout.splitlines()) == 3
    log = invoke(["export", "last", "--format", "eval", "--model", f"openai/{ROOT}",
                  "--stop-reason", "final"])
    [line] = [json.loads(text) for text in log.stdout.splitlines()]
    assert line["run_id"] == run_id and line["stop_reason"] == "final"


def test_export_refuses_bad_dates_and_a_min_score_without_scores() -> None:
    bad = invoke(["export", "--since", "yesterday"])
    assert bad.exit_code == ExitCode.BAD_INPUT and "--since takes a date" in bad.stderr
    lonely = invoke(["export", "--min-score", "0.5"])
    assert lonely.exit_code == ExitCode.BAD_INPUT and "--scores FILE" in lonely.stderr


def test_export_inspect_writes_one_log_document_named_json(tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("The festival happens in Lisbon every June. " * 20)
    with server([FANOUT]) as srv:
        asked = invoke(["ask", "Where?", "-c", str(doc), "--json", *model_args(srv)])
    run_id = json.loads(asked.stdout)["trace_id"]
    wrong = invoke(["export", "--format", "inspect", "-o", str(tmp_path / "runs.jsonl")])
    assert wrong.exit_code == ExitCode.BAD_INPUT and "runs.json" in wrong.stderr
    out = tmp_path / "runs.json"
    exported = invoke(["export", "--format", "inspect", "-o", str(out)])
    assert exported.exit_code == ExitCode.OK, exported.stderr
    log = json.loads(out.read_text())
    assert log["version"] == 2 and [s["id"] for s in log["samples"]] == [run_id]
