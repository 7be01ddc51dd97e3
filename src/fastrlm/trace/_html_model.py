"""What the viewer page shows, grouped from a trace's events: runs, root turns, code cells.

:func:`group` reads the events once. A run holds its root turns (iterations); an iteration holds
the model's reply and its code cells in order; a cell holds what happened while it ran (its
sub-calls, summarised with a bounded sample, its child runs and tool calls). Totals per model
(root turns and sub-calls apart) are kept for the cost and token breakdown. It reads typed
events (``Trace.typed_events``: a record's missing fields are already blanks or zeros) and never
raises on odd values in them. :func:`split_fences` and :func:`take_cell` pair
a reply's code fences with the cells that ran them, so the page shows each block once.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from .._foundation import events as evt
from .._foundation.stop import is_limit

#: Sub-calls listed one by one per cell in the page without JavaScript; the rest are counted.
LISTED_SUBCALLS = 100
#: Slowest sub-calls (and first failures) shown with their prompt preview, per cell.
SLOWEST_SUBCALLS = 5

Item = tuple[str, Any]

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*([A-Za-z0-9_+-]*)")
#: Fence languages the REPL runs (as the engine's parser reads replies).
CODE_LANGS = frozenset({"repl", "python", "py", "python3"})


def as_int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def as_float(value: Any) -> float:
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


def stop_state(stop: str) -> str:
    """The badge colour of a stop reason (``running``: a run still going, not a failure)."""
    if stop == "running":
        return "live"
    return "ok" if stop == "final" else "warn" if is_limit(stop) else "bad"


@dataclass(slots=True)
class SubcallRow:
    """A sub-call kept as a sample: its finish and what its start said of the prompt
    (``prompt``: the whole prompt when the trace recorded it, else the preview)."""

    finished: evt.SubcallFinished
    prompt_preview: str
    prompt_chars: int | None
    prompt: str = ""


@dataclass(slots=True)
class ToolCall:
    """A host tool call: its start (its finish stands in when the start was not recorded)."""

    started: evt.ToolStarted | evt.ToolFinished
    finished: evt.ToolFinished | None = None


@dataclass(slots=True)
class Subcalls:
    """Sub-call totals of one cell; keeps a bounded sample so 100,000 calls stay cheap."""

    done: int = 0
    failed: int = 0
    cached: int = 0
    refused: int = 0
    refusals: list[str] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    unfinished: int = 0
    listed: list[SubcallRow] = field(default_factory=list)
    slowest: list[tuple[float, int, SubcallRow]] = field(default_factory=list)
    errors: list[SubcallRow] = field(default_factory=list)

    def add(self, finished: evt.SubcallFinished, started: evt.SubcallStarted | None,
            seq: int) -> None:
        """Count one sub-call; the few kept as samples get their prompt preview joined in
        (built only for those: 100,000 calls make 100,000 counts, not 100,000 rows)."""
        error = finished.error
        self.done += 1
        self.failed += int(bool(error))
        self.cached += int(bool(finished.cached))
        self.input_tokens += as_int(finished.input_tokens)
        self.output_tokens += as_int(finished.output_tokens)
        self.cost_usd += as_float(finished.cost_usd)
        latency = as_float(finished.latency_s)
        self.latency_s += latency
        keep_listed = len(self.listed) < LISTED_SUBCALLS
        keep_error = bool(error) and len(self.errors) < SLOWEST_SUBCALLS
        keep_slow = len(self.slowest) < SLOWEST_SUBCALLS or (latency, seq) > self.slowest[0][:2]
        if not (keep_listed or keep_error or keep_slow):
            return
        call = SubcallRow(finished, started.prompt_preview if started else "",
                          started.prompt_chars if started else None,
                          (started.prompt or started.prompt_preview) if started else "")
        if keep_listed:
            self.listed.append(call)
        if keep_error:
            self.errors.append(call)
        if len(self.slowest) < SLOWEST_SUBCALLS:
            heapq.heappush(self.slowest, (latency, seq, call))
        elif keep_slow:
            heapq.heapreplace(self.slowest, (latency, seq, call))


@dataclass(slots=True)
class Cell:
    """One code block the REPL ran (``event`` is its ``code.executed``; ``None`` while it runs
    or when the process died in it) and what happened during it, in order."""

    event: evt.CodeExecuted | None = None
    items: list[Item] = field(default_factory=list)
    subcalls: Subcalls | None = None

    def calls(self) -> Subcalls:
        if self.subcalls is None:
            self.subcalls = Subcalls()
            self.items.append(("subcalls", self.subcalls))
        return self.subcalls


@dataclass(slots=True)
class Iteration:
    number: int
    max_iterations: int | None = None
    response: evt.ModelResponse | None = None
    failure: evt.ModelCallFailed | None = None
    cells: list[Cell] = field(default_factory=list)
    running: Cell | None = None
    tail: list[Item] = field(default_factory=list)

    def cell(self) -> Cell:
        """The cell running now (opened by the first thing it does)."""
        if self.running is None:
            self.running = Cell()
        return self.running

    def close(self, event: evt.CodeExecuted | None) -> None:
        cell = self.running or Cell()
        cell.event = event
        self.cells.append(cell)
        self.running = None

    def note(self, item: Item) -> None:
        """Something that happened in this turn: inside the running cell if there is one."""
        (self.running.items if self.running is not None else self.tail).append(item)


@dataclass(slots=True)
class Run:
    run_id: str
    started: evt.RunStarted | None = None
    finished: evt.RunFinished | None = None
    sandbox: evt.SandboxStarted | None = None
    iterations: list[Iteration] = field(default_factory=list)
    warnings: list[evt.BudgetWarning] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)  # RLM(candidates=k): the search's
    subcalls: int = 0
    pending: dict[str, Subcalls] = field(default_factory=dict)  # call_id -> its cell's
    tools: dict[str, ToolCall] = field(default_factory=dict)  # call_id -> its tool call

    def current(self) -> Iteration:
        if not self.iterations:
            self.iterations.append(Iteration(0))
        return self.iterations[-1]


@dataclass(slots=True)
class ModelTotals:
    """What one model did in one role (``root`` turns or ``sub`` calls) across the run tree."""

    calls: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0

    def add(self, ev: evt.ModelResponse | evt.ModelCallFailed | evt.SubcallFinished) -> None:
        self.calls += 1
        # a root turn that got no answer is a failure whatever its error says
        self.failed += int(isinstance(ev, evt.ModelCallFailed)
                           or (isinstance(ev, evt.SubcallFinished) and bool(ev.error)))
        self.input_tokens += as_int(ev.input_tokens)
        self.output_tokens += as_int(ev.output_tokens)
        self.cost_usd += as_float(ev.cost_usd)
        if not isinstance(ev, evt.ModelCallFailed):  # it records no latency
            self.seconds += as_float(ev.latency_s)


@dataclass(slots=True)
class Grouped:
    runs: dict[str, Run]
    tops: list[str]  # top-level runs, in order of appearance
    models: dict[tuple[str, str], ModelTotals]  # (role, model) -> totals


def group(events: list[evt.Event]) -> Grouped:
    """Runs by id, top-level run ids, and per-model totals of a trace's events."""
    runs: dict[str, Run] = {}
    tops: list[str] = []
    models: dict[tuple[str, str], ModelTotals] = {}
    starts: dict[tuple[str, str], evt.SubcallStarted] = {}
    seq = count()

    def totals(role: str,
               ev: evt.ModelResponse | evt.ModelCallFailed | evt.SubcallFinished) -> None:
        key = (role, str(ev.model or "?"))
        if key not in models:
            models[key] = ModelTotals()
        models[key].add(ev)

    for ev in events:
        run_id = str(ev.run_id)
        run = runs.get(run_id)
        if run is None:
            run = runs[run_id] = Run(run_id)
            if not isinstance(ev, evt.RunStarted) or ev.parent_run_id is None:
                tops.append(run_id)
        # the sub-call events first: a fan-out makes them nearly all of a trace
        if isinstance(ev, evt.SubcallStarted):
            call_id = str(ev.call_id)
            starts[(run_id, call_id)] = ev
            run.pending[call_id] = run.current().cell().calls()
        elif isinstance(ev, evt.SubcallFinished):
            call_id = str(ev.call_id)
            start = starts.pop((run_id, call_id), None)
            calls = run.pending.pop(call_id, None) or run.current().cell().calls()
            calls.add(ev, start, next(seq))
            run.subcalls += 1
            totals("sub", ev)
        elif isinstance(ev, evt.RunStarted):
            run.started = ev
            parent = runs.get(str(ev.parent_run_id))
            if ev.candidate is not None and parent is not None:
                parent.candidates.append(run_id)
        elif isinstance(ev, evt.SandboxStarted):
            run.sandbox = ev
        elif isinstance(ev, evt.IterationStarted):
            if run.iterations and run.current().running is not None:
                run.current().close(None)
            run.iterations.append(
                Iteration(as_int(ev.iteration), as_int(ev.max_iterations) or None)
            )
        elif isinstance(ev, evt.ModelResponse):
            run.current().response = ev
            totals("root", ev)
        elif isinstance(ev, evt.ModelCallFailed):
            run.current().failure = ev
            totals("root", ev)
        elif isinstance(ev, evt.CodeExecuted):
            run.current().close(ev)
        elif isinstance(ev, evt.SubcallsRefused):
            calls = run.current().cell().calls()
            calls.refused += as_int(ev.count)
            if len(calls.refusals) < SLOWEST_SUBCALLS:
                calls.refusals.append(str(ev.message or ev.reason or ""))
        elif isinstance(ev, evt.ChildRunStarted):
            child_id = str(ev.child_run_id)
            runs.setdefault(child_id, Run(child_id))
            if child_id not in run.children:
                run.children.append(child_id)
                run.current().cell().items.append(("child", child_id))
        elif isinstance(ev, evt.ChildRunFinished):
            runs.setdefault(str(ev.child_run_id), Run(str(ev.child_run_id)))
        elif isinstance(ev, evt.ToolStarted):
            tool = ToolCall(ev)
            run.tools[str(ev.call_id)] = tool
            run.current().note(("tool", tool))
        elif isinstance(ev, evt.ToolFinished):
            known = run.tools.get(str(ev.call_id))
            if known is None:  # its start was not recorded: the finish alone tells enough
                known = run.tools[str(ev.call_id)] = ToolCall(ev)
                run.current().note(("tool", known))
            known.finished = ev
        elif isinstance(ev, evt.SandboxRestarted):
            run.current().note(("restart", ev))
        elif isinstance(ev, evt.BudgetWarning):
            run.warnings.append(ev)
            run.current().note(("warning", ev))
        elif isinstance(ev, evt.FinalAnswer):
            run.current().tail.append(("final", ev))
        elif isinstance(ev, evt.RunFinished):
            run.finished = ev
    for run in runs.values():
        for calls in run.pending.values():
            calls.unfinished += 1
        if run.iterations and run.current().running is not None:
            run.current().close(None)
    return Grouped(runs, tops, models)


def split_fences(text: str) -> list[tuple[bool, str, str]]:
    """``(is_code, lang, text)`` pieces of a reply in order; an unclosed fence runs to the end."""
    pieces: list[tuple[bool, str, str]] = []
    prose: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            prose.append(lines[i])
            i += 1
            continue
        fence, lang = match.group(1), match.group(2)
        end = i + 1
        while end < len(lines):
            stripped = lines[end].strip()
            if stripped and set(stripped) == {fence[0]} and len(stripped) >= len(fence):
                break
            end += 1
        if prose:
            pieces.append((False, "", "\n".join(prose)))
            prose = []
        pieces.append((True, lang, "\n".join(lines[i + 1:end])))
        i = end + 1
    if prose:
        pieces.append((False, "", "\n".join(prose)))
    return pieces


def take_cell(chunk: str, lang: str, cells: list[Cell]) -> Cell | None:
    """The cell that ran this fence: the one with the same code, else the next one in order
    when the fence is a code fence (``repl``, ``python``, ...). Removed from ``cells``."""
    ran = [c for c in cells if c.event is not None]
    for cell in ran:
        if cell.event is not None and str(cell.event.code).strip() == chunk.strip():
            cells.remove(cell)
            return cell
    if lang.lower() in CODE_LANGS and ran:
        cells.remove(ran[0])
        return ran[0]
    return None
