"""Reading traces back: find a run, load its events, render a readable transcript."""

from __future__ import annotations

import contextlib
import json
import textwrap
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .._foundation.errors import RLMError
from . import _index
from ._paths import index_path, traces_dir


class TraceNotFoundError(RLMError):
    """No run matches the reference, or the reference is ambiguous."""


@dataclass(slots=True)
class Trace:
    """The events of one trace file, as dicts. ``truncated_lines`` counts unreadable lines
    (a process killed mid-write leaves at most one, at the end)."""

    path: Path
    events: list[dict[str, Any]] = field(default_factory=list)
    truncated_lines: int = 0

    @property
    def root(self) -> dict[str, Any] | None:
        for ev in self.events:
            if ev.get("type") == "run.started" and ev.get("parent_run_id") is None:
                return dict(ev)
        return None

    @property
    def finished(self) -> dict[str, Any] | None:
        root = self.root
        for ev in reversed(self.events):
            if ev.get("type") == "run.finished" and (
                root is None or ev["run_id"] == root["run_id"]
            ):
                return dict(ev)
        return None


def read_trace(path: Path) -> Trace:
    """Load a JSONL trace. Lines that are not JSON objects are counted, not fatal."""
    trace = Trace(Path(path))
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                trace.truncated_lines += 1
                continue
            if isinstance(data, dict) and "type" in data:
                trace.events.append(_with_answer(data, trace.path.parent))
            else:
                trace.truncated_lines += 1
    return trace


def _with_answer(event: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A ``run.finished`` whose long answer went to a sidecar file gets it back (the head
    written inline stays when the file is gone)."""
    name = event.get("answer_file")
    if event.get("type") == "run.finished" and isinstance(name, str) and "/" not in name:
        with contextlib.suppress(OSError):
            event["answer"] = (folder / name).read_text(encoding="utf-8", errors="replace")
    return event


def resolve_run(ref: str, home: Path | None = None) -> Path:
    """The trace file for ``ref``: a path, ``last``, ``N`` or ``-N`` (the N-th newest run,
    ``1`` = last), or a run id or unique prefix of one. Raises :class:`TraceNotFoundError`, or
    :class:`~._index.IndexUnusableError` for ``last``/``N`` when the index cannot be read."""
    candidate = Path(ref).expanduser()
    if ref.endswith(".jsonl") and candidate.is_file():
        return candidate
    idx = index_path(home)
    digits = ref.removeprefix("-")
    if ref == "last" or (digits.isdigit() and len(digits) <= 4):
        n = 1 if ref == "last" else int(digits)
        runs = _index.list_runs(idx, limit=max(n, 1))
        if n < 1 or len(runs) < n:
            raise TraceNotFoundError(f"there is no run {ref!r} (runs recorded: {len(runs)})")
        return Path(runs[n - 1].trace_path)
    try:
        matches = {r.run_id: Path(r.trace_path) for r in _index.find_runs(idx, ref)}
    except _index.IndexUnusableError:
        matches = {}  # the trace files below are the record: an id needs no index
    # A run whose process died before the index saw it still has its file.
    tdir = traces_dir(home)
    if tdir.is_dir():
        for path in tdir.glob(f"{_glob_escape(ref)}*.jsonl"):
            matches.setdefault(path.stem, path)
    if not matches:
        raise TraceNotFoundError(f"no run matches {ref!r}; `fastrlm runs` lists them")
    if len(matches) > 1:
        shown = ", ".join(sorted(matches)[:5])
        raise TraceNotFoundError(
            f"{ref!r} matches {len(matches)} runs ({shown}); give more of the id"
        )
    return next(iter(matches.values()))


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _indent(text: str, depth: int, extra: int = 2) -> str:
    return textwrap.indent(text.rstrip("\n"), " " * (depth * 4 + extra)) if text else ""


def _money(value: Any) -> str:
    return f"${float(value or 0):.4f}"


def render_transcript(trace: Trace, *, subcalls: bool = False, max_chars: int = 4000) -> str:
    """A readable, plain-text transcript of a run tree (children indented by depth)."""
    out: list[str] = []
    pending: dict[str, list[int]] = {}  # run_id -> [done, failed, cached]

    def clip(text: str) -> str:
        if len(text) <= max_chars:
            return text
        return text[:max_chars] + f"\n… [{len(text) - max_chars:,} more characters]"

    def flush_subcalls(run_id: str, depth: int) -> None:
        counts = pending.pop(run_id, None)
        if counts and counts[0]:
            done, failed, cached = counts
            out.append(_indent(f"sub-calls: {done} ({failed} failed, {cached} from cache)", depth))

    for ev in trace.events:
        kind = ev.get("type")
        depth = int(ev.get("depth", 0) or 0)
        pad = " " * (depth * 4)
        run_id = str(ev.get("run_id", ""))
        if kind == "run.started":
            ctx = ev.get("context") or {}
            when = datetime.fromtimestamp(float(ev.get("ts", 0))).strftime("%Y-%m-%d %H:%M:%S")
            title = "Run" if ev.get("parent_run_id") is None else "Child run"
            out.append(f"{pad}{title} {run_id}  {when}")
            out.append(
                f"{pad}  model {ev.get('model')}  sub-model {ev.get('sub_model')}  "
                f"sandbox {ev.get('sandbox')}"
            )
            out.append(
                f"{pad}  context: {ctx.get('type', '?')}, {int(ctx.get('total_chars', 0)):,} chars"
                f" in {int(ctx.get('n_chunks', 1)):,} chunk(s), sha256 "
                f"{str(ctx.get('sha256', ''))[:16]}…"
            )
            budget = {k: v for k, v in (ev.get("budget") or {}).items() if v is not None}
            if budget:
                out.append(f"{pad}  budget: " + ", ".join(f"{k}={v}" for k, v in budget.items()))
            out.append(f"{pad}  question: {ev.get('question', '')}")
        elif kind == "iteration.started":
            flush_subcalls(run_id, depth)
            out.append(f"\n{pad}── iteration {ev.get('iteration')}/{ev.get('max_iterations')} ──")
        elif kind == "model.response":
            out.append(
                f"{pad}model {ev.get('model')} ({ev.get('input_tokens', 0):,} in / "
                f"{ev.get('output_tokens', 0):,} out tokens, {_money(ev.get('cost_usd'))}, "
                f"{float(ev.get('latency_s', 0)):.1f}s):"
            )
            if ev.get("anomaly"):
                out.append(f"{pad}provider anomaly: {ev['anomaly']}")
            out.append(_indent(clip(str(ev.get("text", ""))), depth))
        elif kind == "model.failed":
            out.append(
                f"{pad}model {ev.get('model')} failed after {ev.get('attempts', 1)} attempt(s) "
                f"({_money(ev.get('cost_usd'))}): {ev.get('error', '')}"
            )
        elif kind == "code.executed":
            flush_subcalls(run_id, depth)
            flags = [f for f in ("timed_out", "restarted") if ev.get(f)]
            extra = f" [{', '.join(flags)}]" if flags else ""
            out.append(
                f"{pad}ran block {ev.get('block')} in {float(ev.get('duration_s', 0)):.2f}s{extra}"
            )
            output = str(ev.get("output", ""))
            if output.strip():
                out.append(f"{pad}output ({int(ev.get('output_chars', len(output))):,} chars):")
                out.append(_indent(clip(output), depth))
            if ev.get("error"):
                out.append(f"{pad}error:")
                out.append(_indent(clip(str(ev["error"])), depth))
            if ev.get("restored"):
                out.append(f"{pad}restored: {', '.join(ev['restored'])}")
        elif kind == "subcall.finished":
            counts = pending.setdefault(run_id, [0, 0, 0])
            counts[0] += 1
            counts[1] += int(bool(ev.get("error")))
            counts[2] += int(bool(ev.get("cached")))
            if ev.get("anomaly"):
                out.append(f"{pad}provider anomaly in {ev.get('call_id')}: {ev['anomaly']}")
            if subcalls:
                status = (
                    f"error: {ev['error']}" if ev.get("error") else ev.get("response_preview", "")
                )
                out.append(f"{pad}  · {ev.get('call_id')} {ev.get('model')}: {status}")
        elif kind == "tool.finished":
            where = f" (sub-agent {ev['subcall_id']})" if ev.get("subcall_id") else ""
            status = (f"error: {ev['error']}" if ev.get("error")
                      else ev.get("result_preview", ""))
            out.append(f"{pad}tool {ev.get('tool')}{where} in "
                       f"{float(ev.get('duration_s', 0)):.2f}s: {status}")
        elif kind == "subcalls.refused":
            out.append(f"{pad}refused {ev.get('count')} sub-call(s): {ev.get('message')}")
        elif kind == "child.started":
            out.append(f"{pad}→ child {ev.get('child_run_id')}: {ev.get('prompt_preview', '')}")
        elif kind == "child.finished":
            out.append(
                f"{pad}← child {ev.get('child_run_id')} {ev.get('stop_reason')} "
                f"{_money(ev.get('cost_usd'))}: {ev.get('answer_preview', '')}"
            )
        elif kind == "sandbox.started":
            unsafe = " (UNSAFE: in-process)" if ev.get("unsafe") else ""
            out.append(
                f"{pad}sandbox {ev.get('layer')}{unsafe} ready in "
                f"{float(ev.get('startup_s', 0)):.2f}s"
            )
        elif kind == "sandbox.restarted":
            out.append(f"{pad}sandbox restarted: {ev.get('reason')}")
        elif kind == "budget.warning":
            out.append(
                f"{pad}budget warning: {ev.get('resource')} at {float(ev.get('fraction', 0)):.0%}"
            )
        elif kind == "final":
            flush_subcalls(run_id, depth)
            out.append(
                f"{pad}answer delivered via {ev.get('source')} "
                f"({ev.get('answer_chars', 0):,} chars)"
            )
        elif kind == "run.finished":
            flush_subcalls(run_id, depth)
            usage = ev.get("usage") or {}
            out.append(
                f"\n{pad}── finished: {ev.get('stop_reason')} · "
                f"{ev.get('iterations', 0)} iteration(s) · {ev.get('subcalls', 0)} sub-call(s) · "
                f"{usage.get('input_tokens', 0):,} in / "
                f"{usage.get('output_tokens', 0):,} out tokens · {_money(ev.get('cost_usd'))} · "
                f"{float(ev.get('duration_s', 0)):.1f}s"
                + (f" · {ev['tool_calls']} tool call(s)" if ev.get("tool_calls") else "")
            )
            if ev.get("limited_by"):
                out.append(
                    f"{pad}limited by {ev['limited_by']}: {ev.get('subcalls_refused', 0)} "
                    f"sub-call(s) refused, {ev.get('subcalls_failed', 0)} failed"
                )
            if ev.get("error"):
                out.append(f"{pad}error: {ev['error']}")
            if ev.get("answer"):
                out.append(f"{pad}answer:")
                out.append(_indent(clip(str(ev["answer"])), depth))
    for run_id in list(pending):
        flush_subcalls(run_id, 0)
    if trace.finished is None:
        out.append("\n── the run did not finish (process killed or still running)")
    if trace.truncated_lines:
        out.append(f"({trace.truncated_lines} unreadable line(s) skipped)")
    return "\n".join(line for line in out if line is not None) + "\n"
