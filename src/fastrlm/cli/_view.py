"""``fastrlm view RUN``: one run as a self-contained HTML page, or served live (``--follow``)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ._exit import ExitCode

if TYPE_CHECKING:
    from ..trace import LiveView


def start_live_view(locate: Callable[[], Path | None], port: int = 0) -> LiveView:
    """A started :class:`~fastrlm.trace._live.LiveView`, or exit 2 when the port is taken."""
    from ..trace import LiveView

    try:
        return LiveView(locate, port=port).start()
    except OSError as exc:
        click.echo(f"fastrlm: cannot serve the live view on 127.0.0.1:{port}: {exc}; "
                   "choose another --port (0 picks a free one)", err=True)
        sys.exit(int(ExitCode.BAD_INPUT))


def serve_until_interrupted(view: LiveView) -> None:
    """Keep the live view up until Ctrl-C (or SIGTERM), then stop it."""
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        view.close()


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
@click.option(
    "--follow",
    is_flag=True,
    help="Serve the page on 127.0.0.1 and update it while the run writes its trace "
    "(prints the URL; Ctrl-C stops).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    help="Port of --follow [default: a free one].",
)
def view(run: str, output: Path | None, open_it: bool, follow: bool, port: int) -> None:
    """Write RUN as one HTML page (no network needed to view it) and print its path.

    RUN is a run id or a unique prefix of one, `last` (the default), a number N (the N-th
    newest run: 1 is the last, 2 the one before), or the path of a .jsonl trace. The page
    shows the question, a cost and token breakdown per model, the call tree, a timeline of
    root turns and concurrent sub-calls, every iteration's reply with each code cell and its
    output once, every sub-call (with filters), nested child runs and the answer; never the
    context itself. With --follow the page is served live instead, and keeps up with a run
    that is still going (`fastrlm view --follow last` in a second terminal).
    """
    if follow:
        if output is not None:
            click.echo("fastrlm: --follow serves the page; drop -o", err=True)
            sys.exit(int(ExitCode.BAD_INPUT))
        follow_run(run, port, open_it)
        return
    from .._foundation.home import views_dir
    from ..trace import render_html
    from ._runs import trace_or_exit

    path, trace = trace_or_exit(run)
    run_id = str(trace.root_event.run_id if trace.root_event else "") or path.stem
    target = output if output is not None else views_dir() / f"{run_id}.html"
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


def follow_run(run: str, port: int, open_it: bool) -> None:
    from ..trace import TraceNotFoundError, resolve_run

    try:
        path = resolve_run(run)
    except TraceNotFoundError as exc:
        click.echo(f"fastrlm: {exc}", err=True)
        sys.exit(int(ExitCode.BAD_INPUT))
    live = start_live_view(lambda: path, port)
    click.echo(live.url)
    click.echo(f"fastrlm: following {path.name} at {live.url} (Ctrl-C stops)", err=True)
    if open_it:
        import webbrowser

        webbrowser.open(live.url)
    serve_until_interrupted(live)
