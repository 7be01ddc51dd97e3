"""``fastrlm export --format inspect`` (issue 27): runs as an inspect_ai evaluation log, written
by fastrlm's own code; the documented fields always checked, and read back by inspect_ai
itself where it is installed."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from fastrlm import RLM, Budget, RLMError
from fastrlm.testing import ScriptedLM, prompt_of
from fastrlm.trace import export_runs, record_path
from fastrlm.trace._inspect import INSPECT_LOG_VERSION

FAN_OUT = "```repl\nr = llm_query_batched(['a', 'b'])\nprint(r)\n```"
DONE = "```repl\nFINAL('two')\n```"


def _run(home: Path, replies: list[Any], **kw: Any) -> tuple[str, ScriptedLM]:
    root = ScriptedLM(replies, model="scripted/root")
    sub = ScriptedLM(lambda m: "ok:" + prompt_of(m), model="scripted/sub")
    rlm = RLM(root, sub, sandbox="none", trace=home, **kw)
    try:
        result = rlm.completion("how many?", context="one two")
    except RLMError as exc:
        assert exc.result is not None
        return exc.result.trace_id, root
    return result.trace_id, root


def _log(home: Path, **kw: Any) -> dict[str, Any]:
    out = io.StringIO()
    report = export_runs(sorted((home / "traces").glob("*.jsonl")), "inspect", out, **kw)
    assert report.exported == report.examples
    document = json.loads(out.getvalue())
    assert isinstance(document, dict)
    return document


def test_the_inspect_log_holds_the_documented_fields_one_sample_per_run(
        tmp_path: Path) -> None:
    done_id, done_root = _run(tmp_path, [FAN_OUT, DONE])
    cut_id, _ = _run(tmp_path, [FAN_OUT, FAN_OUT], budget=Budget(max_iterations=1))
    log = _log(tmp_path, scores={done_id: 1.0})
    assert log["version"] == INSPECT_LOG_VERSION == 2 and log["status"] == "success"
    assert {"eval", "plan", "results", "stats", "samples"} <= set(log)
    spec = log["eval"]
    assert spec["task"] == "fastrlm" and spec["model"] == "scripted/root"
    assert sorted(spec["dataset"]["sample_ids"]) == sorted([done_id, cut_id])
    assert {"created", "eval_id", "config", "packages"} <= set(spec)
    samples = {s["id"]: s for s in log["samples"]}
    done, cut = samples[done_id], samples[cut_id]
    # the answer turn as the model was sent it, then its reply
    sent = done_root.calls[-1]
    assert done["messages"][:-1] == [{"role": m["role"], "content": m["content"]}
                                     for m in sent]
    assert done["messages"][-1]["content"] == DONE
    assert done["output"]["completion"] == "two"
    assert done["output"]["choices"][0]["stop_reason"] == "stop"
    assert done["scores"] == {"score": {"value": 1.0, "answer": "two"}}
    assert done["model_usage"]["scripted/sub"]["input_tokens"] > 0
    assert done["metadata"]["stop_reason"] == "final" and done["input"] == "how many?"
    assert cut["limit"] == {"type": "turn", "limit": 1.0, "reason": "max_iterations"}
    assert cut["metadata"]["partial"] and "scores" not in cut
    results = log["results"]
    assert (results["total_samples"], results["completed_samples"]) == (2, 1)
    [scorer] = results["scores"]
    assert scorer["metrics"]["mean"]["value"] == 1.0 and scorer["metrics"]["count"]["value"] == 1
    both = sum(s["model_usage"]["scripted/root"]["total_tokens"] for s in samples.values())
    assert log["stats"]["model_usage"]["scripted/root"]["total_tokens"] == both


def test_a_run_without_a_record_or_that_failed_is_still_a_sample(tmp_path: Path) -> None:
    plain_id, _ = _run(tmp_path, [DONE])
    record_path(tmp_path / "traces", plain_id).unlink()
    failed_id, _ = _run(tmp_path, [RuntimeError("provider down")])
    samples = {s["id"]: s for s in _log(tmp_path)["samples"]}
    assert samples[plain_id]["messages"] == [
        {"role": "user", "content": "how many?"},
        {"role": "assistant", "content": "two", "model": "scripted/root"}]
    assert "provider down" in samples[failed_id]["error"]["message"]
    assert samples[failed_id]["metadata"]["stop_reason"] == "error"


def test_an_export_of_no_runs_is_still_a_valid_empty_log(tmp_path: Path) -> None:
    out = io.StringIO()
    export_runs([], "inspect", out)
    log = json.loads(out.getvalue())
    assert log["samples"] == [] and log["results"]["total_samples"] == 0


def test_inspect_ai_reads_the_log_back(tmp_path: Path) -> None:
    inspect_log = pytest.importorskip("inspect_ai.log")
    done_id, _ = _run(tmp_path, [FAN_OUT, DONE])
    cut_id, _ = _run(tmp_path, [FAN_OUT, FAN_OUT], budget=Budget(max_iterations=1))
    failed_id, _ = _run(tmp_path, [RuntimeError("provider down")])
    path = tmp_path / "runs.json"
    with path.open("w", encoding="utf-8") as handle:
        export_runs(sorted((tmp_path / "traces").glob("*.jsonl")), "inspect", handle,
                    scores={done_id: 0.5})
    log = inspect_log.read_eval_log(str(path))
    assert log.version == 2 and log.status == "success"
    samples = {s.id: s for s in log.samples}
    assert set(samples) == {done_id, cut_id, failed_id}
    assert samples[done_id].output.completion == "two"
    assert samples[done_id].scores["score"].value == 0.5
    assert samples[cut_id].limit.type == "turn"
    assert samples[failed_id].error is not None
    assert log.results.scores[0].metrics["mean"].value == 0.5
