"""What a client may ask of ``fastrlm mcp``, without the SDK: roots, budgets, handles,
progress lines. (The tools end to end, through the MCP client, are in test_mcp_stdio/http.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from fastrlm import Budget
from fastrlm.context import load_context
from fastrlm.events import CodeExecuted, IterationStarted, SubcallFinished
from fastrlm.mcp._policy import Roots, ToolRefusal, lowered_budget
from fastrlm.mcp._tools import ContextHandles, progress_message


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "docs").mkdir(parents=True)
    (tmp_path / "root" / "docs" / "a.txt").write_text("alpha")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("SECRET")
    return tmp_path / "root"


def test_relative_paths_start_at_the_first_root(root: Path) -> None:
    assert Roots([root]).check("docs/a.txt") == str(root.resolve() / "docs" / "a.txt")


def test_a_path_outside_the_roots_is_refused(root: Path) -> None:
    with pytest.raises(ToolRefusal, match="outside the server's roots"):
        Roots([root]).check(str(root.parent / "outside" / "secret.txt"))


def test_dot_dot_is_refused_even_when_it_would_stay_inside(root: Path) -> None:
    with pytest.raises(ToolRefusal, match="'..' is not allowed"):
        Roots([root]).check("docs/../docs/a.txt")
    with pytest.raises(ToolRefusal, match="'..' is not allowed"):
        Roots([root]).check("../outside/secret.txt")


def test_a_symlink_out_of_the_root_is_refused(root: Path) -> None:
    (root / "out").symlink_to(root.parent / "outside", target_is_directory=True)
    with pytest.raises(ToolRefusal, match="outside the server's roots"):
        Roots([root]).check("out/secret.txt")


def test_a_glob_must_start_inside_a_root(root: Path) -> None:
    roots = Roots([root])
    assert roots.check("docs/*.txt").endswith("docs/*.txt")
    with pytest.raises(ToolRefusal, match="outside"):
        roots.check(str(root.parent / "outside" / "*.txt"))
    with pytest.raises(ToolRefusal, match="outside"):
        roots.check("/*")


def test_stdin_and_empty_paths_are_refused(root: Path) -> None:
    for bad in ("-", "", "  ", "a\x00b"):
        with pytest.raises(ToolRefusal):
            Roots([root]).check(bad)


def test_a_root_must_be_a_directory(root: Path) -> None:
    with pytest.raises(ValueError, match="not a directory"):
        Roots([root / "docs" / "a.txt"])
    with pytest.raises(ValueError, match="at least one"):
        Roots([])


def test_the_loader_refuses_what_a_checked_glob_matches_outside(root: Path) -> None:
    roots = Roots([root])
    (root / "docs" / "b.txt").symlink_to(root.parent / "outside" / "secret.txt")
    loaded = load_context([roots.check("docs/*.txt")], within=roots.paths)
    assert "SECRET" not in "".join(loaded.value)


def test_a_call_budget_may_lower_the_servers_limits() -> None:
    server = Budget(max_usd=1.0, max_subcalls=50, max_iterations=20)
    got = lowered_budget(server, {"max_usd": 0.25, "max_iterations": 5, "max_seconds": 30})
    assert (got.max_usd, got.max_iterations, got.max_seconds, got.max_subcalls) == (
        0.25, 5, 30, 50)


def test_a_call_budget_above_the_servers_is_refused() -> None:
    server = Budget(max_usd=1.0, max_subcalls=50)
    with pytest.raises(ToolRefusal, match="above the server's limit of 1.0"):
        lowered_budget(server, {"max_usd": 5})
    with pytest.raises(ToolRefusal, match="max_subcalls"):
        lowered_budget(server, {"max_subcalls": 51})
    # max_requests is bounded by the derived cap even when the server left it unset
    with pytest.raises(ToolRefusal, match="max_requests"):
        lowered_budget(server, {"max_requests": server.request_cap + 1})  # type: ignore[operator]


def test_a_bad_or_unknown_budget_value_is_refused_by_the_shared_rules() -> None:
    for bad in ({"max_usd": "1"}, {"max_usd": float("nan")}, {"max_subcalls": 2.5},
                {"max_iterations": True}, {"exec_timeout_s": 1}, {"nope": 1}):
        with pytest.raises(ToolRefusal):
            lowered_budget(Budget(), bad)
    with pytest.raises(ToolRefusal, match="object"):
        lowered_budget(Budget(), [1])  # type: ignore[arg-type]


def test_handles_drop_the_least_recently_used(root: Path) -> None:
    handles = ContextHandles(2)
    loaded = load_context([root / "docs" / "a.txt"])
    first = handles.add(["a"], loaded)
    second = handles.add(["b"], loaded)
    handles.get(first.id)  # first is now the newest
    handles.add(["c"], loaded)
    assert handles.get(first.id) is first and len(handles) == 2
    with pytest.raises(ToolRefusal, match="call rlm_load again"):
        handles.get(second.id)


def test_progress_lines_for_the_events_a_client_cares_about() -> None:
    base = {"run_id": "r", "ts": 0.0}
    assert progress_message(IterationStarted(**base, depth=0, iteration=2, max_iterations=9)) \
        == "iteration 2/9"
    assert progress_message(IterationStarted(**base, depth=1, iteration=1, max_iterations=9)) \
        is None
    code = CodeExecuted(**base, depth=0, iteration=1, block=1, code="x", output="",
                        output_chars=0, error="boom", duration_s=0.1)
    assert progress_message(code) == "ran code block 1 of iteration 1 (error)"
    sub = SubcallFinished(**base, depth=1, call_id="c", model="m", input_tokens=1,
                          output_tokens=1, cost_usd=0.0, latency_s=0.1, cached=False, error=None,
                          response_chars=2, response_preview="ok")
    assert progress_message(sub) == "sub-call answered"
