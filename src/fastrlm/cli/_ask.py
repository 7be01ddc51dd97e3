"""``fastrlm ask``: answer a question over files, directories, globs or stdin."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._foundation.errors import ConfigurationError, ContextError
from .._foundation.pricing import PriceTable
from .._foundation.validate import LIMITS_RULES
from ._common import fail, prepare_run, price_table_or_exit, rlm_or_exit, settings_or_exit
from ._config import Settings
from ._exit import ExitCode
from ._options import Checked, load_options, run_options, tool_options

if TYPE_CHECKING:
    from .. import Prompts
    from ..context import LoadLimits
    from ..lm import SubcallCache
    from ..trace import LiveView, TraceWriter


@click.command()
@click.argument("question")
@click.option(
    "-c",
    "--context",
    "contexts",
    multiple=True,
    metavar="PATH",
    help="A file, directory, glob, .jsonl file or '-' (stdin). Repeatable.",
)
@run_options
@tool_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON result object on stdout.")
@click.option(
    "--stream-json", is_flag=True, help="Print every event as one JSON object per line on stdout."
)
@click.option(
    "--trace-full",
    is_flag=True,
    help="Record whole sub-call prompts and replies (and tool arguments and results) in the "
    "trace, not just previews; the viewer then opens each call to them.",
)
@click.option("--no-trace", is_flag=True, help="Write no trace for this run.")
@click.option("--prompt", "prompt_profile", default="fastrlm", show_default=True,
              metavar="PROFILE",
              help="What the root model is told: fastrlm (its own), rlms (the official "
              "package's prompts and turn format, read from its installed package), paper "
              "(the paper's prompt for the model), paper-gpt-5, paper-qwen3-coder, "
              "paper-qwen3-8b.")
@click.option("--view", "live_view", is_flag=True,
              help="Watch the run in the browser: serve its live page on 127.0.0.1 (URL on "
              "stderr).")
@click.option("--no-gitignore", is_flag=True, help="Load files that .gitignore excludes.")
@load_options
@click.option("-q", "--quiet", is_flag=True,
              help="No progress or summary on stderr (errors and degraded-run warnings stay).")
@click.option(
    "--worker-memory-mb",
    type=Checked(LIMITS_RULES["worker_memory_mb"]),
    default=None,
    help="Sandbox worker memory limit (default: 1 GiB + 4x the context, roughly).",
)
@click.option(
    "--scratch-mb", type=Checked(LIMITS_RULES["scratch_mb"]), default=None,
    help="Sandbox scratch directory quota (default 512).",
)
@click.option(
    "--max-answer-chars", type=Checked(LIMITS_RULES["max_answer_chars"]), default=None,
    help="Longest answer a cell may deliver (default 67108864).",
)
@click.option(
    "--worker-env", multiple=True, metavar="NAME=VALUE",
    help="Set a variable in the sandbox worker's environment. Repeatable.",
)
@click.option(
    "--cache", "use_cache", is_flag=True,
    help="Reuse sub-call replies from the sub-call cache and store new ones "
    "($FASTRLM_HOME/cache.sqlite; --cache-path moves it). Only temperature-0 calls, unless "
    "--cache-sampled.",
)
@click.option("--cache-path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The sub-call cache's SQLite file (implies --cache).")
@click.option("--cache-sampled", is_flag=True,
              help="Cache sub-calls made with a temperature above 0 too (implies --cache).")
def ask(
    question: str,
    contexts: tuple[str, ...],
    flags: dict[str, Any],
    as_json: bool,
    stream_json: bool,
    trace_full: bool,
    no_trace: bool,
    live_view: bool,
    no_gitignore: bool,
    load_limits: LoadLimits,
    quiet: bool,
    worker_memory_mb: int | None,
    scratch_mb: int | None,
    max_answer_chars: int | None,
    worker_env: tuple[str, ...],
    tools: tuple[Any, ...] | None,
    sub_tools: tuple[Any, ...] | None,
    use_cache: bool,
    cache_path: Path | None,
    cache_sampled: bool,
    prompt_profile: str,
) -> None:
    """Answer QUESTION over a context of any size.

    \b
    Examples:
      fastrlm ask "Where is the retry policy implemented?" -c src/
      fastrlm ask "Summarise the incidents" -c 'logs/*.log' --max-usd 0.50
      cat report.txt | fastrlm ask "What are the three main risks?" -c -
      fastrlm ask "Which of these vendors are sanctioned?" -c vendors.csv --tools mytools:lookup
      fastrlm ask "List the TODOs" -c src/ --cache   # a re-run reuses its sub-call replies

    Exit codes: 0 answered, 1 unexpected error, 2 bad input or no model configured,
    3 a budget/iteration/time limit stopped the run (partial answer printed), 4 provider
    failure, 5 sandbox failure, 130 cancelled.
    """
    if as_json and stream_json:
        fail("--json and --stream-json cannot be combined")
    if live_view and no_trace:
        fail("--view shows the run's trace: drop --no-trace")
    if not question.strip():
        fail("the question is empty")
    if not contexts:
        fail("give the context with -c PATH (a file, directory, glob, or '-' for stdin)")
    settings = settings_or_exit(flags)
    price_table = price_table_or_exit(settings)
    prompts = prompts_for(prompt_profile, settings.require_model())
    worker: dict[str, Any] = {
        k: v
        for k, v in (("worker_memory_mb", worker_memory_mb), ("scratch_mb", scratch_mb),
                     ("max_answer_chars", max_answer_chars))
        if v is not None
    }
    if worker_env:
        bad = [item for item in worker_env if "=" not in item or item.startswith("=")]
        if bad:
            fail(f"--worker-env takes NAME=VALUE, not {bad[0]!r}")
        worker["worker_env"] = dict(item.split("=", 1) for item in worker_env)
    mode = "json" if as_json else "stream-json" if stream_json else "text"
    from ..context import load_context

    if "-" in contexts and sys.stdin.isatty():
        click.echo("reading the context from stdin (end it with Ctrl-D)", err=True)
    preparing = prepare_run(settings)
    try:
        loaded = load_context(list(contexts), gitignore=not no_gitignore, limits=load_limits,
                              shared=True)
    except ContextError as exc:
        fail(str(exc))
    except ConfigurationError as exc:  # a PDF without the pdf extra
        fail(str(exc))
    finally:
        preparing.join()
    if not quiet:
        click.echo(loaded.report.summary(), err=True)
    code = run_settings(
        settings,
        question,
        loaded,  # not .value: the first root request goes out while a large file is copied
        prices=price_table,
        mode=mode,
        quiet=quiet,
        trace=not no_trace,
        trace_full=trace_full,
        extra_json={"context": loaded.report.to_dict()},
        worker_limits=worker,
        tools=tools or (),
        sub_tools=sub_tools or (),
        live_view=live_view,
        cache=cache_of(use_cache, cache_path, cache_sampled),
        prompts=prompts,
    )
    sys.exit(int(code))


def cache_of(use: bool, path: Path | None, sampled: bool) -> CacheChoice | None:
    """The sub-call cache ``--cache`` / ``--cache-path`` / ``--cache-sampled`` ask for, or
    None. A path that is a directory, or whose folder cannot be made, is refused here (exit 2),
    before anything runs."""
    if not (use or path is not None or sampled):
        return None
    from ..lm import SubcallCache

    cache = SubcallCache(path)
    if cache.path.is_dir():
        fail(f"--cache-path {cache.path} is a directory: give the cache's file, e.g. "
             f"{cache.path / 'cache.sqlite'}")
    try:
        cache.path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot make the cache's folder {cache.path.parent}: {exc.strerror or exc} "
             "(--cache-path chooses another file)")
    return CacheChoice(cache, sampled)


def prompts_for(profile: str, model: str) -> Prompts | None:
    """The prompts ``--prompt PROFILE`` names (None: fastrlm's own), or exit saying what is
    wrong (an unknown name, the official package missing)."""
    from .. import Prompts

    try:
        if profile == "fastrlm":
            return None
        if profile == "paper":
            return Prompts.paper_for(model)
        if profile.startswith("paper-"):
            return Prompts.paper(profile.removeprefix("paper-"))
        return Prompts.profile(profile)
    except ValueError as exc:
        fail(f"--prompt: {exc}")
    except ConfigurationError as exc:
        fail(str(exc))


def run_settings(
    settings: Settings,
    question: str,
    context: object,
    *,
    mode: str,
    quiet: bool,
    trace: bool,
    trace_full: bool,
    prices: PriceTable | None = None,
    extra_json: dict[str, Any] | None = None,
    worker_limits: dict[str, Any] | None = None,
    tools: tuple[Any, ...] = (),
    sub_tools: tuple[Any, ...] = (),
    live_view: bool = False,
    cache: CacheChoice | None = None,
    prompts: Prompts | None = None,
) -> ExitCode:
    """Build the RLM that ``settings`` describe (with ``tools`` for its REPL and ``sub_tools``
    for its sub-LLMs) and run it; returns the exit code. ``live_view`` serves the run's live
    page while it runs (and after it, until Ctrl-C, when stdin is a terminal)."""
    from ..trace import TraceWriter
    from ._runner import run

    try:
        limits = settings.make_limits(trace_full_prompts=trace_full, **(worker_limits or {}))
    except ValueError as exc:
        fail(str(exc))
    writer = TraceWriter(full_prompts=trace_full) if trace else None
    cached: dict[str, Any] = {} if cache is None else {"cache": cache.cache,
                                                       "cache_sampled": cache.sampled}
    rlm = rlm_or_exit(settings, prices if prices is not None else price_table_or_exit(settings),
                      limits=limits, trace=writer if writer is not None else False,
                      tools=tools, sub_tools=sub_tools, prompts=prompts, **cached)
    live = _start_live(writer) if live_view and writer is not None else None
    try:
        outcome = run(
            rlm,
            question,
            context,
            writer=writer,
            mode=mode,
            quiet=quiet,
            budget=settings.budget,
            extra_json=extra_json,
            origin=settings.origin,
        )
    except ContextError as exc:
        if live is not None:
            live.close()
        fail(str(exc))
    if cache is not None:
        cache.report(quiet)
    if live is not None:
        _linger(live, cancelled=outcome.exit_code == ExitCode.CANCELLED)
    return outcome.exit_code


@dataclass(frozen=True, slots=True)
class CacheChoice:
    """The sub-call cache of one ``ask`` and whether sampled calls go through it."""

    cache: SubcallCache
    sampled: bool

    def report(self, quiet: bool) -> None:
        """One stderr line: hits and misses, and where the cache is."""
        if not quiet:
            click.echo(f"cache: {self.cache.hits:,} hit(s), {self.cache.misses:,} miss(es) "
                       f"({self.cache.path})", err=True)
        self.cache.close()


def _start_live(writer: TraceWriter) -> LiveView:
    from ._view import start_live_view

    def locate() -> Path | None:
        runs = writer.started_runs
        return writer.path_for(runs[0]) if runs else None

    live = start_live_view(locate)
    click.echo(f"fastrlm: live view at {live.url}", err=True)
    return live


#: How long a run without a terminal keeps its live page for a browser that has not loaded it.
LINGER_S = 60.0


def _linger(live: LiveView, *, cancelled: bool, wait_s: float = LINGER_S) -> None:
    """After the run: keep the page up until Ctrl-C on a terminal. Without one, keep it until a
    browser has loaded the page (a slow one may still be starting), at most ``wait_s``
    seconds; when Ctrl-C already cancelled the run, stop it now."""
    if cancelled:
        live.close()
        return
    if not sys.stdin.isatty():
        if not live.page_served.is_set():
            click.echo(f"fastrlm: the live view stays at {live.url} until a browser loads it "
                       f"(at most {wait_s:g} s)", err=True)
            live.page_served.wait(wait_s)
        live.close()
        return
    from ._view import serve_until_interrupted

    click.echo(f"fastrlm: the live view stays at {live.url} (Ctrl-C stops)", err=True)
    serve_until_interrupted(live)
