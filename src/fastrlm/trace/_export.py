"""Runs as training and evaluation data (``fastrlm export``): from a run's trace (its outcome)
and its replay record (the exact messages of each root turn, whole sub-call prompts and replies).

Formats, one JSON object a line (but ``inspect``):

- ``sft``: one chat example per run: the messages of its last root turn and that turn's reply
  (``{"messages": [...], "meta": {...}}``, the messages as sent: system, user, assistant, ...).
- ``sft-turns``: one chat example per root turn (its messages and its reply).
- ``subcalls``: one chat example per sub-call (``user``: its prompt, ``assistant``: its reply).
- ``eval``: one line per run, for evaluation tooling: ``run_id``, ``question``, ``answer``,
  ``stop_reason``, ``partial``, ``score`` (or null), ``model``, ``sub_model``, ``started_at``
  (ISO 8601, UTC), ``duration_s``, ``cost_usd``, ``iterations``, ``subcalls``, ``error``.
- ``inspect``: one JSON document, an inspect_ai evaluation log (one sample per run), whose
  fields and version are documented in :mod:`._inspect`.

Every chat example's ``meta`` carries the outcome labels: ``run_id``, ``turn`` (or the sub-call's
``key``), ``stop_reason`` (``unfinished`` for a run whose process died), ``score`` (from
``scores``, else null), ``model`` and ``fixups`` (below).

The paper's fix-ups (arXiv 2512.24601 v3, App. A: raw trajectories misused ``FINAL`` and put
variable names in it) are applied to the assistant replies and counted, outside code blocks
only (what runs in the REPL is left as it ran): ``final_var_in_final`` (``FINAL(name)`` with a
bare variable name becomes ``FINAL_VAR(name)``), ``literal_in_final_var``
(``FINAL_VAR(some text)`` that names no variable becomes ``FINAL(some text)``) and
``early_final`` (a ``FINAL``/``FINAL_VAR`` line in a turn the run went on after is removed: it
was a plan, not an answer).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from .._foundation.errors import ReplayError
from .._foundation.text import json_text
from ._inspect import inspect_log, inspect_sample
from ._reader import Trace, read_trace
from ._record import read_record, record_path

FORMATS = ("sft", "sft-turns", "subcalls", "eval", "inspect")
_FENCE = re.compile(r"```[^\n]*\n.*?```", re.S)
_PROSE_FINAL = re.compile(r"^(\s*)(FINAL_VAR|FINAL)\((.*)\)\s*$", re.M)


@dataclass(frozen=True)
class ExportFilter:
    """Which runs are exported: ``stop_reasons`` and ``models`` (the root's; None: any),
    started within ``since``..``until`` (epoch seconds; None: open), ``min_score`` (runs
    without a score are left out when it is set)."""

    stop_reasons: frozenset[str] | None = None
    models: frozenset[str] | None = None
    since: float | None = None
    until: float | None = None
    min_score: float | None = None

    def admits(self, *, stop_reason: str, model: str, started: float,
               score: float | None) -> bool:
        return ((self.stop_reasons is None or stop_reason in self.stop_reasons)
                and (self.models is None or model in self.models)
                and (self.since is None or started >= self.since)
                and (self.until is None or started < self.until)
                and (self.min_score is None or (score is not None and score >= self.min_score)))


@dataclass
class ExportReport:
    """What an export did: runs read and written, examples written, runs left out (and why),
    fix-ups applied by kind."""

    runs: int = 0
    exported: int = 0
    examples: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    fixups: Counter[str] = field(default_factory=Counter)


def fix_reply(text: str, *, last: bool) -> tuple[str, list[str]]:
    """``text`` (a root reply) with the paper's fix-ups applied outside code blocks, and the
    fix-ups made. ``last``: the run ended after this reply (a FINAL line there is the answer,
    elsewhere a plan)."""
    fixes: list[str] = []
    code = [m.span() for m in _FENCE.finditer(text)]

    def in_code(at: int) -> bool:
        return any(start <= at < end for start, end in code)

    def fix(match: re.Match[str]) -> str:
        if in_code(match.start()):
            return match.group(0)
        indent, tag, argument = match.groups()
        bare = argument.strip().strip("\"'")
        if not last:
            fixes.append("early_final")
            return ""
        if tag == "FINAL" and argument.strip().isidentifier():
            fixes.append("final_var_in_final")
            return f"{indent}FINAL_VAR({argument.strip()})"
        if tag == "FINAL_VAR" and not bare.isidentifier():
            fixes.append("literal_in_final_var")
            return f"{indent}FINAL({bare})"
        return match.group(0)

    return _PROSE_FINAL.sub(fix, text), fixes


def load_scores(path: Path) -> dict[str, float]:
    """Run id -> ``score`` from a JSONL file of results: a line names its run by ``run_id``,
    ``trace_id`` or a ``trace_path`` (its own or in ``extra``, as `fastrlm bench` writes for
    a traced RLM method); lines without a run and a score are skipped. Raises ``ValueError``
    naming a line that is not JSON."""
    scores: dict[str, float] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{number} is not JSON ({exc})") from None
            if not isinstance(item, dict):
                continue
            run, score = _run_named(item), item.get("score")
            if run and isinstance(score, int | float) and not isinstance(score, bool):
                scores[run] = float(score)
    return scores


def _run_named(item: dict[str, Any]) -> str | None:
    for key in ("run_id", "trace_id"):
        if isinstance(item.get(key), str) and item[key]:
            return str(item[key])
    extra = item.get("extra")
    for holder in (item, extra if isinstance(extra, dict) else {}):
        trace_path = holder.get("trace_path")
        if isinstance(trace_path, str) and trace_path.endswith(".jsonl"):
            return Path(trace_path).stem
    return None


def export_runs(paths: Iterable[Path], fmt: str, out: IO[str], *,
                filters: ExportFilter | None = None,
                scores: Mapping[str, float] | None = None) -> ExportReport:
    """Write the runs whose traces are ``paths`` to ``out`` in ``fmt`` (one of
    :data:`FORMATS`). A run without a replay record is left out of the chat formats
    (``skipped["no record"]``); one the filters refuse is counted as ``skipped["filtered"]``.
    Raises ``ValueError`` for an unknown format. ``inspect`` writes one document at the end
    (a run without a record is kept, shown by its question and answer)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    filters = filters or ExportFilter()
    scores = scores or {}
    report = ExportReport()
    samples: list[dict[str, Any]] = []
    for path in paths:
        report.runs += 1
        trace = read_trace(path)
        root = trace.root_event
        if root is None:
            report.skipped["no run.started"] += 1
            continue
        finished = trace.finished or {}
        stop = str(finished.get("stop_reason", "unfinished"))
        score = scores.get(root.run_id)
        if not filters.admits(stop_reason=stop, model=root.model, started=root.ts,
                              score=score):
            report.skipped["filtered"] += 1
            continue
        labels = {"run_id": root.run_id, "stop_reason": stop, "score": score,
                  "model": root.model}
        if fmt == "eval":
            lines: Iterator[dict[str, Any]] = iter([_eval_line(trace, labels, finished)])
        elif fmt == "inspect":
            samples.append(_inspect_sample(path, trace, labels, finished))
            report.examples += 1
            report.exported += 1
            continue
        else:
            try:
                entries = read_record(record_path(path.parent, root.run_id))
            except ReplayError:
                report.skipped["no record"] += 1
                continue
            lines = _EXAMPLES[fmt](entries, labels, report.fixups)
        wrote = 0
        for line in lines:
            out.write(json_text(line) + "\n")
            wrote += 1
        report.examples += wrote
        report.exported += 1
    if fmt == "inspect":
        out.write(json_text(inspect_log(samples, created=time.time()), indent=1) + "\n")
    return report


def _inspect_sample(path: Path, trace: Trace, labels: dict[str, Any],
                    finished: dict[str, Any]) -> dict[str, Any]:
    root = trace.root_event
    assert root is not None
    try:
        turns = _turns(read_record(record_path(path.parent, root.run_id)))
    except ReplayError:
        turns = []
    _, messages, reply = turns[-1] if turns else (0, None, None)
    return inspect_sample(run_id=root.run_id, question=root.question, model=root.model,
                          sub_model=root.sub_model, started=root.ts, finished=finished,
                          budget=dict(root.budget or {}), score=labels["score"],
                          messages=messages, reply=reply, trace_path=str(path))


def _eval_line(trace: Trace, labels: dict[str, Any], finished: dict[str, Any]
               ) -> dict[str, Any]:
    root = trace.root_event
    assert root is not None
    return {
        "run_id": root.run_id,
        "question": root.question,
        "answer": finished.get("answer", ""),
        "stop_reason": labels["stop_reason"],
        "partial": labels["stop_reason"] != "final" or bool(finished.get("limited_by")),
        "score": labels["score"],
        "model": root.model,
        "sub_model": root.sub_model,
        "started_at": datetime.fromtimestamp(root.ts, UTC).isoformat(),
        "duration_s": finished.get("duration_s"),
        "cost_usd": finished.get("cost_usd"),
        "iterations": finished.get("iterations"),
        "subcalls": finished.get("subcalls"),
        "error": finished.get("error"),
    }


def _turns(entries: list[dict[str, Any]]) -> list[tuple[int, list[dict[str, Any]], str]]:
    """The top-level run's root turns: (number, the messages sent, the reply), in order."""
    turns = sorted((e for e in entries[1:] if e.get("k") == "turn" and e.get("s") == ""),
                   key=lambda e: int(e["n"]))
    sent: list[dict[str, Any]] = []
    out = []
    for entry in turns:
        sent = sent[:int(entry.get("keep", 0))] + list(entry.get("add", []))
        out.append((int(entry["n"]), list(sent), str(entry.get("text", ""))))
    return out


def _chat(messages: list[dict[str, Any]], reply: str, meta: dict[str, Any]) -> dict[str, Any]:
    shown = [{"role": m["role"], "content": m["content"]} for m in messages]
    return {"messages": [*shown, {"role": "assistant", "content": reply}], "meta": meta}


def _per_turn(entries: list[dict[str, Any]], labels: dict[str, Any],
              fixups: Counter[str]) -> Iterator[dict[str, Any]]:
    turns = _turns(entries)
    for index, (number, messages, reply) in enumerate(turns):
        fixed, made = fix_reply(reply, last=index == len(turns) - 1)
        fixups.update(made)
        yield _chat(messages, fixed, {**labels, "turn": number, "fixups": made})


def _per_run(entries: list[dict[str, Any]], labels: dict[str, Any],
             fixups: Counter[str]) -> Iterator[dict[str, Any]]:
    turns = _turns(entries)
    if not turns:
        return
    number, messages, reply = turns[-1]
    made_all: list[str] = []
    history = []
    for message in messages:  # earlier replies in the history get the same fix-ups
        if message["role"] == "assistant":
            text, made = fix_reply(str(message["content"]), last=False)
            made_all += made
            message = {**message, "content": text}
        history.append(message)
    fixed, made = fix_reply(reply, last=True)
    made_all += made
    fixups.update(made_all)
    yield _chat(history, fixed, {**labels, "turn": number, "turns": len(turns),
                                 "fixups": made_all})


def _subcalls(entries: list[dict[str, Any]], labels: dict[str, Any],
              fixups: Counter[str]) -> Iterator[dict[str, Any]]:
    for entry in entries[1:]:
        if entry.get("k") == "call" and "prompt" in entry:
            yield _chat([{"role": "user", "content": entry["prompt"]}], str(entry["text"]),
                        {**labels, "model": entry.get("m", ""), "key": entry.get("key"),
                         "turn": entry.get("t")})


_EXAMPLES: dict[str, Callable[[list[dict[str, Any]], dict[str, Any], Counter[str]],
                              Iterator[dict[str, Any]]]] = {
    "sft": _per_run, "sft-turns": _per_turn, "subcalls": _subcalls,
}
