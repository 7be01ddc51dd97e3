"""The CLI's exit codes: stable, documented, one per kind of outcome."""

from __future__ import annotations

from enum import IntEnum

from .._foundation.stop import is_limit


class ExitCode(IntEnum):
    """``fastrlm ask`` (and ``demo``) exit with one of these.

    - ``OK`` (0): an answer was delivered with ``FINAL`` and no call was refused by a budget.
    - ``ERROR`` (1): an unexpected failure.
    - ``BAD_INPUT`` (2): bad flags, no model configured, a missing or empty context.
    - ``LIMIT`` (3): a budget, the iteration cap or the time limit ended the run, the run
      answered after a budget refused some of its calls, or no answer matched the requested
      output type (``invalid_output``); the (partial) answer is still printed.
    - ``PROVIDER`` (4): the model provider failed (authentication, connection, bad replies).
    - ``SANDBOX`` (5): the REPL sandbox could not start or run.
    - ``CANCELLED`` (130): interrupted (Ctrl-C / SIGTERM); the partial trace is kept.
    """

    OK = 0
    ERROR = 1
    BAD_INPUT = 2
    LIMIT = 3
    PROVIDER = 4
    SANDBOX = 5
    CANCELLED = 130


_ERROR_KINDS = {"provider": ExitCode.PROVIDER, "sandbox": ExitCode.SANDBOX,
                "context": ExitCode.BAD_INPUT}


def exit_code_for(
    stop_reason: str, error_kind: str | None, limited_by: str | None = None
) -> ExitCode:
    """Map a run's outcome (``RLMResult.stop_reason``, ``.error_kind`` and ``.limited_by``) to
    an exit code. A ``FINAL`` given after a budget refused calls is a degraded answer: LIMIT."""
    if stop_reason == "final":
        return ExitCode.LIMIT if limited_by else ExitCode.OK
    if is_limit(stop_reason):
        return ExitCode.LIMIT
    if stop_reason == "cancelled":
        return ExitCode.CANCELLED
    return _ERROR_KINDS.get(error_kind or "", ExitCode.ERROR)
