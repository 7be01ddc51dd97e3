"""The data the viewer page's script draws from: every sub-call and every timed span, compact.

:func:`page_data` turns a trace's events into columns (one list per field, so 100,000 sub-calls
cost no repeated keys) that the page's script reads once for the virtualised sub-call list, its
filters and the timeline. The live page feeds later events through the script's own ``ingest``,
which maps the same fields the same way (``_html_assets.JS``). :func:`script_json` makes the
JSON safe inside a ``<script>`` element: model text can hold ``</script>``.
"""

from __future__ import annotations

import json
from typing import Any

#: Characters of a prompt or reply preview kept per sub-call row (the row's tooltip shows them).
ROW_PREVIEW_CHARS = 120

#: Sub-call flags, as bits of ``calls.flag``.
FLAG_ERROR = 1
FLAG_CACHED = 2
FLAG_UNFINISHED = 4

_SPAN_KINDS = {"model.response": "turn", "code.executed": "cell", "tool.finished": "tool"}


def _num(value: Any) -> float:
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


def _clip(value: Any) -> str:
    # no whitespace folding: the list's one-line cells collapse it, the tooltip keeps lines
    return "" if value is None else str(value)[:ROW_PREVIEW_CHARS]


def page_data(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Columns of sub-calls (``calls``), spans of root turns, cells, tools and child runs
    (``spans``), and the runs they belong to (``runs``: id, depth, parent index). Times are
    seconds since the first event (``t0``, a Unix time). Never raises on odd events."""
    t0 = next((_num(ev.get("ts")) for ev in events if ev.get("ts") is not None), 0.0)
    runs: list[list[Any]] = []
    run_index: dict[str, int] = {}
    models: list[str] = []
    model_index: dict[str, int] = {}
    calls: dict[str, list[Any]] = {k: [] for k in (
        "run", "id", "model", "start", "dur", "tin", "tout", "cost", "flag", "prompt", "reply")}
    spans: dict[str, list[Any]] = {k: [] for k in ("run", "kind", "start", "dur", "label", "bad")}
    started: dict[tuple[int, str], tuple[float, str]] = {}
    children: dict[str, tuple[int, float, str]] = {}

    def run_of(run_id: Any, parent: Any = None, depth: Any = 0) -> int:
        key = str(run_id or "")
        index = run_index.get(key)
        if index is None:
            index = run_index[key] = len(runs)
            runs.append([key, int(_num(depth)), -1])
        if parent is not None and runs[index][2] < 0:
            runs[index][2] = run_of(parent)
            runs[index][1] = int(_num(depth))
        return index

    def model_of(name: Any) -> int:
        key = str(name or "")
        if key not in model_index:
            model_index[key] = len(models)
            models.append(key)
        return model_index[key]

    def span(run: int, kind: str, end: float, dur: float, label: str, bad: bool) -> None:
        spans["run"].append(run)
        spans["kind"].append(kind)
        spans["start"].append(round(end - dur - t0, 4))
        spans["dur"].append(round(dur, 4))
        spans["label"].append(label)
        spans["bad"].append(int(bad))

    # bound once: this loop runs twice per sub-call, 200,000 times for a big fan-out
    (add_run, add_id, add_model, add_start, add_dur, add_tin, add_tout, add_cost, add_flag,
     add_prompt, add_reply) = (calls[k].append for k in calls)
    last_run: tuple[Any, int] = (None, 0)
    for ev in events:
        kind = ev.get("type")
        ts = _num(ev.get("ts"))
        if kind == "run.started":
            run_of(ev.get("run_id"), ev.get("parent_run_id"), ev.get("depth"))
            continue
        if ev.get("run_id") == last_run[0]:
            run = last_run[1]
        else:
            run = run_of(ev.get("run_id"), depth=ev.get("depth"))
            last_run = (ev.get("run_id"), run)
        if kind == "subcall.started":
            started[(run, str(ev.get("call_id")))] = (ts, _clip(ev.get("prompt_preview")))
        elif kind == "subcall.finished":
            call_id = str(ev.get("call_id") or "")
            start, prompt = started.pop((run, call_id), (None, ""))
            latency = _num(ev.get("latency_s"))
            error = ev.get("error")
            begin = start if start is not None else ts - latency
            add_run(run)
            add_id(call_id)
            add_model(model_of(ev.get("model")))
            add_start(round(begin - t0, 4))
            add_dur(round(max(ts - begin, latency), 4))
            add_tin(int(_num(ev.get("input_tokens"))))
            add_tout(int(_num(ev.get("output_tokens"))))
            add_cost(_num(ev.get("cost_usd")))
            add_flag((FLAG_ERROR if error else 0) | (FLAG_CACHED if ev.get("cached") else 0))
            add_prompt(prompt)
            add_reply(_clip(error if error else ev.get("response_preview")))
        elif kind in _SPAN_KINDS:
            dur = _num(ev.get("latency_s" if kind == "model.response" else "duration_s"))
            label = (f"turn {ev.get('iteration', '')}" if kind == "model.response"
                     else f"cell {ev.get('iteration', '')}.{ev.get('block', '')}"
                     if kind == "code.executed" else str(ev.get("tool", "tool")))
            span(run, _SPAN_KINDS[kind], ts, dur, label,
                 bool(ev.get("error") or ev.get("timed_out")))
        elif kind == "child.started":
            children[str(ev.get("child_run_id"))] = (run, ts, _clip(ev.get("prompt_preview")))
        elif kind == "child.finished":
            parent, begin, label = children.pop(str(ev.get("child_run_id")), (run, ts, ""))
            span(parent, "child", ts, ts - begin, label or "child run",
                 ev.get("stop_reason") != "final")
    for (run, call_id), (start, prompt) in started.items():
        calls["run"].append(run)
        calls["id"].append(call_id)
        calls["model"].append(model_of(""))
        calls["start"].append(round(start - t0, 4))
        calls["dur"].append(0.0)
        for name in ("tin", "tout", "cost"):
            calls[name].append(0)
        calls["flag"].append(FLAG_UNFINISHED)
        calls["prompt"].append(prompt)
        calls["reply"].append("(no reply recorded)")
    return {"t0": t0, "runs": runs, "models": models, "calls": calls, "spans": spans,
            "preview_chars": ROW_PREVIEW_CHARS}


def script_json(data: Any) -> str:
    """JSON that cannot end its ``<script>`` element or open a comment inside it."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
