"""The data the viewer page's script draws from: every sub-call and every timed span, compact.

:func:`page_data` turns a trace's events into columns (one list per field, so 100,000 sub-calls
cost no repeated keys) that the page's script reads once for the virtualised sub-call list, its
filters and the timeline. The live page feeds later events through the script's own ``ingest``,
which maps the same fields the same way (``_html_assets.JS``). :func:`script_json` makes the
JSON safe inside a ``<script>`` element: model text can hold ``</script>``.
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

from .._foundation import events as evt

#: Characters of a prompt or reply kept per sub-call row: a whole event preview (the row's
#: tooltip and its opened panel show them); longer texts (a trace written with full prompts and
#: replies) travel in the compressed ``texts`` blob, read only when a row is opened.
ROW_PREVIEW_CHARS = 200

#: Most characters of whole texts one page packs (a full trace of a huge fan-out can hold
#: gigabytes of prompts): past it the page keeps previews and says so, and the live view
#: (``fastrlm view --follow``) serves the rest one call at a time (``GET /call``).
MAX_PACKED_CHARS = 32 << 20

#: Sub-call flags, as bits of ``calls.flag``.
FLAG_ERROR = 1
FLAG_CACHED = 2
FLAG_UNFINISHED = 4


def _num(value: Any) -> float:
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


def _clip(value: Any) -> str:
    # no whitespace folding: the list's one-line cells collapse it, the tooltip keeps lines
    return "" if value is None else str(value)[:ROW_PREVIEW_CHARS]


def page_data(events: list[evt.Event]) -> dict[str, Any]:
    """Columns of sub-calls (``calls``: the prompt and reply as far as a row keeps them, and
    their whole lengths ``pchars`` / ``rchars``), the texts longer than that (``texts``:
    :func:`packed_texts`), spans of root turns, cells, tools and child runs (``spans``), and
    the runs they belong to (``runs``: id, depth, parent index). Times are seconds since the
    first event (``t0``, a Unix time). Never raises on odd events."""
    t0 = next((_num(ev.ts) for ev in events if ev.ts), 0.0)
    runs: list[list[Any]] = []
    run_index: dict[str, int] = {}
    models: list[str] = []
    model_index: dict[str, int] = {}
    calls: dict[str, list[Any]] = {k: [] for k in (
        "run", "id", "model", "start", "dur", "tin", "tout", "cost", "flag", "prompt", "reply",
        "pchars", "rchars")}
    # texts longer than a row keeps (whole prompts and replies of a full trace), by call index
    long_prompts: dict[int, str] = {}
    long_replies: dict[int, str] = {}
    spans: dict[str, list[Any]] = {k: [] for k in ("run", "kind", "start", "dur", "label", "bad")}
    started: dict[tuple[int, str], tuple[float, str, int, str | None]] = {}
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
     add_prompt, add_reply, add_pchars, add_rchars) = (calls[k].append for k in calls)
    last_run: tuple[Any, int] = (None, 0)
    for ev in events:
        ts = _num(ev.ts)
        if isinstance(ev, evt.RunStarted):
            run_of(ev.run_id, ev.parent_run_id, ev.depth)
            continue
        if ev.run_id == last_run[0]:
            run = last_run[1]
        else:
            run = run_of(ev.run_id, depth=ev.depth)
            last_run = (ev.run_id, run)
        if isinstance(ev, evt.SubcallStarted):
            started[(run, str(ev.call_id))] = (ts, _clip(ev.prompt_preview),
                                               int(_num(ev.prompt_chars)), ev.prompt)
        elif isinstance(ev, evt.SubcallFinished):
            call_id = str(ev.call_id or "")
            start, prompt, pchars, whole = started.pop((run, call_id), (None, "", 0, None))
            index = len(calls["id"])
            if whole and len(whole) > ROW_PREVIEW_CHARS:
                long_prompts[index] = whole
            latency = _num(ev.latency_s)
            error = ev.error
            begin = start if start is not None else ts - latency
            add_run(run)
            add_id(call_id)
            add_model(model_of(ev.model))
            add_start(round(begin - t0, 4))
            add_dur(round(max(ts - begin, latency), 4))
            add_tin(int(_num(ev.input_tokens)))
            add_tout(int(_num(ev.output_tokens)))
            add_cost(_num(ev.cost_usd))
            add_flag((FLAG_ERROR if error else 0) | (FLAG_CACHED if ev.cached else 0))
            add_prompt(prompt)
            reply = str(error) if error else ev.response
            if reply and len(reply) > ROW_PREVIEW_CHARS:
                long_replies[index] = reply
            add_reply(_clip(error if error else ev.response_preview))
            add_pchars(pchars)
            add_rchars(len(str(error)) if error else int(_num(ev.response_chars)))
        elif isinstance(ev, evt.ModelResponse):
            span(run, "turn", ts, _num(ev.latency_s), f"turn {ev.iteration}", False)
        elif isinstance(ev, evt.CodeExecuted):
            span(run, "cell", ts, _num(ev.duration_s), f"cell {ev.iteration}.{ev.block}",
                 bool(ev.error or ev.timed_out))
        elif isinstance(ev, evt.ToolFinished):
            span(run, "tool", ts, _num(ev.duration_s), str(ev.tool or "tool"), bool(ev.error))
        elif isinstance(ev, evt.ChildRunStarted):
            children[str(ev.child_run_id)] = (run, ts, _clip(ev.prompt_preview))
        elif isinstance(ev, evt.ChildRunFinished):
            parent, begin, label = children.pop(str(ev.child_run_id), (run, ts, ""))
            span(parent, "child", ts, ts - begin, label or "child run", ev.stop_reason != "final")
    for (run, call_id), (start, prompt, pchars, whole) in started.items():
        if whole and len(whole) > ROW_PREVIEW_CHARS:
            long_prompts[len(calls["id"])] = whole
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
        calls["pchars"].append(pchars)
        calls["rchars"].append(0)
    texts, left_out = packed_texts(long_prompts, long_replies)
    return {"t0": t0, "runs": runs, "models": models, "calls": calls, "spans": spans,
            "preview_chars": ROW_PREVIEW_CHARS, "texts": texts, "texts_left_out": left_out}


def packed_texts(prompts: dict[int, str], replies: dict[int, str],
                 limit: int | None = None) -> tuple[str, int]:
    """Whole prompts and replies by call index, as base64 of gzipped JSON ``{"p": {i: text},
    "r": {i: text}}`` (the page unpacks it with the browser's ``DecompressionStream`` the first
    time a sub-call is opened, so a big full trace costs its page no parse time; ``""`` when
    there are none), and how many texts were left out to keep it within ``limit`` characters
    (default :data:`MAX_PACKED_CHARS`; calls in order, each prompt with its reply)."""
    if not prompts and not replies:
        return "", 0
    limit = MAX_PACKED_CHARS if limit is None else limit
    kept: dict[str, dict[int, str]] = {"p": {}, "r": {}}
    total = left_out = 0
    for index in sorted(prompts.keys() | replies.keys()):
        for name, texts in (("p", prompts), ("r", replies)):
            text = texts.get(index)
            if text is None:
                continue
            if total + len(text) > limit:
                left_out += 1
                continue
            total += len(text)
            kept[name][index] = text
    raw = json.dumps(kept, ensure_ascii=False, separators=(",", ":"))
    packed = gzip.compress(raw.encode("utf-8", "surrogatepass"), compresslevel=1, mtime=0)
    return base64.b64encode(packed).decode("ascii"), left_out


def script_json(data: Any) -> str:
    """JSON that cannot end its ``<script>`` element or open a comment inside it."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
