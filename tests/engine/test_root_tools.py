"""Host tools in the root's REPL (RLM(tools=...)): called over the host-call path on every
sandbox, each failure an exception in the cell, every call an event."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import threading
from pathlib import Path

import pytest

from fastrlm import RLM, Budget, ConfigurationError, StopReason, Tool
from fastrlm.events import Event, ToolFinished, ToolStarted
from fastrlm.testing import ScriptedLM, skip_unless_sandbox

from .helpers import echo_sub, repl

KINDS = ["none", "auto"]


def search(query: str, k: int = 3) -> list[str]:
    """Search the catalogue; returns k titles."""
    return [f"{query}-{i}" for i in range(k)]


async def lookup(key: str) -> dict[str, object]:
    """Look a key up in the registry."""
    await asyncio.sleep(0)
    return {"key": key, "value": 42}


def _run(code: list[str], tools: list[object], kind: str = "none",
         events: list[Event] | None = None, **kw: object) -> tuple[object, ScriptedLM]:
    skip_unless_sandbox(kind)
    root = ScriptedLM([repl(c) for c in code], model="scripted/root")
    rlm = RLM(root, echo_sub(), sandbox=kind, tools=tools,  # type: ignore[arg-type]
              on_event=events.append if events is not None else None, **kw)  # type: ignore[arg-type]
    return rlm.completion("q", "the context"), root


def _output(root: ScriptedLM, turn: int = 1) -> str:
    return root.calls[turn][-1]["content"]


@pytest.mark.parametrize("kind", KINDS)
def test_root_code_calls_sync_and_async_tools_and_uses_their_results(kind: str) -> None:
    events: list[Event] = []
    result, _ = _run(['hits = search("cats", k=2)\nentry = lookup("x")\n'
                      'FINAL(str(hits) + "|" + str(entry["value"] + 1))'],
                     [search, lookup], kind, events)
    assert result.stop_reason is StopReason.FINAL, result.error  # type: ignore[attr-defined]
    assert result.answer == "['cats-0', 'cats-1']|43"  # type: ignore[attr-defined]
    assert result.tool_calls == 2  # type: ignore[attr-defined]
    started = [e for e in events if isinstance(e, ToolStarted)]
    finished = [e for e in events if isinstance(e, ToolFinished)]
    assert [e.tool for e in started] == ["search", "lookup"]
    assert [e.call_id for e in started] == [e.call_id for e in finished]
    assert all(e.error is None for e in finished)
    assert json.loads(finished[0].result_preview) == ["cats-0", "cats-1"]
    assert '"query": "cats"' in started[0].arguments_preview


@pytest.mark.parametrize("kind", KINDS)
def test_the_repl_function_has_the_tools_signature_and_doc(kind: str) -> None:
    _, root = _run(["import inspect\nprint(inspect.signature(search))\nprint(search.__doc__)",
                    "FINAL('done')"], [search], kind)
    out = _output(root)
    assert "(query: str, k: int = 3) -> list[str]" in out
    assert "Search the catalogue" in out


def test_the_system_prompt_lists_each_tool_with_signature_and_description() -> None:
    _, root = _run(["FINAL('x')"], [search, lookup])
    system = root.calls[0][0]["content"]
    assert "`search(query: str, k: int = 3) -> list[str]`: Search the catalogue; returns k " \
           "titles." in system
    assert "`lookup(key: str) -> dict[str, object]`: Look a key up in the registry." in system
    assert "ToolError" in system
    _, plain = _run(["FINAL('x')"], [])
    assert "Host tools" not in plain.calls[0][0]["content"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_tool_that_raises_is_a_tool_error_in_the_cell_and_the_run_goes_on(kind: str) -> None:
    def explode(x: int) -> int:
        raise ValueError(f"cannot handle {x}")

    code = ["try:\n    explode(3)\nexcept ToolError as e:\n    print(type(e).__name__, e.kind, e)",
            "explode(4)", "FINAL('after')"]
    result, root = _run(code, [explode], kind)
    assert "ToolError tool_error explode: raised ValueError: cannot handle 3" in _output(root, 1)
    second = _output(root, 2)
    assert "ToolError" in second and "cannot handle 4" in second
    assert result.answer == "after"  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", KINDS)
def test_a_hanging_tool_times_out_with_a_clear_error(kind: str) -> None:
    release = threading.Event()

    def hang() -> str:
        release.wait(30)
        return "late"

    async def hang_async() -> str:
        await asyncio.sleep(30)
        return "late"

    tools = [Tool(hang, timeout_s=0.2), Tool(hang_async, timeout_s=0.2)]
    code = ["for f in (hang, hang_async):\n    try:\n        f()\n    except Exception as e:\n"
            "        print(e.kind, e)", "FINAL('ok')"]
    try:
        result, root = _run(code, tools, kind)
    finally:
        release.set()
    out = _output(root)
    assert out.count("tool_timeout") >= 2 and "no answer within 0.2 s" in out
    assert result.answer == "ok"  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", KINDS)
def test_a_result_json_cannot_hold_is_refused_and_objects_are_converted(kind: str) -> None:
    @dataclasses.dataclass
    class Point:
        x: int
        y: int

    def point() -> Point:
        return Point(1, 2)

    def gadget() -> object:
        return object()

    def nan() -> float:
        return float("nan")

    code = ["print(point())\nfor f in (gadget, nan):\n    try:\n        f()\n"
            "    except Exception as e:\n        print(e.kind)", "FINAL('ok')"]
    _, root = _run(code, [point, gadget, nan], kind)
    out = _output(root)
    assert "{'x': 1, 'y': 2}" in out
    assert out.count("bad_result") == 2


@pytest.mark.parametrize("kind", KINDS)
def test_arguments_are_json_on_every_sandbox_and_bad_calls_raise_in_the_cell(kind: str) -> None:
    seen: list[object] = []

    def keep(value: object) -> str:
        seen.append(value)
        return "kept"

    code = ["keep((1, 2))\ntry:\n    keep({1, 2})\nexcept TypeError as e:\n    print('T1', e)\n"
            "try:\n    keep()\nexcept TypeError as e:\n    print('T2', e)\n"
            "try:\n    keep(1, 2)\nexcept TypeError as e:\n    print('T3', e)", "FINAL('ok')"]
    _, root = _run(code, [keep], kind)
    out = _output(root)
    assert seen == [[1, 2]]  # the tuple arrived as JSON's list, on every sandbox
    assert "T1 keep(): the arguments must be JSON" in out
    assert "T2 keep(): missing a required argument" in out
    assert "T3 keep(): too many positional arguments" in out


@pytest.mark.parametrize("kind", KINDS)
def test_the_call_cap_refuses_calls_past_max_calls(kind: str) -> None:
    events: list[Event] = []
    tool = Tool(search, max_calls=2)
    code = ["for i in range(4):\n    try:\n        search('a', k=1)\n        print('ok')\n"
            "    except Exception as e:\n        print(e.kind)", "FINAL('done')"]
    result, root = _run(code, [tool], kind, events)
    assert "ok\nok\ntool_limit\ntool_limit" in _output(root)
    assert result.tool_calls == 2  # type: ignore[attr-defined]
    assert sum(isinstance(e, ToolStarted) for e in events) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_rebinding_a_tool_name_restores_the_tool(kind: str) -> None:
    _, root = _run(["search = 5", "print(search('z', k=1))", "FINAL('x')"], [search], kind)
    assert "`search`" in _output(root, 1) and "restored" in _output(root, 1)
    assert "['z-0']" in _output(root, 2)


def test_a_hand_made_call_of_an_unknown_tool_gets_unknown_tool() -> None:
    from fastrlm._core.tools import ToolCounter, run_tool

    reply = asyncio.run(run_tool({}, "nope", {}, counter=ToolCounter(), emit=lambda e: None,
                                 run_id="r", depth=0))
    assert reply["ok"] is False and reply["kind"] == "unknown_tool"


def test_tool_calls_count_toward_max_seconds() -> None:
    release = threading.Event()

    def slow() -> str:
        release.wait(60)
        return "late"

    try:
        result, _ = _run(["slow()", "FINAL('never')"], [Tool(slow, timeout_s=600)],
                         budget=Budget(max_seconds=1))
    finally:
        release.set()
    assert result.stop_reason is StopReason.TIMEOUT  # type: ignore[attr-defined]


def test_a_child_run_gets_the_same_tools() -> None:
    def child_reply(messages: list[dict[str, str]]) -> str:
        if "the child question" in messages[1]["content"]:
            return repl("FINAL(search('kid', k=1)[0])")
        return repl("FINAL(rlm_query('the child question', context='c'))")

    rlm = RLM(ScriptedLM(child_reply), echo_sub(), sandbox="none", tools=[search],
              budget=Budget(max_depth=2))
    result = rlm.completion("q", "ctx")
    assert result.answer == "kid-0" and result.tool_calls == 1


def test_tool_events_are_in_the_trace(tmp_path: Path) -> None:
    root = ScriptedLM([repl("FINAL(str(search('t', k=1)))")])
    result = RLM(root, echo_sub(), sandbox="none", tools=[search],
                 trace=tmp_path).completion("q", "ctx")
    assert result.trace_path is not None
    lines = [json.loads(line) for line in Path(result.trace_path).read_text().splitlines()]
    types = [line["type"] for line in lines]
    assert "tool.started" in types and "tool.finished" in types
    done = next(line for line in lines if line["type"] == "tool.finished")
    assert done["tool"] == "search" and done["error"] is None
    finished = next(line for line in lines if line["type"] == "run.finished")
    assert finished["tool_calls"] == 1


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: [lambda: 1], "identifier"),
        (lambda: [Tool(search, name="context")], "taken by the REPL"),
        (lambda: [Tool(search, name="llm_query")], "taken by the REPL"),
        (lambda: [Tool(search, name="context_2")], "taken by the REPL"),
        (lambda: [Tool(search, name="ToolError")], "taken by the REPL"),
        (lambda: [Tool(search, name="print")], "builtin"),
        (lambda: [Tool(search, name="_private")], "starts with '_'"),
        (lambda: [Tool(search, name="class")], "identifier"),
        (lambda: [search, Tool(lookup, name="search")], "two tools are named 'search'"),
        (lambda: ["not a function"], "callable"),
        (lambda: "search", "list of functions"),
    ],
)
def test_bad_tools_are_refused_when_the_rlm_is_built(make: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RLM(ScriptedLM(["x"]), sandbox="none", tools=make())  # type: ignore[operator]


@pytest.mark.parametrize(
    ("kw", "message"),
    [({"timeout_s": 0}, "timeout_s"), ({"timeout_s": float("nan")}, "timeout_s"),
     ({"max_calls": 0}, "max_calls"), ({"max_calls": True}, "max_calls"),
     ({"timeout_s": True}, "timeout_s"), ({"timeout_s": "5"}, "timeout_s"),
     ({"timeout_s": float("inf")}, "timeout_s"), ({"max_calls": 10**30}, "max_calls"),
     ({"max_calls": 2.0}, "max_calls"),
     ({"parameters": {"type": "array"}}, "type 'object'")],
)
def test_bad_tool_settings_are_refused(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Tool(search, **kw)  # type: ignore[arg-type]


def test_a_tool_schema_comes_from_the_annotations() -> None:
    def f(q: str, tags: list[str], mode: int | None = None, *, strict: bool = False) -> str:
        """Find things.

        More text that is not the description."""
        return q

    tool = Tool(f)
    assert tool.description == "Find things."
    assert tool.schema() == {
        "name": "f",
        "description": "Find things.",
        "parameters": {
            "type": "object",
            "properties": {
                "q": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "mode": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
                "strict": {"type": "boolean", "default": False},
            },
            "required": ["q", "tags"],
            "additionalProperties": False,
        },
    }
    assert tool.signature == ("f(q: str, tags: list[str], mode: int | None = None, *, "
                              "strict: bool = False) -> str")


def test_with_options_keeps_the_tools_and_they_are_read_only() -> None:
    rlm = RLM(ScriptedLM(["x"]), sandbox="none", tools=[search])
    assert [t.name for t in rlm.with_options(sandbox="none").tools] == ["search"]
    with pytest.raises(AttributeError, match="read-only"):
        rlm.tools = ()  # type: ignore[misc]


def test_show_and_progress_report_tool_calls(tmp_path: Path) -> None:
    from fastrlm.cli._progress import RunState
    from fastrlm.trace import read_trace, render_transcript

    def broken() -> str:
        raise OSError("down")

    events: list[Event] = []
    code = "print(search('v', k=1))\ntry:\n    broken()\nexcept Exception:\n    pass\nFINAL('x')"
    root = ScriptedLM([repl(code)])
    result = RLM(root, echo_sub(), sandbox="none", tools=[search, broken], trace=tmp_path,
                 on_event=events.append).completion("q", "ctx")
    text = render_transcript(read_trace(Path(str(result.trace_path))))
    assert "tool search in" in text and '["v-0"]' in text
    assert "tool broken in" in text and "error: tool_error: raised OSError: down" in text
    assert "2 tool call(s)" in text
    state = RunState()
    for event in events:
        state.update(event)
    assert state.tools == 2 and state.tools_failed == 1
    assert "2 tool call(s) (1 failed)" in state.subcall_text()


@pytest.mark.parametrize("kind", KINDS)
def test_a_tool_that_exits_or_returns_a_raising_object_never_stops_the_host(kind: str) -> None:
    def leave() -> None:
        raise SystemExit(3)

    async def leave_async() -> None:
        raise SystemExit(4)

    class Hostile:
        def model_dump(self, mode: str) -> dict[str, object]:
            raise RuntimeError("no dump for you")

    def hostile() -> Hostile:
        return Hostile()

    code = ["for f in (leave, leave_async, hostile):\n    try:\n        f()\n"
            "    except Exception as e:\n        print(e.kind, e)", "FINAL('alive')"]
    result, root = _run(code, [leave, leave_async, hostile], kind)
    out = _output(root)
    assert "tool_error leave: raised SystemExit: 3" in out
    assert "tool_error leave_async: raised SystemExit: 4" in out
    assert "bad_result hostile:" in out and "no dump for you" in out
    assert result.answer == "alive"  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", KINDS)
def test_a_tool_with_star_args_and_keywords_gets_what_the_cell_passed(kind: str) -> None:
    def gather(first: str, *rest: int, sep: str = "-", **extra: object) -> str:
        return sep.join([first, *map(str, rest)]) + str(sorted(extra.items()))

    code = ["print(gather('a', 1, 2, sep='+', k=3))\nprint(gather('b'))", "FINAL('x')"]
    _, root = _run(code, [gather], kind)
    out = _output(root)
    assert "a+1+2[('k', 3)]" in out and "b[]" in out


# ------------------------------------------------- whatever a tool raises, the model sees it
class Custom(BaseException):
    """A BaseException of the tool's own."""


RAISED: dict[str, type[BaseException]] = {
    "interrupt": KeyboardInterrupt, "exit": SystemExit, "genexit": GeneratorExit,
    "cancelled": asyncio.CancelledError, "custom": Custom,
}


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise SystemExit("no message either")


def _failing_tool(name: str, error: type[BaseException], mode: str, where: str) -> Tool:
    """A tool that raises ``error`` from the call itself, from its result's ``model_dump``, or
    whose exception's ``__str__`` raises it."""

    class Result:
        def model_dump(self, mode: str) -> dict[str, object]:
            raise error("from model_dump")

    def act() -> object:
        if where == "call":
            raise error("from the call")
        if where == "str":
            raise _Unprintable() from error("behind __str__")
        return Result()

    async def act_async() -> object:
        await asyncio.sleep(0)
        return act()

    return Tool(act_async if mode == "async" else act, name=name)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("where", ["call", "model_dump", "str"])
def test_a_tool_raising_any_base_exception_is_a_tool_error_the_model_sees(
    mode: str, where: str
) -> None:
    tools = [_failing_tool(f"t_{name}", error, mode, where) for name, error in RAISED.items()]
    code = "\n".join(f"try:\n    t_{name}()\nexcept ToolError as e:\n    print(e.kind, e)"
                     for name in RAISED)
    result, root = _run([code, "FINAL('alive')"], tools)  # type: ignore[arg-type]
    assert result.answer == "alive", result.error  # type: ignore[attr-defined]
    lines = _output(root).split("```")[1].strip().splitlines()
    assert len(lines) == len(RAISED)
    kind = "bad_result" if where == "model_dump" else "tool_error"
    for line, (name, error) in zip(lines, RAISED.items(), strict=True):
        assert line.startswith(f"{kind} t_{name}: "), line
        shown = "_Unprintable: (its message could not be shown)" if where == "str" else (
            f"{error.__name__}: from {'the call' if where == 'call' else 'model_dump'}")
        assert (f"raised {shown} [" if kind == "tool_error" else f"({shown})") in line


async def test_cancelling_the_run_while_a_tool_runs_still_cancels_it() -> None:
    """The one CancelledError that is not the tool's: the run's own, even when the tool turns
    it into something else on the way out."""
    from fastrlm._core.tools import ToolCounter, run_tool

    started = asyncio.Event()

    async def waits() -> None:
        started.set()
        await asyncio.Event().wait()

    async def converts() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None

    for fn in (waits, converts):
        started.clear()
        task = asyncio.create_task(run_tool(
            {"t": Tool(fn, name="t")}, "t", {}, counter=ToolCounter(), emit=lambda e: None,
            run_id="r", depth=0))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_an_async_tool_returning_a_coroutine_is_bad_result_and_the_coroutine_is_closed(
) -> None:
    made: list[object] = []

    async def inner() -> int:
        return 1

    async def lazy() -> object:
        """Forgets to await."""
        made.append(inner())
        return made[-1]

    result, root = _run(["try:\n    lazy()\nexcept ToolError as e:\n    print(e.kind)",
                         "FINAL('done')"], [lazy])
    assert result.answer == "done"  # type: ignore[attr-defined]
    assert "bad_result" in _output(root)
    coroutine = made[0]
    assert inspect.getcoroutinestate(coroutine) == "CORO_CLOSED"  # type: ignore[arg-type]


# ---------------------------------------------------------------- RLM(variables=...)
@pytest.mark.parametrize("kind", KINDS)
def test_variables_are_repl_variables_from_the_first_cell_and_told_to_the_model(
        kind: str) -> None:
    """``variables`` are bound through the sandbox's define before the first cell (a rebound
    one is restored after the cell, as the REPL's other names) and the system prompt names
    each with its type."""
    result, root = _run(["limit = 0\nprint(type(names).__name__)",
                         "FINAL(str(limit + len(names)) + config['mode'])"], [], kind,
                        variables={"limit": 10, "names": ["a", "b"], "config": {"mode": "x"}})
    assert result.answer == "12x", result.error  # type: ignore[attr-defined]
    system = root.calls[0][0]["content"]
    assert "`limit` (int)" in system and "`names` (list)" in system
    assert "`config` (dict)" in system


def test_each_run_gets_its_own_copy_of_a_variable_even_in_process() -> None:
    """Model code changing a variable (under ``none``, where the REPL is this process) changes
    neither the caller's object nor the next run's; the caller changing it after the RLM is
    built does not reach a run either."""
    names = ["a"]
    root = ScriptedLM([repl("names.append('model')\nFINAL(str(names))"),
                       repl("FINAL(str(names))")], model="scripted/root")
    rlm = RLM(root, echo_sub(), sandbox="none", variables={"names": names, "pair": (1, 2)})
    names.append("caller")
    assert rlm.completion("q", "c").answer == "['a', 'model']"
    assert rlm.completion("q", "c").answer == "['a']"
    assert names == ["a", "caller"]


def test_variables_are_bound_again_after_the_worker_dies() -> None:
    skip_unless_sandbox("auto")
    result, _ = _run(["import os\nos._exit(3)", "FINAL(str(limit))"], [], "auto",
                     variables={"limit": 7})
    assert result.answer == "7", result.error  # type: ignore[attr-defined]


def test_a_session_keeps_variables_across_questions() -> None:
    root = ScriptedLM([repl("FINAL(str(limit))"), repl("FINAL(str(limit * 2))")],
                      model="scripted/root")
    with RLM(root, echo_sub(), sandbox="none", variables={"limit": 4}).session() as session:
        assert session.ask("q1", "c").answer == "4"
        assert session.ask("q2").answer == "8"


@pytest.mark.parametrize(("variables", "message"), [
    ({"limit": {1, 2}}, r"variables\['limit'\] is a set, which cannot cross into the sandbox"),
    ({"loop": (loop := []).append(loop) or loop}, r"variables\['loop'\] is a list.*Circular"),
    ({"context": 1}, "variable name 'context' is taken by the REPL itself"),
    ({"not a name": 1}, "a variable name must be a Python identifier"),
    ({"_hidden": 1}, "variable name '_hidden' starts with '_'"),
    ({"search": 1}, "variable name 'search' is also a tool's"),
    ([("limit", 1)], "variables must be a dict of name -> JSON value"),
])
def test_bad_variables_are_refused_when_the_rlm_is_built(variables: object,
                                                         message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RLM(ScriptedLM([]), sandbox="none", tools=[search],
            variables=variables)  # type: ignore[arg-type]
