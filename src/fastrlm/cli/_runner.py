"""Running one RLM from the CLI: signals, progress, machine output, the summary and exit code."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .._foundation.budget import Budget
from .._foundation.errors import RLMError
from .._foundation.events import Event, EventCallback
from .._foundation.text import json_text, well_formed
from ._exit import ExitCode, exit_code_for
from ._progress import RunState, make_progress

if TYPE_CHECKING:
    from .. import RLM, RLMResult
    from ..trace import TraceWriter


@dataclass(slots=True)
class Outcome:
    """What a CLI run ended with: a result, or ``None`` when it was interrupted."""

    result: RLMResult | None
    exit_code: ExitCode
    trace_path: str | None
    run_id: str | None


class EventPrinter:
    """``--stream-json``: one ``event.to_dict()`` JSON object per line on stdout, flushed."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def __call__(self, event: Event) -> None:
        self.stream.write(json_text(event.to_dict(), default=str) + "\n")
        self.stream.flush()


async def _run_cancellable(
    make: Callable[[], Any], on_interrupt: Callable[[int], None]
) -> tuple[Any, bool]:
    """Await ``make()`` as a task; SIGINT/SIGTERM cancel that task (the engine then cancels
    its sub-calls and kills its worker). ``on_interrupt`` gets the count of signals so far.
    Returns (value, interrupted)."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(make())
    interrupted = 0

    def interrupt() -> None:
        nonlocal interrupted
        interrupted += 1
        on_interrupt(interrupted)
        task.cancel()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, interrupt)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread, or no signal support: Ctrl-C raises as usual
    try:
        return await task, False
    except asyncio.CancelledError:
        if not interrupted:
            raise
        return None, True
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def run(
    rlm: RLM,
    question: str,
    context: object,
    *,
    writer: TraceWriter | None,
    mode: str,
    quiet: bool,
    budget: dict[str, Any],
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    extra_json: dict[str, Any] | None = None,
    print_answer: bool = True,
    show_summary: bool = True,
    start: Callable[[EventCallback], Awaitable[RLMResult]] | None = None,
    origin: Mapping[str, str] | None = None,
) -> Outcome:
    """Run ``rlm`` on ``question``/``context`` and print what ``mode`` (``text``, ``json``,
    ``stream-json``) asks for. Progress and the summary go to stderr; a limit stop names the
    one setting that stopped it (``origin``: where each budget setting came from, as
    :class:`~fastrlm.cli._config.Settings` records it). ``start`` begins the run another way
    than ``rlm.acompletion(question, context)`` (``fastrlm resume``: the resumed run), given
    the event callback."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    state = RunState(max_usd=budget.get("max_usd"), max_subcalls=budget.get("max_subcalls"))
    progress = make_progress(state, err, quiet=quiet)
    callbacks: list[Callable[[Event], object]] = []
    if progress is not None:
        callbacks.append(progress)
    else:
        callbacks.append(state.update)
    if mode == "stream-json":
        callbacks.append(EventPrinter(out))

    def on_event(event: Event) -> None:
        for callback in callbacks:
            callback(event)

    async def go() -> RLMResult:
        try:
            if start is not None:
                return await start(on_event)
            return await rlm.acompletion(question, context, on_event=on_event)
        except RLMError as exc:  # a failed run: its partial result picks the exit code
            if exc.result is None:
                raise
            return exc.result
        finally:
            await rlm.aclose()

    def on_interrupt(count: int) -> None:
        if count < 2:
            return
        # A second Ctrl-C while the run cleans up: leave now. The trace is already on disk.
        if progress is not None:
            progress.stop()
        if writer is not None:
            writer.close("cancelled", error="interrupted twice")
        print("\ninterrupted twice: exiting without waiting for cleanup", file=err, flush=True)
        os._exit(int(ExitCode.CANCELLED))

    if progress is not None:
        progress.start()
    try:
        result, interrupted = asyncio.run(_run_cancellable(go, on_interrupt))
    finally:
        if progress is not None:
            progress.stop()
    if interrupted:
        if writer is not None:
            writer.close("cancelled", error="interrupted")
        trace_path = str(writer.path_for(state.root_id)) if writer and state.root_id else None
        if mode == "json":
            payload = {
                "answer": "",
                "stop_reason": "cancelled",
                "partial": True,
                "trace_id": state.root_id or None,
                "trace_path": trace_path,
                "error": "interrupted",
                **(extra_json or {}),
            }
            out.write(json_text(payload) + "\n")
            out.flush()
        if not quiet or mode == "text":
            where = f"; partial trace: {trace_path}" if trace_path else ""
            print(f"cancelled{where}", file=err, flush=True)
        return Outcome(None, ExitCode.CANCELLED, trace_path, state.root_id or None)

    limited_by = result.limited_by.value if result.limited_by else None
    code = exit_code_for(result.stop_reason.value, result.error_kind, limited_by)
    if mode == "json":
        payload = {**result.to_dict(), **(extra_json or {})}
        out.write(json_text(payload) + "\n")
        out.flush()
    elif mode == "text" and result.answer and print_answer:
        out.write(well_formed(result.answer).rstrip("\n") + "\n")
        out.flush()
    if not quiet and show_summary:
        print(summary_line(result, state.iteration), file=err, flush=True)
    # What went wrong is not progress: -q hides the summary, never the reason for a non-zero exit.
    if show_summary and result.error:
        print(f"error: {result.error}", file=err, flush=True)
    if show_summary and code is ExitCode.LIMIT and result.stop_reason.value == "final":
        print(degraded_line(result, budget, origin), file=err, flush=True)
    if not quiet and show_summary:
        if code is ExitCode.LIMIT and result.stop_reason.value != "final":
            kind = "partial answer" if result.answer else "no answer"
            hint = limit_hint(result.stop_reason.value, budget, origin)
            print(f"stopped early ({result.stop_reason.value}): {kind}; {hint}",
                  file=err, flush=True)
        if result.trace_path and Path(result.trace_path).is_file():
            print(
                f"trace: {result.trace_path}  (fastrlm show {result.trace_id})",
                file=err,
                flush=True,
            )
    return Outcome(result, code, result.trace_path, result.trace_id)


#: The budget setting behind each limit a run can stop at (its flag: ``--max-usd`` ...).
LIMIT_SETTINGS = {
    "budget_usd": "max_usd",
    "budget_subcalls": "max_subcalls",
    "budget_requests": "max_requests",
    "timeout": "max_seconds",
    "max_iterations": "max_iterations",
}


def limit_hint(
    reason: str, budget: Mapping[str, Any], origin: Mapping[str, str] | None = None
) -> str:
    """What to change for the one limit ``reason`` names: its flag and value (``--max-usd``,
    ``max_usd = 0.001`` where a config file or variable set it), or the setting behind a limit
    no flag sets."""
    name = LIMIT_SETTINGS.get(reason)
    if name is None:
        if reason == "budget_tokens":
            return "raise Budget(max_input_tokens=..., max_output_tokens=...)"
        if reason == "invalid_output":
            return "no answer matched the requested output type"
        return "see the error above"
    flag = "--" + name.replace("_", "-")
    value = budget.get(name)
    if value is None:
        default = getattr(Budget(), name)
        what = f"its default ({default:g})" if isinstance(default, (int, float)) else "its default"
        return f"the limit was {flag} at {what}: raise it with {flag}"
    shown = f"{value:g}" if isinstance(value, (int, float)) else str(value)
    source = (origin or {}).get(name, "flag")
    if source != "flag":
        return f"the limit was {name} = {shown} from {source}: raise it there or with {flag}"
    return f"the limit was {flag} {shown}: raise it"


def degraded_line(
    result: RLMResult, budget: Mapping[str, Any] | None = None,
    origin: Mapping[str, str] | None = None,
) -> str:
    """The one-line warning for a FINAL given after the budget refused calls, naming the one
    limit that refused them."""
    reason = result.limited_by.value if result.limited_by else "a budget"
    refused = (f"{result.subcalls_refused:,} sub-call(s) refused" if result.subcalls_refused
               else "calls refused")
    return (f"warning: answered with {refused} ({reason}): the answer may be incomplete; "
            f"{limit_hint(reason, budget or {}, origin)}")


def summary_line(result: RLMResult, iterations_started: int | None = None) -> str:
    """The one-line summary of a run. Given the iterations the run announced
    (``iteration.started`` events), a last answer-now turn past them (a limit asked the model
    to answer) is named as such instead of counted as one more iteration. A failed request's
    booking is a worst-case reservation (the request may never have reached the provider):
    the line says how much of the cost is that. An iteration whose model call got no answer
    is named apart from the answered ones."""
    usage = result.usage
    unpriced = usage.unpriced_models
    cost = f"${result.cost_usd:.4f}"
    reserved = usage.failed_usd
    if reserved > 0:
        cost += (f" (of which ${reserved:.4f} is a worst-case reservation for "
                 f"{usage.failed_requests:,} failed request(s), not a charge)")
    if unpriced:
        cost += f" (no price known for {', '.join(unpriced)}: counted as $0)"
    turns = f"{result.iterations} iteration(s)"
    if iterations_started is not None and result.iterations > iterations_started:
        extra = result.iterations - iterations_started
        turns = f"{iterations_started} iteration(s) + {extra} answer-now turn"
    elif iterations_started is not None and result.iterations < iterations_started:
        turns += f" ({iterations_started - result.iterations} more started: no answer)"
    return (
        f"{result.stop_reason.value} · {turns} · "
        f"{result.subcalls:,} sub-call(s) · {usage.input_tokens:,} in / "
        f"{usage.output_tokens:,} out tokens · {cost} · "
        f"{result.duration_s:.1f}s · sandbox {result.sandbox or 'none started'}"
    )
