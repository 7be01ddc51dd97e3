"""How the root conversation stays short and cache-friendly. Pure functions, no I/O.

A provider bills every token of every request, and those that cache prompts (OpenAI on its own,
Anthropic through ``cache_control``) bill the part that repeats an earlier request's prefix at
about a tenth of the price (:data:`CACHED_PRICE`). So the history is shaped for requests that
*extend* the one before, rewritten only at rare compaction points that free all they can:

- The system prompt and the first message never change.
- A turn's output (cut to its budget, head and tail) and a one-line turn note are appended once
  and then left as they are: every request is the previous one plus the model's reply and the
  new output, so a provider's prompt cache serves everything that came before.
- A compaction (:func:`compact_history`) settles, in one step, every output shown since the
  previous compaction but the latest: each becomes a one-line note of its size (:data:`NOTE`);
  the model's replies (its code) stay. It happens when the conversation passes
  ``Limits.history_chars`` (the ceiling), or once :data:`SETTLE_EVERY` outputs are open and
  settling them pays for the cache miss within the next :data:`SETTLE_EVERY` requests
  (:func:`compaction_pays`). So at least nine requests in ten extend the previous one, and
  the history stays small between compactions.
- A turn's output budget (:func:`output_budget`) is ``Limits.output_chars``, less when the room
  left under the ceiling, shared among the turns before a compaction may come, is smaller: a
  run that prints a lot every turn sees less of each output (never under
  :data:`MIN_SHOWN_CHARS`; the cut says how much is left out) rather than missing the cache
  every few turns.

``Limits.full_history=True`` favours what the model sees over cost: every output is shown at
``Limits.output_chars``, and only the ceiling compacts, eliding the oldest outputs whole until
the conversation is a quarter of it (an output is there as it was first shown or not at all).
"""

from __future__ import annotations

from ..lm import ChatMessage

#: A compaction that is not forced by the ceiling settles at least this many outputs at once:
#: at most one request in this many misses the prompt cache.
SETTLE_EVERY = 10
#: A cached input token's price as a share of an uncached one (OpenAI's GPT-5 and GPT-4.1
#: families: 0.1 and 0.25; Anthropic's cache reads: 0.1).
CACHED_PRICE = 0.1
#: The least of an output a turn shows when its budget shrinks (head and tail).
MIN_SHOWN_CHARS = 500
#: What a settled output becomes. The system prompt says what it means (re-run code to see it).
NOTE = "[REPL output elided: {n:,} characters]"
#: What a turn adds besides its output and the model's reply: the block header and fences, the
#: turn note (an estimate, for the output budget).
TURN_FRAME_CHARS = 80

#: User messages compaction leaves alone: notes it already wrote, and a session's questions
#: (collapsed whole by ``continuation.compact_questions``, never elided here).
_KEPT = ("[REPL output", "[Question ", "New question (")
#: The latest turn (the model's reply and what it printed) is never settled.
_LATEST = 2


def note(output: str) -> str:
    """The one-line note a settled output leaves: its size."""
    return NOTE.format(n=len(output))


def _size(messages: list[ChatMessage]) -> int:
    return sum(len(m["content"]) for m in messages)


def _open_outputs(messages: list[ChatMessage]) -> list[int]:
    """Indexes of the outputs (user messages after the opening) not settled yet, the latest
    turn's excepted."""
    return [i for i in range(2, len(messages) - _LATEST)
            if messages[i]["role"] == "user" and not messages[i]["content"].startswith(_KEPT)]


def compaction_pays(saved: int, resent: int, requests: int) -> bool:
    """Whether ``saved`` characters fewer in each of the next ``requests`` requests (read from
    the cache, at :data:`CACHED_PRICE`) outweigh sending ``resent`` characters uncached once,
    which would have been read from the cache (a compaction's cache miss). Never with no
    request left to save on."""
    return requests > 0 and saved * CACHED_PRICE * requests >= resent * (1 - CACHED_PRICE)


def compact_history(messages: list[ChatMessage], max_chars: int, *,
                    requests_left: int | None = None, full_history: bool = False) -> int:
    """Settle the open outputs of ``messages`` in place, in one step, when the conversation
    is over ``max_chars`` or when :data:`SETTLE_EVERY` of them are open and settling pays
    (over the next ``requests_left`` requests at most, when the run's turns are counted):
    each becomes its :func:`note`. With ``full_history``, only past ``max_chars``, and the
    oldest outputs are elided whole until the conversation fits a quarter of it.

    The system prompt, the first user message, a session's questions, the model's replies and
    the latest turn are never touched; a rewritten message is a new dict (the one sent earlier
    may still be held: a trace, a test's record). Returns how many messages were rewritten
    (0: the conversation is exactly as it was)."""
    if full_history:
        return _elide_oldest(messages, max_chars)
    open_outputs = _open_outputs(messages)
    if not open_outputs:
        return 0
    saved = sum(len(messages[i]["content"]) - len(note(messages[i]["content"]))
                for i in open_outputs)
    first = open_outputs[0]
    resent = _size(messages[first:len(messages) - _LATEST]) - saved
    horizon = SETTLE_EVERY if requests_left is None else min(SETTLE_EVERY, requests_left)
    due = len(open_outputs) >= SETTLE_EVERY and compaction_pays(saved, resent, horizon)
    if not due and _size(messages) <= max_chars:
        return 0
    for i in open_outputs:
        messages[i] = {"role": "user", "content": note(messages[i]["content"])}
    return len(open_outputs)


def _elide_oldest(messages: list[ChatMessage], max_chars: int) -> int:
    total = _size(messages)
    if total <= max_chars:
        return 0
    rewritten = 0
    for i in _open_outputs(messages):
        if total <= max_chars // 4:
            break
        content = messages[i]["content"]
        short = note(content)
        if len(short) >= len(content):
            continue
        total -= len(content) - len(short)
        messages[i] = {"role": "user", "content": short}
        rewritten += 1
    return rewritten


def output_budget(messages: list[ChatMessage], max_chars: int, output_chars: int) -> int:
    """How many characters of the output of the turn whose reply ends ``messages`` to show:
    ``output_chars``, or less when the room left under ``max_chars``, shared among this turn
    and those before a compaction may settle (:data:`SETTLE_EVERY` open outputs), each also
    taking a reply of the average size so far, is smaller; never under
    :data:`MIN_SHOWN_CHARS` (nor over ``output_chars``)."""
    turns = max(SETTLE_EVERY - len(_open_outputs(messages)), 1)
    replies = [len(m["content"]) for m in messages[2:] if m["role"] == "assistant"]
    reply = sum(replies) // len(replies) if replies else 0
    room = max_chars - _size(messages) - (turns - 1) * reply - turns * TURN_FRAME_CHARS
    return min(output_chars, max(room // turns, MIN_SHOWN_CHARS))


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
