"""``fastrlm --help`` lists every command without importing any of them."""

from __future__ import annotations

import subprocess
import sys

import click

from fastrlm.cli._app import LAZY_COMMANDS, SUMMARIES, cli


def test_every_lazy_command_has_a_summary_that_matches_its_own_help() -> None:
    assert set(SUMMARIES) == set(LAZY_COMMANDS)
    ctx = click.Context(cli)
    for name, summary in SUMMARIES.items():
        command = cli.get_command(ctx, name)
        assert command is not None
        assert command.get_short_help_str(limit=1000) == summary, name


def test_help_lists_every_command_and_imports_none_of_them() -> None:
    code = (
        "import sys\n"
        "from fastrlm.cli._app import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "loaded = [m for m in sys.modules if m.startswith(('fastrlm.bench', 'fastrlm.cli._'))\n"
        "          and m not in ('fastrlm.cli._app', 'fastrlm.cli._exit')]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                          text=True)
    for name, summary in SUMMARIES.items():
        assert f"  {name} " in done.stdout and summary[:20] in done.stdout
