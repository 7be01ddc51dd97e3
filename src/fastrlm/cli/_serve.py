"""``fastrlm serve``: run the OpenAI-compatible server until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from .._foundation.errors import ConfigurationError
from .._foundation.net import is_loopback_host
from .._foundation.validate import positive
from ._common import fail, price_table_or_exit, rlm_or_exit, settings_or_exit
from ._exit import ExitCode
from ._options import Checked, run_options, tool_options

if TYPE_CHECKING:
    from ..server import RLMServer

#: Not 8000 (vLLM's default, and where the ``vllm/`` preset looks), nor 8080 (llama.cpp's),
#: 11434 (Ollama's) or 1234 (LM Studio's): ``serve`` is most often put in front of one of them
#: on the same machine, and must not collide with the server it calls.
DEFAULT_PORT = 8100


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback exposes the server (set a key).")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="TCP port (0 picks a free one; the URL is printed on stderr).")
@run_options
@click.option("--max-concurrent-runs", type=click.IntRange(min=1), default=4, show_default=True,
              help="Runs at once; more wait in a queue.")
@click.option("--max-queued-runs", type=click.IntRange(min=0), default=16, show_default=True,
              help="Requests that may wait for a run slot; past that: 429 with Retry-After.")
@click.option("--max-body-mb", type=Checked(positive(maximum=1024 * 1024)), default=64.0,
              show_default=True, help="Largest request body (the context travels in it).")
@click.option("--api-key-env", default="FASTRLM_SERVER_KEY", show_default=True,
              help="Environment variable holding the bearer token clients must send; "
              "unset or empty = no auth.")
@click.option("--trace-full", is_flag=True,
              help="Record whole sub-call prompts and replies (and tool texts) in traces.")
@click.option("--no-trace", is_flag=True, help="Write no traces.")
@tool_options
@click.option("--max-sessions", type=click.IntRange(min=1), default=32, show_default=True,
              help="Sessions (extra_body fastrlm.session) kept at once; a key's oldest idle "
              "one is closed to make room for that key, never another key's.")
@click.option("--max-sessions-per-key", type=click.IntRange(min=1), default=None,
              help="Sessions one API key may hold at once (default: --max-sessions).")
@click.option("--session-idle-s", type=Checked(positive()), default=600.0, show_default=True,
              help="Seconds a session may stay idle before it is closed.")
@click.option("--keep-sessions", "keep_sessions", metavar="DIR",
              type=click.Path(file_okay=False, path_type=str), default=None,
              help="Keep sessions in DIR (e.g. $FASTRLM_HOME/sessions) as they go, so a "
              "restarted server (even one killed) continues them from their run records: "
              "recorded turns are paid for once. Needs traces (not with --no-trace).")
@click.option("--reasoning", is_flag=True,
              help="Stream each run's progress (iterations, code blocks, sub-calls) as "
              "reasoning_content deltas (vLLM's and DeepSeek's field, which litellm passes on), "
              "shown by clients that show a reasoning model's thinking; a request may turn it "
              "on or off with "
              "extra_body={\"fastrlm\": {\"reasoning\": true}}.")
@click.option("--cold-workers", is_flag=True,
              help="Start each request's sandbox worker as a fresh interpreter (about 60 ms "
              "of CPU) instead of forking it from one warm process (a few ms); each request "
              "gets a fresh worker either way.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Access-log and log lines on stderr: text, or one JSON "
              "object a line.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True,
              help="Least severe log line shown (one access line per request is info).")
def serve(
    host: str,
    port: int,
    flags: dict[str, Any],
    max_concurrent_runs: int,
    max_queued_runs: int,
    max_body_mb: float,
    api_key_env: str,
    trace_full: bool,
    no_trace: bool,
    tools: tuple[Any, ...] | None,
    sub_tools: tuple[Any, ...] | None,
    max_sessions: int,
    max_sessions_per_key: int | None,
    session_idle_s: float,
    keep_sessions: str | None,
    reasoning: bool,
    cold_workers: bool,
    log_format: str,
    log_level: str,
) -> None:
    """Serve an RLM as an OpenAI-compatible model (model id `rlm`) until Ctrl-C / SIGTERM.

    \b
    Example:
      fastrlm serve --model openai/gpt-5 --sub-model openai/gpt-5-mini --max-usd 1
      client = OpenAI(base_url="http://127.0.0.1:8100/v1", api_key="unused")
      client.chat.completions.create(model="rlm", messages=[...],
                                     extra_body={"context": big_text})

    The budget flags are per request; a request may lower them with
    extra_body={"fastrlm": {"max_usd": ...}} but never raise them. Tools are the ones given
    at start (--tools, --sub-tools); a request's own "tools" field is ignored.

    Each request is one line on stderr (time, client, method, path, status, duration, run id,
    stop reason, cost); no key, header or prompt text is ever logged. FASTRLM_OTEL=1 or the
    OTEL_EXPORTER_OTLP_* variables turn on OpenTelemetry spans (a request's traceparent is
    continued).

    extra_body={"fastrlm": {"session": "ID"}} keeps one REPL and conversation across the
    requests of one API key (another key's ID is another session). With --keep-sessions
    DIR they survive a restart of the server.

    POST /v1/responses answers the Responses API (client.responses.create, streamed or not)
    with the same run and the same extensions.
    """
    with _logging_to_stderr(log_format, log_level):
        _serve(host, port, flags, max_concurrent_runs, max_queued_runs, max_body_mb, api_key_env,
               trace_full, no_trace, tools, sub_tools, log_format,
               {"max_sessions": max_sessions, "max_sessions_per_key": max_sessions_per_key,
                "session_idle_s": session_idle_s, "keep_sessions": keep_sessions,
                 "reasoning": reasoning, "warm_workers": not cold_workers})


def _serve(host: str, port: int, flags: dict[str, Any], max_concurrent_runs: int,
           max_queued_runs: int, max_body_mb: float, api_key_env: str, trace_full: bool,
           no_trace: bool, tools: tuple[Any, ...] | None, sub_tools: tuple[Any, ...] | None,
           log_format: str, server_options: dict[str, Any]) -> None:
    from ..server import HTTPLimits, RLMServer

    settings = settings_or_exit(flags)
    price_table = price_table_or_exit(settings)
    key = os.environ.get(api_key_env) or None
    if key is None and not is_loopback_host(host):
        click.echo(f"fastrlm serve: WARNING: listening on {host} with no API key; anyone who "
                   f"can reach it can spend your model budget (set {api_key_env})", err=True)
    try:
        limits = settings.make_limits(trace_full_prompts=trace_full)
    except ValueError as exc:
        fail(str(exc))
    rlm = rlm_or_exit(settings, price_table, limits=limits, trace=not no_trace,
                      tools=tools or (), sub_tools=sub_tools or ())
    try:
        server = RLMServer(
            rlm,
            max_concurrent_runs=max_concurrent_runs,
            max_queued_runs=max_queued_runs,
            **server_options,
            server_key=key,
            http_limits=HTTPLimits(max_body_bytes=int(max_body_mb * 1024 * 1024)),
        )
    except (ConfigurationError, ValueError) as exc:
        fail(str(exc))
    try:
        asyncio.run(_serve_until_signalled(server, host, port, auth=key is not None,
                                           json_lines=log_format == "json"))
    except OSError as exc:
        fail(listen_failure(host, port, exc), ExitCode.ERROR)
    sys.exit(int(ExitCode.OK))


def listen_failure(host: str, port: int, exc: OSError) -> str:
    """Why ``serve`` cannot listen, and what to do: a port in use names ``--port``."""
    if exc.errno == errno.EADDRINUSE:
        return (f"cannot listen on {host}:{port}: the port is in use (another server holds "
                "it): pick another with --port N, or --port 0 for a free one (the URL is "
                "printed)")
    if exc.errno == errno.EACCES and 0 < port < 1024:
        return (f"cannot listen on {host}:{port}: ports below 1024 need privileges: pick "
                "another with --port N, or --port 0 for a free one")
    return f"cannot listen on {host}:{port}: {exc}"


@contextlib.contextmanager
def _logging_to_stderr(log_format: str, log_level: str) -> Iterator[None]:
    """fastrlm's log records (the access log included) on stderr, as text or JSON lines, while
    the server runs; the ``fastrlm`` logger is put back as it was after (the command may run
    inside another program, a test runner included)."""
    from ..server import access_log_formatter as formatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    logger = logging.getLogger("fastrlm")
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(log_level.upper())
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def _announce(text: str, json_lines: bool) -> None:
    """A start-up or shutdown line, whatever the log level (JSON in --log-format json)."""
    if json_lines:
        from ..server import access_log_formatter as formatter

        record = logging.LogRecord("fastrlm.serve", logging.INFO, __file__, 0, text, None, None)
        text = formatter("json").format(record)
    click.echo(text, err=True)


async def _serve_until_signalled(server: RLMServer, host: str, port: int, *, auth: bool,
                                 json_lines: bool = False) -> None:
    """Serve until SIGINT or SIGTERM, then close the server (runs cancelled) and return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start(host, port)
        models = ", ".join(sorted(server.model_ids))
        _announce(f"fastrlm serve: listening on {server.base_url} (models: {models}; "
                  f"auth: {'bearer token' if auth else 'off'}; at most "
                  f"{server.max_concurrent_runs} runs at once)", json_lines)
        await stop.wait()
        _announce("fastrlm serve: stopping (cancelling runs)", json_lines)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await server.close()
