"""Exports (issue 27): chat examples that round-trip to what the model was sent, sub-calls as
examples, an evaluation log, filters, and the paper's FINAL / FINAL_VAR fix-ups."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from fastrlm import RLM, Budget
from fastrlm.testing import ScriptedLM, prompt_of
from fastrlm.trace import ExportFilter, export_runs, fix_reply, load_scores, record_path

FAN_OUT = "```repl\nr = llm_query_batched(['a', 'b'])\nprint(r)\n```"
PLAN = "I will look first.\nFINAL(answer)\n```repl\nprint(len(context))\n```"
DONE = "```repl\nresult = 'two'\n```\nFINAL(result)"


def _run(home: Path, replies: list[str], **kw: object) -> tuple[str, ScriptedLM, ScriptedLM]:
    root = ScriptedLM(replies, model="scripted/root")
    sub = ScriptedLM(lambda m: "ok:" + prompt_of(m), model="scripted/sub")
    result = RLM(root, sub, sandbox="none", trace=home, **kw).completion(  # type: ignore[arg-type]
        "how many?", context="one two")
    return result.trace_id, root, sub


def _export(home: Path, fmt: str, **kw: object) -> tuple[list[dict[str, object]], object]:
    out = io.StringIO()
    report = export_runs(sorted((home / "traces").glob("*.jsonl")), fmt, out, **kw)  # type: ignore[arg-type]
    return [json.loads(line) for line in out.getvalue().splitlines()], report


def test_sft_turns_round_trip_to_the_exact_messages_each_root_turn_was_sent(
        tmp_path: Path) -> None:
    _, root, _ = _run(tmp_path, [FAN_OUT, "```repl\nprint(r)\n```", DONE])
    examples, report = _export(tmp_path, "sft-turns")
    assert len(examples) == len(root.calls) == 3
    for example, sent in zip(examples, root.calls, strict=True):
        messages = example["messages"]
        assert isinstance(messages, list)
        assert messages[:-1] == [{"role": m["role"], "content": m["content"]} for m in sent]
        assert messages[-1]["role"] == "assistant"
    assert examples[0]["messages"][-1]["content"] == FAN_OUT
    assert examples[0]["meta"]["stop_reason"] == "final"  # type: ignore[index]


def test_sft_is_one_example_per_run_ending_with_the_answer_turn(tmp_path: Path) -> None:
    _run(tmp_path, [FAN_OUT, DONE])
    [example], _ = _export(tmp_path, "sft")
    messages = example["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user",  # type: ignore[index]
                                             "assistant"]
    assert example["meta"]["turns"] == 2  # type: ignore[index]


def test_subcalls_are_examples_of_their_whole_prompt_and_reply(tmp_path: Path) -> None:
    _run(tmp_path, [FAN_OUT, DONE])
    examples, _ = _export(tmp_path, "subcalls")
    pairs = sorted((e["messages"][0]["content"], e["messages"][1]["content"])  # type: ignore[index]
                   for e in examples)
    assert pairs == [("a", "ok:a"), ("b", "ok:b")]


def test_the_eval_log_has_one_documented_line_per_run_and_filters_apply(
        tmp_path: Path) -> None:
    final_id, _, _ = _run(tmp_path, [DONE])
    limited_id, _, _ = _run(tmp_path, [FAN_OUT, FAN_OUT], budget=Budget(max_iterations=1))
    lines, _ = _export(tmp_path, "eval")
    assert {line["run_id"] for line in lines} == {final_id, limited_id}
    assert set(lines[0]) == {"run_id", "question", "answer", "stop_reason", "partial", "score",
                             "model", "sub_model", "started_at", "duration_s", "cost_usd",
                             "iterations", "subcalls", "error"}
    only, report = _export(tmp_path, "eval",
                           filters=ExportFilter(stop_reasons=frozenset({"max_iterations"})))
    assert [line["run_id"] for line in only] == [limited_id]
    assert report.skipped["filtered"] == 1  # type: ignore[attr-defined]
    scored, _ = _export(tmp_path, "eval", scores={final_id: 1.0},
                        filters=ExportFilter(min_score=0.5))
    assert [(line["run_id"], line["score"]) for line in scored] == [(final_id, 1.0)]
    later, _ = _export(tmp_path, "eval", filters=ExportFilter(since=4102444800.0))  # 2100
    assert later == []


def test_runs_without_a_record_are_left_out_of_chat_formats_and_counted(
        tmp_path: Path) -> None:
    run_id, _, _ = _run(tmp_path, [DONE])
    record_path(tmp_path / "traces", run_id).unlink()
    examples, report = _export(tmp_path, "sft")
    assert examples == [] and report.skipped["no record"] == 1  # type: ignore[attr-defined]


def test_fixups_are_applied_outside_code_and_counted() -> None:
    fixed, made = fix_reply(DONE, last=True)
    assert fixed.endswith("FINAL_VAR(result)") and made == ["final_var_in_final"]
    fixed, made = fix_reply('FINAL_VAR("the answer is 4")', last=True)
    assert fixed == "FINAL(the answer is 4)" and made == ["literal_in_final_var"]
    fixed, made = fix_reply(PLAN, last=False)
    assert "FINAL" not in fixed and made == ["early_final"]
    code_only = "```repl\nFINAL(x)\n```"
    assert fix_reply(code_only, last=True) == (code_only, [])
    assert fix_reply("FINAL(42)", last=True) == ("FINAL(42)", [])


def test_the_export_of_a_run_with_fixups_reports_them(tmp_path: Path) -> None:
    _run(tmp_path, [DONE])
    _, report = _export(tmp_path, "sft-turns")
    assert report.fixups == {"final_var_in_final": 1}  # type: ignore[attr-defined]


def test_scores_are_read_by_run_id_or_trace_id_and_bad_lines_are_named(
        tmp_path: Path) -> None:
    path = tmp_path / "scores.jsonl"
    path.write_text('{"run_id": "a", "score": 1}\n{"trace_id": "b", "score": 0.5}\n'
                    '{"other": 1}\n{"score": 0, "extra": {"trace_path": "/h/traces/c.jsonl"}}\n'
                    '{"run_id": "d", "score": true}\n')
    assert load_scores(path) == {"a": 1.0, "b": 0.5, "c": 0.0}  # bench lines name the trace
    path.write_text('{"run_id": "a", "score": 1}\nnot json\n')
    with pytest.raises(ValueError, match="scores.jsonl:2 is not JSON"):
        load_scores(path)


def test_an_unknown_format_is_refused_naming_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sft, sft-turns, subcalls, eval"):
        export_runs([], "csv", io.StringIO())
