"""An RLM's configuration is built once: read-only views, per-call overrides, with_options()."""

from __future__ import annotations

import pytest

from fastrlm import RLM, Budget, ConfigurationError, InvalidSettingError, Limits, PriceTable
from fastrlm.events import Event, RunStarted
from fastrlm.testing import ScriptedLM

from .helpers import make_rlm, repl

PRICES = PriceTable({"scripted/root": {"input": 1.0, "output": 4.0},
                     "scripted/sub": {"input": 0.5, "output": 2.0}})


@pytest.mark.parametrize("name", ["budget", "limits", "sandbox", "prompts", "prices",
                                  "subcalls", "cache", "trace", "root_lm", "sub_lm"])
def test_assigning_a_setting_raises_and_says_what_to_do_instead(name: str) -> None:
    rlm, _ = make_rlm([repl("FINAL(1)")])
    before = getattr(rlm, name)
    with pytest.raises(AttributeError, match=rf"RLM\.{name} is read-only.*with_options"):
        setattr(rlm, name, before)
    assert getattr(rlm, name) is before


def test_the_budget_error_names_the_per_call_override() -> None:
    rlm, _ = make_rlm([repl("FINAL(1)")])
    with pytest.raises(AttributeError, match=r"completion\(\)/acompletion\(\)/stream\(\)"):
        rlm.budget = Budget(max_iterations=1)  # type: ignore[misc]


async def test_a_per_call_budget_governs_that_run_only() -> None:
    events: list[Event] = []
    rlm, _ = make_rlm([repl("print(1)")] * 10, events=events, budget=Budget(max_iterations=5))
    short = await rlm.acompletion("q", context="c", budget=Budget(max_iterations=2))
    assert short.stop_reason == "max_iterations"
    default = await rlm.acompletion("q", context="c")
    assert (short.iterations, default.iterations) == (3, 6)  # each with its one last turn
    started = [e for e in events if isinstance(e, RunStarted)]
    assert [e.budget["max_iterations"] for e in started] == [2, 5]
    assert rlm.budget == Budget(max_iterations=5)


async def test_per_call_limits_apply_to_the_run_and_the_stream() -> None:
    sub = ScriptedLM(lambda m: "s", model="scripted/sub", latency_s=0.01)
    rlm, _ = make_rlm([repl("r = llm_query_batched(['p'] * 30)\nFINAL(len(r))")], sub=sub)
    events = [e async for e in rlm.stream("q", "c", limits=Limits(max_concurrency=3))]
    assert events[-1].type == "run.finished"
    assert sub.max_in_flight == 3


async def test_a_per_call_override_is_checked_like_the_constructor_argument() -> None:
    rlm, _ = make_rlm([repl("FINAL(1)")])
    with pytest.raises(ConfigurationError, match="budget must be a fastrlm.Budget"):
        await rlm.acompletion("q", "c", budget={"max_usd": 1})  # type: ignore[arg-type]
    unpriced = RLM(ScriptedLM([repl("FINAL(1)")], model="mystery/root"), sandbox="none")
    with pytest.raises(ConfigurationError, match="no price is known for mystery/root"):
        await unpriced.acompletion("q", "c", budget=Budget(max_usd=1.0))
    with pytest.raises(ConfigurationError, match=r"limits\.max_retries cannot change per call"):
        await rlm.acompletion("q", "c", limits=Limits(max_retries=0))
    with pytest.raises(InvalidSettingError, match="max_iterations"):
        Budget(max_iterations=0)


def test_with_options_builds_a_new_rlm_and_leaves_this_one_as_it_was() -> None:
    rlm, root = make_rlm([repl("FINAL(1)")], prices=PRICES)
    cheaper = rlm.with_options(budget=Budget(max_usd=0.25), limits=Limits(max_retries=1))
    assert cheaper.budget.max_usd == 0.25 and cheaper.limits.max_retries == 1
    assert cheaper.root_lm is root and cheaper.sandbox == rlm.sandbox
    assert rlm.budget == Budget() and rlm.limits == Limits()
    with pytest.raises(TypeError, match="unknown option"):
        rlm.with_options(max_usd=1.0)
    unpriced = RLM(ScriptedLM([repl("FINAL(1)")], model="mystery/root"), sandbox="none")
    with pytest.raises(ConfigurationError, match="no price is known"):
        unpriced.with_options(budget=Budget(max_usd=1.0))


@pytest.mark.parametrize("prices", [{"scripted/x": {"input": 1.0, "output": 2.0}}, {}, "table",
                                    [1]])
def test_prices_that_are_not_a_price_table_are_refused_when_the_rlm_is_built(
        prices: object) -> None:
    # before: an AttributeError ('dict' object has no attribute 'unpriced'), or for {} the
    # default table, silently
    with pytest.raises(ConfigurationError, match="prices must be a fastrlm.PriceTable"):
        RLM(ScriptedLM(["x"]), sandbox="none", prices=prices)  # type: ignore[arg-type]
