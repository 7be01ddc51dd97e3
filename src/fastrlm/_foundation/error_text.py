"""The ``[error: <kind>: <message>]`` vocabulary: the text a prompt's slot holds in place of a
sub-model's answer when the call failed or was refused. Its one owner: the sandboxes' host calls,
the engine's sub-call bridge, the tools and the bench's baselines all write it through
:func:`error_text`, and model code can branch on the ``kind``."""

from __future__ import annotations

import re

#: The longest message an error answer carries.
MAX_ERROR_MESSAGE_CHARS = 2_000

#: The error kinds the engine and the sandboxes use; the engine adds the budget refusals
#: (``budget_subcalls``, ``budget_tokens``, ``budget_usd``, ``budget_requests``, ``timeout``).
ERROR_KINDS: tuple[str, ...] = (
    "host_error",
    "no_answer",
    "bad_answer",
    "subcalls_disabled",
    "unknown_model",
    "prompt_too_long",
    "subcall_failed",
    "child_failed",
    # host tools: the ``kind`` of a failed tool reply (the cell gets a ToolError)
    "unknown_tool",
    "bad_arguments",
    "tool_error",
    "tool_timeout",
    "tool_limit",
    "bad_result",
)
_KIND = re.compile(r"[a-z][a-z_]*\Z")


def is_error_kind(kind: str) -> bool:
    """Whether ``kind`` is a snake_case word, the form every error kind has."""
    return bool(_KIND.match(kind))


def error_text(kind: str, message: str) -> str:
    """The answer a prompt gets in place of a sub-model's text: ``[error: <kind>: <message>]``.
    ``kind`` is a snake_case word the model can branch on (see ``docs/architecture.md``);
    ``message`` says what happened and what to do, cut to ``MAX_ERROR_MESSAGE_CHARS``. Raises
    ``ValueError`` for a ``kind`` that is not snake_case (a bug in the caller)."""
    if not is_error_kind(kind):
        raise ValueError(f"error kind {kind!r} is not a snake_case word")
    if len(message) > MAX_ERROR_MESSAGE_CHARS:
        message = message[: MAX_ERROR_MESSAGE_CHARS - 1] + "…"
    return f"[error: {kind}: {message}]"
