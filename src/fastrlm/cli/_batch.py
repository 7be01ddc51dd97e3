"""``fastrlm batch JOBS.jsonl --out RESULTS.jsonl``: many questions, locally or on Ray.

Each job line is run (at most ``--max-concurrent-runs`` at once, at most ``--provider-concurrency``
LM calls per provider across all of them) and its result line appended to ``--out`` as it
finishes; a re-run skips the ids already there. Progress goes to stderr, one summary line at
the end. ``--batch-max-usd`` is the whole batch's total; ``--job-max-usd`` caps each job.
``--max-usd`` still means the batch total for this release (deprecated: it will cap each job,
as it caps each run in ``fastrlm ask``).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

import click

from .._foundation.errors import ConfigurationError
from .._foundation.validate import BATCH_RULES, BUDGET_RULES
from ._common import fail, price_table_or_exit, settings_or_exit
from ._exit import ExitCode
from ._options import (
    Checked,
    KeyedParam,
    concurrent_runs,
    concurrent_runs_option,
    load_options,
    run_options,
)
from ._runner import _run_cancellable

if TYPE_CHECKING:
    from ..context import LoadLimits

#: How often the progress line is rewritten (seconds; a non-terminal gets a line this often).
PROGRESS_EVERY_S = {True: 0.5, False: 10.0}


class ProviderLimit(KeyedParam):
    """``N`` (every provider) or ``PROVIDER=N``."""

    name = "limit"
    metavar = "[PROVIDER=]N"

    def parse(self, value: str, key: str | None, rest: str,
              fail: Callable[[str], NoReturn]) -> tuple[str | None, int]:
        try:
            n = int(rest)
        except ValueError:
            n = 0
        if n < 1 or key == "":
            fail(f"{value!r} is not N or PROVIDER=N with N >= 1, e.g. 16 or openai=8")
        return (key or None, n)


@click.command("batch")
@click.argument("jobs_path", metavar="JOBS.jsonl",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Results JSONL: one line per job, appended as each finishes; a re-run "
              "skips the ids already there.")
@run_options
@load_options
@click.option("--batch-max-usd", type=Checked(BUDGET_RULES["max_usd"]), default=None,
              help="Most the whole batch may spend (USD): no job starts once it is spent, and "
              "each job is capped by what is left.")
@click.option("--job-max-usd", type=Checked(BUDGET_RULES["max_usd"]), default=None,
              help="Most one job may spend (USD); capped by what is left of --batch-max-usd.")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local",
              show_default=True,
              help="local: asyncio in this process; ray: one Ray task per job "
              "(pip install 'fastrlm[ray]').")
@click.option("--ray-address", default=None, envvar="RAY_ADDRESS",
              help="Ray cluster to join (default: a local Ray started for this command). "
              "[env: RAY_ADDRESS]")
@concurrent_runs_option(8, "Jobs running at once.")
@click.option("--provider-concurrency", "provider_limits", type=ProviderLimit(), multiple=True,
              help="LM calls in flight at once per provider, across every job (and every Ray "
              "worker): N for each provider, or PROVIDER=N; repeatable. [default: 16]")
@click.option("--retries", type=Checked(BATCH_RULES["retries"]), default=0, show_default=True,
              help="Re-runs of a job that ended with a provider error.")
@click.option("--worker-retries", type=Checked(BATCH_RULES["worker_retries"]), default=3,
              show_default=True,
              help="Ray: re-runs of a job whose worker died.")
@click.option("--cpus-per-job", type=Checked(BATCH_RULES["cpus_per_job"]), default=1.0,
              show_default=True, help="Ray: CPUs reserved per job (jobs are I/O bound; 0.25 "
              "runs four per core).")
@click.option("--rerun-errors", is_flag=True,
              help="Also re-run the jobs whose result line is an error.")
@click.option("--no-trace", is_flag=True, help="Write no traces.")
@click.option("-q", "--quiet", is_flag=True, help="No progress line (the summary stays).")
def batch(
    jobs_path: Path,
    out: Path,
    flags: dict[str, Any],
    batch_max_usd: float | None,
    job_max_usd: float | None,
    backend: str,
    ray_address: str | None,
    max_concurrent_runs: int | None,
    deprecated_concurrency: int | None,
    provider_limits: tuple[tuple[str | None, int], ...],
    retries: int,
    worker_retries: int,
    cpus_per_job: float,
    rerun_errors: bool,
    no_trace: bool,
    quiet: bool,
    load_limits: LoadLimits,
) -> None:
    """Run every job of JOBS.jsonl (one JSON object a line) and write RESULTS.jsonl.

    \b
    A job line:
      {"id": "c1", "question": "Who signs?", "context_path": "contracts/1.pdf"}
      {"question": "Late fees?", "context": "inline text", "budget": {"max_iterations": 10}}
    Optional keys: id (default: a digest of the line), model, sub_model, budget (Budget
    fields), schema (a JSON schema the answer must match). Relative paths are taken from the
    jobs file's folder. The budget flags (--max-iterations, --max-subcalls, --max-seconds, ...)
    apply to each job; --batch-max-usd is the whole batch's total, --job-max-usd each job's.
    (--max-usd is still the batch total in this release, with a deprecation note: it will
    cap each job, as in ask.)

    \b
    Examples:
      fastrlm batch jobs.jsonl --out results.jsonl --batch-max-usd 20 --provider-concurrency 8
      fastrlm batch jobs.jsonl --out results.jsonl --backend ray --ray-address auto

    Exit codes: 0 every job answered, 1 some jobs failed (their error lines say why),
    2 bad input, 3 --batch-max-usd stopped new jobs, 130 cancelled (the results file stays valid;
    a re-run resumes).
    """
    from ..jobs import JobError, ResultsFile, read_jobs
    from ..jobs import batch as run_batch

    settings = settings_or_exit(flags)
    prices = price_table_or_exit(settings)
    try:
        jobs = read_jobs(jobs_path)
    except JobError as exc:
        fail(str(exc))
    if not jobs:
        fail(f"{jobs_path} has no jobs (one JSON object a line)")
    per_job = dict(settings.budget)
    max_usd = batch_total(per_job.pop("max_usd", None), batch_max_usd,
                          flag=flags.get("max_usd") is not None)
    if job_max_usd is not None:
        per_job["max_usd"] = job_max_usd
    try:
        from .. import RLM, Budget

        budget = Budget(**per_job)
        limits = settings.make_limits()
        rlm = RLM(model=settings.require_model(), sub_model=settings.sub_model,
                  base_url=settings.base_url, api_key=settings.api_key, budget=budget,
                  limits=limits, sandbox=settings.sandbox, prices=prices, trace=not no_trace)
    except (ConfigurationError, ValueError) as exc:
        fail(str(exc))
    limit_map: dict[str, int] = {"*": 16}
    limit_map.update(("*" if p is None else p, n) for p, n in provider_limits)
    progress = Progress(sys.stderr, enabled=not quiet, max_usd=max_usd)
    results = ResultsFile(out)
    done = results.finished(rerun_errors=rerun_errors)
    try:
        runner = run_batch(
            jobs, rlm, max_usd=max_usd,
            max_concurrent_runs=concurrent_runs(max_concurrent_runs, deprecated_concurrency, 8),
            provider_concurrency=limit_map, retries=retries, backend=backend,
            ray_address=ray_address, worker_retries=worker_retries, cpus_per_job=cpus_per_job,
            skip=done, on_progress=progress, load_limits=load_limits,
        )
    except ConfigurationError as exc:
        fail(str(exc))

    async def go() -> None:
        results.open()
        try:
            async for result in runner:
                results.write(result)
        finally:
            for record in runner.interrupted:  # what the jobs cut short had spent
                results.write(record)
            results.close()
            await rlm.aclose()

    def on_interrupt(count: int) -> None:
        if count >= 2:
            print("\ninterrupted twice: exiting without waiting for cleanup", file=sys.stderr,
                  flush=True)
            os._exit(int(ExitCode.CANCELLED))
        print("\ncancelling the running jobs (Ctrl-C again to leave at once)", file=sys.stderr,
              flush=True)

    try:
        _, interrupted = asyncio.run(_run_cancellable(go, on_interrupt))
    except ConfigurationError as exc:  # the Ray extra missing, a cluster unreachable
        progress.finish(runner.summary)
        fail(str(exc))
    summary = runner.summary
    progress.finish(summary)
    print(summary_line(summary, out), file=sys.stderr, flush=True)
    if interrupted:
        sys.exit(int(ExitCode.CANCELLED))
    if summary.budget_exhausted and summary.not_started:
        flag = "--batch-max-usd" if batch_max_usd is not None else "--max-usd"
        print(f"{flag} reached: {summary.not_started:,} job(s) not started; raise it and "
              "re-run the same command to resume", file=sys.stderr, flush=True)
        sys.exit(int(ExitCode.LIMIT))
    sys.exit(int(ExitCode.ERROR if summary.failed else ExitCode.OK))


def batch_total(old: float | None, total: float | None, *, flag: bool) -> float | None:
    """The batch's dollar total: ``--batch-max-usd``, or (deprecated, for this release)
    ``--max-usd`` (``flag``) or a ``max_usd`` setting, told to move to ``--batch-max-usd``.
    ``--batch-max-usd`` wins over a setting; given with ``--max-usd`` it is refused."""
    if total is not None:
        if flag:
            fail("give the batch total once: --batch-max-usd (--max-usd is its deprecated "
                 "spelling in fastrlm batch; --job-max-usd caps each job)")
        return total
    if old is None:
        return None
    given = f"--max-usd {old:g}" if flag else f"the max_usd setting ({old:g})"
    print(f"fastrlm batch: {given} is taken as the whole batch's total, as before; this "
          "meaning is deprecated: write --batch-max-usd for the total (--job-max-usd for each "
          "job). In the next release it will cap each job, as it caps each run in fastrlm ask.",
          file=sys.stderr, flush=True)
    return old


class Progress:
    """The live progress line on stderr: done / failed / running, spend, ETA."""

    def __init__(self, stream: IO[str], *, enabled: bool, max_usd: float | None) -> None:
        self.stream = stream
        self.enabled = enabled
        self.max_usd = max_usd
        self.tty = stream.isatty()
        self._last = 0.0
        self._shown = False

    def __call__(self, summary: Any) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < PROGRESS_EVERY_S[self.tty]:
            return
        self._last = now
        self._show(summary)

    def _show(self, summary: Any) -> None:
        line = progress_line(summary, self.max_usd)
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._shown = True

    def finish(self, summary: Any) -> None:
        if self.enabled and self.tty and self._shown:
            self._show(summary)
            self.stream.write("\n")
            self.stream.flush()


def progress_line(summary: Any, max_usd: float | None) -> str:
    todo = summary.total - summary.skipped
    spend = f"${summary.spent_usd:.4f}" + (f" of ${max_usd:.2f}" if max_usd is not None else "")
    eta = summary.eta_s()
    return (f"batch: {summary.done + summary.failed:,}/{todo:,} done · {summary.failed:,} failed "
            f"· {summary.running:,} running · {spend}"
            + (f" · ETA {_duration(eta)}" if eta is not None else ""))


def summary_line(summary: Any, out: Path) -> str:
    parts = [f"{summary.done:,} answered", f"{summary.failed:,} failed"]
    if summary.skipped:
        parts.append(f"{summary.skipped:,} already done")
    if summary.not_started:
        parts.append(f"{summary.not_started:,} not started")
    if summary.retried:
        parts.append(f"{summary.retried:,} retried")
    cost = f"${summary.spent_usd:.4f}"
    if summary.lost_usd:
        cost += f" (incl. ~${summary.lost_usd:.4f} estimated for runs lost with their worker)"
    return (f"batch: {' · '.join(parts)} · {cost} · {_duration(summary.elapsed_s)} · "
            f"results: {out}")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
