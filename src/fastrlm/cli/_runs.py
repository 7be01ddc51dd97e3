"""``fastrlm runs`` (the run index) and ``fastrlm show RUN`` (one run as a transcript)."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ._exit import ExitCode

if TYPE_CHECKING:
    from ..trace import Trace


def _cut(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


@click.command()
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="How many runs to list, newest first.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run on stdout.")
def runs(limit: int, as_json: bool) -> None:
    """List past runs: question, model, stop reason, cost, time."""
    from ..trace import IndexUnusableError, index_path, list_runs

    try:
        records = list_runs(index_path(), limit=limit)
    except IndexUnusableError as exc:
        click.echo(f"fastrlm: {exc}", err=True)
        sys.exit(int(ExitCode.ERROR))
    if as_json:
        for record in records:
            click.echo(json.dumps(asdict(record), ensure_ascii=False))
        return
    if not records:
        click.echo(f"no runs recorded yet in {index_path()}", err=True)
        return
    width = max(len(r.run_id) for r in records)
    header = (
        f"{'run':<{width}} {'started':<16} {'stop':<15} {'cost':>9} {'time':>7}  "
        f"{'model':<24} question"
    )
    click.echo(header)
    for r in records:
        started = datetime.fromtimestamp(r.started_at).strftime("%Y-%m-%d %H:%M")
        duration = f"{r.duration_s:.1f}s" if r.duration_s is not None else "-"
        click.echo(
            f"{r.run_id:<{width}} {started:<16} {r.stop_reason:<15} {f'${r.cost_usd:.4f}':>9} "
            f"{duration:>7}  {_cut(r.model, 24):<24} {_cut(r.question, 60)}"
        )


def trace_or_exit(run: str) -> tuple[Path, Trace]:
    """The trace that RUN names (id, prefix, ``last``, N or a path), or exit 2 saying why."""
    from ..trace import IndexUnusableError, TraceNotFoundError, read_trace, resolve_run

    try:
        path = resolve_run(run)
        return path, read_trace(path)
    except (TraceNotFoundError, IndexUnusableError, OSError) as exc:
        click.echo(f"fastrlm: {exc}", err=True)
        sys.exit(int(ExitCode.BAD_INPUT))


@click.command()
@click.argument("run", default="last")
@click.option("--subcalls", is_flag=True, help="List every sub-call with its reply preview.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSONL events.")
@click.option(
    "--max-chars",
    type=click.IntRange(min=100),
    default=4000,
    show_default=True,
    help="Clip long model replies and outputs to this many characters.",
)
def show(run: str, subcalls: bool, as_json: bool, max_chars: int) -> None:
    """Print RUN as a readable transcript.

    RUN is a run id or a unique prefix of one, `last` (the default), a number N (the N-th
    newest run: 1 is the last, 2 the one before), or the path of a .jsonl trace.
    """
    from ..trace import render_transcript

    path, trace = trace_or_exit(run)
    if as_json:
        for event in trace.events:
            click.echo(json.dumps(event, ensure_ascii=False))
        return
    click.echo(render_transcript(trace, subcalls=subcalls, max_chars=max_chars), nl=False)
    click.echo(f"(trace: {path})", err=True)
