"""Budgets over the whole call tree: caps hold before calls are sent, arity is kept."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastrlm import RLM, Budget, Limits, PriceTable, StopReason
from fastrlm.events import BudgetWarning, ChildRunStarted, Event, SubcallsRefused
from fastrlm.testing import ScriptedLM, prompt_of

from .helpers import echo_sub, make_rlm, repl

PRICES = PriceTable({"scripted/root": {"input": 1.0, "output": 4.0},
                     "scripted/sub": {"input": 0.5, "output": 2.0}})


async def test_ten_thousand_subcalls_are_refused_past_the_cap_never_sent() -> None:
    events: list[Event] = []
    sub = echo_sub()
    rlm, _ = make_rlm(
        [repl("r = llm_query_batched([f'p{i}' for i in range(10_000)])\n"
              "print(len(r), sum(x.startswith('ok:') for x in r))"),
         repl("FINAL(str(len(r)))")],
        sub=sub, events=events, budget=Budget(max_subcalls=100),
    )
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "10000"
    assert len(sub.calls) == 100
    assert out.subcalls == 100
    refused = [e for e in events if isinstance(e, SubcallsRefused)]
    assert sum(e.count for e in refused) == 9_900
    assert refused[0].reason == "budget_subcalls"


async def test_batched_query_keeps_arity_when_budget_runs_out() -> None:
    rlm, _ = make_rlm(
        [repl("r = llm_query_batched(['a', 'b', 'c', 'd', 'e'])\nFINAL(repr(r))")],
        budget=Budget(max_subcalls=3),
    )
    out = await rlm.acompletion("q", context="c")
    answers = eval(out.answer)  # noqa: S307 - our own repr
    assert len(answers) == 5
    assert sum(a.startswith("ok:") for a in answers) == 3
    assert sum(a.startswith("[error: budget_subcalls") for a in answers) == 2


async def test_subcall_cap_reached_gives_one_last_turn_then_stops_with_its_reason() -> None:
    rlm, root = make_rlm(
        [repl("r = llm_query_batched(['a'] * 5)"), repl("FINAL('with what I had')")],
        budget=Budget(max_subcalls=2),
    )
    out = await rlm.acompletion("q", context="c")
    assert out.stop_reason is StopReason.BUDGET_SUBCALLS
    assert out.answer == "with what I had"
    assert "sub-call budget is used up" in root.calls[-1][-1]["content"]


async def test_fan_out_over_depth_is_bounded_by_one_tree_wide_cap() -> None:
    # Every run at every depth fans out 5 children/sub-calls: 5^3 = 125 calls uncapped.
    def root_fn(messages: list[dict[str, str]]) -> str:
        return repl("r = rlm_query_batched([f'part {i}' for i in range(5)])\nFINAL(str(len(r)))")

    root = ScriptedLM(root_fn, model="scripted/root")
    sub = echo_sub()
    rlm = RLM(root, sub, sandbox="none", budget=Budget(max_depth=3, max_subcalls=20))
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "5"
    assert len(sub.calls) + len(root.calls) - 1 <= 20
    assert out.subcalls <= 20


async def test_childrens_spend_is_counted_against_the_parent_budget() -> None:
    def root_fn(messages: list[dict[str, str]]) -> str:
        if "part" in messages[1]["content"]:  # a child run: spend on sub-calls, then answer
            return repl("x = llm_query_batched(['s1', 's2'])\nFINAL('child done')")
        return repl("r = rlm_query_batched(['part 1', 'part 2'])\nFINAL(' | '.join(r))")

    root = ScriptedLM(root_fn, model="scripted/root")
    sub = ScriptedLM(lambda m: "sub", model="scripted/sub")
    rlm = RLM(root, sub, sandbox="none", budget=Budget(max_depth=2), prices=PRICES)
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "child done | child done"
    # 2 children (their root turns are sub-calls) + 4 of their llm_query calls
    assert out.subcalls == 6
    expected = sum(u.cost_usd for u in out.usage.by_model.values())
    assert out.cost_usd == pytest.approx(expected, abs=1e-12)
    assert out.usage.by_model["scripted/sub"].calls == 4
    assert out.usage.by_model["scripted/root"].calls == 3


async def test_rlm_query_at_the_depth_limit_falls_back_to_llm_query() -> None:
    sub = echo_sub()
    rlm, root = make_rlm([repl("FINAL(rlm_query('deep question'))")], sub=sub,
                         budget=Budget(max_depth=1))
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "ok:deep question"
    assert len(root.calls) == 1


async def test_usd_cap_refuses_calls_whose_worst_case_does_not_fit() -> None:
    sub = ScriptedLM(lambda m: "x" * 4000, model="scripted/sub", latency_s=0.001)  # 1000 tokens
    rlm, root = make_rlm(
        [repl("r = llm_query_batched(['p'] * 50)\nFINAL(str(sum(not a.startswith('[error') "
              "for a in r)))")],
        sub=sub, budget=Budget(max_usd=0.05), prices=PRICES,
        limits=Limits(sub_max_tokens=1000, root_max_tokens=1000),
    )
    out = await rlm.acompletion("q", context="c")
    assert out.cost_usd <= 0.05
    assert 0 < int(out.answer) < 50


async def test_max_usd_with_an_unknown_price_fails_fast_instead_of_guessing() -> None:
    import pytest

    from fastrlm import ConfigurationError

    with pytest.raises(ConfigurationError, match="no price is known for scripted/root"):
        make_rlm([repl("FINAL(1)")], budget=Budget(max_usd=1.0),
                 prices=PriceTable({"scripted/sub": {"input": 1, "output": 1}},
                                   include_defaults=False))


async def test_token_cap_stops_the_run_with_budget_tokens() -> None:
    rlm, _ = make_rlm([repl("x = 1")] * 10, budget=Budget(max_input_tokens=3000))
    out = await rlm.acompletion("q", context="c")
    assert out.stop_reason is StopReason.BUDGET_TOKENS
    assert out.usage.input_tokens <= 3000


async def test_time_limit_stops_the_tree_with_timeout_and_partial_answer() -> None:
    async def slow(messages: object) -> str:
        await asyncio.sleep(30)
        return "late"

    rlm, _ = make_rlm(
        [repl("answer['content'] = 'partial so far'"), repl("llm_query('slow')")],
        sub=ScriptedLM(slow, model="scripted/sub"), budget=Budget(max_seconds=0.5),
    )
    out = await rlm.acompletion("q", context="c")
    assert out.stop_reason is StopReason.TIMEOUT
    assert out.answer == "partial so far"
    assert out.partial


async def test_concurrency_limit_holds_over_the_whole_tree() -> None:
    sub = ScriptedLM(lambda m: "s", model="scripted/sub", latency_s=0.01)
    rlm, _ = make_rlm([repl("r = llm_query_batched(['p'] * 200)\nFINAL(len(r))")], sub=sub,
                      limits=Limits(max_concurrency=7))
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "200"
    assert sub.max_in_flight == 7


async def test_budget_warning_is_emitted_once_past_80_percent() -> None:
    events: list[Event] = []
    rlm, _ = make_rlm([repl("llm_query_batched(['p'] * 9)"), repl("FINAL(1)")],
                      events=events, budget=Budget(max_subcalls=10))
    await rlm.acompletion("q", context="c")
    warnings = [e for e in events if e.type == "budget.warning"]
    assert len(warnings) == 1 and warnings[0].resource == "subcalls"  # type: ignore[attr-defined]


trajectory = st.lists(
    st.tuples(st.integers(0, 40), st.integers(0, 3), st.sampled_from(["batch", "rlm", "none"])),
    min_size=1, max_size=6,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=trajectory,
    max_subcalls=st.one_of(st.none(), st.integers(0, 60)),
    max_usd=st.one_of(st.none(), st.floats(0.001, 0.2)),
    max_out=st.one_of(st.none(), st.integers(300, 20_000)),
    depth=st.integers(1, 3),
    reply_chars=st.integers(0, 3000),
)
def test_no_budget_is_ever_exceeded_on_random_trajectories(
    steps: list[tuple[int, int, str]],
    max_subcalls: int | None,
    max_usd: float | None,
    max_out: int | None,
    depth: int,
    reply_chars: int,
) -> None:
    script = []
    for fan, extra, kind in steps:
        if kind == "batch":
            script.append(repl(f"r = llm_query_batched(['q' * {extra * 100 + 1}] * {fan})"))
        elif kind == "rlm":
            script.append(repl(f"r = rlm_query_batched(['sub task'] * {min(fan, 4)})"))
        else:
            script.append(repl("x = 1"))

    def root_fn(messages: list[dict[str, str]]) -> str:
        turn = sum(m["role"] == "assistant" for m in messages)
        if "sub task" in messages[1]["content"]:
            return repl("y = llm_query_batched(['leaf'] * 3)\nFINAL('child')")
        return script[turn] if turn < len(script) else repl("FINAL('end')")

    root = ScriptedLM(root_fn, model="scripted/root")
    sub = ScriptedLM(lambda m: "s" * reply_chars, model="scripted/sub")
    budget = Budget(max_subcalls=max_subcalls, max_usd=max_usd, max_output_tokens=max_out,
                    max_depth=depth, max_iterations=8)
    rlm = RLM(root, sub, sandbox="none", budget=budget, prices=PRICES,
              limits=Limits(sub_max_tokens=2000, root_max_tokens=2000))
    out = rlm.completion("q", context="ctx")
    sent_subcalls = len(sub.calls) + max(len(root.calls) - _root_turns(root), 0)
    if max_subcalls is not None:
        assert out.subcalls <= max_subcalls
        assert sent_subcalls <= max_subcalls
    if max_usd is not None:
        assert out.cost_usd <= max_usd + 1e-12
    if max_out is not None:
        assert out.usage.output_tokens <= max_out
    assert out.stop_reason in set(StopReason)


def _root_turns(root: ScriptedLM) -> int:
    return sum("sub task" not in call[1]["content"] for call in root.calls)


async def test_events_never_carry_the_context_and_stay_small() -> None:
    import json

    sizes = []
    for size in (1_000, 1_000_000):
        events: list[Event] = []
        rlm, _ = make_rlm([repl("x = len(context)")] * 10 + [repl("FINAL(x)")], events=events)
        await rlm.acompletion("q", context="Q" * size)
        blob = json.dumps([e.to_dict() for e in events])
        assert "Q" * 600 not in blob
        sizes.append(len(blob))
    assert sizes[1] < sizes[0] * 1.2  # does not grow with the context


def test_prompt_of_returns_the_last_user_message() -> None:
    assert prompt_of([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]) == "u"


async def test_budget_warning_names_the_child_run_whose_call_crossed_the_mark() -> None:
    def root_fn(messages: list[dict[str, str]]) -> str:
        if "part" in messages[1]["content"]:  # the child: its sub-calls cross 80% of the cap
            return repl("x = llm_query_batched(['s'] * 9)\nFINAL('child done')")
        return repl("r = rlm_query('part 1')\nFINAL(r)")

    events: list[Event] = []
    root = ScriptedLM(root_fn, model="scripted/root")
    rlm = RLM(root, echo_sub(), sandbox="none", on_event=events.append,
              budget=Budget(max_depth=2, max_subcalls=10))
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "child done"
    child = next(e for e in events if isinstance(e, ChildRunStarted))
    warnings = [e for e in events if isinstance(e, BudgetWarning)]
    assert [(w.run_id, w.depth, w.resource) for w in warnings] == [
        (child.child_run_id, 1, "subcalls")
    ]
    assert child.child_run_id != out.trace_id


async def test_a_warning_from_the_first_root_call_follows_run_started_under_the_roots_id(
) -> None:
    # A context past the in-thread hashing size: the first root call then runs while the
    # context is hashed, so its warning may come before run.started is out; it must wait.
    events: list[Event] = []
    reply = "x" * 340 + "\n" + repl("FINAL('done')")
    rlm, _ = make_rlm([reply], events=events, budget=Budget(max_output_tokens=100))
    out = await rlm.acompletion("q", context="c" * 1_100_000)
    assert out.answer == "done"
    assert events[0].type == "run.started"
    warnings = [e for e in events if isinstance(e, BudgetWarning)]
    assert [(w.run_id, w.depth, w.resource) for w in warnings] == [
        (out.trace_id, 0, "output_tokens")
    ]
