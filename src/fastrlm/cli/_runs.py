"""``fastrlm runs`` (the run index: list, search, filter, export, delete) and ``fastrlm show RUN``
(one run as a transcript)."""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._foundation.stop import StopReason
from .._foundation.text import json_text
from ._common import fail
from ._exit import ExitCode

if TYPE_CHECKING:
    from ..trace import RunRecord, Trace


def _cut(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


#: ``--since 2h`` / ``--until 30m`` ...: a span back from now.
_SPAN = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_SPAN_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_STOPS = sorted({*(reason.value for reason in StopReason), "running"})


class When(click.ParamType):  # type: ignore[type-arg, unused-ignore]
    """A point in time: a date (``2026-12-07``), a local date and time (``2026-12-07T14:30``)
    or a span back from now (``30m``, ``2h``, ``7d``, ``1w``); the value is a Unix time."""

    name = "when"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip()
        span = _SPAN.match(text.lower())
        if span:
            return time.time() - float(span.group(1)) * _SPAN_SECONDS[span.group(2)]
        try:
            return datetime.fromisoformat(text).timestamp()
        except ValueError:
            self.fail(f"{text!r} is not a date (2026-12-07), a date and time "
                      "(2026-12-07T14:30) or a span back from now (30m, 2h, 7d, 1w)", param, ctx)


def _session_cell(record: RunRecord) -> str:
    if not record.session_id:
        return "-"
    return f"{record.session_id[:8]}#{record.session_question}"


@click.command()
@click.argument("run_refs", nargs=-1, metavar="[RUN]...")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=None,
              help="How many runs, newest first [default: 20 to list, all to export or delete].")
@click.option("-q", "--query", "text", metavar="TEXT",
              help="Runs whose question, answer or error contains TEXT (any case).")
@click.option("-m", "--model", metavar="NAME",
              help="Runs whose root or sub-model name contains NAME.")
@click.option("--stop", "stop_reason", type=click.Choice(_STOPS),
              help="Runs that ended this way (running: not finished, or killed).")
@click.option("--since", type=When(), help="Started at or after: 2026-12-07, 2026-12-07T14:30, "
              "or a span back from now (30m, 2h, 7d).")
@click.option("--until", type=When(), help="Started before (the same forms as --since).")
@click.option("--session", metavar="ID",
              help="The questions of one chat session (its id or a prefix: see the session "
              "column).")
@click.option("--min-cost", type=click.FloatRange(min=0), metavar="USD",
              help="Runs that cost at least this.")
@click.option("--max-cost", type=click.FloatRange(min=0), metavar="USD",
              help="Runs that cost at most this.")
@click.option("--by-session", is_flag=True,
              help="One line per chat session (its questions, cost and time together); "
              "runs outside a session keep a line each.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run on stdout.")
@click.option("--export", "export_to", type=click.Path(dir_okay=False, allow_dash=True),
              metavar="FILE", help="Write the runs (index row and every trace event) to FILE "
              "as JSON lines, one run a line ('-': stdout).")
@click.option("--delete", is_flag=True,
              help="Delete the runs: their index rows and trace files. Needs RUN ids or a "
              "filter, and --yes where stdin is not a terminal.")
@click.option("-y", "--yes", is_flag=True, help="Delete without asking.")
def runs(run_refs: tuple[str, ...], limit: int | None, text: str | None, model: str | None,
         stop_reason: str | None, since: float | None, until: float | None,
         session: str | None, min_cost: float | None, max_cost: float | None,
         by_session: bool, as_json: bool, export_to: str | None, delete: bool,
         yes: bool) -> None:
    """List, search, export or delete past runs: question, model, stop reason, cost, time.

    RUN ids (or prefixes) and the filters narrow the runs; they combine (all must match).

    \b
    Examples:
      fastrlm runs -q lisbon --since 7d        # search the last week's runs
      fastrlm runs --stop budget_usd -m gpt-5  # runs a budget stopped, on a gpt-5 model
      fastrlm runs --by-session                # chat sessions, one line each
      fastrlm runs --session 3f2a --export s.jsonl
      fastrlm runs --until 30d --delete --yes  # forget runs older than 30 days
    """
    from ..trace import IndexUnusableError, RunFilter, index_path, list_runs

    where = RunFilter(text=text, model=model, stop_reason=stop_reason, since=since,
                      until=until, session=session, min_cost=min_cost, max_cost=max_cost,
                      run_ids=run_refs)
    if delete and export_to is not None:
        fail("--delete and --export are separate steps: export first, then delete")
    if delete and not where.narrows:
        fail("--delete needs the runs to delete: RUN ids or a filter (-q, --model, --stop, "
             "--since, --until, --session, --min-cost, --max-cost)")
    acting = delete or export_to is not None
    try:
        records = list_runs(index_path(), where=where,
                            limit=limit if limit is not None or acting else 20)
    except IndexUnusableError as exc:
        fail(str(exc), ExitCode.ERROR)
    if export_to is not None:
        _export(records, export_to)
    elif delete:
        _delete(records, yes)
    elif as_json:
        for record in records:
            click.echo(json.dumps(asdict(record), ensure_ascii=False))
    elif not records:
        what = "no runs match" if where.narrows else "no runs recorded yet"
        click.echo(f"{what} in {index_path()}", err=True)
    elif by_session:
        _print_sessions(records)
    else:
        _print_runs(records)


def _print_runs(records: list[RunRecord]) -> None:
    width = max(len(r.run_id) for r in records)
    click.echo(f"{'run':<{width}} {'started':<16} {'stop':<15} {'cost':>9} {'time':>7}  "
               f"{'session':<11} {'model':<24} question")
    for r in records:
        started = datetime.fromtimestamp(r.started_at).strftime("%Y-%m-%d %H:%M")
        duration = f"{r.duration_s:.1f}s" if r.duration_s is not None else "-"
        click.echo(
            f"{r.run_id:<{width}} {started:<16} {r.stop_reason:<15} {f'${r.cost_usd:.4f}':>9} "
            f"{duration:>7}  {_session_cell(r):<11} {_cut(r.model, 24):<24} "
            f"{_cut(r.question, 60)}"
        )


def _print_sessions(records: list[RunRecord]) -> None:
    """One line per session (newest first), a run outside any session a line of its own."""
    groups: dict[str, list[RunRecord]] = {}
    for r in records:
        groups.setdefault(r.session_id or r.run_id, []).append(r)
    width = max(len(key) for key in groups)
    click.echo(f"{'session / run':<{width}} {'started':<16} {'questions':>9} {'cost':>9} "
               f"{'time':>8}  {'model':<24} first question")
    for key, group in groups.items():
        first = min(group, key=lambda r: r.started_at)
        started = datetime.fromtimestamp(first.started_at).strftime("%Y-%m-%d %H:%M")
        cost = sum(r.cost_usd for r in group)
        duration = sum(r.duration_s or 0.0 for r in group)
        click.echo(f"{key:<{width}} {started:<16} {len(group):>9} {f'${cost:.4f}':>9} "
                   f"{f'{duration:.1f}s':>8}  {_cut(first.model, 24):<24} "
                   f"{_cut(first.question, 50)}")


def _export(records: list[RunRecord], target: str) -> None:
    """Each run as one JSON line: its index row, and its trace's events (``events``; empty
    with ``trace_missing`` when the file is gone)."""
    from ..trace import read_trace

    with click.open_file(target, "w", encoding="utf-8") as out:
        for record in records:
            line: dict[str, Any] = asdict(record)
            try:
                line["events"] = read_trace(Path(record.trace_path)).events
            except OSError:
                line["events"], line["trace_missing"] = [], True
            out.write(json_text(line) + "\n")
    if target != "-":
        click.echo(f"exported {len(records):,} run(s) to {target}", err=True)


def _delete(records: list[RunRecord], yes: bool) -> None:
    from ..trace import IndexUnusableError, delete_runs, index_path

    if not records:
        click.echo(f"no runs match in {index_path()}: nothing deleted", err=True)
        return
    if not yes:
        if not sys.stdin.isatty():
            fail(f"{len(records):,} run(s) match: add --yes to delete them (stdin is not a "
                 "terminal, so there is no one to ask)")
        _print_runs(records)
        if not click.confirm(f"delete these {len(records):,} run(s) and their traces?",
                             err=True):
            click.echo("nothing deleted", err=True)
            return
    try:
        removed = delete_runs(index_path(), records)
    except (IndexUnusableError, OSError) as exc:
        fail(str(exc), ExitCode.ERROR)
    click.echo(f"deleted {len(records):,} run(s) and {len(removed):,} trace file(s)", err=True)


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
    text = render_transcript(trace, subcalls=subcalls, max_chars=max_chars)
    # ends its last line: on a terminal the stderr note would be glued to the answer
    click.echo(text if text.endswith("\n") else text + "\n", nl=False)
    click.echo(f"(trace: {path})", err=True)
