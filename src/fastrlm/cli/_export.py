"""``fastrlm export``: runs as training data (SFT JSONL, sub-calls) or an evaluation log."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from ._common import fail


def _epoch(value: str | None, flag: str) -> float | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{flag} takes a date or time such as 2026-12-01 or 2026-12-01T09:30, "
             f"not {value!r}")
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@click.command()
@click.argument("runs", nargs=-1)
@click.option("--format", "fmt",
              type=click.Choice(["sft", "sft-turns", "subcalls", "eval", "inspect"]),
              default="sft", show_default=True,
              help="sft: one chat example per run; sft-turns: one per root turn; subcalls: one "
              "per sub-call; eval: one evaluation line per run; inspect: an inspect_ai "
              "evaluation log (.json, log format version 2), one sample per run.")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here (default: stdout).")
@click.option("--stop-reason", "stop_reasons", multiple=True,
              help="Only runs that stopped so (final, max_iterations, budget_usd, ..., "
              "unfinished). Repeatable.")
@click.option("--model", "models", multiple=True, help="Only runs of this root model. "
              "Repeatable.")
@click.option("--since", default=None, help="Only runs started at or after this (ISO date).")
@click.option("--until", default=None, help="Only runs started before this (ISO date).")
@click.option("--scores", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="JSONL of results naming a run (run_id, trace_id or trace_path, "
              "as a traced `fastrlm bench` results file does) and its score: the score label.")
@click.option("--min-score", type=float, default=None,
              help="Only runs with a score at least this (needs --scores).")
def export(runs: tuple[str, ...], fmt: str, out: Path | None, stop_reasons: tuple[str, ...],
           models: tuple[str, ...], since: str | None, until: str | None,
           scores: Path | None, min_score: float | None) -> None:
    """Write RUNS as training data or an evaluation log, one JSON object a line (inspect:
    one inspect_ai log document, readable by `inspect view` and read_eval_log).

    RUNS are ids, unique prefixes, `last`, N (the N-th newest) or trace paths; none means
    every run under FASTRLM_HOME. Chat examples carry their labels in "meta" (run_id, turn,
    stop_reason, score, model) and get the paper's FINAL / FINAL_VAR fix-ups, counted on
    stderr. Chat formats need the run's replay record (traced runs keep one).

    \b
    Examples:
      fastrlm export --format sft-turns --stop-reason final -o turns.jsonl
      fastrlm export --format eval --since 2026-12-01 --model openai/gpt-5
      fastrlm export --format inspect --scores results.jsonl -o runs.json
    """
    from ..trace import (
        ExportFilter,
        TraceNotFoundError,
        export_runs,
        load_scores,
        resolve_run,
        traces_dir,
    )

    if fmt == "inspect" and out is not None and out.suffix != ".json":
        fail(f"--format inspect writes inspect_ai's .json log format, which inspect_ai "
             f"recognises by the file's suffix: name the file {out.with_suffix('.json').name}")
    if min_score is not None and scores is None:
        fail("--min-score reads the scores from --scores FILE: give it")
    try:
        paths = ([resolve_run(ref) for ref in runs] if runs else
                 sorted(traces_dir().glob("*.jsonl")))
    except TraceNotFoundError as exc:
        fail(str(exc))
    try:
        score_map = load_scores(scores) if scores is not None else None
    except (OSError, ValueError) as exc:
        fail(str(exc))
    filters = ExportFilter(
        stop_reasons=frozenset(stop_reasons) or None, models=frozenset(models) or None,
        since=_epoch(since, "--since"), until=_epoch(until, "--until"), min_score=min_score)
    handle = out.open("w", encoding="utf-8") if out is not None else sys.stdout
    try:
        report = export_runs(paths, fmt, handle, filters=filters, scores=score_map)
    finally:
        if out is not None:
            handle.close()
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(report.skipped.items()))
    fixes = ", ".join(f"{n} {kind}" for kind, n in sorted(report.fixups.items())) or "none"
    click.echo(f"exported {report.examples} example(s) from {report.exported} of "
               f"{report.runs} run(s)" + (f" (left out: {skipped})" if skipped else "")
               + f"; fix-ups: {fixes}", err=True)
