"""The root conversation's shape: settled outputs, stable prefix, rare compaction (pure)."""

from __future__ import annotations

from fastrlm import Limits
from fastrlm._core.history import SETTLED_CHARS, Pending, add_feedback, settle, shared_prefix
from fastrlm._core.parsing import compact_history
from fastrlm.lm import ChatMessage


def _head() -> list[ChatMessage]:
    return [{"role": "system", "content": "system prompt"},
            {"role": "user", "content": "context description and question"}]


def _footer(turn: int) -> str:
    return f"\nBudget left: {30 - turn} turns.\nTurn {turn} of 30 done."


def _play(outputs: list[str], *, full_history: bool = False) -> list[list[ChatMessage]]:
    """The requests a run sends when its turns print ``outputs`` (copies, as sent)."""
    messages = _head()
    requests = [[dict(m) for m in messages]]  # type: ignore[misc]
    pending: Pending | None = None
    for turn, out in enumerate(outputs, 1):
        messages.append({"role": "assistant", "content": f"```repl\nstep({turn})\n```"})
        pending = add_feedback(messages, out + _footer(turn), out, pending,
                               full_history=full_history)
        requests.append([dict(m) for m in messages])  # type: ignore[misc]
    return requests


def test_a_short_output_is_never_rewritten() -> None:
    assert settle("x" * SETTLED_CHARS) is None
    requests = _play(["short"] * 5)
    assert all(r[: len(p)] == p for p, r in zip(requests, requests[1:], strict=False))


def test_a_long_output_is_shown_whole_once_then_settled_to_a_preview() -> None:
    long = "H" * 30_000 + "T" * 30_000
    requests = _play([long, "short", "short"])
    assert requests[1][-1]["content"].startswith(long)  # the request right after it ran
    settled = requests[2][3]["content"]
    assert len(settled) <= SETTLED_CHARS
    assert settled.startswith("H") and settled.endswith("T")
    assert "59,000 characters omitted" in settled
    assert "Budget left" not in settled  # the stale footer is not repeated
    assert requests[3][3]["content"] == settled  # settled once, then stable


def test_every_request_extends_the_previous_one_up_to_the_previous_output() -> None:
    outputs = ["x" * 50_000 if i % 3 == 0 else f"line {i}" for i in range(30)]
    requests = _play(outputs)
    for before, after in zip(requests[1:], requests[2:], strict=False):
        stable = before[:-1]  # all but the previous turn's output message
        assert after[: len(stable)] == stable
        assert shared_prefix(before, after) >= sum(len(m["content"]) for m in stable)
    assert requests[-1][:2] == _head()  # system prompt and first message never change


def test_full_history_keeps_every_output_as_it_was_shown() -> None:
    long = "y" * 20_000
    requests = _play([long, long, "short"], full_history=True)
    assert requests[-1][3]["content"].startswith(long)
    assert requests[-1][5]["content"].startswith(long)
    assert Limits(full_history=True).full_history


def test_a_message_changed_since_it_was_recorded_is_left_alone() -> None:
    messages = _head()
    pending = add_feedback(messages, "z" * 5000 + "!", "z" * 5000, None)
    assert pending is not None
    messages[-1]["content"] = "replaced by someone else"
    add_feedback(messages, "next", "next", pending)
    assert messages[2]["content"] == "replaced by someone else"


def test_full_history_flag_must_be_a_bool() -> None:
    import pytest

    with pytest.raises(ValueError, match="full_history"):
        Limits(full_history="yes")  # type: ignore[arg-type]


def test_compaction_comes_in_one_large_step_then_leaves_the_prefix_alone() -> None:
    messages = _head()
    rewrites = 0
    for i in range(40):
        messages.append({"role": "assistant", "content": f"```repl\nstep{i}\n```"})
        messages.append({"role": "user", "content": f"out{i} " + "x" * 5_000})
        before = [dict(m) for m in messages]
        if compact_history(messages, 60_000):
            rewrites += 1
            assert sum(len(m["content"]) for m in messages) <= 30_000
        else:
            assert messages == before
    assert 1 <= rewrites <= 10  # 40 turns of 5K against a 60K limit: every ~6 turns, not each


def _run_three_turns(limits: Limits) -> list[list[ChatMessage]]:
    from .helpers import make_rlm, repl

    rlm, root = make_rlm([repl("print('A' * 30000)"), repl("print('b')"),
                          repl("FINAL('done')")], limits=limits)
    assert rlm.completion("q", context="ctx").answer == "done"
    return root.calls


def test_a_run_settles_a_long_output_in_the_request_after_next() -> None:
    calls = _run_three_turns(Limits())
    assert calls[1][-1]["content"].count("A") > 9_000  # shown (cut to output_chars) once
    assert len(calls[2][3]["content"]) <= SETTLED_CHARS  # then a preview
    assert calls[2][:3] == calls[1][:3]  # the prefix before it is the previous request's


def test_a_run_with_full_history_keeps_the_long_output() -> None:
    calls = _run_three_turns(Limits(full_history=True))
    assert calls[2][3] == calls[1][3]
