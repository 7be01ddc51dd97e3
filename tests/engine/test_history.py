"""The root conversation's shape: append-only turns, stable prefix, rare compaction (pure)."""

from __future__ import annotations

import pytest

from fastrlm import Limits
from fastrlm._core.history import SETTLED_CHARS, compact_history, settle, shared_prefix
from fastrlm.lm import ChatMessage


def _head() -> list[ChatMessage]:
    return [{"role": "system", "content": "system prompt"},
            {"role": "user", "content": "context description and question"}]


def _play(outputs: list[str], limit: int = 30_000, *, previews: bool = True
          ) -> list[list[ChatMessage]]:
    """The requests a run sends when its turns print ``outputs`` (copies, as sent)."""
    messages = _head()
    requests = [[dict(m) for m in messages]]  # type: ignore[misc]
    for turn, out in enumerate(outputs, 1):
        messages.append({"role": "assistant", "content": f"```repl\nstep({turn})\n```"})
        messages.append({"role": "user", "content": f"{out}\n[Turn {turn} of 30 done]"})
        compact_history(messages, limit, previews=previews)
        requests.append([dict(m) for m in messages])  # type: ignore[misc]
    return requests


def _extends(before: list[ChatMessage], after: list[ChatMessage]) -> bool:
    return after[: len(before)] == before


def test_each_request_extends_the_previous_one_until_the_history_passes_its_limit() -> None:
    requests = _play(["x" * 4_000] * 6 + ["short"] * 10)  # 24K of outputs: under 30K
    assert all(_extends(p, r) for p, r in zip(requests, requests[1:], strict=False))


def test_compaction_is_rare_and_leaves_a_quarter_of_the_limit() -> None:
    """30 turns of 4K outputs against a 30K limit: a few large steps, never one per turn."""
    requests = _play(["y" * 4_000] * 30)
    rewrites = [r for p, r in zip(requests, requests[1:], strict=False) if not _extends(p, r)]
    assert 1 <= len(rewrites) <= 6
    for request in rewrites:  # right after a compaction: room for several turns
        assert sum(len(m["content"]) for m in request) <= 30_000 // 4 + 4 * 4_100
    assert all(r[:2] == _head() for r in requests)  # system prompt and question never change


def test_compaction_keeps_previews_of_the_oldest_outputs_before_eliding_them() -> None:
    messages = _head()
    for i in range(4):
        messages.append({"role": "assistant", "content": f"code {i}"})
        messages.append({"role": "user", "content": f"H{i}" + "h" * 20_000 + f"T{i}"})
    for i in range(4, 6):
        messages.append({"role": "assistant", "content": f"code {i}"})
        messages.append({"role": "user", "content": f"short {i}"})
    assert compact_history(messages, 60_000) == 4
    previews = [m["content"] for m in messages[3:11:2]]
    assert all(len(p) <= SETTLED_CHARS for p in previews)
    assert all(p.startswith(f"H{i}") and p.endswith(f"T{i}") and "characters omitted" in p
               for i, p in enumerate(previews))
    assert [m["content"] for m in messages[2::2]] == [f"code {i}" for i in range(6)]


def test_compaction_elides_previews_when_they_are_not_enough() -> None:
    messages = _head()
    for i in range(10):
        messages.append({"role": "assistant", "content": f"code {i}"})
        messages.append({"role": "user", "content": f"H{i}" + "h" * 6_000})
    compact_history(messages, 50_000)
    contents = [m["content"] for m in messages[3::2]]
    assert contents[0].startswith("[REPL output of an earlier turn elided")  # oldest first
    assert contents[-1].startswith("H9") and len(contents[-1]) > 6_000  # the latest kept
    assert sum(len(m["content"]) for m in messages) <= 50_000


def test_a_conversation_under_the_limit_is_not_touched() -> None:
    messages = _head() + [{"role": "user", "content": "z" * 1_000}]
    before = [dict(m) for m in messages]
    assert compact_history(messages, 30_000) == 0
    assert messages == before


def test_compaction_never_changes_a_dict_already_sent() -> None:
    messages = _head()
    sent = {"role": "user", "content": "w" * 50_000}
    messages += [{"role": "assistant", "content": "a"}, sent,
                 {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"},
                 {"role": "assistant", "content": "d"}, {"role": "user", "content": "e"}]
    assert compact_history(messages, 30_000) == 1
    assert sent["content"] == "w" * 50_000  # the record of the request that carried it
    assert messages[3]["content"] != sent["content"]


def test_full_history_shows_each_output_whole_or_not_at_all_and_compacts_rarely() -> None:
    requests = _play(["v" * 4_000] * 20, previews=False)
    for request in requests:
        for m in request[3::2]:
            assert m["content"].startswith("v" * 4_000) or m["content"].startswith("[REPL output")
    rewrites = sum(not _extends(p, r) for p, r in zip(requests, requests[1:], strict=False))
    assert 1 <= rewrites <= 5  # 20 turns of 4K against 30K: large steps, not one per turn
    assert Limits(full_history=True).full_history


def test_settle_keeps_head_and_tail_and_says_how_much_is_gone() -> None:
    assert settle("x" * SETTLED_CHARS) is None
    settled = settle("H" * 30_000 + "T" * 30_000)
    assert settled is not None and len(settled) <= SETTLED_CHARS
    assert settled.startswith("H") and settled.endswith("T")
    assert "59,000 characters omitted" in settled


def test_shared_prefix_counts_what_a_prompt_cache_can_serve() -> None:
    a = _head() + [{"role": "user", "content": "abcdef"}]
    b = _head() + [{"role": "user", "content": "abcxyz"}]
    assert shared_prefix(a, b) == len("system prompt") + len(a[1]["content"]) + 3


def test_full_history_flag_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match="full_history"):
        Limits(full_history="yes")  # type: ignore[arg-type]


def _run_turns(limits: Limits, prints: list[str]) -> list[list[ChatMessage]]:
    from .helpers import make_rlm, repl

    rlm, root = make_rlm([*(repl(f"print({p})") for p in prints), repl("FINAL('done')")],
                         limits=limits)
    assert rlm.completion("q", context="ctx").answer == "done"
    return root.calls


def test_a_run_shows_an_output_cut_to_output_chars_and_keeps_it_as_shown() -> None:
    calls = _run_turns(Limits(), ["'A' * 30000", "'b'"])
    shown = calls[1][-1]["content"]
    assert 3_000 < shown.count("A") <= Limits().output_chars  # head and tail of 30,000
    assert calls[2][: len(calls[1])] == calls[1]  # the next request extends this one


def test_a_run_compacts_past_history_chars_in_one_step() -> None:
    calls = _run_turns(Limits(output_chars=4_000, history_chars=24_000),
                       ["'A' * 30000"] * 8)
    rewrites = sum(not _extends(p, r) for p, r in zip(calls, calls[1:], strict=False))
    assert 1 <= rewrites <= 2  # 8 turns of 4K: not one rewrite per turn
    assert max(sum(len(m["content"]) for m in c) for c in calls) < 24_000 + 2 * 4_500
