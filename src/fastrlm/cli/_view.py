"""``fastrlm view RUN``: one run as a self-contained HTML page."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ._exit import ExitCode


@click.command()
@click.argument("run", default="last")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Where to write the page [default: $FASTRLM_HOME/views/<run id>.html].",
)
@click.option("--open", "open_it", is_flag=True, help="Open the page in the web browser.")
def view(run: str, output: Path | None, open_it: bool) -> None:
    """Write RUN as one HTML page (no network needed to view it) and print its path.

    RUN is a run id or a unique prefix of one, `last` (the default), a number N (the N-th
    newest run: 1 is the last, 2 the one before), or the path of a .jsonl trace. The page
    shows the question, every iteration's reply, code and output, sub-call summaries, nested
    child runs and the answer; never the context itself.
    """
    from ..trace import fastrlm_home
    from ..trace._html import render_html
    from ._runs import trace_or_exit

    path, trace = trace_or_exit(run)
    run_id = str((trace.root or {}).get("run_id") or path.stem)
    target = output if output is not None else fastrlm_home() / "views" / f"{run_id}.html"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render_html(trace), encoding="utf-8")
    except OSError as exc:
        click.echo(f"fastrlm: cannot write {target}: {exc}", err=True)
        sys.exit(int(ExitCode.BAD_INPUT))
    click.echo(str(target))
    if open_it:
        import webbrowser

        webbrowser.open(target.resolve().as_uri())
