"""The table of host operations (``sandbox/_hostops.py``), from the failure side: a bridge
written against the one-method protocol (``call(op, request)``) on every layer, a bridge that
answers only some operations, the worker's frame check and ``dispatch`` reading the same table,
and the earlier three-method bridges answered the same way through the adapter."""

from __future__ import annotations

import json

import pytest

import fastrlm.abc as abc
from fastrlm.sandbox import HOST_OPS, HandlerBridge, HostOpRequest, ToolParam, ToolSpec
from fastrlm.sandbox import _protocol as protocol
from fastrlm.sandbox._hostops import as_host_bridge, dispatch

from .helpers import FakeBridge, MakeSandbox, assert_alive

ALL_LAYERS = ["bwrap", "landlock", "process", "none"]
SPEC = ToolSpec("find", (ToolParam("q", "positional_or_keyword", None, "str"),
                         ToolParam("k", "keyword_only", "5", "int")), "list", "Find things.")


class OneMethodBridge:
    """A bridge written only against ``fastrlm.abc``: one ``call`` for every operation."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, HostOpRequest]] = []

    async def call(self, op: str, request: HostOpRequest) -> object:
        self.calls.append((op, request))
        if isinstance(request, abc.ToolRequest):
            return {"ok": True, "json": json.dumps([request.name, request.arguments])}
        if op == "llm_query":
            return [f"llm:{p}" for p in request.prompts]
        contexts = request.contexts or [None] * len(request.prompts)
        return [f"rlm:{p}|{c}" for p, c in zip(request.prompts, contexts, strict=True)]


@pytest.mark.sandbox
@pytest.mark.parametrize("kind", ALL_LAYERS)
async def test_a_bridge_with_only_call_answers_every_operation_on_every_layer(
    make_sandbox: MakeSandbox, kind: str
) -> None:
    bridge = OneMethodBridge()
    sb = await make_sandbox(kind, fake=bridge, tools=(SPEC,))  # type: ignore[arg-type]
    result = await sb.execute("print(llm_query('a'), llm_query_batched(['b', 'c']), "
                              "rlm_query('d', context='x'), find('q', k=2))")
    assert result.error is None, result.error
    assert result.stdout.strip() == "llm:a ['llm:b', 'llm:c'] rlm:d|x ['find', {'q': 'q', 'k': 2}]"
    assert [op for op, _ in bridge.calls] == ["llm_query", "llm_query", "rlm_query", "tool"]
    assert isinstance(bridge.calls[0][1], abc.HostRequest)
    await assert_alive(sb)


async def _echo(request: HostOpRequest) -> list[str]:
    assert isinstance(request, abc.HostRequest)
    return [f"llm:{p}" for p in request.prompts]


@pytest.mark.sandbox
@pytest.mark.parametrize("kind", ALL_LAYERS)
async def test_an_operation_the_bridge_does_not_answer_is_a_host_error_in_the_cell(
    make_sandbox: MakeSandbox, kind: str
) -> None:
    sb = await make_sandbox(kind, fake=HandlerBridge({"llm_query": _echo}),  # type: ignore[arg-type]
                            tools=(SPEC,))
    result = await sb.execute(
        "print(llm_query('a'))\nprint(rlm_query('b'))\n"
        "try:\n    find('q')\nexcept ToolError as e:\n    print(e.kind, e)"
    )
    assert result.error is None, result.error
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "llm:a"
    assert lines[1] == ("[error: host_error: LookupError: this host does not answer "
                        "'rlm_query' calls]")
    assert lines[2].startswith("host_error find: LookupError: this host does not answer 'tool'")
    await assert_alive(sb)


def test_the_worker_frame_check_reads_the_table_of_operations() -> None:
    assert set(HOST_OPS) == {"llm_query", "rlm_query", "tool", "budget", "llm_combine"}
    assert set(HOST_OPS) <= protocol.WORKER_OPS and set(HOST_OPS) <= protocol.NONCE_OPS
    for op in HOST_OPS:  # each op's own check refuses its garbage, in the frame check too
        with pytest.raises(protocol.FrameError, match=f"malformed '{op}' frame"):
            protocol.check_worker_frame({"op": op, "id": 1, "nonce": "n", "prompts": 5,
                                         "name": 5, "arguments": []})


async def test_a_three_method_bridge_and_a_call_bridge_get_the_same_replies() -> None:
    legacy, modern = FakeBridge(), OneMethodBridge()
    assert as_host_bridge(modern) is modern
    requests = [("llm_query", {"prompts": ["a", "b"], "model": None}),
                ("rlm_query", {"prompts": ["c"], "contexts": ["x"], "model": None}),
                ("tool", {"name": "find", "arguments": {"q": "z"}})]
    for op, payload in requests:
        old, new = await dispatch(legacy, op, payload), await dispatch(modern, op, payload)
        assert type(old) is type(new)
    assert legacy.llm_calls == [(["a", "b"], None)] and legacy.rlm_calls == [(["c"], ["x"], None)]
    assert legacy.tool_calls == [("find", {"q": "z"})]
    assert [op for op, _ in modern.calls] == ["llm_query", "rlm_query", "tool"]


async def test_a_request_the_table_refuses_never_reaches_the_bridge() -> None:
    bridge = OneMethodBridge()
    assert await dispatch(bridge, "llm_query", {"prompts": [], "model": None}) == []
    deep: object = 1
    for _ in range(200):
        deep = [deep]
    reply = await dispatch(bridge, "tool", {"name": "find", "arguments": {"q": deep}})
    assert isinstance(reply, dict) and reply["kind"] == "bad_arguments"
    with pytest.raises(ValueError, match="unknown host call"):
        await dispatch(bridge, "define", {"name": "x"})
    assert bridge.calls == []


async def test_the_engines_bridge_keeps_the_earlier_methods_one_release_with_a_warning() -> None:
    from fastrlm._core.continuation import SessionBridge

    target = OneMethodBridge()
    session = SessionBridge()
    session.target = target
    with pytest.warns(DeprecationWarning, match=r"llm_query_batched\(\) is deprecated.*call"):
        assert await session.llm_query_batched(["a"], None) == ["llm:a"]
    with pytest.warns(DeprecationWarning, match="rlm_query_batched"):
        assert await session.rlm_query_batched(["b"], ["x"], None) == ["rlm:b|x"]
    with pytest.warns(DeprecationWarning, match="call_tool"):
        reply = await session.call_tool("find", {"q": 1})
    assert reply == {"ok": True, "json": '["find", {"q": 1}]'}
    assert [op for op, _ in target.calls] == ["llm_query", "rlm_query", "tool"]


async def test_the_earlier_methods_hold_the_hosts_checks_too() -> None:
    from fastrlm._core.continuation import SessionBridge

    target = OneMethodBridge()
    session = SessionBridge()
    session.target = target
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError, match="model must be a str"):
        await session.llm_query_batched(["a"], 5)  # type: ignore[arg-type]
    with pytest.warns(DeprecationWarning):
        reply = await session.call_tool("find", {"q": "x" * (17 * 1024 * 1024)})
    assert isinstance(reply, dict) and reply["kind"] == "bad_arguments"
    assert target.calls == []
