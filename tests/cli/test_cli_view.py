"""``fastrlm view``: resolve a run, write its HTML page, print the path, exit 2 on a bad run."""

from __future__ import annotations

import webbrowser
from pathlib import Path

import pytest
from click.testing import CliRunner

from fastrlm import RLM
from fastrlm.cli import ExitCode, cli
from fastrlm.testing import ScriptedLM


def a_run(home: Path) -> str:
    root = ScriptedLM(['```repl\nprint("hello view")\nFINAL("forty-two")\n```'], model="s/root")
    out = RLM(root, ScriptedLM(["x"]), sandbox="none", trace=home).completion("q?", context="c")
    return out.trace_id


def test_view_last_writes_the_page_under_home_and_prints_its_path(
    _isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", opened.append)
    run_id = a_run(_isolated_home)
    result = CliRunner().invoke(cli, ["view", "last"])
    assert result.exit_code == ExitCode.OK, result.stderr
    page = _isolated_home / "views" / f"{run_id}.html"
    assert result.stdout == f"{page}\n"
    html = page.read_text()
    assert "hello view" in html and "forty-two" in html
    assert opened == []  # never opened unless asked


def test_view_by_prefix_to_a_chosen_file_and_open(
    _isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", opened.append)
    run_id = a_run(_isolated_home)
    target = tmp_path / "out" / "page.html"
    result = CliRunner().invoke(cli, ["view", run_id[:-2], "-o", str(target), "--open"])
    assert result.exit_code == ExitCode.OK, result.stderr
    assert result.stdout == f"{target}\n"
    assert "forty-two" in target.read_text()
    assert opened == [target.resolve().as_uri()]


def test_view_accepts_a_trace_path(_isolated_home: Path, tmp_path: Path) -> None:
    run_id = a_run(_isolated_home)
    trace = _isolated_home / "traces" / f"{run_id}.jsonl"
    target = tmp_path / "p.html"
    result = CliRunner().invoke(cli, ["view", str(trace), "-o", str(target)])
    assert result.exit_code == ExitCode.OK, result.stderr
    assert "hello view" in target.read_text()


@pytest.mark.parametrize("ref", ["no-such-run", "last", "3"])
def test_view_of_an_unknown_run_exits_2_with_a_message(ref: str) -> None:
    result = CliRunner().invoke(cli, ["view", ref])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "fastrlm:" in result.stderr and "run" in result.stderr
    assert result.stdout == ""
