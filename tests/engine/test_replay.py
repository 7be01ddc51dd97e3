"""Resume and fork (issue 27): a recorded run goes on from its record, costing nothing for what
it already did, and stops at the first cell that no longer prints what it printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastrlm import RLM, Budget, PriceTable, StopReason, Tool
from fastrlm.testing import ScriptedLM, prompt_of
from fastrlm.trace import ReplayError, record_path

from .helpers import repl

PRICES = PriceTable({"scripted/root": {"input": 1.0, "output": 4.0},
                     "scripted/sub": {"input": 1.0, "output": 4.0},
                     "scripted/other": {"input": 1.0, "output": 4.0}})
CONTEXT = "alpha beta gamma"
FAN_OUT = repl("r = llm_query_batched(['a', 'b', 'c'])\nprint(r)")
LOOK = repl("print(len(context))")
DONE = repl("FINAL('done ' + str(len(r)))")


def _sub() -> ScriptedLM:
    return ScriptedLM(lambda m: "ok:" + prompt_of(m), model="scripted/sub")


def _rlm(home: Path, replies: list[str], sub: ScriptedLM | None = None, *,
         model: str = "scripted/root", **kw: object) -> tuple[RLM, ScriptedLM, ScriptedLM]:
    root = ScriptedLM(replies, model=model)
    sub = sub or _sub()
    kw.setdefault("prices", PRICES)
    kw.setdefault("sandbox", "none")
    return RLM(root, sub, trace=home, **kw), root, sub  # type: ignore[arg-type]


def test_a_finished_run_resumes_from_its_record_alone_and_counts_its_spend_once(
        tmp_path: Path) -> None:
    rlm, _, _ = _rlm(tmp_path, [FAN_OUT, LOOK, DONE])
    first = rlm.completion("how many?", context=CONTEXT)
    assert first.answer == "done 3" and first.cost_usd > 0
    again, root, sub = _rlm(tmp_path, [])  # an empty script: any model call would fail
    resumed = again.resume(first.trace_id, context=CONTEXT)
    assert resumed.answer == "done 3" and resumed.stop_reason is StopReason.FINAL
    assert root.calls == [] and sub.calls == []
    assert resumed.cost_usd == pytest.approx(first.cost_usd)
    assert resumed.subcalls == first.subcalls == 3
    assert resumed.trace_id != first.trace_id
    assert record_path(tmp_path / "traces", resumed.trace_id).is_file()


def test_a_run_stopped_by_a_limit_goes_on_live_with_what_is_left(tmp_path: Path) -> None:
    rlm, _, _ = _rlm(tmp_path, [FAN_OUT, LOOK, LOOK], budget=Budget(max_iterations=1))
    first = rlm.completion("how many?", context=CONTEXT)
    assert first.stop_reason is StopReason.MAX_ITERATIONS
    again, root, sub = _rlm(tmp_path, [DONE])
    resumed = again.resume(first.trace_id, context=CONTEXT, budget=Budget(max_iterations=5))
    assert resumed.answer == "done 3"
    # the two recorded turns (the turn and its forced last turn) replay; one live turn
    assert len(root.calls) == 1 and sub.calls == []
    assert resumed.cost_usd > first.cost_usd


def test_a_resumed_run_is_itself_resumable(tmp_path: Path) -> None:
    rlm, _, _ = _rlm(tmp_path, [FAN_OUT, LOOK], budget=Budget(max_iterations=1))
    first = rlm.completion("how many?", context=CONTEXT)
    second, _, _ = _rlm(tmp_path, [DONE])
    resumed = second.resume(first.trace_id, context=CONTEXT, budget=Budget(max_iterations=5))
    third, root, sub = _rlm(tmp_path, [])
    again = third.resume(resumed.trace_id, context=CONTEXT, budget=Budget(max_iterations=5))
    assert again.answer == "done 3" and root.calls == [] and sub.calls == []
    assert again.cost_usd == pytest.approx(resumed.cost_usd)


def test_a_cell_that_prints_something_else_on_replay_stops_the_run_there(
        tmp_path: Path) -> None:
    clock = repl("import time\nprint(time.perf_counter_ns())")
    rlm, _, _ = _rlm(tmp_path, [LOOK, clock, DONE.replace("len(r)", "1")])
    first = rlm.completion("q", context=CONTEXT)
    again, root, _ = _rlm(tmp_path, [DONE])
    with pytest.raises(ReplayError, match=r"diverged at turn 2, block 1") as caught:
        again.resume(first.trace_id, context=CONTEXT)
    assert "fork" in str(caught.value) and root.calls == []
    assert caught.value.result is not None
    assert caught.value.result.error_kind == "replay"


def test_a_damaged_record_is_refused_with_where_and_what_to_do(tmp_path: Path) -> None:
    rlm, _, _ = _rlm(tmp_path, [FAN_OUT, LOOK, DONE])
    first = rlm.completion("q", context=CONTEXT)
    path = record_path(tmp_path / "traces", first.trace_id)
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b"ok:a", b"ok:A")  # one flipped byte, mid-file
    path.write_bytes(b"\n".join(lines))
    again, root, _ = _rlm(tmp_path, [])
    with pytest.raises(ReplayError, match=r"damaged at line 3 .*rlm.fork"):
        again.resume(first.trace_id, context=CONTEXT)
    assert root.calls == []


def test_a_record_cut_short_by_a_kill_drops_its_last_line_and_goes_on_live(
        tmp_path: Path) -> None:
    rlm, _, _ = _rlm(tmp_path, [FAN_OUT, LOOK, DONE])
    first = rlm.completion("q", context=CONTEXT)
    path = record_path(tmp_path / "traces", first.trace_id)
    data = path.read_bytes()
    last_turn = data.rindex(b'{"k":"turn"')
    path.write_bytes(data[:last_turn + 40])  # the process died while writing turn 3
    again, root, sub = _rlm(tmp_path, [DONE])
    resumed = again.resume(first.trace_id, context=CONTEXT)
    assert resumed.answer == "done 3"
    assert len(root.calls) == 1 and sub.calls == []


def test_a_run_without_a_record_or_with_another_context_is_refused(tmp_path: Path) -> None:
    rlm, _, _ = _rlm(tmp_path, [LOOK, DONE.replace("len(r)", "1")])
    first = rlm.completion("q", context=CONTEXT)
    again, _, _ = _rlm(tmp_path, [])
    with pytest.raises(ReplayError, match="pass the same context again"):
        again.resume(first.trace_id)
    with pytest.raises(ReplayError, match="not run .*'s"):
        again.resume(first.trace_id, context="another context")
    other, _, _ = _rlm(tmp_path, [], model="scripted/other")
    with pytest.raises(ReplayError, match="fork it to go on"):
        other.resume(first.trace_id, context=CONTEXT)
    record_path(tmp_path / "traces", first.trace_id).unlink()
    with pytest.raises(ReplayError, match="no replay record"):
        again.resume(first.trace_id, context=CONTEXT)


def test_a_budget_the_recorded_spend_already_uses_up_is_refused_before_anything_runs(
        tmp_path: Path) -> None:
    rlm, _, _ = _rlm(tmp_path, [FAN_OUT, LOOK, DONE])
    first = rlm.completion("q", context=CONTEXT)
    again, root, _ = _rlm(tmp_path, [])
    with pytest.raises(ReplayError, match=r"already spent \$.*max_usd="):
        again.resume(first.trace_id, context=CONTEXT,
                     budget=Budget(max_usd=first.cost_usd / 2))
    with pytest.raises(ReplayError, match="already made 3 sub-calls"):
        again.resume(first.trace_id, context=CONTEXT, budget=Budget(max_subcalls=3))
    assert root.calls == []


def test_a_budget_that_covers_the_replay_but_not_the_rest_stops_at_its_limit(
        tmp_path: Path) -> None:
    rlm, _, _ = _rlm(tmp_path, [FAN_OUT, LOOK], budget=Budget(max_iterations=1))
    first = rlm.completion("q", context=CONTEXT)
    again, root, sub = _rlm(tmp_path, [FAN_OUT.replace("'a', 'b', 'c'", "'d', 'e'"), DONE])
    resumed = again.resume(first.trace_id, context=CONTEXT,
                           budget=Budget(max_iterations=5, max_subcalls=4))
    assert resumed.partial
    assert resumed.limited_by is StopReason.BUDGET_SUBCALLS
    assert len(sub.calls) == 1  # one of the two new sub-calls fits: the three recorded count


def test_fork_with_another_reply_at_turn_k_continues_differently(tmp_path: Path) -> None:
    rlm, _, _ = _rlm(tmp_path, [FAN_OUT, LOOK, DONE])
    first = rlm.completion("q", context=CONTEXT)
    again, root, sub = _rlm(tmp_path, [])
    forked = again.fork(first.trace_id, at_turn=2, context=CONTEXT,
                        reply=repl("FINAL('forked ' + r[0])"))
    assert forked.answer == "forked ok:a" != first.answer
    assert root.calls == [] and sub.calls == []  # turn 1 and its fan-out from the record


def test_fork_with_another_model_replays_before_k_and_asks_that_model_from_k(
        tmp_path: Path) -> None:
    rlm, _, _ = _rlm(tmp_path, [FAN_OUT, LOOK, DONE])
    first = rlm.completion("q", context=CONTEXT)
    other = ScriptedLM([repl("FINAL('other ' + str(len(r)))")], model="scripted/other")
    again, root, sub = _rlm(tmp_path, [])
    forked = again.fork(first.trace_id, at_turn=2, context=CONTEXT, model=other)
    assert forked.answer == "other 3"
    assert len(other.calls) == 1 and root.calls == [] and sub.calls == []
    with pytest.raises(ReplayError, match="fork it at a turn from 1 to 4"):
        again.fork(first.trace_id, at_turn=9, context=CONTEXT)


def test_every_host_op_replays_from_the_record_tools_included(tmp_path: Path) -> None:
    seen: list[str] = []

    def lookup(key: str) -> str:
        """Look a key up."""
        seen.append(key)
        return key.upper()

    tool_turn = repl("v = lookup('x')\nprint(v)")
    root = ScriptedLM([tool_turn, repl("FINAL(v)")], model="scripted/root")
    rlm = RLM(root, _sub(), sandbox="none", trace=tmp_path, tools=[Tool(lookup)])
    first = rlm.completion("q", context=CONTEXT)
    assert first.answer == "X" and seen == ["x"]
    again = RLM(ScriptedLM([], model="scripted/root"), _sub(), sandbox="none", trace=tmp_path,
                tools=[Tool(lookup)])
    assert again.resume(first.trace_id, context=CONTEXT).answer == "X"
    assert seen == ["x"]  # the tool's reply came from the record


def test_a_drop_in_run_resumes_without_a_context(tmp_path: Path) -> None:
    rlm, _, _ = _rlm(tmp_path, [LOOK, DONE.replace("len(r)", "1")])
    first = rlm.completion("what is this?")
    again, root, _ = _rlm(tmp_path, [])
    assert again.resume(first.trace_id).answer == "done 1"
    with pytest.raises(ReplayError, match="without a context"):
        again.resume(first.trace_id, context=CONTEXT)
    assert root.calls == []


def test_a_resume_on_another_sub_model_is_refused(tmp_path: Path) -> None:
    rlm, _, _ = _rlm(tmp_path, [FAN_OUT, DONE])
    first = rlm.completion("q", context=CONTEXT)
    other_sub = ScriptedLM([], model="scripted/other")
    again, _, _ = _rlm(tmp_path, [], other_sub)
    with pytest.raises(ReplayError, match="sub-model 'scripted/sub'"):
        again.resume(first.trace_id, context=CONTEXT)


def test_a_typed_run_resumes_typed(tmp_path: Path) -> None:
    rlm, _, _ = _rlm(tmp_path, [repl("FINAL('12')")])
    first = rlm.completion("q", context=CONTEXT, output=int)
    assert first.value == 12
    again, root, _ = _rlm(tmp_path, [])
    assert again.resume(first.trace_id, context=CONTEXT, output=int).value == 12
    assert root.calls == []


def test_a_record_that_cannot_be_written_stops_recording_never_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from fastrlm.trace import RecordFile

    def full(self: RecordFile, entry: dict[str, object], *, durable: bool = False) -> None:
        if entry.get("k") == "call":
            raise OSError(28, "No space left on device")
        original(self, entry, durable=durable)

    original = RecordFile.append
    monkeypatch.setattr(RecordFile, "append", full)
    rlm, _, _ = _rlm(tmp_path, [FAN_OUT, LOOK, DONE])
    result = rlm.completion("q", context=CONTEXT)
    assert result.answer == "done 3"
    assert "cannot be resumed past this point" in caplog.text
    kinds = [line.split(b'"k":"')[1][:4] for line in
             record_path(tmp_path / "traces", result.trace_id).read_bytes().splitlines()]
    assert kinds == [b"head", b"turn"]  # nothing after the failed write


def test_a_trace_callback_of_the_users_own_keeps_no_record(tmp_path: Path) -> None:
    seen: list[object] = []
    root = ScriptedLM([DONE.replace("len(r)", "1")], model="scripted/root")
    result = RLM(root, _sub(), sandbox="none", trace=seen.append).completion("q", CONTEXT)
    assert result.answer == "done 1" and seen
    import os

    home = Path(os.environ.get("FASTRLM_HOME", tmp_path))
    assert not list(home.rglob("*.record")) and not list(tmp_path.rglob("*.record"))


def test_a_run_resumes_on_an_isolated_worker_too(tmp_path: Path) -> None:
    rlm, _, _ = _rlm(tmp_path, [FAN_OUT, LOOK, DONE], sandbox="process")
    first = rlm.completion("q", context=CONTEXT)
    again, root, sub = _rlm(tmp_path, [], sandbox="process")
    resumed = again.resume(first.trace_id, context=CONTEXT)
    assert resumed.answer == "done 3" and root.calls == [] and sub.calls == []
