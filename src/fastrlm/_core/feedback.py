"""Pure helpers that turn what a cell did into the text the root model is shown."""

from __future__ import annotations

from .._foundation.stop import StopReason
from ..sandbox import ExecResult

RESOURCE_NAMES = {
    StopReason.BUDGET_SUBCALLS: "The sub-call budget",
    StopReason.BUDGET_USD: "The USD budget",
    StopReason.BUDGET_TOKENS: "The token budget",
    StopReason.BUDGET_REQUESTS: "The request budget",
}


def with_context(prompt: str, context: object) -> str:
    """A child's prompt and context merged into one llm_query prompt (depth limit reached)."""
    text = context if isinstance(context, str) else repr(context)
    return f"{prompt}\n\nContext:\n{text}"


def output_of(result: ExecResult) -> str:
    """Everything a cell printed, its error and any capped output, as one text."""
    out = result.stdout
    if result.stderr:
        out = join_text(out, result.stderr)
    if result.error:
        out = join_text(out, result.error)
    if result.dropped_bytes:
        out = join_text(out, f"[output capped at the source: {result.dropped_bytes:,} more bytes "
                             "were discarded]")
    return out or "(no output)"


def status_of(result: ExecResult) -> str:
    """The short status after "Output of block N"."""
    if result.restarted:
        return " (killed; REPL restarted)"
    if result.timed_out:
        return " (timed out; variables kept)"
    if result.error:
        return " (error)"
    return ""


def join_text(a: str, b: str) -> str:
    return f"{a.rstrip()}\n{b}" if a else b
