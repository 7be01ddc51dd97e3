"""budget() in the REPL and the bounded combinators (llm_map, llm_filter, llm_reduce): the bound
is computed and carved out before the first call, is never below what the calls really cost,
and a combinator that cannot fit refuses without spending anything."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastrlm import Budget, Limits, PriceTable, ProviderError, StopReason
from fastrlm._core.call_tree import CallTree
from fastrlm._core.combinators import (
    RETRY_EXTRA_BYTES,
    SEPARATOR,
    Combine,
    Refused,
    reduce_plan,
    retry_prompt,
    utf8_bytes,
)
from fastrlm._core.ledger import Account, BudgetLedger
from fastrlm._foundation.gate import current_gate
from fastrlm._foundation.usage import TokenUsage
from fastrlm.events import CodeExecuted, Event, SubcallStarted
from fastrlm.lm import ChatMessage, LMResponse
from fastrlm.sandbox import CombineRequest
from fastrlm.testing import ScriptedLM, prompt_of

from .helpers import echo_sub, make_rlm, repl

PRICES = PriceTable({"scripted/root": {"input": 1.0, "output": 4.0},
                     "scripted/sub": {"input": 0.5, "output": 2.0}})


def outputs(events: list[Event]) -> str:
    return "\n".join(e.output for e in events if isinstance(e, CodeExecuted))


# ----------------------------------------------------------------------------- budget()
async def test_budget_reads_what_is_left_with_the_limits_and_books_nothing() -> None:
    events: list[Event] = []
    sub = echo_sub()
    rlm, _ = make_rlm(
        [repl("import json\nllm_query('one')\nb = [budget() for _ in range(200)][-1]\n"
              "print(json.dumps(b, sort_keys=True))\nFINAL('x')")],
        sub=sub, events=events, prices=PRICES,
        budget=Budget(max_subcalls=10, max_usd=2.0, max_seconds=600, max_iterations=5),
    )
    out = await rlm.acompletion("q", context="c")
    shown = json.loads(outputs(events).strip().splitlines()[-1])
    assert out.subcalls == 1 and len(sub.calls) == 1  # 200 reads, no sub-call
    assert shown["subcalls"] == 9 and shown["limits"]["subcalls"] == 10
    assert shown["limits"]["usd"] == 2.0 and 0 < shown["usd"] < 2.0
    assert shown["usd"] == pytest.approx(2.0 - out.cost_usd)  # all booked before the read
    assert shown["iterations"] == 4 and shown["limits"]["iterations"] == 5
    assert shown["depth"] == 0 and shown["limits"]["depth"] == 1
    assert 0 < shown["seconds"] <= 600 and shown["limits"]["seconds"] == 600
    assert shown["input_tokens"] is None and shown["limits"]["input_tokens"] is None
    assert out.requests == 2  # the root turn and the one sub-call: reads are no requests


async def test_budget_cannot_be_used_to_change_the_budget() -> None:
    rlm, _ = make_rlm(
        [repl("b = budget()\nb['subcalls'] = 10**9\nb['limits']['subcalls'] = 10**9\n"
              "r = llm_query_batched(['a'] * 5)\nFINAL(str(budget()['subcalls']))")],
        budget=Budget(max_subcalls=3),
    )
    out = await rlm.acompletion("q", context="c")
    assert out.subcalls == 3 and out.answer == "0"


async def test_a_root_that_reads_its_budget_changes_strategy() -> None:
    code = ("items = [f'record {i}' for i in range(50)]\n"
            "if budget()['subcalls'] >= len(items):\n"
            "    parts = llm_map('Count {item}', items)\n"
            "else:\n"
            "    parts = [llm_query('Count all: ' + ' | '.join(items))]\n"
            "FINAL(str(len(parts)))")
    rich, _ = make_rlm([repl(code)], budget=Budget(max_subcalls=100))
    poor, _ = make_rlm([repl(code)], budget=Budget(max_subcalls=10))
    assert (await rich.acompletion("q", context="c")).answer == "50"
    out = await poor.acompletion("q", context="c")
    assert out.answer == "1" and out.subcalls == 1


def test_budget_is_in_the_system_prompt_in_one_short_line() -> None:
    rlm, root = make_rlm([repl("FINAL('x')")], budget=Budget(max_subcalls=5))
    rlm.completion("q", context="c")
    system = root.calls[0][0]["content"]
    assert "`budget()` returns what is left." in system
    assert "llm_map(template, items, schema=None)" in system and "BudgetError" in system


# ----------------------------------------------------------------------------- combinators
async def test_a_root_that_would_make_five_thousand_subcalls_is_refused_before_spending() -> None:
    events: list[Event] = []
    sub = echo_sub()
    rlm, _ = make_rlm(
        [repl("try:\n    llm_map('Classify: {item}', [f'row {i}' for i in range(5000)])\n"
              "except BudgetError as e:\n    print('kind', e.kind)\n    print(e)\n"
              "FINAL(str(budget()['subcalls']))")],
        sub=sub, events=events, prices=PRICES, budget=Budget(max_subcalls=500, max_usd=1.0),
    )
    out = await rlm.acompletion("q", context="c")
    shown = outputs(events)
    assert len(sub.calls) == 0 and out.subcalls == 0 and out.answer == "500"
    assert not any(isinstance(e, SubcallStarted) for e in events)
    assert "kind budget_" in shown
    assert "5,000 sub-calls" in shown and "nothing was sent" in shown and "left:" in shown
    assert out.limited_by is None  # a refusal the model can act on, not a stopped run


async def test_map_keeps_order_and_runs_through_the_one_ledger() -> None:
    rlm, _ = make_rlm(
        [repl("r = llm_map('Echo {item}', ['a', 'b', 'c'])\nFINAL(json.dumps(r))"
              .replace("r = ", "import json\nr = ", 1))],
        budget=Budget(max_subcalls=3),
    )
    out = await rlm.acompletion("q", context="c")
    assert json.loads(out.answer) == ["ok:Echo a", "ok:Echo b", "ok:Echo c"]
    assert out.subcalls == 3


async def test_map_with_schema_parses_answers_and_retries_a_bad_one_within_the_bound() -> None:
    replies = iter(['{"n": 1}', "not json", '```json\n{"n": 3}\n```', '{"n": 2}'])
    sub = ScriptedLM(lambda m: next(replies), model="scripted/sub")
    rlm, _ = make_rlm(
        [repl("import json\nr = llm_map('Count in {item}', ['a', 'b', 'c'], "
              "schema={'type': 'object', 'properties': {'n': {'type': 'integer'}}, "
              "'required': ['n']})\nFINAL(json.dumps(r))")],
        sub=sub,
    )
    out = await rlm.acompletion("q", context="c")
    assert sorted(v["n"] for v in json.loads(out.answer)) == [1, 2, 3]
    retry = [prompt_of(call) for call in sub.calls if "was not accepted" in prompt_of(call)]
    assert len(retry) == 1 and "not json" in retry[0]
    assert all("Answer with only JSON" in prompt_of(call) for call in sub.calls)


async def test_filter_keeps_the_items_judged_yes_and_says_which_it_could_not_judge() -> None:
    events: list[Event] = []

    def judge(messages: list[ChatMessage]) -> str:
        item = prompt_of(messages).split("\n\n")[1]  # the question, the item, the note
        return "maybe" if "pear" in item else ("Yes." if "apple" in item else "no")

    rlm, _ = make_rlm(
        [repl("FINAL(repr(llm_filter('Is it an apple?', ['apple pie', 'plum', 'pear', "
              "'apple'])))")],
        sub=ScriptedLM(judge, model="scripted/sub"), events=events,
        limits=Limits(max_output_retries=1),
    )
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "['apple pie', 'apple']"
    assert "1 item(s) could not be judged" in outputs(events)


async def test_reduce_combines_in_a_tree_and_splits_an_item_over_the_window() -> None:
    def combine(messages: list[ChatMessage]) -> str:
        text = prompt_of(messages)
        return str(text.count("x") + sum(int(t) for t in text.split() if t.isdigit()))

    sub = ScriptedLM(combine, model="scripted/sub")
    items = ["x"] * 9 + ["x " * 1200]  # the last item is over the window: split, not refused
    rlm, _ = make_rlm(
        [repl(f"FINAL(llm_reduce('Add up {{items}}', {items!r}, fanin=3, max_tokens=20))")],
        sub=sub, limits=Limits(subcall_window_chars=1000),
    )
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "1209"
    assert all(len(prompt_of(call)) <= 1000 for call in sub.calls)
    assert len(sub.calls) > 4  # more than one level


async def test_map_refuses_an_item_over_the_window_by_rule_before_sending_anything() -> None:
    events: list[Event] = []
    sub = echo_sub()
    rlm, _ = make_rlm(
        [repl("try:\n    llm_map('{item}', ['short', 'y' * 5000])\n"
              "except BudgetError as e:\n    print(e.kind, e)\nFINAL('x')")],
        sub=sub, events=events, limits=Limits(subcall_window_chars=1000),
    )
    await rlm.acompletion("q", context="c")
    assert "prompt_too_long" in outputs(events) and "item 1" in outputs(events)
    assert sub.calls == []


async def test_a_combinators_room_cannot_be_taken_by_calls_beside_it() -> None:
    """The bound is carved out before the first call: concurrent llm_query calls of a child
    cannot make the combinator run out midway (no partial spend)."""
    tree, _ = _tree(Budget(max_subcalls=12), Limits())
    combine = Combine(tree, echo_sub(), "run", 0, Account())
    request = CombineRequest("map", "{item}", [f"i{n}" for n in range(10)])
    running = asyncio.ensure_future(combine.run(request, retries=0))
    await asyncio.sleep(0)  # the combinator has carved its ten sub-calls
    others = await asyncio.gather(*(
        tree.subcall(echo_sub(), f"o{n}", run_id="r", depth=0, account=Account())
        for n in range(5)))
    answers = await running
    assert all(isinstance(a, str) and a.startswith("ok:") for a in answers)  # type: ignore[union-attr]
    assert sum(o.answered for o in others) == 2
    assert tree.ledger.subcalls == 12


def test_a_retry_prompt_never_passes_the_bound_it_was_planned_with() -> None:
    prompt = "p" * 100
    longest = retry_prompt(prompt, "\U0001F600" * 10_000, "\U0001F600" * 10_000)
    assert utf8_bytes(longest) <= utf8_bytes(prompt) + RETRY_EXTRA_BYTES


# ----------------------------------------------------------------------------- the bound
class _Provider:
    """A sub-model whose every call follows ``script(prompt, max_tokens)``: ``(failures,
    text, input tokens, output tokens)``; failed attempts go through the ledger's gate as a
    provider's retry loop does, and more failures than ``retries`` fail the call."""

    model = "scripted/sub"
    temperature = None

    def __init__(self, script: Callable[[str, int], tuple[int, str, int, int]],
                 retries: int) -> None:
        self.script = script
        self.retries = retries

    def cache_key(self) -> str:
        return "provider"

    async def aclose(self) -> None:
        return None

    async def complete(self, messages: Sequence[ChatMessage], *,
                       max_tokens: int | None = None) -> LMResponse:
        gate = current_gate.get()
        assert gate is not None and max_tokens is not None
        failures, text, tokens_in, tokens_out = self.script(messages[0]["content"], max_tokens)
        for _ in range(min(failures, self.retries)):
            gate.failed(ProviderError("503"))
            await gate.admit_retry()
        if failures > self.retries:
            raise ProviderError("503 after retries")
        return LMResponse(text, TokenUsage(tokens_in, min(tokens_out, max_tokens)), self.model)


def _tree(budget: Budget, limits: Limits, prices: PriceTable = PRICES) -> tuple[CallTree,
                                                                              BudgetLedger]:
    ledger = BudgetLedger(budget)
    return CallTree(ledger=ledger, limits=limits, prices=prices, emit=lambda _e: None), ledger


_TEXT = st.text(alphabet=st.sampled_from("ab \n{}é\U0001F600"), max_size=400)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["map", "schema", "filter", "reduce"]),
    items=st.lists(_TEXT, min_size=1, max_size=12),
    price_in=st.floats(0, 20), price_out=st.floats(0, 80),
    max_tokens=st.integers(1, 600), retries=st.integers(0, 3),
    fanin=st.integers(2, 5),
    seed=st.integers(0, 2**16), greedy=st.booleans(),
)
def test_the_bound_is_never_below_the_real_cost(
    kind: str, items: list[str], price_in: float, price_out: float, max_tokens: int,
    retries: int, fanin: int, seed: int, greedy: bool,
) -> None:
    import random

    rng = random.Random(seed)
    limits = Limits(max_retries=retries, sub_max_tokens=2_000, subcall_window_chars=4_000,
                    max_output_retries=2)
    prices = PriceTable({"scripted/sub": {"input": price_in, "output": price_out}})
    tree, ledger = _tree(Budget(), limits, prices)

    def script(prompt: str, cap: int) -> tuple[int, str, int, int]:
        size = utf8_bytes(prompt) + 8
        answer = {"map": "t" * rng.randint(0, 3 * cap),
                  "schema": rng.choice(['{"n": 1}', "nope", "[" * 5]),
                  "filter": rng.choice(["yes", "no", "perhaps"]),
                  "reduce": "r" * rng.randint(0, 8 * cap)}[kind]
        if greedy:  # every call as dear as it may be: all retries, full input and output
            return retries, answer, size, cap
        return (rng.randint(0, retries + 1), answer, rng.randint(0, size),
                rng.randint(0, cap))

    request = CombineRequest(
        "map" if kind == "schema" else kind, "Do {item}{items}", items,  # type: ignore[arg-type]
        {"type": "object"} if kind == "schema" else None, None, max_tokens, fanin)
    combine = Combine(tree, _Provider(script, retries), "run", 0, Account())
    try:
        plan = combine.plan(request, retries=limits.max_output_retries)
    except Refused:
        return
    asyncio.run(combine.run(request, retries=limits.max_output_retries))
    bound = plan.bound
    assert ledger.usd <= bound.usd * (1 + 1e-9) + 1e-12
    assert ledger.subcalls <= bound.subcalls
    assert ledger.requests <= bound.requests
    assert ledger.input_tokens <= bound.input_tokens
    assert ledger.output_tokens <= bound.output_tokens


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.integers(1, 40), max_usd=st.floats(0.001, 0.2),
       max_subcalls=st.integers(1, 60), spent=st.integers(0, 20))
def test_the_ledger_never_passes_a_limit_whatever_the_combinators_ask(
    items: int, max_usd: float, max_subcalls: int, spent: int,
) -> None:
    limits = Limits(max_retries=1, sub_max_tokens=300)
    tree, ledger = _tree(Budget(max_usd=max_usd, max_subcalls=max_subcalls), limits)
    lm = _Provider(lambda p, cap: (1, "ok", utf8_bytes(p) + 8, cap), 1)

    async def scenario() -> None:
        await asyncio.gather(*(
            tree.subcall(lm, "warm up", run_id="r", depth=0, account=Account())
            for _ in range(spent)))
        for kind in ("map", "reduce", "filter"):
            request = CombineRequest(kind, "{item}", ["x" * 50] * items)  # type: ignore[arg-type]
            try:
                await Combine(tree, lm, "run", 0, Account()).run(request, retries=1)
            except Refused as exc:
                assert exc.kind in {StopReason.BUDGET_USD.value,
                                    StopReason.BUDGET_SUBCALLS.value}

    asyncio.run(scenario())
    assert ledger.usd <= max_usd + 1e-9
    assert ledger.subcalls <= max_subcalls
    assert ledger.overrun is None


async def test_budget_and_the_combinators_work_over_the_worker_sandbox() -> None:
    """The worker's frame check reads the same table: a budget() frame carries the frame's
    own keys and nothing else, a combinator frame its request."""
    events: list[Event] = []
    rlm, _ = make_rlm(
        [repl("b = budget()\nr = llm_map('Echo {item}', ['a', 'b'])\n"
              "try:\n    llm_map('{item}', ['x'] * 50)\nexcept BudgetError as e:\n"
              "    print(e.kind)\nFINAL(f\"{b['subcalls']} {r}\")")],
        events=events, sandbox="process", budget=Budget(max_subcalls=10),
    )
    out = await rlm.acompletion("q", context="c")
    assert not any(e.restarted for e in events if isinstance(e, CodeExecuted))
    assert out.answer == "10 ['ok:Echo a', 'ok:Echo b']"
    assert "budget_subcalls" in outputs(events)


def test_reduce_refuses_items_that_would_split_into_too_many_pieces() -> None:
    template = "t" * 997  # with the two newlines before the item: one character of room
    with pytest.raises(Refused, match="200,000 pieces") as refused:
        reduce_plan(template, ["y" * 200_000], fanin=4, window=1_000, max_tokens=1,
                    price=None, attempts=1)
    assert refused.value.kind == "prompt_too_long"


def test_reduce_says_to_shorten_a_template_that_leaves_no_room_for_two_answers() -> None:
    with pytest.raises(Refused, match="Use a shorter template"):
        reduce_plan("t" * 990, ["y" * 100] * 3, fanin=4, window=1_000, max_tokens=1,
                    price=None, attempts=1)


def test_reduce_puts_its_pieces_at_items_or_item() -> None:
    for template in ("Merge {items} now", "Merge {item} now"):
        plan = reduce_plan(template, ["a", "b"], fanin=4, window=1_000, max_tokens=10,
                           price=None, attempts=1)
        assert plan.prompts == [f"Merge a{SEPARATOR}b now"]


async def test_requests_are_bounded_only_under_a_cap_someone_set() -> None:
    """The default request cap assumes 3 requests a sub-call; the bound counts every retry
    (1 + max_retries), so it is checked against max_requests only when that is set."""
    events: list[Event] = []
    code = ("try:\n    print(len(llm_map('{item}', ['x'] * 50)))\n"
            "except BudgetError as e:\n    print(e.kind)\nFINAL('x')")
    rlm, _ = make_rlm([repl(code)], events=events, budget=Budget(max_subcalls=100),
                      limits=Limits(max_retries=5))
    await rlm.acompletion("q", context="c")
    assert outputs(events).strip() == "50"
    events.clear()
    rlm, _ = make_rlm([repl(code)], events=events,
                      budget=Budget(max_subcalls=100, max_requests=200),
                      limits=Limits(max_retries=5))
    await rlm.acompletion("q", context="c")
    assert outputs(events).strip() == "budget_requests"  # 50 x 6 requests > 199 left


async def test_a_combinator_refuses_what_it_cannot_run_with_a_kind_to_branch_on() -> None:
    events: list[Event] = []
    code = ("for call in (lambda: llm_map('{item}', ['a'], model='nope'),\n"
            "             lambda: llm_map('{item}', ['a'], schema={'type': 'wat'}),\n"
            "             lambda: llm_reduce('{items}', ['a', 'b'], fanin=1)):\n"
            "    try:\n        call()\n"
            "    except BudgetError as e:\n        print(e.kind, '|', e)\n"
            "    except ValueError as e:\n        print('ValueError |', e)\n"
            "print(llm_map('{item}', []), repr(llm_reduce('{items}', [])))\nFINAL('x')")
    sub = echo_sub()
    rlm, _ = make_rlm([repl(code)], sub=sub, events=events)
    await rlm.acompletion("q", context="c")
    lines = outputs(events).strip().splitlines()
    assert lines[0].startswith("unknown_model | llm_map: no model named 'nope'")
    assert lines[1].startswith("bad_arguments | llm_map: schema:")
    assert lines[2].startswith("ValueError | llm_reduce: fanin must be a whole number from 2")
    assert lines[3] == "[] ''"
    assert sub.calls == []
