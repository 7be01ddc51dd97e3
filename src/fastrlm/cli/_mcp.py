"""``fastrlm mcp``: fastrlm as an MCP server (stdio by default, ``--http`` for streamable HTTP)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._foundation.errors import ConfigurationError, MissingExtraError
from .._foundation.net import is_loopback_host
from .._foundation.validate import positive
from ._common import fail, price_table_or_exit, rlm_or_exit, settings_or_exit
from ._exit import ExitCode
from ._options import Checked, load_options, run_options

if TYPE_CHECKING:
    from ..context import LoadLimits

TOKEN_ENV = "FASTRLM_MCP_TOKEN"
@click.command()
@click.option("--root", "roots", multiple=True, required=True, metavar="DIR",
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A directory clients may read (repeatable). Nothing outside the roots is "
              "read; symlinks are resolved first.")
@run_options
@click.option("--http", "use_http", is_flag=True,
              help="Serve streamable HTTP at http://HOST:PORT/mcp instead of stdio.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address for --http.")
@click.option("--port", type=click.IntRange(0, 65535), default=8770, show_default=True,
              help="Port for --http (0 picks a free one; the URL is printed on stderr).")
@click.option("--token", default=None, metavar="TOKEN",
              help=f"Bearer token HTTP clients must send (default: ${TOKEN_ENV}; prefer the "
              "variable: a flag shows in `ps`).")
@click.option("--no-auth", is_flag=True,
              help="Allow --http without a token (loopback only; any local process can then "
              "spend the budget).")
@click.option("--max-body-mb", type=Checked(positive(maximum=1024 * 1024)), default=64.0,
              show_default=True, help="Largest HTTP request (a text context travels in it).")
@click.option("--max-handles", type=click.IntRange(1, 1000), default=8, show_default=True,
              help="Loaded contexts kept for rlm_ask (least recently used dropped first).")
@click.option("--max-concurrent-runs", type=click.IntRange(min=1), default=2, show_default=True,
              help="Runs at once; more calls wait.")
@click.option("--no-gitignore", is_flag=True, help="Load files that .gitignore excludes.")
@load_options
@click.option("--no-trace", is_flag=True, help="Write no traces (rlm_runs then lists none).")
def mcp(
    roots: tuple[Path, ...],
    flags: dict[str, Any],
    use_http: bool,
    host: str,
    port: int,
    token: str | None,
    no_auth: bool,
    max_body_mb: float,
    max_handles: int,
    max_concurrent_runs: int,
    no_gitignore: bool,
    load_limits: LoadLimits,
    no_trace: bool,
) -> None:
    """Serve fastrlm to MCP clients (coding agents, desktop apps) until they disconnect.

    \b
    Tools: rlm_ask(question, paths | text | handle, budget?), rlm_load(paths),
    rlm_grep / rlm_read / rlm_stats (a loaded handle, no model called), rlm_handles,
    rlm_drop(handle), rlm_status, rlm_runs(limit?), rlm_trace(run_id?). The budget flags are
    the server's limits per call; a call may lower them, never raise them. Over --http, a
    host may send the token as a bearer header or connect through OAuth (the server's page
    asks for the token once).

    \b
    Examples:
      claude mcp add fastrlm -- fastrlm mcp --root /path/to/repo --max-usd 1
      FASTRLM_MCP_TOKEN=secret fastrlm mcp --http --root ~/data
    """
    token = token or os.environ.get(TOKEN_ENV) or None
    if use_http:
        if token is None and not no_auth:
            fail(f"--http needs a bearer token: pass --token or set {TOKEN_ENV} (or --no-auth "
                 "to serve without one on loopback)")
        if token is None and not is_loopback_host(host):
            fail(f"--no-auth is allowed only on loopback, not on {host}: set a token")
    settings = settings_or_exit(flags)
    price_table = price_table_or_exit(settings)
    try:
        from ..mcp import RLMTools, Roots, build_server
        from ..trace import TraceWriter
    except MissingExtraError as exc:
        fail(str(exc), ExitCode.ERROR)
    try:
        allowed = Roots(list(roots))
    except (ConfigurationError, ValueError) as exc:
        fail(str(exc))
    rlm = rlm_or_exit(settings, price_table, trace=False if no_trace else TraceWriter())
    tools = RLMTools(rlm, allowed, max_handles=max_handles,
                     max_concurrent_runs=max_concurrent_runs, gitignore=not no_gitignore,
                     load_limits=load_limits)
    server = build_server(tools)
    try:
        asyncio.run(_serve(server, tools, use_http, host, port, token,
                           int(max_body_mb * 1024 * 1024)))
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc}", ExitCode.ERROR)
    sys.exit(int(ExitCode.OK))


async def _serve(server: Any, tools: Any, use_http: bool, host: str, port: int,
                 token: str | None, max_body_bytes: int) -> None:
    from ..mcp import bind, serve_http, serve_stdio

    try:
        if not use_http:
            await serve_stdio(server)
            return
        sock = bind(host, port)
        shown = f"[{host}]" if ":" in host else host
        click.echo(f"fastrlm mcp: listening on http://{shown}:{sock.getsockname()[1]}/mcp "
                   f"(auth: {'bearer token' if token else 'off'}; roots: "
                   f"{', '.join(tools.roots.paths)})", err=True)
        await serve_http(server, sock, host=host, token=token, max_body_bytes=max_body_bytes)
    finally:
        await tools.rlm.aclose()
