"""Live progress on stderr: a ``rich`` live view on a terminal, sparse plain lines otherwise.

Both views are event callbacks fed by the engine (synchronously, in its event loop): they only
update counters, and the live view redraws on rich's own refresh thread.
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any

from .._foundation import events as evt

_FENCE = re.compile(r"```(?:repl|python|py)?[ \t]*\n(.*?)```", re.DOTALL)


def first_code_line(text: str, limit: int = 70) -> str:
    """The first meaningful line of the first code block in ``text`` (for a one-line display)."""
    match = _FENCE.search(text)
    code = match.group(1) if match else ""
    for line in code.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


def live_wanted(stream: IO[str], env: dict[str, str] | None = None) -> bool:
    """A live view only on a real terminal, and never with ``NO_COLOR`` or ``TERM=dumb``."""
    environ = os.environ if env is None else env
    if environ.get("NO_COLOR") or environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


@dataclass(slots=True)
class RunState:
    """Counters over the whole run tree, updated from events."""

    max_usd: float | None = None
    max_subcalls: int | None = None
    started: float = field(default_factory=time.monotonic)
    root_id: str = ""
    sandbox: str = ""
    iteration: int = 0
    max_iterations: int = 0
    phase: str = "starting"
    code: str = ""
    in_flight: int = 0
    done: int = 0
    failed: int = 0
    cached: int = 0
    refused: int = 0
    children: int = 0
    tools: int = 0
    tools_failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    retries: int = 0
    warnings: list[str] = field(default_factory=list)
    finished: evt.RunFinished | None = None

    def update(self, ev: evt.Event) -> None:
        root = ev.depth == 0
        if isinstance(ev, evt.RunStarted) and ev.parent_run_id is None:
            self.root_id, self.sandbox, self.phase = ev.run_id, ev.sandbox, "waiting for the model"
        elif isinstance(ev, evt.IterationStarted) and root:
            self.iteration, self.max_iterations = ev.iteration, ev.max_iterations
            self.phase = "waiting for the model"
        elif isinstance(ev, evt.ModelResponse):
            self.input_tokens += ev.input_tokens
            self.output_tokens += ev.output_tokens
            self.cost_usd += ev.cost_usd
            if root:
                self.code = first_code_line(ev.text)
                self.phase = "running code" if self.code else "model replied without code"
        elif isinstance(ev, evt.CodeExecuted) and root:
            self.phase = "waiting for the model"
        elif isinstance(ev, evt.SubcallStarted):
            self.in_flight += 1
        elif isinstance(ev, evt.SubcallFinished):
            self.in_flight = max(self.in_flight - 1, 0)
            self.done += 1
            self.failed += int(ev.error is not None)
            self.cached += int(ev.cached)
            self.input_tokens += ev.input_tokens
            self.output_tokens += ev.output_tokens
            self.cost_usd += ev.cost_usd
        elif isinstance(ev, evt.SubcallsRefused):
            self.refused += ev.count
        elif isinstance(ev, evt.ToolFinished):
            self.tools += 1
            self.tools_failed += int(ev.error is not None)
        elif isinstance(ev, evt.ChildRunStarted):
            self.children += 1
        elif isinstance(ev, evt.ChildRunFinished):
            self.children = max(self.children - 1, 0)
        elif isinstance(ev, evt.BudgetWarning):
            self.warnings.append(f"{ev.resource} at {ev.fraction:.0%} of its budget")
        elif isinstance(ev, evt.SandboxStarted) and root:
            self.sandbox = ev.layer + (" (UNSAFE)" if ev.unsafe else "")
        elif isinstance(ev, evt.SandboxRestarted):
            self.warnings.append(f"sandbox restarted: {ev.reason}")
        elif isinstance(ev, evt.CallRetrying):
            self.retries += 1
            self.warnings.append(retry_text(ev))
        elif isinstance(ev, evt.RunFinished) and ev.run_id == self.root_id:
            self.finished = ev
            self.phase = "finished"

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def cost_text(self) -> str:
        text = f"${self.cost_usd:.4f}"
        if self.max_usd:
            text += f" of ${self.max_usd:g} ({self.cost_usd / self.max_usd:.0%})"
        return text

    def subcall_text(self) -> str:
        cap = f" of {self.max_subcalls:,}" if self.max_subcalls is not None else ""
        text = f"{self.done:,}{cap} done, {self.in_flight:,} in flight, {self.failed:,} failed"
        if self.cached:
            text += f", {self.cached:,} cached"
        if self.refused:
            text += f", {self.refused:,} refused"
        if self.tools:
            failed = f" ({self.tools_failed:,} failed)" if self.tools_failed else ""
            text += f" · {self.tools:,} tool call(s){failed}"
        return text


def retry_text(ev: evt.CallRetrying) -> str:
    """One line for a request about to be retried: which call, why, and when."""
    call = "sub-call" if ev.subcall else "root call"
    return (f"{call} to {ev.model} failed (attempt {ev.attempt}), retrying in {ev.wait_s:.1f}s: "
            f"{ev.error}")


class PlainProgress:
    """A few lines per iteration on a non-terminal stderr (CI logs, pipes, NO_COLOR)."""

    def __init__(self, state: RunState, stream: IO[str] | None = None) -> None:
        self.state = state
        self.stream = stream or sys.stderr

    def _say(self, text: str) -> None:
        print(f"[{self.state.elapsed:6.1f}s] {text}", file=self.stream, flush=True)

    def __call__(self, ev: evt.Event) -> None:
        s = self.state
        s.update(ev)
        if isinstance(ev, evt.RunStarted) and ev.parent_run_id is None:
            self._say(
                f"run {ev.run_id}: root {ev.model}, sub-calls {ev.sub_model or '-'}, "
                f"sandbox {ev.sandbox}"
            )
        elif isinstance(ev, evt.SandboxStarted) and ev.depth == 0:
            self._say(f"sandbox {s.sandbox} ready in {ev.startup_s:.2f}s")
        elif isinstance(ev, evt.IterationStarted) and ev.depth == 0:
            self._say(f"iteration {ev.iteration}/{ev.max_iterations}")
        elif isinstance(ev, evt.ModelResponse) and ev.depth == 0 and s.code:
            self._say(f"  running: {s.code}")
        elif isinstance(ev, evt.CodeExecuted) and ev.depth == 0:
            status = "error" if ev.error else ("timed out" if ev.timed_out else "ok")
            self._say(
                f"  cell {status} in {ev.duration_s:.2f}s · sub-calls {s.subcall_text()}"
                f" · {s.cost_text()}"
            )
        elif isinstance(ev, (evt.BudgetWarning, evt.SandboxRestarted, evt.CallRetrying)):
            self._say(f"  warning: {s.warnings[-1]}")
        elif isinstance(ev, evt.SubcallsRefused):
            self._say(f"  refused {ev.count} sub-call(s): {ev.message}")

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None


class LiveProgress:
    """A ``rich`` live panel redrawn a few times a second while the run goes."""

    def __init__(self, state: RunState, stream: IO[str] | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.state = state
        self.console = Console(file=stream or sys.stderr)
        self.live = Live(self, console=self.console, refresh_per_second=8, transient=True)

    def __call__(self, ev: evt.Event) -> None:
        self.state.update(ev)

    def __rich__(self) -> Any:
        from rich.table import Table

        s = self.state
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold cyan", justify="right")
        grid.add_column()
        it = f"{s.iteration}/{s.max_iterations}" if s.iteration else "-"
        grid.add_row("iteration", f"{it} · {s.phase} · sandbox {s.sandbox or '…'}")
        if s.code:
            grid.add_row("code", f"[green]{_escape(s.code)}[/green]")
        grid.add_row(
            "sub-calls", s.subcall_text() + (f" · {s.children} child runs" if s.children else "")
        )
        grid.add_row("tokens", f"{s.input_tokens:,} in / {s.output_tokens:,} out")
        grid.add_row("cost", s.cost_text())
        grid.add_row("elapsed", f"{s.elapsed:.1f}s")
        for warning in s.warnings[-2:]:
            grid.add_row("[yellow]warning[/yellow]", _escape(warning))
        return grid

    def start(self) -> None:
        self.live.start()

    def stop(self) -> None:
        self.live.stop()


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def make_progress(
    state: RunState, stream: IO[str], *, quiet: bool
) -> PlainProgress | LiveProgress | None:
    if quiet:
        return None
    return LiveProgress(state, stream) if live_wanted(stream) else PlainProgress(state, stream)
