"""``fastrlm resume``: go on with a run that stopped (or fork it at a turn) from its record."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from .._foundation.budget import BUDGET_KEYS
from .._foundation.errors import ConfigurationError, ContextError
from ._common import fail, price_table_or_exit, rlm_or_exit, settings_or_exit
from ._options import load_options, run_options

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from .. import RLMResult
    from .._foundation.events import EventCallback
    from ..context import LoadLimits


@click.command()
@click.argument("run")
@click.option("-c", "--context", "contexts", multiple=True, metavar="PATH",
              help="The run's context again, as it was given to `fastrlm ask` (traces keep only "
              "its sha256). Repeatable.")
@click.option("--at-turn", type=click.IntRange(min=1), default=None, metavar="K",
              help="Fork instead: replay the turns before K from the record, then go on live "
              "from turn K (with the model and flags given now).")
@click.option("--reply", default=None, metavar="TEXT",
              help="With --at-turn: the root's reply of turn K, instead of asking the model.")
@run_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON result object on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr.")
@click.option("--no-gitignore", is_flag=True, help="Load files that .gitignore excludes.")
@load_options
def resume(run: str, contexts: tuple[str, ...], at_turn: int | None, reply: str | None,
           flags: dict[str, Any], as_json: bool, quiet: bool, no_gitignore: bool,
           load_limits: LoadLimits) -> None:
    """Go on with RUN after it stopped (killed, Ctrl-C, a limit, a provider outage).

    A fresh REPL runs RUN's recorded cells again with every model reply, sub-call and tool
    result answered from its record (nothing is sent or paid again) and checks each cell's
    output against the record; then the run goes on live, with what its budget has left (pass
    budget flags to give it another; what it spent counts once). The root model is the run's
    unless -m says otherwise (only with --at-turn). RUN is an id, a unique prefix, `last` or
    N (the N-th newest).

    \b
    Examples:
      fastrlm resume last -c report.txt
      fastrlm resume 20261207T0631 -c src/ --max-usd 2
      fastrlm resume last -c src/ --at-turn 3 -m openai/gpt-5 (a fork from turn 3)
    """
    if reply is not None and at_turn is None:
        fail("--reply replaces the reply of a turn: give the turn with --at-turn K")
    from ..trace import (
        ReplayError,
        TraceNotFoundError,
        read_head,
        read_record,
        record_path,
        resolve_run,
    )

    try:
        trace = resolve_run(run)
        head = read_head(record_path(trace.parent, trace.stem))
        if head is None:  # missing, empty or damaged: reading it whole says which
            entries = read_record(record_path(trace.parent, trace.stem))
            if not entries:
                fail(f"the replay record of run {trace.stem} is empty: the process died "
                     "before it wrote anything, so there is nothing to resume")
            head = entries[0]
    except (TraceNotFoundError, ReplayError) as exc:
        fail(str(exc))
    if flags.get("model") is None:  # the run's own models, unless a flag says otherwise
        flags["model"] = head.get("model")
        if flags.get("sub_model") is None:
            flags["sub_model"] = head.get("sub_model")
    settings = settings_or_exit(flags)
    budget = (settings.make_budget() if any(flags.get(k) is not None for k in BUDGET_KEYS)
              else None)
    context: object = None
    if contexts:
        from ..context import load_context

        try:
            context = load_context(list(contexts), gitignore=not no_gitignore,
                                   limits=load_limits).value
        except (ContextError, ConfigurationError) as exc:
            fail(str(exc))
    from ..trace import TraceWriter
    from ._runner import run as run_cli

    writer = TraceWriter()
    rlm = rlm_or_exit(settings, price_table_or_exit(settings), trace=writer)
    given: dict[str, Any] = {} if context is None else {"context": context}

    def start(on_event: EventCallback) -> Awaitable[RLMResult]:
        if at_turn is not None:
            return rlm.afork(trace.stem, at_turn=at_turn, reply=reply, budget=budget,
                             on_event=on_event, **given)
        return rlm.aresume(trace.stem, budget=budget, on_event=on_event, **given)

    try:
        outcome = run_cli(rlm, str(head.get("question", "")), context, writer=writer,
                          mode="json" if as_json else "text", quiet=quiet,
                          budget=settings.budget, start=start)
    except ReplayError as exc:
        fail(str(exc))
    sys.exit(int(outcome.exit_code))
