"""The root conversation's shape: append-only turns, a stable prefix, rare compaction points
that settle every open output at once, and a per-turn output budget (pure, then one engine
run of 30 output-heavy turns)."""

from __future__ import annotations

import random

import pytest

from fastrlm import Budget, Limits
from fastrlm._core.history import (
    CACHED_PRICE,
    MIN_SHOWN_CHARS,
    SETTLE_EVERY,
    compact_history,
    compaction_pays,
    note,
    output_budget,
    shared_prefix,
)
from fastrlm._core.parsing import truncate_output
from fastrlm.lm import ChatMessage

LIMIT = 30_000


def _head() -> list[ChatMessage]:
    return [{"role": "system", "content": "system prompt " * 300},
            {"role": "user", "content": "context description and question"}]


def _reply(turn: int) -> ChatMessage:
    return {"role": "assistant", "content": f"```repl\nstep({turn})\n```"}


def _output(turn: int, text: str) -> ChatMessage:
    return {"role": "user", "content": f"{text}\n[Turn {turn} of 60 done]"}


def _play(outputs: list[str], limit: int = LIMIT, *, full_history: bool = False,
          replies: list[str] | None = None, output_chars: int = 2_000
          ) -> list[list[ChatMessage]]:
    """The requests a run sends when its turns print ``outputs``, as the engine builds them:
    each output cut to its budget, then compaction before the next request (copies, as sent)."""
    messages = _head()
    requests = [[dict(m) for m in messages]]  # type: ignore[misc]
    for turn, out in enumerate(outputs, 1):
        reply = _reply(turn) if replies is None else {"role": "assistant",
                                                      "content": replies[turn - 1]}
        messages.append(reply)
        budget = output_chars if full_history else output_budget(messages, limit, output_chars)
        messages.append(_output(turn, truncate_output(out, budget)))
        compact_history(messages, limit, full_history=full_history)
        requests.append([dict(m) for m in messages])  # type: ignore[misc]
    return requests


def _extends(before: list[ChatMessage], after: list[ChatMessage]) -> bool:
    """As the benchmark counts it: the request repeats all of the previous one."""
    return shared_prefix(before, after) >= sum(len(m["content"]) for m in before)


def _rewrites(requests: list[list[ChatMessage]]) -> list[int]:
    """The indexes of the requests that do not extend the one before."""
    return [i for i, (p, r) in enumerate(zip(requests, requests[1:], strict=False), 1)
            if not _extends(p, r)]


def _size(messages: list[ChatMessage]) -> int:
    return sum(len(m["content"]) for m in messages)


# ---------------------------------------------------------------------- when compaction comes
def test_each_request_extends_the_previous_one_while_few_outputs_are_open() -> None:
    requests = _play(["x" * 2_000] * (SETTLE_EVERY - 1))
    assert _rewrites(requests) == []
    assert all(r[:2] == _head() for r in requests)  # system prompt and question never change


def test_small_outputs_are_never_compacted_when_settling_would_not_pay() -> None:
    """Forty turns that print a few characters: a note would save nearly nothing, so the
    cache is never missed for it."""
    requests = _play(["ok"] * 40)
    assert _rewrites(requests) == []


def test_compaction_settles_every_open_output_but_the_latest_in_one_step() -> None:
    requests = _play(["y" * 1_500] * 12)
    (at,) = _rewrites(requests)
    compacted = requests[at]
    outputs = [m["content"] for m in compacted[3::2]]
    assert all(o.startswith("[REPL output elided: ") for o in outputs[:-1])
    assert outputs[-1].startswith("y" * 1_500)  # the latest turn is shown as it was
    assert [m["content"] for m in compacted[2::2]] == [_reply(t)["content"]
                                                      for t in range(1, len(outputs) + 1)]
    assert len(outputs) - 1 >= SETTLE_EVERY  # batched: never a little every turn


def test_output_heavy_turns_miss_the_cache_at_most_once_in_settle_every_requests() -> None:
    """Sixty turns that each print far more than the ceiling: the budget shrinks what each
    shows, so compaction stays as rare as the cost rule makes it."""
    requests = _play(["z" * 500_000] * 60)
    rewrites = _rewrites(requests)
    assert 1 <= len(rewrites) <= 60 // SETTLE_EVERY
    assert all(b - a >= SETTLE_EVERY for a, b in zip(rewrites, rewrites[1:], strict=False))
    assert max(_size(r) for r in requests) <= LIMIT


def test_random_output_sizes_keep_nine_in_ten_requests_append_only() -> None:
    rng = random.Random(31)
    outputs = ["r" * rng.choice([0, 50, 400, 3_000, 60_000, 1_000_000]) for _ in range(100)]
    requests = _play(outputs)
    assert len(_rewrites(requests)) <= 100 // SETTLE_EVERY
    assert max(_size(r) for r in requests) <= LIMIT


def test_the_ceiling_compacts_early_when_replies_alone_fill_it() -> None:
    """A model whose replies are huge: compaction cannot shorten a reply, so the ceiling
    settles the outputs at once, early, and the replies stay whole."""
    replies = ["#" * 9_000 + f"\nstep({t})" for t in range(1, 6)]
    requests = _play(["w" * 3_000] * 5, replies=replies)
    assert _rewrites(requests)  # forced before SETTLE_EVERY outputs were open
    last = requests[-1]
    assert [m["content"] for m in last[2::2]] == replies
    assert all(m["content"].startswith("[REPL output elided") for m in last[3:-1:2])


def test_a_history_made_only_of_model_replies_is_left_alone() -> None:
    messages = _head() + [{"role": "assistant", "content": "a" * 50_000} for _ in range(3)]
    before = [dict(m) for m in messages]
    assert compact_history(messages, LIMIT) == 0
    assert messages == before


def test_an_output_far_larger_than_the_limit_is_settled_once_it_is_not_the_latest() -> None:
    huge = "H" * 2_000_000
    messages = _head() + [_reply(1), _output(1, huge)]
    assert compact_history(messages, LIMIT) == 0  # the latest turn is never settled
    messages += [_reply(2), _output(2, "small")]
    assert compact_history(messages, LIMIT) == 1
    assert messages[3]["content"] == note(huge + "\n[Turn 1 of 60 done]")
    assert "2,000,020 characters" in messages[3]["content"]


def test_no_compaction_near_the_end_of_the_run_when_it_cannot_pay_back() -> None:
    """Eleven turns of 300-character code and 600-character outputs: settling saves about
    twice what it sends again uncached, which pays back over several requests, not one."""
    def open_turns() -> list[ChatMessage]:
        messages = _head()
        for turn in range(1, SETTLE_EVERY + 2):
            messages += [{"role": "assistant", "content": f"step({turn})" + "#" * 290},
                         _output(turn, "v" * 600)]
        return messages

    messages = open_turns()
    assert compact_history(messages, LIMIT, requests_left=1) == 0
    assert compact_history(messages, LIMIT, requests_left=SETTLE_EVERY) == SETTLE_EVERY


def test_compaction_pays_compares_cached_reads_saved_with_the_cache_miss() -> None:
    resent = 9_000
    saved = round(resent * (1 - CACHED_PRICE) / (CACHED_PRICE * SETTLE_EVERY))
    assert compaction_pays(saved, resent, SETTLE_EVERY)
    assert not compaction_pays(saved - 10, resent, SETTLE_EVERY)
    assert not compaction_pays(saved, resent, 1)
    assert not compaction_pays(10**9, 0, 0)  # the last request: nothing left to save on


# ---------------------------------------------------------------------- what stays untouched
def test_session_questions_and_notes_are_never_rewritten() -> None:
    messages = _head() + [_reply(1), _output(1, "q" * 40_000),
                          {"role": "user", "content": "[Question 1, earlier in this session: x]"},
                          {"role": "assistant", "content": "[Its work is elided ...]"},
                          {"role": "user", "content": "New question (2 in this session):\nwhy"},
                          _reply(2), _output(2, "p" * 100)]
    assert compact_history(messages, LIMIT) == 1
    assert messages[4]["content"].startswith("[Question 1")
    assert messages[6]["content"].startswith("New question (")
    settled = messages[3]["content"]
    messages += [_reply(3), _output(3, "s" * 40_000), _reply(4), _output(4, "t")]
    compact_history(messages, LIMIT)
    assert messages[3]["content"] == settled  # a note is not noted again


def test_compaction_never_changes_a_dict_already_sent() -> None:
    sent = _output(1, "w" * 50_000)
    messages = _head() + [_reply(1), sent, _reply(2), _output(2, "e")]
    assert compact_history(messages, LIMIT) == 1
    assert sent["content"].startswith("w" * 50_000)  # the record of the request that carried it
    assert messages[3] is not sent


def test_full_history_shows_each_output_whole_or_not_at_all_and_compacts_rarely() -> None:
    requests = _play(["v" * 4_000] * 20, full_history=True, output_chars=4_000)
    for request in requests:
        for m in request[3::2]:
            assert m["content"].startswith("v" * 4_000) or m["content"].startswith("[REPL output")
    rewrites = _rewrites(requests)
    assert 1 <= len(rewrites) <= 5
    for at in rewrites:  # the oldest went first, down to a quarter of the ceiling
        after = requests[at]
        assert _size(after) <= LIMIT // 4 + 2 * 4_100
        assert after[3]["content"].startswith("[REPL output")
    assert Limits(full_history=True).full_history


def test_full_history_does_not_compact_under_the_ceiling_whatever_it_would_save() -> None:
    messages = _head()
    for turn in range(1, 3 * SETTLE_EVERY):
        messages += [_reply(turn), _output(turn, "u" * 200)]
    assert _size(messages) < LIMIT
    assert compact_history(messages, LIMIT, full_history=True) == 0


# ---------------------------------------------------------------------- the output budget
def test_output_budget_is_output_chars_while_there_is_room() -> None:
    assert output_budget(_head() + [_reply(1)], LIMIT, 2_000) == 2_000


def test_output_budget_shares_the_room_left_among_the_turns_before_a_compaction() -> None:
    messages = _head() + [_reply(1)]
    filler = LIMIT - _size(messages) - 6_000
    messages[1] = {"role": "user", "content": messages[1]["content"] + "f" * filler}
    shown = output_budget(messages, LIMIT, 4_000)
    assert MIN_SHOWN_CHARS <= shown < 6_000 // SETTLE_EVERY


def test_output_budget_never_goes_under_its_floor_nor_over_output_chars() -> None:
    full = _head() + [{"role": "assistant", "content": "x" * (2 * LIMIT)}]
    assert output_budget(full, LIMIT, 4_000) == MIN_SHOWN_CHARS
    assert output_budget(full, LIMIT, 300) == 300
    assert output_budget(_head() + [_reply(1)], 10**9, 2_000) == 2_000


def test_settle_note_says_how_much_was_there() -> None:
    assert note("x" * 12_345) == "[REPL output elided: 12,345 characters]"


def test_shared_prefix_counts_what_a_prompt_cache_can_serve() -> None:
    a = _head() + [{"role": "user", "content": "abcdef"}]
    b = _head() + [{"role": "user", "content": "abcxyz"}]
    assert shared_prefix(a, b) == _size(_head()) + 3


def test_full_history_flag_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match="full_history"):
        Limits(full_history="yes")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- through the engine
def _run_turns(limits: Limits, prints: list[str], **kw: object) -> list[list[ChatMessage]]:
    from .helpers import make_rlm, repl

    rlm, root = make_rlm([*(repl(f"print({p})") for p in prints), repl("FINAL('done')")],
                         limits=limits, **kw)
    assert rlm.completion("q", context="c" * 3_000_000).answer == "done"
    return root.calls


def test_a_run_shows_an_output_cut_to_its_budget_and_keeps_it_as_shown() -> None:
    calls = _run_turns(Limits(), ["'A' * 30000", "'b'"])
    shown = calls[1][-1]["content"]
    assert 1_000 < shown.count("A") <= Limits().output_chars  # head and tail of 30,000
    assert "characters omitted; the output was 30,001 characters in all" in shown
    assert calls[2][: len(calls[1])] == calls[1]  # the next request extends this one
    assert "cut to at most 2,000 characters" in calls[0][0]["content"]


def test_an_output_heavy_run_of_30_turns_extends_the_previous_request_nine_times_in_ten() -> None:
    """29 turns that each print 50,000 characters of the context, then the answer: at least
    90% of the root requests repeat all of the previous one (counted as the benchmark counts
    them), and none is larger than the ceiling."""
    prints = [f"context[{i * 60_000}:{i * 60_000 + 50_000}]" for i in range(29)]
    calls = _run_turns(Limits(), prints, budget=Budget(max_iterations=35))
    assert len(calls) == 30
    rewrites = _rewrites(calls)
    assert len(calls) - 1 - len(rewrites) >= 0.9 * (len(calls) - 1)
    assert max(_size(c) for c in calls) <= Limits().history_chars + Limits().output_chars


def test_a_run_near_its_ceiling_shows_less_of_each_output_and_says_how_long_it_was() -> None:
    """The engine cuts each output to the turn's budget, not to ``output_chars`` alone: with
    a small ceiling, twelve 50,000-character prints are shown shorter, never under the floor,
    each saying its full length, and the history still misses the cache at most once."""
    limits = Limits(history_chars=12_000, output_chars=4_000)
    prints = [f"context[{i * 60_000}:{i * 60_000 + 50_000}]" for i in range(12)]
    calls = _run_turns(limits, prints, budget=Budget(max_iterations=20))
    shown = [c[-1]["content"] for c in calls[1:]]
    assert all("the output was 50,001 characters in all" in s for s in shown)
    sizes = [s.count("c") for s in shown]
    assert min(sizes) >= MIN_SHOWN_CHARS - 200 and max(sizes) < 1_000  # not 4,000
    assert len(_rewrites(calls)) <= 1
    assert "cut to at most 4,000 characters" in calls[0][0]["content"]
