"""Live/plain progress, ``runs``, ``show``, ``doctor`` and the lazily registered commands."""

from __future__ import annotations

import io
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from fastrlm._foundation.events import (
    BudgetWarning,
    CodeExecuted,
    IterationStarted,
    ModelResponse,
    RunStarted,
    SandboxStarted,
    SubcallFinished,
    SubcallStarted,
)
from fastrlm.cli import ExitCode, cli
from fastrlm.cli._app import LazyGroup
from fastrlm.cli._progress import (
    LiveProgress,
    PlainProgress,
    RunState,
    first_code_line,
    live_wanted,
    make_progress,
)

from .helpers import SIMPLE_FINAL, model_args, server


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def events() -> list[object]:
    started = RunStarted(run_id="r", parent_run_id=None, question="q", model="m", sub_model="s",
                         context={}, sandbox="auto", budget={})
    sub = {"run_id": "r", "call_id": "c", "model": "s"}
    return [
        started,
        SandboxStarted(run_id="r", layer="bwrap+seccomp", unsafe=False, startup_s=0.05),
        IterationStarted(run_id="r", iteration=2, max_iterations=30),
        ModelResponse(run_id="r", iteration=2, model="m", text="plan\n```repl\n# c\nx = 1\n```",
                      input_tokens=100, output_tokens=10, cost_usd=0.25, latency_s=1.0),
        SubcallStarted(prompt_chars=5, prompt_sha256="h", prompt_preview="p", **sub),
        SubcallStarted(prompt_chars=5, prompt_sha256="h", prompt_preview="p", **sub),
        SubcallFinished(input_tokens=5, output_tokens=1, cost_usd=0.25, latency_s=0.1,
                        cached=False, error="boom", response_chars=0, response_preview="",
                        **sub),
        BudgetWarning(run_id="r", resource="usd", fraction=0.85),
    ]


def test_first_code_line_skips_comments_and_blank_lines() -> None:
    assert first_code_line("text\n```python\n\n# note\nprint('hi')\n```") == "print('hi')"
    assert first_code_line("no code") == ""
    assert first_code_line("```repl\n" + "y" * 200 + "\n```").endswith("…")


def test_live_view_only_on_a_terminal_without_no_color() -> None:
    assert live_wanted(Tty(), {}) is True
    assert live_wanted(Tty(), {"NO_COLOR": "1"}) is False
    assert live_wanted(Tty(), {"TERM": "dumb"}) is False
    assert live_wanted(io.StringIO(), {}) is False
    assert make_progress(RunState(), io.StringIO(), quiet=True) is None
    assert isinstance(make_progress(RunState(), io.StringIO(), quiet=False), PlainProgress)


def test_live_view_shows_iteration_code_subcalls_tokens_cost_against_budget() -> None:
    from rich.console import Console

    state = RunState(max_usd=1.0, max_subcalls=10)
    view = LiveProgress(state, Tty())
    for ev in events():
        view(ev)  # type: ignore[arg-type]
    out = io.StringIO()
    Console(file=out, width=120).print(view)
    text = out.getvalue()
    for needle in ("2/30", "running code", "sandbox bwrap+seccomp", "x = 1",
                   "1 of 10 done, 1 in flight, 1 failed", "105 in / 11 out",
                   "$0.5000 of $1 (50%)", "usd at 85% of its budget"):
        assert needle in text


def test_plain_progress_is_sparse() -> None:
    out = io.StringIO()
    view = PlainProgress(RunState(), out)
    for ev in events():
        view(ev)  # type: ignore[arg-type]
    view(CodeExecuted(run_id="r", iteration=2, block=1, code="x = 1", output="", output_chars=0,
                      error=None, duration_s=0.2))
    lines = out.getvalue().splitlines()
    assert len(lines) == 6
    assert "sandbox bwrap+seccomp ready" in lines[1]
    assert "running: x = 1" in lines[3]
    assert "warning: usd at 85%" in lines[4]
    assert "cell ok in 0.20s" in lines[-1]


def _one_run(doc: Path) -> str:
    with server([SIMPLE_FINAL]) as srv:
        result = CliRunner().invoke(cli, ["ask", "What now?", "-c", str(doc), "--json",
                                          "--sandbox", "none", *model_args(srv)])
    return str(json.loads(result.stdout)["trace_id"])


def test_runs_lists_question_model_stop_reason_cost_and_time(tmp_path: Path) -> None:
    doc = tmp_path / "d.txt"
    doc.write_text("text")
    run_id = _one_run(doc)
    result = CliRunner().invoke(cli, ["runs"])
    assert result.exit_code == 0
    header, row = result.stdout.splitlines()
    for column in ("run", "started", "stop", "cost", "time", "model", "question"):
        assert column in header
    assert row.startswith(run_id) and "final" in row and "What now?" in row
    assert "openai/root-model" in row and "$0.0000" in row
    listed = CliRunner().invoke(cli, ["runs", "--json", "-n", "1"])
    assert json.loads(listed.stdout)["run_id"] == run_id


def test_runs_with_no_history_says_so() -> None:
    result = CliRunner().invoke(cli, ["runs"])
    assert result.exit_code == 0 and "no runs recorded yet" in result.stderr


def test_show_prints_a_transcript_by_prefix_last_and_json(tmp_path: Path) -> None:
    doc = tmp_path / "d.txt"
    doc.write_text("text")
    run_id = _one_run(doc)
    for ref in (run_id[:20], "last", "1"):
        result = CliRunner().invoke(cli, ["show", ref])
        assert result.exit_code == 0
        assert f"Run {run_id}" in result.stdout and 'FINAL("forty-two")' in result.stdout
        assert "finished: final" in result.stdout
    raw = CliRunner().invoke(cli, ["show", run_id, "--json"])
    assert json.loads(raw.stdout.splitlines()[-1])["type"] == "run.finished"
    missing = CliRunner().invoke(cli, ["show", "zzz"])
    assert missing.exit_code == ExitCode.BAD_INPUT


def test_doctor_reports_layers_models_and_versions_without_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 0
    for needle in ("sandbox layers", "bwrap", "landlock", "root:  openai/gpt-5",
                   "OPENAI_API_KEY: set", "openai", "click", "rich", "FASTRLM_HOME"):
        assert needle in result.stdout
    assert "sk-very-secret" not in result.stdout


def test_lazy_group_reports_an_unavailable_command_instead_of_crashing() -> None:
    group = LazyGroup(name="g", lazy={"gone": "fastrlm.no_such_module:cmd",
                                      "ask": "fastrlm.cli._ask:ask"})
    assert group.list_commands(click.Context(group)) == ["ask", "gone"]
    result = CliRunner().invoke(group, ["gone", "--anything"])
    assert result.exit_code == ExitCode.ERROR
    assert "unavailable" in result.stderr


def test_every_command_is_listed_in_help() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    for name in ("ask", "bench", "demo", "doctor", "quickstart", "runs", "show"):
        assert f"  {name}" in result.stdout


def test_show_ends_the_transcript_before_the_trace_note(tmp_path: Path) -> None:
    # On a terminal stdout and stderr share the screen: the note was glued to the last line.
    doc = tmp_path / "d.txt"
    doc.write_text("text")
    run_id = _one_run(doc)
    result = CliRunner().invoke(cli, ["show", run_id])
    assert result.stdout.endswith("\n")
    assert "\n(trace: " in result.output
