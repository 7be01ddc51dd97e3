"""``fastrlm bench``: run one task over one or more methods and write results, table and plot.

Writes ``OUT/results.jsonl`` (one line per instance x method, appended as they finish; a rerun
resumes), ``OUT/summary.md`` and ``OUT/summary.json`` (per method and length) and
``OUT/score_vs_length.png``. The summary table also goes to stdout, followed by the paths written;
the progress bar to stderr. A ``--scripted`` run says once that its scores measure plumbing only.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from pathlib import Path
from typing import Any

import click

from .. import Price, PriceTable, RLMError
from .._foundation.validate import count
from ..cli._options import (
    Checked,
    as_table,
    budget_options,
    concurrent_runs,
    concurrent_runs_option,
    sandbox_option,
    unpriced_help,
)
from ._config import METHODS, BenchConfig, model_names
from ._estimate import estimate
from ._grid import cost_score_svg, format_grid, grid_cells
from ._report import format_table, plot, summarize
from ._runner import load_results, resolve_seed, run_bench
from ._tasks import TASKS, get_task

_SUFFIX = {"": 1, "k": 1024, "m": 1024**2}
_DECIMAL = {"": 1, "k": 1000, "m": 1000**2}
#: How far a K/M label may sit from a power of two and still name it: the paper writes 2^17 as
#: "131K" and 2^23 as "8.5M" (labels rounded to two or three figures).
POWER_OF_TWO_SLACK = 0.03
GENERATED_NOTE = (
    "Note: a generated task. A program that knows the generator's vocabularies solves it at "
    "every length and seed, so these scores measure the harness, scale and cost, not the "
    "paper's Table 1 (run the real data sets with --data for that)."
)
SCRIPTED_NOTE = (
    "Note: --scripted uses offline scripted models with fixed placeholder answers; these scores "
    "measure the harness's plumbing only, not any model."
)


def parse_length(text: str) -> int:
    """A length in tokens: ``"8192"`` (exact), ``"2^17"``, or a K/M label as the paper writes
    them, which names a power of two (``"8K"`` 8,192, ``"131K"`` 131,072, ``"1M"`` 1,048,576,
    ``"4.2M"`` 4,194,304, ``"8.5M"`` 8,388,608) when its decimal or binary reading is within
    :data:`POWER_OF_TWO_SLACK` of one; other labels read in binary units (``"10M"`` 10,485,760).
    Raises ``click.BadParameter`` for anything else."""
    t = text.strip().lower()
    if "^" in t:
        base, exp = t.split("^", 1)
        if not (base.isdigit() and exp.isdigit()):
            raise click.BadParameter(
                f"not a length: {text!r}; write tokens as 131072, 131K, 8.5M or 2^17"
            )
        return int(int(base) ** int(exp))
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([km]?)", t)
    if not m:
        raise click.BadParameter(
            f"not a length: {text!r}; write tokens as 131072, 131K, 8.5M or 2^17"
        )
    number, suffix = float(m.group(1)), m.group(2)
    binary = int(number * _SUFFIX[suffix])
    if not suffix:
        return binary
    for reading in (binary, number * _DECIMAL[suffix]):
        power = int(2 ** round(math.log2(max(reading, 1))))
        if abs(reading - power) <= POWER_OF_TWO_SLACK * power:
            return power
    return binary


def latest_seed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per task, the records of the last seed run (what a rerun into that directory resumes),
    so a grid does not pool runs of different seeds."""
    last: dict[str, Any] = {}
    for r in records:
        last[str(r.get("task"))] = r.get("seed")
    return [r for r in records if r.get("seed") == last[str(r.get("task"))]]


def _split(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


@click.command("bench")
@click.argument("task", type=click.Choice(sorted(TASKS)))
@click.option(
    "--method",
    "methods",
    multiple=True,
    default=("rlm",),
    show_default=True,
    help=f"Comma-separated or repeated; 'all' = {', '.join(METHODS)}.",
)
@click.option("--model", default="openai/gpt-5", show_default=True, help="Root model.")
@click.option(
    "--sub-model",
    default=None,
    help="Sub-call model (default: gpt-5-mini for openai/gpt-5, else the root model).",
)
@click.option(
    "--summarizer",
    default=None,
    help="Summary agent's compactor (default: gpt-5-nano for openai/gpt-5, else the sub-model).",
)
@click.option("--lengths", default=None,
              help="Context lengths in tokens, e.g. 8K,32K,131K,1M or 2^13 (K/M labels near a "
              "power of two mean it: 131K = 131,072).")
@click.option("--n", type=Checked(count(1, optional=True)), default=None,
              help="Instances per length (default: the paper's).")
@click.option("--seed", type=int, default=None,
              help="Generator seed (default: the seed of the run already in --out, so a rerun "
              "resumes it; else a fresh random one, printed and recorded in every results line, "
              "so model code cannot rebuild the instance it is asked about).")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Output directory (default: bench-results/TASK).",
)
@click.option("--base-url", default=None, help="OpenAI-compatible endpoint for the models.")
@concurrent_runs_option(8, "Instances and method runs in flight at once.")
@click.option("--scripted", is_flag=True, help="Offline scripted models (no network, CI).")
@click.option(
    "--cache",
    type=click.Path(path_type=Path),
    default=None,
    help="SQLite sub-call cache; a resumed run repeats no cached sub-call.",
)
@sandbox_option
@budget_options(("max_iterations", "max_usd", "max_subcalls"),
                scope="each instance (RLM methods)", defaults={"max_iterations": 30})
@click.option("--window", type=Checked(count(1, optional=True)), default=None,
              help="Override the root model's window (tokens).")
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="Real data set, a file or a download directory: oolong-synth (oolong, oolong-pairs), "
    "decrypted BrowseComp-Plus queries (browsecomp), LongBench-v2 JSON (codeqa), RULER's "
    "niah_single validation.jsonl (sniah).",
)
@click.option(
    "--corpus",
    type=click.Path(path_type=Path),
    default=None,
    help="BrowseComp-Plus corpus (with --data).",
)
@click.option(
    "--batch-hint",
    is_flag=True,
    help="Tell the RLM root to batch ~200K chars per sub-call (the paper's Qwen3-Coder line).",
)
@click.option(
    "--prompt",
    type=click.Choice(["default", "paper"]),
    default="default",
    show_default=True,
    help="RLM system prompt: fastrlm's, or the paper's preset for the root model "
    "(Qwen3-Coder and Qwen3-8B have their own; others get the GPT-5 one).",
)
@click.option(
    "--judge",
    default=None,
    help="LLM judge for BrowseComp (its official metric), e.g. openai/gpt-4.1; the exact-match "
    "score is kept beside it.",
)
@click.option(
    "--judge-template",
    type=click.Path(path_type=Path),
    default=None,
    envvar="FASTRLM_JUDGE_TEMPLATE",
    help="BrowseComp-Plus's official grader prompt, which --judge needs: a clone of "
    "github.com/texttron/BrowseComp-Plus, or a .py/text file holding GRADER_TEMPLATE. "
    "[env: FASTRLM_JUDGE_TEMPLATE]",
)
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="ray: one Ray task per (instance, method) "
              "(pip install 'fastrlm[ray]'); same results file, resume and summary.")
@click.option("--ray-address", default=None, envvar="RAY_ADDRESS",
              help="Ray cluster to join (default: a local Ray for this command). "
              "[env: RAY_ADDRESS]")
@click.option(
    "--grid",
    "grid_dirs",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Other results directories (other tasks) whose records join this run's Table-1 grid "
    "(OUT/table1.md) and cost-vs-score plot (OUT/cost_vs_score.svg). Repeatable.",
)
@click.option("--sc-samples", type=Checked(count(1)), default=5, show_default=True,
              help="base-sc: samples when no RLM cost is known to match.")
@click.option("--match-cost", type=float, default=None,
              help="base-sc: the cost per task (USD) to spend (default: the RLM's mean cost "
              "in the results).")
@click.option("--estimate", "estimate_only", is_flag=True,
              help="Print what the run would cost (estimated from the data's size and the "
              "prices) and exit without calling any model.")
@click.option("--no-plot", is_flag=True, help="Skip the PNG plot.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def bench(
    task: str,
    methods: tuple[str, ...],
    model: str,
    sub_model: str | None,
    summarizer: str | None,
    lengths: str | None,
    n: int | None,
    seed: int | None,
    out: Path | None,
    base_url: str | None,
    max_concurrent_runs: int | None,
    deprecated_concurrency: int | None,
    scripted: bool,
    cache: Path | None,
    sandbox: str | None,
    max_iterations: int,
    max_usd: float | None,
    max_subcalls: int | None,
    prices: tuple[tuple[str, Price], ...],
    window: int | None,
    data: Path | None,
    corpus: Path | None,
    batch_hint: bool,
    prompt: str,
    judge: str | None,
    judge_template: Path | None,
    backend: str,
    ray_address: str | None,
    grid_dirs: tuple[Path, ...],
    sc_samples: int,
    match_cost: float | None,
    estimate_only: bool,
    no_plot: bool,
    quiet: bool,
) -> None:
    """Run benchmark TASK with the chosen methods: on a real data set (--data, the paper's
    Table 1) or on fastrlm's offline generator (plumbing and scale runs)."""
    for other in grid_dirs:  # before any money is spent
        if not (other / "results.jsonl").is_file():
            raise click.UsageError(f"--grid {other}: no results.jsonl there (a fastrlm bench "
                                   "--out directory)")
    names = _split(methods)
    if "all" in names:
        names = list(METHODS)
    if max_usd is not None and not scripted:
        try:
            price_table = as_table(prices)
        except RLMError as exc:
            raise click.ClickException(str(exc)) from exc
        missing = price_table.unpriced((model, sub_model, summarizer))
        if missing:
            raise click.UsageError(unpriced_help(missing))
    try:
        config = BenchConfig(
            task=task,
            methods=tuple(dict.fromkeys(names)),
            model=model,
            sub_model=sub_model,
            summarizer=summarizer,
            lengths=tuple(parse_length(x) for x in lengths.split(",")) if lengths else None,
            n=n,
            seed=seed,
            out=out or Path("bench-results") / task,
            concurrency=concurrent_runs(max_concurrent_runs, deprecated_concurrency, 8),
            base_url=base_url,
            scripted=scripted,
            cache=cache,
            sandbox=sandbox or "auto",
            max_iterations=max_iterations,
            max_usd=max_usd,
            max_subcalls=max_subcalls,
            batch_hint=batch_hint,
            prompt=prompt,
            judge=judge,
            judge_template=judge_template,
            window=window,
            data=data,
            corpus=corpus,
            progress=not quiet,
            prices=prices,
            backend=backend,
            ray_address=ray_address,
            sc_samples=sc_samples,
            match_cost_usd=match_cost,
        )
        config = resolve_seed(config)
        if sandbox == "none" and not scripted:
            click.echo("Warning: --sandbox none runs model code in this process, next to the "
                       "answer keys; use an isolated sandbox for scores that matter.", err=True)
        if estimate_only or not scripted:
            cost = estimate(config, get_task(task, data, corpus), model_names(config),
                            PriceTable.default(dict(prices)))
            click.echo(cost.text(), err=not estimate_only)
            if estimate_only:
                return
        records = asyncio.run(run_bench(config))
    except RLMError as exc:
        raise click.ClickException(str(exc)) from exc
    seed = config.seed
    mine = [r for r in records if r["task"] == task and r["seed"] == seed]
    rows = summarize(mine)
    table = format_table(rows)
    if data is None:
        table = f"{GENERATED_NOTE}\n\n{table}"
    (config.out / "summary.md").write_text(table, encoding="utf-8")
    (config.out / "summary.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    grid_records = list(mine)
    for other in grid_dirs:
        grid_records += latest_seed(load_results(other / "results.jsonl"))
    (config.out / "table1.md").write_text(format_grid(grid_records), encoding="utf-8")
    cells = grid_cells(grid_records)
    (config.out / "table1.json").write_text(
        json.dumps([{"method": m, "task": t, **row} for (m, t), row in sorted(cells.items())],
                   indent=2), encoding="utf-8")
    written = [config.out / "results.jsonl", config.out / "summary.md", config.out / "summary.json",
               config.out / "table1.md", config.out / "table1.json",
               cost_score_svg(grid_records, config.out / "cost_vs_score.svg",
                              f"cost vs score (seed {seed})")]
    if not no_plot and mine:
        written.append(plot(mine, config.out / "score_vs_length.png", f"{task} (seed {seed})"))
    if scripted:
        click.echo(SCRIPTED_NOTE)
    click.echo(table, nl=False)
    click.echo("\nTable 1 (" + ", ".join(sorted({str(r["task"]) for r in grid_records})) + "):\n"
               + format_grid(grid_records), nl=False)
    click.echo(f"Seed: {seed} (recorded in every results line; a rerun into {config.out} "
               "resumes it, --seed repeats it elsewhere)")
    click.echo("Written: " + ", ".join(str(p) for p in written))
