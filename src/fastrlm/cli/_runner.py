"""Running one RLM from the CLI: signals, progress, machine output, the summary and exit code."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

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
) -> Outcome:
    """Run ``rlm`` on ``question``/``context`` and print what ``mode`` (``text``, ``json``,
    ``stream-json``) asks for. Progress and the summary go to stderr. ``start`` begins the
    run another way than ``rlm.acompletion(question, context)`` (``fastrlm resume``: the
    resumed run), given the event callback."""
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
        print(summary_line(result), file=err, flush=True)
    # What went wrong is not progress: -q hides the summary, never the reason for a non-zero exit.
    if show_summary and result.error:
        print(f"error: {result.error}", file=err, flush=True)
    if show_summary and code is ExitCode.LIMIT and result.stop_reason.value == "final":
        print(degraded_line(result), file=err, flush=True)
    if not quiet and show_summary:
        if code is ExitCode.LIMIT and result.stop_reason.value != "final":
            kind = "partial answer" if result.answer else "no answer"
            print(
                f"stopped early ({result.stop_reason.value}): {kind}; raise the limit with "
                f"--max-usd / --max-subcalls / --max-seconds / --max-iterations",
                file=err,
                flush=True,
            )
        if result.trace_path and Path(result.trace_path).is_file():
            print(
                f"trace: {result.trace_path}  (fastrlm show {result.trace_id})",
                file=err,
                flush=True,
            )
    return Outcome(result, code, result.trace_path, result.trace_id)


def degraded_line(result: RLMResult) -> str:
    """The one-line warning for a FINAL given after the budget refused calls."""
    reason = result.limited_by.value if result.limited_by else "a budget"
    refused = (f"{result.subcalls_refused:,} sub-call(s) refused" if result.subcalls_refused
               else "calls refused")
    return (f"warning: answered with {refused} ({reason}): the answer may be incomplete; "
            f"raise the limit with --max-usd / --max-subcalls / --max-seconds")


def summary_line(result: RLMResult) -> str:
    usage = result.usage
    unpriced = usage.unpriced_models
    cost = f"${result.cost_usd:.4f}"
    if unpriced:
        cost += f" (no price known for {', '.join(unpriced)}: counted as $0)"
    return (
        f"{result.stop_reason.value} · {result.iterations} iteration(s) · "
        f"{result.subcalls:,} sub-call(s) · {usage.input_tokens:,} in / "
        f"{usage.output_tokens:,} out tokens · {cost} · "
        f"{result.duration_s:.1f}s · sandbox {result.sandbox or 'none started'}"
    )
