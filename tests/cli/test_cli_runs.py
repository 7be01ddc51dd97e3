"""``fastrlm runs``: search, filters, sessions, export and delete over the run index."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from fastrlm import RLM
from fastrlm.cli import ExitCode, cli
from fastrlm.testing import ScriptedLM
from fastrlm.trace import TraceWriter, index_path, traces_dir
from fastrlm.trace._index import record_start, update_run

DAY = 86400.0


def invoke(args: list[str], input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["runs", *args], input=input, catch_exceptions=False)


def _run(run_id: str, *, age_days: float, question: str, model: str = "openai/gpt-5",
         stop: str = "final", cost: float = 0.01, answer: str = "", error: str | None = None,
         session: str | None = None, number: int = 0) -> Path:
    """One run in the index, with a trace file (and a long answer's sidecar) on disk."""
    trace = traces_dir() / f"{run_id}.jsonl"
    trace.parent.mkdir(parents=True, exist_ok=True)
    trace.write_text(json.dumps({"type": "run.started", "run_id": run_id}) + "\n")
    (traces_dir() / f"{run_id}.answer.txt").write_text("long answer")
    record_start(index_path(), {
        "run_id": run_id, "started_at": time.time() - age_days * DAY, "question": question,
        "model": model, "sub_model": "openai/gpt-5-mini", "sandbox": "none",
        "context_sha256": "h", "context_chars": 1, "trace_path": str(trace),
        "session_id": session, "session_question": number,
    })
    update_run(index_path(), run_id, {"stop_reason": stop, "cost_usd": cost,
                                      "answer_preview": answer, "error": error,
                                      "duration_s": 2.0})
    return trace


@pytest.fixture
def history() -> dict[str, Path]:
    return {
        "r-old": _run("r-old", age_days=40, question="Where is the festival?",
                      answer="in Lisbon", cost=0.50),
        "r-usd": _run("r-usd", age_days=3, question="Summarise the logs", stop="budget_usd",
                      model="anthropic/claude-sonnet-4-5", cost=0.20),
        "r-err": _run("r-err", age_days=2, question="Count the errors", stop="error",
                      error="ProviderConnectionError: cannot reach LISBON-gateway"),
        "s-1": _run("s-1", age_days=1, question="first question", session="sess-abc", number=1),
        "s-2": _run("s-2", age_days=0.5, question="second question", session="sess-abc",
                    number=2, cost=0.03),
    }


def _ids(result: Result) -> list[str]:
    assert result.exit_code == 0, result.stderr
    return [json.loads(line)["run_id"] for line in result.stdout.splitlines()]


def test_query_finds_text_in_the_question_the_answer_or_the_error(
        history: dict[str, Path]) -> None:
    assert _ids(invoke(["-q", "lisbon", "--json"])) == ["r-err", "r-old"]
    assert _ids(invoke(["-q", "LOGS", "--json"])) == ["r-usd"]
    assert _ids(invoke(["-q", "100%_literal", "--json"])) == []  # LIKE wildcards are text


def test_filters_combine_model_stop_reason_dates_and_cost(history: dict[str, Path]) -> None:
    assert _ids(invoke(["--model", "claude", "--json"])) == ["r-usd"]
    assert _ids(invoke(["--stop", "budget_usd", "--json"])) == ["r-usd"]
    assert _ids(invoke(["--since", "7d", "--max-cost", "0.02", "--json"])) == [
        "s-1", "r-err"]
    assert _ids(invoke(["--until", "30d", "--json"])) == ["r-old"]
    assert _ids(invoke(["--min-cost", "0.2", "--json"])) == ["r-usd", "r-old"]
    since = time.strftime("%Y-%m-%d", time.localtime(time.time() - 10 * DAY))
    assert "r-old" not in _ids(invoke(["--since", since, "--json"]))


def test_a_date_that_means_nothing_says_which_forms_it_takes() -> None:
    result = CliRunner().invoke(cli, ["runs", "--since", "last tuesday"])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "30m, 2h, 7d" in result.stderr


def test_a_chat_sessions_questions_are_one_line_by_session_and_found_by_its_id(
        history: dict[str, Path]) -> None:
    assert _ids(invoke(["--session", "sess-a", "--json"])) == ["s-2", "s-1"]
    listed = invoke([])
    row = next(line for line in listed.stdout.splitlines() if line.startswith("s-2"))
    assert "sess-abc#2" in row
    grouped = invoke(["--by-session"]).stdout.splitlines()
    [session] = [line for line in grouped if line.startswith("sess-abc")]
    assert "first question" in session and "$0.0400" in session and " 2 " in session
    assert len(grouped) == 1 + 4  # the header, the session, three runs outside any session


def test_export_writes_each_run_with_its_trace_events_as_a_json_line(
        history: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "export.jsonl"
    result = invoke(["--session", "sess-abc", "--export", str(out)])
    assert result.exit_code == 0 and "exported 2 run(s)" in result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["run_id"] for line in lines] == ["s-2", "s-1"]
    assert lines[0]["events"] == [{"type": "run.started", "run_id": "s-2"}]
    assert lines[0]["session_question"] == 2
    piped = invoke(["r-old", "--export", "-"])
    assert json.loads(piped.stdout)["question"] == "Where is the festival?"


def test_delete_removes_the_rows_and_trace_files_it_names_and_nothing_else(
        history: dict[str, Path]) -> None:
    result = invoke(["--until", "30d", "--delete", "--yes"])
    assert result.exit_code == 0, result.stderr
    assert "deleted 1 run(s) and 2 trace file(s)" in result.stderr
    assert not history["r-old"].exists()
    assert not (traces_dir() / "r-old.answer.txt").exists()
    assert all(history[k].exists() for k in ("r-usd", "r-err", "s-1", "s-2"))
    assert "r-old" not in _ids(invoke(["--json"]))


def test_delete_asks_first_and_refuses_everything_or_a_silent_pipe(
        history: dict[str, Path]) -> None:
    everything = invoke(["--delete", "--yes"])
    assert everything.exit_code == ExitCode.BAD_INPUT and "needs the runs to delete" in \
        everything.stderr
    piped = invoke(["r-usd", "--delete"])
    assert piped.exit_code == ExitCode.BAD_INPUT and "add --yes" in piped.stderr
    assert history["r-usd"].exists()
    both = invoke(["r-usd", "--delete", "--export", "-"])
    assert both.exit_code == ExitCode.BAD_INPUT


def test_a_session_records_its_id_and_question_number_in_the_index(tmp_path: Path) -> None:
    root = ScriptedLM(lambda messages: "```repl\nFINAL('ok')\n```", model="scripted/root")
    rlm = RLM(root, sandbox="none", trace=TraceWriter())
    with rlm.session() as session:
        session.ask("one", "ctx")
        session.ask("two")
        session_id = session.id
    records: list[dict[str, Any]] = [json.loads(line) for line in
                                     invoke(["--session", session_id, "--json"]).stdout
                                     .splitlines()]
    assert [(r["question"], r["session_question"]) for r in records] == [("two", 2), ("one", 1)]
