"""How the root conversation stays short and cache-friendly. Pure functions, no I/O.

A provider bills every token of every request, and those that cache prompts (OpenAI on its own,
Anthropic through ``cache_control``) bill the part that repeats an earlier request's prefix at
about a tenth of the price. So the history is shaped for requests that extend the one before:

- The system prompt and the first message never change.
- A turn's output is shown whole (up to ``Limits.output_chars``) in the request right after it
  ran. When the next turn's output arrives, that message is *settled*, once: replaced by a short
  preview of its outputs (:data:`SETTLED_CHARS`, head and tail), without the budget and turn
  line, which are stale by then. A request therefore differs from the previous one only from
  the previous turn's output on; everything before it is the previous request's prefix, and each
  long output is paid in full once. Outputs already within the preview size are left as they
  are (rewriting them would cost more cache than it saves).
- Past ``Limits.history_chars``, :func:`fastrlm._core.parsing.compact_history` elides the oldest
  outputs in one large step, so the early prefix is rewritten rarely.

``Limits.full_history=True`` keeps every output as it was first shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..lm import ChatMessage

#: The size of a settled output: what later turns keep of an output already shown whole.
SETTLED_CHARS = 1_000
SETTLED_MARK = "\n[... {n:,} characters omitted here; shown in full the turn it ran ...]\n"


@dataclass(frozen=True, slots=True)
class Pending:
    """The newest feedback message (at ``index``, as ``shown``) and what it settles to."""

    index: int
    shown: str
    settled: str


def settle(outputs: str, limit: int = SETTLED_CHARS) -> str | None:
    """The settled form of a turn's outputs: head and tail within ``limit`` characters and how
    much was left out, or ``None`` when they already fit (they stay as they were shown)."""
    if len(outputs) <= limit:
        return None
    mark = SETTLED_MARK.format(n=len(outputs) - limit)
    keep = max(limit - len(mark), 0)
    head = keep * 2 // 3
    tail = keep - head
    return outputs[:head] + mark + (outputs[-tail:] if tail else "")


def add_feedback(
    messages: list[ChatMessage], shown: str, outputs: str, pending: Pending | None,
    *, full_history: bool = False,
) -> Pending | None:
    """Append the next feedback message (``shown``: the outputs with the turn's notes) after
    settling the one before it. ``pending`` is what the previous call returned; its message is
    replaced only if it is still there unchanged. Returns the record for the next call (``None``
    when this message will not need settling, or with ``full_history``)."""
    if pending is not None and pending.index < len(messages):
        message = messages[pending.index]
        if message["role"] == "user" and message["content"] == pending.shown:
            # a new dict: the one sent earlier may still be held (a trace, a test's record)
            messages[pending.index] = {"role": "user", "content": pending.settled}
    messages.append({"role": "user", "content": shown})
    settled = None if full_history else settle(outputs)
    if settled is None:
        return None
    return Pending(len(messages) - 1, shown, settled)


def shared_prefix(before: list[ChatMessage], after: list[ChatMessage]) -> int:
    """Characters of ``after`` (contents, in order) that repeat ``before`` from the start: the
    part of a request a prompt cache can serve from the previous one."""
    shared = 0
    for a, b in zip(before, after, strict=False):
        if a == b:
            shared += len(b["content"])
            continue
        if a["role"] == b["role"]:
            x, y = a["content"], b["content"]
            n = 0
            limit = min(len(x), len(y))
            while n < limit and x[n] == y[n]:
                n += 1
            shared += n
        break
    return shared
