"""Tools for sub-LLMs only (RLM(sub_tools=...)): llm_query becomes a small tool-calling agent,
natively or by the JSON fallback, every round a sub-call through the one ledger."""

from __future__ import annotations

import json

import pytest

from fastrlm import RLM, Budget, Limits, StopReason, Tool
from fastrlm._core.sub_agent import json_tool_calls
from fastrlm.events import Event, SubcallFinished, SubcallStarted, ToolFinished, ToolStarted
from fastrlm.lm import ToolCall
from fastrlm.sandbox._hostcalls import tool_arguments
from fastrlm.testing import ScriptedLM

from .helpers import repl

CALLS: list[tuple[str, dict[str, object]]] = []


def search(query: str) -> list[str]:
    """Search the web."""
    CALLS.append(("search", {"query": query}))
    return [f"page about {query}"]


def fetch(url: str) -> str:
    """Fetch a page."""
    CALLS.append(("fetch", {"url": url}))
    return f"<text of {url}>"


@pytest.fixture(autouse=True)
def _clear() -> None:
    CALLS.clear()


def _rlm(sub: ScriptedLM, events: list[Event] | None = None, root_code: str | None = None,
         **kw: object) -> tuple[RLM, ScriptedLM]:
    root = ScriptedLM([repl(root_code or "FINAL(llm_query('who won?'))")], model="scripted/root")
    rlm = RLM(root, sub, sandbox="none", sub_tools=[search, fetch],  # type: ignore[arg-type]
              on_event=events.append if events is not None else None, **kw)  # type: ignore[arg-type]
    return rlm, root


def test_a_native_sub_agent_makes_two_tool_rounds_then_answers() -> None:
    sub = ScriptedLM([ToolCall("a1", "search", {"query": "winner"}),
                      [ToolCall("b1", "fetch", {"url": "u1"}), ToolCall("b2", "fetch",
                                                                        {"url": "u2"})],
                      "Alice won."], model="scripted/sub", supports_tools=True)
    events: list[Event] = []
    rlm, root = _rlm(sub, events)
    result = rlm.completion("q", "ctx")
    assert result.answer == "Alice won." and result.stop_reason is StopReason.FINAL
    assert CALLS == [("search", {"query": "winner"}), ("fetch", {"url": "u1"}),
                     ("fetch", {"url": "u2"})]
    # the tools were offered natively, the results came back as tool messages
    assert [t["name"] for t in sub.tools_seen[0] or []] == ["search", "fetch"]
    third = sub.calls[2]
    assert [m["role"] for m in third] == ["user", "assistant", "tool", "assistant", "tool",
                                         "tool"]
    assert third[1]["tool_calls"] == [{"id": "a1", "name": "search",
                                       "arguments": {"query": "winner"}}]
    assert third[2] == {"role": "tool", "tool_call_id": "a1",
                        "content": json.dumps(["page about winner"])}
    # every round was a sub-call through the ledger, under one agent id
    assert result.subcalls == 3 and result.tool_calls == 3
    rounds = [e for e in events if isinstance(e, SubcallFinished)]
    assert [e.round for e in rounds] == [1, 2, 3]
    assert len({e.agent_id for e in rounds}) == 1 and rounds[0].agent_id == rounds[0].call_id
    assert [e.tool_calls for e in rounds] == [1, 2, 0]
    tool_events = [e for e in events if isinstance(e, ToolStarted | ToolFinished)]
    assert all(e.subcall_id == rounds[0].agent_id for e in tool_events)
    # the root saw only the final text: no tool in its prompt, no tool message in its history
    assert all(m["role"] != "tool" for m in root.calls[0])


def test_the_json_fallback_drives_a_plain_model_through_two_rounds() -> None:
    sub = ScriptedLM(['{"tool": "search", "arguments": {"query": "winner"}}',
                      '```json\n[{"tool": "fetch", "arguments": {"url": "u1"}}]\n```',
                      "Bob won."], model="scripted/sub")
    rlm, _ = _rlm(sub)
    result = rlm.completion("q", "ctx")
    assert result.answer == "Bob won."
    assert CALLS == [("search", {"query": "winner"}), ("fetch", {"url": "u1"})]
    assert sub.tools_seen == [None, None, None]  # never sent natively
    first = sub.calls[0][0]["content"]
    assert first.startswith("who won?") and '{"tool": "<name>"' in first
    assert '- search: Search the web. Arguments (JSON schema):' in first
    results = sub.calls[1][-1]["content"]
    assert results.startswith('Result of search:\n["page about winner"]')
    assert "7 tool round(s) left" in results


def test_json_fallback_can_be_forced_for_a_native_model() -> None:
    sub = ScriptedLM(['{"tool": "search", "arguments": {"query": "x"}}', "done"],
                     model="scripted/sub", supports_tools=True)
    rlm, _ = _rlm(sub, sub_tool_protocol="json")
    assert rlm.completion("q", "ctx").answer == "done"
    assert sub.tools_seen == [None, None]


def test_the_budget_stops_a_sub_agent_mid_round_with_nothing_over_the_limit() -> None:
    sub = ScriptedLM(lambda m: ToolCall(f"c{len(m)}", "search", {"query": "again"}),
                     model="scripted/sub", supports_tools=True)
    events: list[Event] = []
    rlm, root = _rlm(sub, events, root_code="print(llm_query('who?'))",
                     budget=Budget(max_subcalls=3, max_iterations=3))
    root.replies = [repl("print(llm_query('who?'))"), repl("FINAL('gave up')")]
    result = rlm.completion("q", "ctx")
    assert result.subcalls == 3 and len(sub.calls) == 3  # never a fourth round
    assert result.limited_by is StopReason.BUDGET_SUBCALLS and result.partial
    assert "[error: budget_subcalls:" in root.calls[1][-1]["content"]
    started = [e for e in events if isinstance(e, SubcallStarted)]
    assert len(started) == 3


def test_the_usd_budget_bounds_every_round() -> None:
    from fastrlm import Price, PriceTable

    sub = ScriptedLM(lambda m: ToolCall("c", "search", {"query": "q" * 400}),
                     model="scripted/sub", supports_tools=True)
    prices = PriceTable({"scripted/sub": Price(input=1000.0, output=1000.0),
                         "scripted/root": Price(input=0.0, output=0.0)})
    rlm, root = _rlm(sub, prices=prices, budget=Budget(max_usd=0.5),
                     limits=Limits(sub_max_tokens=256, max_tool_rounds=50))
    root.replies = [repl("print(llm_query('who?'))"), repl("FINAL('x')")]
    result = rlm.completion("q", "ctx")
    assert result.cost_usd <= 0.5
    assert len(sub.calls) < 50


def test_at_the_round_cap_the_sub_model_must_answer_without_tools() -> None:
    def reply(messages: list[dict[str, object]]) -> object:
        if "You have used all 2 tool rounds" in str(messages[-1]["content"]):
            return "final from what I have"
        return ToolCall(f"c{len(messages)}", "search", {"query": "more"})

    sub = ScriptedLM(reply, model="scripted/sub", supports_tools=True)  # type: ignore[arg-type]
    rlm, _ = _rlm(sub, limits=Limits(max_tool_rounds=2))
    result = rlm.completion("q", "ctx")
    assert result.answer == "final from what I have"
    assert len(sub.calls) == 3 and sub.tools_seen[2] is None
    assert len(CALLS) == 2


def test_tool_failures_go_back_to_the_sub_model_as_text() -> None:
    def broken(x: int) -> int:
        raise KeyError("no such record")

    sub = ScriptedLM([[ToolCall("1", "broken", {"x": 1}), ToolCall("2", "nope", {}),
                       ToolCall("3", "broken", "not json")], "sorry"],
                     model="scripted/sub", supports_tools=True)
    root = ScriptedLM([repl("FINAL(llm_query('go'))")])
    result = RLM(root, sub, sandbox="none", sub_tools=[broken]).completion("q", "ctx")
    assert result.answer == "sorry"
    shown = [m["content"] for m in sub.calls[1] if m["role"] == "tool"]
    assert shown[0] == "error (tool_error): raised KeyError: 'no such record'"
    assert shown[1].startswith("error (unknown_tool): no tool named 'nope'")
    assert shown[2].startswith("error (bad_arguments):")


def test_a_long_tool_result_is_cut_for_the_sub_model() -> None:
    def big() -> str:
        return "x" * 100_000

    sub = ScriptedLM([ToolCall("1", "big", {}), "ok"], model="scripted/sub",
                     supports_tools=True)
    root = ScriptedLM([repl("FINAL(llm_query('go'))")])
    RLM(root, sub, sandbox="none", sub_tools=[big],
        limits=Limits(output_chars=5_000)).completion("q", "ctx")
    shown = sub.calls[1][-1]["content"]
    assert len(shown) < 6_000


def test_a_conversation_past_the_window_ends_the_agent_with_prompt_too_long() -> None:
    def big() -> str:
        return "y" * 3_000

    sub = ScriptedLM(lambda m: ToolCall("1", "big", {}), model="scripted/sub",
                     supports_tools=True)
    root = ScriptedLM([repl("print(llm_query('go'))"), repl("FINAL('x')")])
    RLM(root, sub, sandbox="none", sub_tools=[big],
        limits=Limits(subcall_window_chars=5_000, output_chars=4_000)).completion("q", "ctx")
    assert "[error: prompt_too_long:" in root.calls[1][-1]["content"]
    assert "grew past it after" in root.calls[1][-1]["content"]


def test_sub_tools_apply_to_every_model_and_batched_calls() -> None:
    other = ScriptedLM(['{"tool": "search", "arguments": {"query": "b"}}', "from other"],
                       model="scripted/other")
    sub = ScriptedLM(["plain"] * 3, model="scripted/sub")
    root = ScriptedLM([repl("FINAL(str(llm_query_batched(['a'], model='o') + "
                            "[llm_query('c')]))")])
    rlm = RLM(root, sub, sandbox="none", sub_tools=[search], models={"o": other})
    assert rlm.completion("q", "ctx").answer == "['from other', 'plain']"
    assert CALLS == [("search", {"query": "b"})]


def test_the_root_is_told_the_model_names_when_there_are_several() -> None:
    other = ScriptedLM(["x"], model="scripted/other")
    root = ScriptedLM([repl("FINAL('x')")], model="scripted/root")
    RLM(root, ScriptedLM(["y"], model="scripted/sub"), sandbox="none",
        models={"o": other}).completion("q", "ctx")
    system = root.calls[0][0]["content"]
    assert "take `model=`" in system
    assert "`o`" in system and "`scripted/sub`" in system
    single = ScriptedLM([repl("FINAL('x')")], model="scripted/root")
    RLM(single, sandbox="none").completion("q", "ctx")
    assert "take `model=`" not in single.calls[0][0]["content"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"tool": "a", "arguments": {"x": 1}}', [("a", {"x": 1})]),
        ('  ```json\n{"tool": "a"}\n```  ', [("a", {})]),
        ('```\n{"tool": "a", "arguments": {}}\n```', [("a", {})]),
        ('[{"tool": "a"}, {"tool": "b", "arguments": {"y": [2]}}]', [("a", {}), ("b", {"y": [2]})]),
        ('{"tool_calls": [{"tool": "a"}]}', [("a", {})]),
        ('{"tool": "a", "arguments": [1]}', [("a", "[1]")]),
        ("The answer is 4.", []),
        ('The tool said {"tool": "a"}', []),
        ('{"answer": 4}', []),
        ('[{"tool": "a"}, 5]', []),
        ('{"tool": 5}', []),
        ("{not json", []),
        ("", []),
        ("[]", []),
    ],
)
def test_json_fallback_replies_are_read_strictly(text: str, expected: list[tuple[str, object]]
                                                 ) -> None:
    calls = json_tool_calls(text, 1)
    assert [(c.name, c.arguments) for c in calls] == expected


def test_a_tool_counted_for_the_root_and_the_sub_agent_shares_one_cap() -> None:
    tool = Tool(search, max_calls=1)
    sub = ScriptedLM([ToolCall("1", "search", {"query": "s"}), "sub done"],
                     model="scripted/sub", supports_tools=True)
    root = ScriptedLM([repl("print(search('r'))\nprint(llm_query('go'))"), repl("FINAL('x')")])
    result = RLM(root, sub, sandbox="none", tools=[tool], sub_tools=[tool]).completion("q", "c")
    assert result.tool_calls == 1
    assert "error (tool_limit)" in sub.calls[1][-1]["content"]


def test_a_round_asking_for_too_many_calls_runs_only_the_first_ones() -> None:
    from fastrlm._core.sub_agent import MAX_CALLS_PER_ROUND

    many = [ToolCall(str(i), "search", {"query": str(i)}) for i in range(MAX_CALLS_PER_ROUND + 5)]
    sub = ScriptedLM([many, "done"], model="scripted/sub", supports_tools=True)
    rlm, _ = _rlm(sub)
    assert rlm.completion("q", "ctx").answer == "done"
    assert len(CALLS) == MAX_CALLS_PER_ROUND
    shown = [m["content"] for m in sub.calls[1] if m["role"] == "tool"]
    assert len(shown) == MAX_CALLS_PER_ROUND + 5
    assert shown[-1].startswith("error (tool_limit):")


# ------------------------------------------- tool-call arguments past the limits, from the model
HUGE = "x" * (40 * 2**20)
DEEP_TEXT = '{"query": ' + "[" * 5_000 + "]" * 5_000 + "}"


def _deep(levels: int) -> object:
    value: object = []
    for _ in range(levels):
        value = [value]
    return value


def _echo_results(role: str) -> object:
    """The sub-model's answer once it has seen results: every tool result, in order."""
    def reply(messages: list[dict[str, object]]) -> object:
        if len(messages) == 1:
            return [ToolCall("1", "search", {"query": HUGE}),
                    ToolCall("2", "search", {"query": _deep(5_000)}),
                    ToolCall("3", "search", DEEP_TEXT),
                    ToolCall("4", "search", {"query": "ok"})]
        return " | ".join(str(m["content"])[:300] for m in messages if m["role"] == role)
    return reply


def test_native_tool_calls_past_the_size_or_depth_limit_are_refused_one_by_one() -> None:
    sub = ScriptedLM(_echo_results("tool"), model="scripted/sub",  # type: ignore[arg-type]
                     supports_tools=True)
    rlm, _ = _rlm(sub)
    result = rlm.completion("q", "ctx")
    assert result.stop_reason is StopReason.FINAL, result.error
    huge, deep, deep_text, fine = str(result.answer).split(" | ")
    assert huge.startswith("error (bad_arguments): search(): the arguments hold")
    assert "over the limit of 16,777,216" in huge
    for refused in (deep, deep_text):
        assert refused.startswith("error (bad_arguments): search(): the arguments are nested "
                                  "more than 100 levels deep")
    assert fine == '["page about ok"]'
    assert CALLS == [("search", {"query": "ok"})]  # the host tool never saw the others


def test_json_fallback_tool_calls_past_the_depth_limit_are_refused() -> None:
    # (a reply of 40 MiB is past any model's max_tokens; the size check is pinned below)
    replies = ['{"tool": "search", "arguments": ' + DEEP_TEXT + "}",
               '{"tool": "search", "arguments": {"query": ' + json.dumps(_deep(150)) + "}}",
               '{"tool": "search", "arguments": {"query": "ok"}}']

    def reply(messages: list[dict[str, object]]) -> str:
        turn = sum(1 for m in messages if m["role"] == "assistant")
        if turn < len(replies):
            return replies[turn]
        return " | ".join(str(m["content"])[:300] for m in messages[2::2])

    sub = ScriptedLM(reply, model="scripted/sub")
    rlm, _ = _rlm(sub)
    result = rlm.completion("q", "ctx")
    assert result.stop_reason is StopReason.FINAL, result.error
    too_deep, deep, fine = str(result.answer).split(" | ")
    for refused in (too_deep, deep):
        assert "error (bad_arguments): search(): the arguments are nested more than 100" in refused
    assert '["page about ok"]' in fine
    assert CALLS == [("search", {"query": "ok"})]


def test_a_json_fallback_reply_too_deep_to_decode_is_one_refused_call() -> None:
    [call] = json_tool_calls('{"tool": "search", "arguments": ' + DEEP_TEXT + "}", 2)
    assert (call.id, call.name) == ("json-2-0", "search") and isinstance(call.arguments, str)
    assert json_tool_calls("[" * 5_000 + "]" * 5_000, 1) == []  # names no tool: an answer
    [huge] = json_tool_calls('{"tool": "search", "arguments": {"query": "' + HUGE + '"}}', 1)
    with pytest.raises(ValueError, match="over the limit of 16,777,216"):
        tool_arguments(huge.name, huge.arguments)


def test_the_arguments_echoed_back_count_toward_the_sub_call_window() -> None:
    # 16 calls of 100,000 characters each: the results are short, but the next round sends
    # every argument back (the assistant's tool_calls); before, only the texts were counted and
    # 1.6 M characters went to a sub-model with a window of a third of that.
    big = [ToolCall(str(i), "search", {"query": "q" * 100_000}) for i in range(16)]
    sub = ScriptedLM([big, "done"], model="scripted/sub", supports_tools=True)
    rlm, _ = _rlm(sub)
    answer = rlm.completion("q", "ctx").answer
    assert answer.startswith("[error: prompt_too_long:")
    assert "grew past it after 1 tool round(s)" in answer
    assert len(sub.calls) == 1


def test_ten_thousand_calls_in_one_round_run_only_the_first_ones_and_copy_no_more() -> None:
    from fastrlm._core.sub_agent import MAX_CALLS_PER_ROUND

    many = [ToolCall(str(i), "search", {"query": str(i)}) for i in range(10_000)]
    sub = ScriptedLM([many, "done"], model="scripted/sub", supports_tools=True)
    rlm, _ = _rlm(sub, limits=Limits(subcall_window_chars=10_000_000))
    assert rlm.completion("q", "ctx").answer == "done"
    assert len(CALLS) == MAX_CALLS_PER_ROUND
    echoed = next(m for m in sub.calls[1] if m.get("tool_calls"))["tool_calls"]
    assert len(echoed) == 10_000
    assert echoed[0]["arguments"] == {"query": "0"}
    # the calls that did not run are echoed with no arguments (never checked or copied)
    assert echoed[MAX_CALLS_PER_ROUND]["arguments"] == {}
