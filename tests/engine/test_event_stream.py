"""The event stream of a scripted run is a contract (traces, the viewer and the server read it):
a few runs covering the engine's roles are recorded in ``data/event_streams.json`` and replayed
here. Timestamps, durations and ids are left out; everything else must match event for event.

Regenerate (only for an intended change of the stream) with
``PYTHONPATH=src python3 -m tests.engine.test_event_stream``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fastrlm import RLM, Budget
from fastrlm.events import Event
from fastrlm.testing import ScriptedLM, prompt_of

from .helpers import repl

RECORDED = Path(__file__).parent / "data" / "event_streams.json"
_TIMINGS = {"ts", "duration_s", "latency_s", "startup_s"}
_IDS = {"run_id", "parent_run_id", "child_run_id", "session_id", "call_id", "subcall_id",
        "agent_id", "trace_id"}


def _untimed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if k not in _TIMINGS}
    return value


def _normalised(events: list[Event]) -> list[dict[str, Any]]:
    """Events as dicts, timings dropped (usage's too) and ids numbered by first appearance."""
    names: dict[str, str] = {}
    out = []
    for event in events:
        data = _untimed(event.to_dict())
        for key in [k for k in data if k in _IDS]:  # in field order: same numbering every run
            if data[key] is not None:
                data[key] = names.setdefault(data[key], f"id{len(names)}")
        out.append(data)
    return out


def _sub() -> ScriptedLM:
    return ScriptedLM(lambda m: "sub:" + prompt_of(m)[:12], model="scripted/sub")


def _plain(events: list[Event]) -> None:
    root = ScriptedLM([repl("a = llm_query('first ' + context[:5])\nprint(a)"),
                       repl("FINAL(a)")], model="scripted/root")
    RLM(root, _sub(), sandbox="none", on_event=events.append).completion("q", "hello world")


def _typed_retry(events: list[Event]) -> None:
    root = ScriptedLM([repl("FINAL('not a number')"), repl("FINAL('42')")],
                      model="scripted/root")
    RLM(root, _sub(), sandbox="none", on_event=events.append).completion(
        "how many?", "ctx", output=int)


def _session(events: list[Event]) -> None:
    def script(messages: list[dict[str, str]]) -> str:
        if "New question (2" in messages[-1]["content"]:
            return repl("FINAL(str(x + 1) + context)")
        return repl("x = 1\nFINAL('set')")

    root = ScriptedLM(script, model="scripted/root")
    with RLM(root, _sub(), sandbox="none", on_event=events.append).session() as session:
        session.ask("set x", context="first")
        session.ask("read x", context="second")


def _child(events: list[Event]) -> None:
    def script(messages: list[dict[str, str]]) -> str:
        if "child question" in messages[1]["content"]:
            return repl("FINAL('child says ' + context)")
        if len(messages) == 2:
            return repl("r = rlm_query('child question', 'inner')\nprint(r)")
        return repl("FINAL(r)")

    root = ScriptedLM(script, model="scripted/root")
    RLM(root, _sub(), sandbox="none", budget=Budget(max_depth=2),
        on_event=events.append).completion("q", "outer")


def _refused_batch(events: list[Event]) -> None:
    root = ScriptedLM([repl("r = llm_query_batched(['a', 'b', 'c'])\nprint(r)"),
                       repl("FINAL(str(r))")], model="scripted/root")
    RLM(root, _sub(), sandbox="none", budget=Budget(max_subcalls=1),
        on_event=events.append).completion("q", "ctx")


def _child_refused(events: list[Event]) -> None:
    """A child's sub-calls are refused: the child and then its parent get their last turn."""
    def script(messages: list[dict[str, str]]) -> str:
        last = messages[-1]["content"]
        child = "child question" in messages[1]["content"]
        if "is used up" in last:
            return repl("FINAL('child gave up')" if child else "FINAL('parent gave up: ' + r)")
        if child:
            return repl("print(llm_query_batched(['a', 'b', 'c']))")
        return repl("r = rlm_query('child question', 'inner')\nprint(r)")

    root = ScriptedLM(script, model="scripted/root")
    RLM(root, _sub(), sandbox="none", budget=Budget(max_depth=2, max_subcalls=3),
        on_event=events.append).completion("q", "outer")


def _plan_then_drop_in(events: list[Event]) -> None:
    """A plan-only FINAL is sent back once; the question is too long to show, so it is the
    context (drop-in) and the root is told where to read it."""
    root = ScriptedLM([repl("FINAL('Let me look at the context first.')"),
                       repl("FINAL(context[:9])")], model="scripted/root")
    RLM(root, _sub(), sandbox="none", on_event=events.append).completion("why? " * 1_000)


def _iteration_cap(events: list[Event]) -> None:
    root = ScriptedLM([repl("print(1)"), repl("print(2)"), "I give up: 7"],
                      model="scripted/root")
    RLM(root, _sub(), sandbox="none", budget=Budget(max_iterations=2),
        on_event=events.append).completion("q", "ctx")


SCENARIOS: dict[str, Callable[[list[Event]], None]] = {
    "plain": _plain,
    "typed_retry": _typed_retry,
    "session": _session,
    "child": _child,
    "child_refused": _child_refused,
    "refused_batch": _refused_batch,
    "iteration_cap": _iteration_cap,
    "plan_then_drop_in": _plan_then_drop_in,
}


def _record(name: str) -> list[dict[str, Any]]:
    events: list[Event] = []
    SCENARIOS[name](events)
    return _normalised(events)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_event_stream_of_a_scripted_run_is_unchanged(name: str) -> None:
    recorded = json.loads(RECORDED.read_text(encoding="utf-8"))[name]
    assert _record(name) == recorded


if __name__ == "__main__":
    RECORDED.write_text(json.dumps({name: _record(name) for name in sorted(SCENARIOS)},
                                   indent=1, sort_keys=True) + "\n", encoding="utf-8")
