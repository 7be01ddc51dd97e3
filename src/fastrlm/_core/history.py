"""How the root conversation stays short and cache-friendly. Pure functions, no I/O.

A provider bills every token of every request, and those that cache prompts (OpenAI on its own,
Anthropic through ``cache_control``) bill the part that repeats an earlier request's prefix at
about a tenth of the price. So the history is shaped for requests that *extend* the one before:

- The system prompt and the first message never change.
- A turn's output (cut to ``Limits.output_chars``, head and tail) and a one-line turn note are
  appended once and then left as they are: every request is the previous one plus the model's
  reply and the new output, so a provider's prompt cache serves everything that came before.
- Past ``Limits.history_chars`` the conversation is compacted in one large step
  (:func:`compact_history`): the oldest outputs become short previews (:data:`SETTLED_CHARS`,
  head and tail), elided whole if that is not enough, until the conversation is a quarter of
  the limit. A compaction rewrites an early message, so every request after it misses the cache
  from there once; a quarter leaves room for many turns before the next one, rather than a
  small rewrite every turn.

``Limits.full_history=True`` never shortens an output to a preview: an output is there as it
was first shown or not at all (compaction elides the oldest ones whole).
"""

from __future__ import annotations

from ..lm import ChatMessage

#: What compaction keeps of an output: head and tail within this many characters.
SETTLED_CHARS = 1_000
SETTLED_MARK = "\n[... {n:,} characters omitted here; shown in full the turn it ran ...]\n"
ELIDED = "[REPL output of an earlier turn elided to keep the conversation short; it was {n:,} " \
    "characters. Re-run code if you need it again.]"

#: User messages compaction leaves alone: notes it already wrote, and a session's questions
#: (collapsed whole by ``session.compact_questions``, never elided here).
_KEPT = ("[REPL output", "[Question ", "New question (")


def settle(outputs: str, limit: int = SETTLED_CHARS) -> str | None:
    """The preview of a turn's outputs that compaction leaves: head and tail within ``limit``
    characters and how much was left out, or ``None`` when they already fit."""
    if len(outputs) <= limit:
        return None
    mark = SETTLED_MARK.format(n=len(outputs) - limit)
    keep = max(limit - len(mark), 0)
    head = keep * 2 // 3
    tail = keep - head
    return outputs[:head] + mark + (outputs[-tail:] if tail else "")


def _elided(outputs: str) -> str | None:
    return None if outputs.startswith(_KEPT) else ELIDED.format(n=len(outputs))


def compact_history(messages: list[ChatMessage], max_chars: int, keep_last: int = 4, *,
                    previews: bool = True) -> int:
    """Past ``max_chars``, shorten the oldest REPL-output messages in place, in one step: to
    previews (``previews``; with ``previews=False`` never), then elided whole, until the
    conversation fits a quarter of ``max_chars``.

    The system prompt, the first user message (metadata + question) and the last ``keep_last``
    messages are never touched; the model's own replies (its code) are kept. Returns how many
    messages were rewritten (0: the conversation is exactly as it was).
    """
    total = sum(len(m["content"]) for m in messages)
    if total <= max_chars:
        return 0
    target = max_chars // 4
    candidates = [i for i in range(2, max(len(messages) - keep_last, 2))
                  if messages[i]["role"] == "user"
                  and not messages[i]["content"].startswith(_KEPT)]
    rewritten: set[int] = set()
    for shorten in (settle, _elided) if previews else (_elided,):
        for i in candidates:
            if total <= target:
                return len(rewritten)
            content = messages[i]["content"]
            short = shorten(content)
            if short is None or len(short) >= len(content):
                continue
            total -= len(content) - len(short)
            # a new dict: the one sent earlier may still be held (a trace, a test's record)
            messages[i] = {"role": "user", "content": short}
            rewritten.add(i)
    return len(rewritten)


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
