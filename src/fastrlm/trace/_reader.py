"""Reading traces back: find a run, load its events, render a readable transcript."""

from __future__ import annotations

import contextlib
import gc
import json
import textwrap
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .._foundation import events as evt
from .._foundation.errors import RLMError
from .._foundation.events import event_from_dict
from . import _index
from ._lock import writer_alive
from ._paths import index_path, traces_dir


class TraceNotFoundError(RLMError):
    """No run matches the reference, or the reference is ambiguous."""


@dataclass(slots=True)
class Trace:
    """The events of one trace file: ``events`` as the records were written (dicts),
    ``typed_events`` rebuilt as event classes (what every reader here works on).
    ``truncated_lines`` counts unreadable lines (a process killed mid-write leaves at most one,
    at the end). ``writing``: a live process held the file's writer lock when it was read (an
    unfinished trace is then a running run, not an incomplete one; :mod:`._lock`)."""

    path: Path
    events: list[dict[str, Any]] = field(default_factory=list)
    truncated_lines: int = 0
    writing: bool = False
    _typed: list[evt.Event] = field(default_factory=list, init=False, repr=False, compare=False)

    @property
    def typed_events(self) -> list[evt.Event]:
        """The events as classes (:func:`~fastrlm.events.event_from_dict`: a record of an older
        or newer version gets defaults for what it lacks and keeps what it adds). Built once:
        records appended to ``events`` later are added on the next read."""
        if len(self._typed) < len(self.events):
            # A big trace is hundreds of thousands of records rebuilt at once, and each new
            # event is a tracked object: the cyclic collector would run over the whole growing
            # list again and again (half the time of the rebuild, measured with
            # benchmarks/trace_render.py), though rebuilding makes no cycles to find. So it is
            # paused for the rebuild alone, and turned back on (when it was on) whatever happens.
            collecting = gc.isenabled()
            gc.disable()
            try:
                self._typed += [event_from_dict(record)
                                for record in self.events[len(self._typed):]]
            finally:
                if collecting:
                    gc.enable()
        return self._typed

    @property
    def root(self) -> dict[str, Any] | None:
        """The top-level run's ``run.started`` record."""
        root = self.root_event
        return None if root is None else root.to_dict()

    @property
    def finished(self) -> dict[str, Any] | None:
        """The top-level run's ``run.finished`` record (None while it runs or if it died)."""
        root = self.root_event
        for ev in reversed(self.typed_events):
            if isinstance(ev, evt.RunFinished) and (root is None or ev.run_id == root.run_id):
                return ev.to_dict()
        return None

    @property
    def root_event(self) -> evt.RunStarted | None:
        """The top-level run's ``run.started``."""
        return next((ev for ev in self.typed_events
                     if isinstance(ev, evt.RunStarted) and ev.parent_run_id is None), None)


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
    trace.writing = writer_alive(trace.path) is True
    return trace


def _with_answer(event: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A ``run.finished`` whose long answer went to a sidecar file gets it back (the head
    written inline stays when the file is gone)."""
    name = event.get("answer_file")  # the writer's own field, kept in the event's ``extra``
    if isinstance(name, str) and "/" not in name and isinstance(event_from_dict(event),
                                                                evt.RunFinished):
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

    for ev in trace.typed_events:
        depth = int(ev.depth or 0)
        pad = " " * (depth * 4)
        run_id = str(ev.run_id)
        match ev:
            case evt.RunStarted():
                ctx = ev.context or {}
                when = datetime.fromtimestamp(float(ev.ts)).strftime("%Y-%m-%d %H:%M:%S")
                title = "Run" if ev.parent_run_id is None else "Child run"
                out.append(f"{pad}{title} {run_id}  {when}")
                out.append(
                    f"{pad}  model {ev.model}  sub-model {ev.sub_model}  sandbox {ev.sandbox}"
                )
                out.append(
                    f"{pad}  context: {ctx.get('type', '?')}, "
                    f"{int(ctx.get('total_chars', 0)):,} chars"
                    f" in {int(ctx.get('n_chunks', 1)):,} chunk(s), sha256 "
                    f"{str(ctx.get('sha256', ''))[:16]}…"
                )
                budget = {k: v for k, v in (ev.budget or {}).items() if v is not None}
                if budget:
                    shown = ", ".join(f"{k}={v}" for k, v in budget.items())
                    out.append(f"{pad}  budget: {shown}")
                out.append(f"{pad}  question: {ev.question}")
            case evt.IterationStarted():
                flush_subcalls(run_id, depth)
                out.append(f"\n{pad}── iteration {ev.iteration}/{ev.max_iterations} ──")
            case evt.ModelResponse():
                out.append(
                    f"{pad}model {ev.model} ({ev.input_tokens:,} in / "
                    f"{ev.output_tokens:,} out tokens, {_money(ev.cost_usd)}, "
                    f"{float(ev.latency_s):.1f}s):"
                )
                if ev.anomaly:
                    out.append(f"{pad}provider anomaly: {ev.anomaly}")
                out.append(_indent(clip(str(ev.text)), depth))
            case evt.ModelCallFailed():
                out.append(
                    f"{pad}model {ev.model} failed after {ev.attempts} attempt(s) "
                    f"({_money(ev.cost_usd)}): {ev.error}"
                )
            case evt.CodeExecuted():
                flush_subcalls(run_id, depth)
                flags = [name for name, on in (("timed_out", ev.timed_out),
                                               ("restarted", ev.restarted)) if on]
                extra = f" [{', '.join(flags)}]" if flags else ""
                out.append(f"{pad}ran block {ev.block} in {float(ev.duration_s):.2f}s{extra}")
                output = str(ev.output)
                if output.strip():
                    out.append(f"{pad}output ({int(ev.output_chars):,} chars):")
                    out.append(_indent(clip(output), depth))
                if ev.error:
                    out.append(f"{pad}error:")
                    out.append(_indent(clip(str(ev.error)), depth))
                if ev.restored:
                    out.append(f"{pad}restored: {', '.join(ev.restored)}")
            case evt.SubcallFinished():
                counts = pending.setdefault(run_id, [0, 0, 0])
                counts[0] += 1
                counts[1] += int(bool(ev.error))
                counts[2] += int(bool(ev.cached))
                if ev.anomaly:
                    out.append(f"{pad}provider anomaly in {ev.call_id}: {ev.anomaly}")
                if subcalls:
                    status = f"error: {ev.error}" if ev.error else ev.response_preview
                    out.append(f"{pad}  · {ev.call_id} {ev.model}: {status}")
            case evt.ToolFinished():
                where = f" (sub-agent {ev.subcall_id})" if ev.subcall_id else ""
                status = f"error: {ev.error}" if ev.error else ev.result_preview
                out.append(f"{pad}tool {ev.tool}{where} in {float(ev.duration_s):.2f}s: {status}")
            case evt.SubcallsRefused():
                out.append(f"{pad}refused {ev.count} sub-call(s): {ev.message}")
            case evt.ChildRunStarted():
                out.append(f"{pad}→ child {ev.child_run_id}: {ev.prompt_preview}")
            case evt.ChildRunFinished():
                out.append(
                    f"{pad}← child {ev.child_run_id} {ev.stop_reason} "
                    f"{_money(ev.cost_usd)}: {ev.answer_preview}"
                )
            case evt.SandboxStarted():
                unsafe = " (UNSAFE: in-process)" if ev.unsafe else ""
                out.append(f"{pad}sandbox {ev.layer}{unsafe} ready in {float(ev.startup_s):.2f}s")
            case evt.SandboxRestarted():
                out.append(f"{pad}sandbox restarted: {ev.reason}")
            case evt.BudgetWarning():
                out.append(f"{pad}budget warning: {ev.resource} at {float(ev.fraction):.0%}")
            case evt.FinalAnswer():
                flush_subcalls(run_id, depth)
                out.append(
                    f"{pad}answer delivered via {ev.source} ({ev.answer_chars:,} chars)"
                )
            case evt.RunFinished():
                flush_subcalls(run_id, depth)
                usage = ev.usage or {}
                out.append(
                    f"\n{pad}── finished: {ev.stop_reason} · "
                    f"{ev.iterations} iteration(s) · {ev.subcalls} sub-call(s) · "
                    f"{usage.get('input_tokens', 0):,} in / "
                    f"{usage.get('output_tokens', 0):,} out tokens · {_money(ev.cost_usd)} · "
                    f"{float(ev.duration_s):.1f}s"
                    + (f" · {ev.tool_calls} tool call(s)" if ev.tool_calls else "")
                )
                if ev.limited_by:
                    out.append(
                        f"{pad}limited by {ev.limited_by}: {ev.subcalls_refused} "
                        f"sub-call(s) refused, {ev.subcalls_failed} failed"
                    )
                if ev.error:
                    out.append(f"{pad}error: {ev.error}")
                if ev.answer:
                    out.append(f"{pad}answer:")
                    out.append(_indent(clip(str(ev.answer)), depth))
    for run_id in list(pending):
        flush_subcalls(run_id, 0)
    if trace.finished is None and trace.writing:
        out.append("\n── still running (a process is writing its trace)")
    elif trace.finished is None:
        out.append("\n── the run did not finish, and no process writes its trace any more "
                   "(killed, crashed, or a copy)")
    if trace.truncated_lines:
        out.append(f"({trace.truncated_lines} unreadable line(s) skipped)")
    return "\n".join(line for line in out if line is not None) + "\n"
