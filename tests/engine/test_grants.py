"""Grants: ``rlm_query(..., budget={...})`` carves a share of what is left for a child; the child
and everything below it cannot pass it, even with many children at once, and what it does not
spend returns to the parent."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastrlm import Budget, BudgetExceededError, Limits, PriceTable, StopReason
from fastrlm._core.call_tree import CallTree
from fastrlm._core.grants import Grant
from fastrlm._core.ledger import Account, BudgetLedger
from fastrlm.events import (
    ChildRunStarted,
    CodeExecuted,
    Event,
    IterationStarted,
    RunFinished,
)
from fastrlm.lm import ChatMessage
from fastrlm.testing import ScriptedLM

from .helpers import echo_sub, make_rlm, repl

PRICES = PriceTable({"scripted/root": {"input": 1.0, "output": 4.0},
                     "scripted/sub": {"input": 0.5, "output": 2.0}})


def _root(parent_code: str, child_code: str) -> ScriptedLM:
    """A root model for the parent and its children: a child's question holds ``CHILD``."""
    def reply(messages: list[ChatMessage]) -> str:
        first = next(m["content"] for m in messages if m["role"] == "user")
        return repl(child_code if "CHILD" in first else parent_code)

    return ScriptedLM(reply, model="scripted/root")


def _outputs(events: list[Event]) -> str:
    return "\n".join(e.output for e in events if isinstance(e, CodeExecuted) and e.depth == 0)


async def test_many_concurrent_children_never_pass_their_grants() -> None:
    events: list[Event] = []
    sub = echo_sub()
    root = _root(
        "r = rlm_query_batched([f'CHILD {i}' for i in range(20)], "
        "budget={'max_subcalls': 4, 'max_usd': 0.05})\nFINAL(str(len(r)))",
        "r = llm_query_batched(['a'] * 30)\nFINAL(str(sum(x.startswith('ok:') for x in r)))",
    )
    rlm, _ = make_rlm(root, sub=sub, events=events, prices=PRICES,
                      budget=Budget(max_depth=2, max_subcalls=1_000, max_usd=5.0),
                      limits=Limits(sub_max_tokens=1_000))
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "20"
    children = [e for e in events if isinstance(e, RunFinished) and e.depth == 1]
    assert len(children) == 20
    for child in children:  # its own turn and its sub-calls, within 4 and $0.05
        assert child.subcalls <= 4 and child.cost_usd <= 0.05 + 1e-9
    assert len(sub.calls) <= 20 * 3
    assert out.subcalls == sum(c.subcalls for c in children)
    assert out.limited_by is None  # a child's grant is not the tree's budget


async def test_what_a_child_does_not_spend_returns_to_the_parent() -> None:
    events: list[Event] = []
    root = _root(
        "before = budget()['subcalls']\n"
        "r = rlm_query('CHILD', budget={'max_subcalls': 50})\n"
        "print('left', before, budget()['subcalls'])\nFINAL(r)",
        "print('child sees', budget()['subcalls'], budget()['limits']['subcalls'])\n"
        "FINAL(llm_query('x'))",
    )
    rlm, _ = make_rlm(root, events=events, budget=Budget(max_depth=2, max_subcalls=100))
    out = await rlm.acompletion("q", context="c")
    child_output = "\n".join(e.output for e in events
                             if isinstance(e, CodeExecuted) and e.depth == 1)
    assert "child sees 49 50 granted" in child_output.replace("'", "") or \
        "child sees 49 50" in child_output
    assert "left 100 98" in _outputs(events)  # the child's turn and one sub-call; 48 back
    assert out.subcalls == 2


async def test_a_grant_that_does_not_fit_is_refused_and_no_child_starts() -> None:
    events: list[Event] = []
    root = _root("print(rlm_query('CHILD', budget={'max_usd': 100.0}))\nFINAL('x')",
                 "FINAL('child ran')")
    rlm, _ = make_rlm(root, events=events, prices=PRICES,
                      budget=Budget(max_depth=2, max_usd=1.0))
    await rlm.acompletion("q", context="c")
    shown = _outputs(events)
    assert "[error: budget_usd: rlm_query: the budget asked for does not fit" in shown
    assert "100.0000 asked" in shown
    assert not any(isinstance(e, ChildRunStarted) for e in events)


async def test_a_grant_with_a_bad_key_or_value_is_refused_with_what_to_do() -> None:
    events: list[Event] = []
    root = _root(
        "try:\n    rlm_query('CHILD', budget={'dollars': 1})\nexcept ValueError as e:\n"
        "    print(e)\nprint(rlm_query('CHILD', budget={'max_subcalls': -3}))\nFINAL('x')",
        "FINAL('child ran')")
    rlm, _ = make_rlm(root, events=events, budget=Budget(max_depth=2))
    await rlm.acompletion("q", context="c")
    shown = _outputs(events)
    assert "budget key 'dollars' is not one of max_usd" in shown
    assert "[error: bad_arguments: rlm_query: budget['max_subcalls']" in shown


async def test_a_grant_at_the_depth_cap_bounds_the_plain_sub_call_it_becomes() -> None:
    sub = echo_sub()
    rlm, _ = make_rlm(
        [repl("print(rlm_query_batched(['CHILD'] * 3, budget={'max_subcalls': 0}))\n"
              "FINAL(str(budget()['subcalls']))")],
        sub=sub, budget=Budget(max_subcalls=10),
    )
    out = await rlm.acompletion("q", context="c")
    assert sub.calls == [] and out.answer == "10"


async def test_a_child_grant_limits_its_turns_and_depth() -> None:
    events: list[Event] = []
    root = _root("r = rlm_query('CHILD', budget={'max_iterations': 2, 'max_depth': 1})\n"
                 "FINAL(r)",
                 "b = budget()\nprint(b['iterations'], b['depth'])")
    rlm, _ = make_rlm(root, events=events, budget=Budget(max_depth=3, max_iterations=10))
    await rlm.acompletion("q", context="c")
    started = [e for e in events if isinstance(e, IterationStarted) and e.depth == 1]
    assert [e.max_iterations for e in started] == [2, 2]  # then one last turn to answer
    child_turns = [e for e in events if isinstance(e, CodeExecuted) and e.depth == 1]
    assert child_turns[0].output.split() == ["1", "0"]  # turns and levels left below it


# ----------------------------------------------------------------------------- the ledger
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grants=st.lists(st.tuples(st.floats(0.0001, 0.05), st.integers(0, 8)), min_size=1,
                       max_size=12),
       nested=st.booleans(), calls=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_concurrent_grants_and_calls_never_pass_a_grant_or_the_budget(
    grants: list[tuple[float, int]], nested: bool, calls: int, seed: int,
) -> None:
    rng = random.Random(seed)
    ledger = BudgetLedger(Budget(max_usd=0.2, max_subcalls=40))
    tree = CallTree(ledger=ledger, limits=Limits(sub_max_tokens=300), prices=PRICES,
                    emit=lambda _e: None)
    seen: list[tuple[Grant, Account]] = []

    async def child(usd: float, subcalls: int) -> None:
        try:
            grant = ledger.carve({"usd": usd, "subcalls": subcalls})
        except BudgetExceededError:
            return
        account = Account(grant=grant)
        seen.append((grant, account))
        inner = account
        if nested:  # a grandchild carving from its parent's grant
            try:
                inner = Account(account, grant=ledger.carve({"subcalls": subcalls // 2},
                                                            parent=grant))
            except BudgetExceededError:
                pass
        sub = ScriptedLM(lambda m: "x" * rng.randint(0, 900), model="scripted/sub")
        await asyncio.gather(*(
            tree.subcall(sub, "p" * rng.randint(1, 400), run_id="r", depth=1,
                         account=rng.choice([account, inner]))
            for _ in range(calls)))
        if inner.grant is not grant:
            ledger.close(inner.grant)  # type: ignore[arg-type]
        ledger.close(grant)

    async def scenario() -> None:
        loose = ScriptedLM(lambda m: "y" * 500, model="scripted/sub")
        await asyncio.gather(
            *(child(usd, subcalls) for usd, subcalls in grants),
            *(tree.subcall(loose, "free", run_id="r", depth=0, account=Account())
              for _ in range(calls)))

    asyncio.run(scenario())
    for grant, account in seen:
        assert account.subcalls <= grant.limits["subcalls"]
        assert account.cost_usd <= grant.limits["usd"] + 1e-12
    assert ledger.usd <= 0.2 + 1e-12 and ledger.subcalls <= 40
    assert ledger.room("usd") == pytest.approx(0.2 - ledger.usd)  # every grant given back
    assert ledger.room("subcalls") == 40 - ledger.subcalls


def test_a_closed_grant_gives_back_what_it_did_not_use() -> None:
    ledger = BudgetLedger(Budget(max_subcalls=10))
    grant = ledger.carve({"subcalls": 6})
    assert ledger.room("subcalls") == 4
    ledger.book_cache_hit(subcall=True, model="m", usage=_usage(), account=Account(grant=grant))
    assert ledger.room("subcalls") == 4 and ledger.room("subcalls", grant) == 5
    with pytest.raises(BudgetExceededError) as refused:
        ledger.carve({"subcalls": 5})
    assert refused.value.reason is StopReason.BUDGET_SUBCALLS
    ledger.close(grant)
    assert ledger.room("subcalls") == 9


def _usage() -> object:
    from fastrlm._foundation.usage import TokenUsage

    return TokenUsage(1, 1)


async def test_a_grant_crosses_the_worker_sandbox_checked() -> None:
    events: list[Event] = []
    root = _root("print(rlm_query('CHILD', budget={'max_subcalls': 2}))\nFINAL('x')",
                 "FINAL(str(budget()['limits']['subcalls']))")
    rlm, _ = make_rlm(root, events=events, sandbox="process",
                      budget=Budget(max_depth=2, max_subcalls=10))
    await rlm.acompletion("q", context="c")
    assert not any(e.restarted for e in events if isinstance(e, CodeExecuted))
    assert _outputs(events).strip() == "2"


async def test_a_child_whose_granted_time_is_up_stops_with_timeout_and_the_parent_goes_on(
) -> None:
    events: list[Event] = []
    root = _root("print(rlm_query('CHILD', budget={'max_seconds': 1e-9}))\nFINAL('parent')",
                 "FINAL('child ran')")
    rlm, _ = make_rlm(root, events=events, budget=Budget(max_depth=2))
    out = await rlm.acompletion("q", context="c")
    child = [e for e in events if isinstance(e, RunFinished) and e.depth == 1]
    assert [e.stop_reason for e in child] == ["timeout"]
    assert "child_failed" in _outputs(events) and "child ran" not in _outputs(events)
    assert out.answer == "parent" and out.limited_by is None
