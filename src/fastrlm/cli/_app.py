"""The ``fastrlm`` click group. Subcommands are imported only when they are used."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from ._exit import ExitCode

#: command name -> "module:attribute" (modules relative to this package unless absolute)
LAZY_COMMANDS = {
    "ask": "._ask:ask",
    "batch": "._batch:batch",
    "bench": "fastrlm.bench._cli:bench",
    "demo": "._demo:demo",
    "doctor": "._doctor:doctor",
    "mcp": "._mcp:mcp",
    "quickstart": "._demo:quickstart",
    "runs": "._runs:runs",
    "serve": "._serve:serve",
    "show": "._runs:show",
    "view": "._view:view",
}


class LazyGroup(click.Group):
    """A group whose commands live in modules imported on first use."""

    def __init__(self, *args: Any, lazy: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

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
