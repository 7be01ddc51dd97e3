"""The ``fastrlm`` click group. Subcommands are imported only when they are used."""

from __future__ import annotations

import importlib
import sys
import textwrap
from typing import Any

import click

from ._exit import ExitCode

#: command name -> "module:attribute" (modules relative to this package unless absolute)
LAZY_COMMANDS = {
    "ask": "._ask:ask",
    "batch": "._batch:batch",
    "bench": "fastrlm.bench._cli:bench",
    "chat": "._chat:chat",
    "demo": "._demo:demo",
    "doctor": "._doctor:doctor",
    "export": "._export:export",
    "mcp": "._mcp:mcp",
    "quickstart": "._demo:quickstart",
    "resume": "._resume:resume",
    "runs": "._runs:runs",
    "sandbox": "._sandbox:sandbox",
    "serve": "._serve:serve",
    "show": "._runs:show",
    "view": "._view:view",
}

#: command name -> the first sentence of its help, so that ``fastrlm --help`` lists the commands
#: without importing them (the bench command alone pulls in ~0.3 s of modules). A test checks
#: that each matches its command's own help.
SUMMARIES = {
    "ask": "Answer QUESTION over a context of any size.",
    "batch": "Run every job of JOBS.jsonl (one JSON object a line) and write RESULTS.jsonl.",
    "bench": "Run benchmark TASK with the chosen methods: on a real data set (--data, the "
             "paper's Table 1) or on fastrlm's offline generator (plumbing and scale runs).",
    "chat": "Ask many questions about a context in one session (variables persist between them).",
    "demo": "Run fastrlm end to end offline on a generated ~10M-token input, with a scripted "
            "model.",
    "doctor": "Check this machine: sandbox layers, configured providers, versions.",
    "export": "Write RUNS as training data or an evaluation log, one JSON object a line "
              "(inspect: one inspect_ai log document, readable by `inspect view` and "
              "read_eval_log).",
    "mcp": "Serve fastrlm to MCP clients (coding agents, desktop apps) until they disconnect.",
    "quickstart": "With a configured model: ask it a real question about fastrlm's own docs and "
                  "source.",
    "resume": "Go on with RUN after it stopped (killed, Ctrl-C, a limit, a provider outage).",
    "runs": "List, search, export or delete past runs: question, model, stop reason, cost, time.",
    "sandbox": "Manage the container sandbox (docker, podman): build its image.",
    "serve": "Serve an RLM as an OpenAI-compatible model (model id `rlm`) until Ctrl-C / SIGTERM.",
    "show": "Print RUN as a readable transcript.",
    "view": "Write RUN as one HTML page (no network needed to view it) and print its path.",
}


class LazyGroup(click.Group):
    """A group whose commands live in modules imported on first use."""

    def __init__(self, *args: Any, lazy: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list, from :data:`SUMMARIES` for commands not imported yet."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            if name in self.lazy and name in SUMMARIES and name not in self.commands:
                rows.append((name, textwrap.shorten(SUMMARIES[name], limit, placeholder="...")))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy:
            return super().get_command(ctx, cmd_name)
        module_name, _, attribute = self.lazy[cmd_name].partition(":")
        try:
            module = importlib.import_module(module_name, __package__)
        except ImportError as exc:
            return _unavailable(cmd_name, str(exc))
        command = getattr(module, attribute, None)
        if not isinstance(command, click.Command):
            return _unavailable(cmd_name, f"{module_name} has no command {attribute!r}")
        return command


def _unavailable(name: str, why: str) -> click.Command:
    @click.command(
        name=name, help=f"(unavailable: {why})", context_settings={"ignore_unknown_options": True}
    )
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def stub(args: tuple[str, ...]) -> None:
        click.echo(f"fastrlm {name} is unavailable: {why}", err=True)
        sys.exit(int(ExitCode.ERROR))

    return stub


@click.group(
    cls=LazyGroup, lazy=LAZY_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(package_name="fastrlm", prog_name="fastrlm")
def cli() -> None:
    """fastrlm: Recursive Language Models. Ask any chat model about inputs of any size.

    The root model writes Python in a sandboxed REPL that holds your context, and calls cheaper
    sub-models on pieces of it until it can answer. Progress goes to stderr, answers and
    machine output (--json, --stream-json) to stdout. FASTRLM_HOME (default ~/.fastrlm) holds
    traces and the run index.
    """


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``fastrlm`` script."""
    try:
        code = cli.main(args=argv, prog_name="fastrlm", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("\ncancelled", err=True)
        sys.exit(int(ExitCode.CANCELLED))
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
