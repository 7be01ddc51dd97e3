"""The one host-call path (``sandbox._hostcalls``), from the failure side: bridges that raise or
break the one-answer-per-prompt rule, garbage arguments from model code, forged requests, and
the same text on both sandboxes for the same failure."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastrlm._foundation import error_text as error_kinds
from fastrlm.sandbox import RESERVED_NAMES, Sandbox, _base, _hostcalls
from fastrlm.sandbox._hostcalls import (
    MAX_BATCH_PROMPTS,
    HostRequest,
    ToolError,
    ToolParam,
    ToolSpec,
    error_text,
    model_request,
    one_answer_per_prompt,
    tool_arguments,
    tool_reply,
    tool_request,
    tool_value,
    wire_request,
    wire_tool_request,
)
from fastrlm.sandbox._hostops import dispatch
from fastrlm.sandbox._runtime import ReplRuntime

from .helpers import FakeBridge, MakeSandbox, assert_alive

BOTH = pytest.mark.parametrize("kind", ["none", "auto"])


# ------------------------------------------------------------------- names and texts
def test_reserved_names_are_defined_once_and_are_what_the_repl_provides() -> None:
    assert _base.RESERVED_NAMES is _hostcalls.RESERVED_NAMES is RESERVED_NAMES
    runtime = ReplRuntime("ctx", lambda op, payload: [])
    provided = {name for name in runtime.ns if name != "__builtins__" and name != "__name__"}
    assert provided == set(RESERVED_NAMES)
    host_functions = {spec.name for spec in _hostcalls.HOST_CALLS}
    assert host_functions <= set(RESERVED_NAMES)


def test_error_text_has_one_format_and_refuses_a_kind_that_is_not_a_word() -> None:
    assert error_text("no_answer", "nothing came back") == "[error: no_answer: nothing came back]"
    long = error_text("subcall_failed", "x" * 10_000)
    assert len(long) < _hostcalls.MAX_ERROR_MESSAGE_CHARS + 40 and long.endswith("…]")
    for kind in error_kinds.ERROR_KINDS:
        assert error_text(kind, "m").startswith(f"[error: {kind}: ")
    for bad in ("", "Sub call", "budget-usd", "x]: y"):
        with pytest.raises(ValueError, match="snake_case"):
            error_text(bad, "m")


def test_every_budget_refusal_is_a_valid_error_kind() -> None:
    from fastrlm._foundation.stop import StopReason

    for reason in StopReason:
        assert error_text(reason.value, "m").startswith(f"[error: {reason.value}: ")


# ------------------------------------------------------------------- one answer per prompt
class _Weird(str):
    def __str__(self) -> str:
        raise RuntimeError("model-defined __str__")


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        (["a", "b"], ["a", "b"]),
        (["a"], ["a", "[error: no_answer: the host gave no answer to this prompt]"]),
        (["a", "b", "c"], ["a", "b"]),
        (None, ["[error: no_answer: the host gave no answer to this prompt]"] * 2),
        ("ab", ["[error: no_answer: the host gave no answer to this prompt]"] * 2),
        ([1, "b"], ["[error: bad_answer: the host answered with a int, not text]", "b"]),
        ([b"a", None], ["[error: bad_answer: the host answered with a bytes, not text]",
                        "[error: bad_answer: the host answered with a NoneType, not text]"]),
    ],
)
def test_exactly_one_str_per_prompt_whatever_the_bridge_returned(
    answers: object, expected: list[str]
) -> None:
    assert one_answer_per_prompt(answers, 2) == expected


def test_a_str_subclass_answer_becomes_an_exact_str() -> None:
    [answer] = one_answer_per_prompt([_Weird("text")], 1)
    assert type(answer) is str and answer == "text"


class _Raising(FakeBridge):
    async def llm_query_batched(self, prompts: list[str], model: str | None) -> list[str]:
        raise KeyError("bridge bug")

    async def rlm_query_batched(
        self, prompts: list[str], contexts: list[object] | None, model: str | None
    ) -> list[str]:
        raise RuntimeError("child bug")


async def test_a_raising_bridge_gives_every_prompt_a_host_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    llm = await dispatch(_Raising(), "llm_query", {"prompts": ["a", "b"], "model": None})
    rlm = await dispatch(_Raising(), "rlm_query", {"prompts": ["a"], "contexts": None})
    assert llm == ["[error: host_error: KeyError: 'bridge bug']"] * 2
    assert rlm == ["[error: host_error: RuntimeError: child bug]"]
    assert "HostBridge raised" in caplog.text


async def test_dispatch_refuses_a_forged_request_before_the_bridge_sees_it() -> None:
    bridge = FakeBridge()
    for payload in ({"prompts": 5}, {"prompts": [1]}, {"prompts": ["a"], "model": 3},
                    {"prompts": ["a"] * (MAX_BATCH_PROMPTS + 1)}):
        with pytest.raises((TypeError, ValueError)):
            await dispatch(bridge, "llm_query", payload)
    with pytest.raises(ValueError, match="unknown host call"):
        await dispatch(bridge, "launch", {"prompts": ["a"]})
    assert bridge.llm_calls == [] and bridge.rlm_calls == []


# ------------------------------------------------------------------- checking requests
@pytest.mark.parametrize(
    ("payload", "error", "match"),
    [
        ({}, TypeError, "prompts must be a list of str"),
        ({"prompts": "p"}, TypeError, "prompts must be a list of str"),
        ({"prompts": ["a", 1]}, TypeError, "prompts must be a list of str"),
        ({"prompts": ["a"], "model": 7}, TypeError, "model must be a str or None, not int"),
        ({"prompts": ["a"], "model": "m" * 201}, ValueError, "at most 200 characters"),
        ({"prompts": ["a"], "contexts": [1, 2]}, ValueError, "1 prompts but 2 contexts"),
        ({"prompts": ["a"], "contexts": "c"}, TypeError, "contexts must be a list"),
        ({"prompts": [""] * (MAX_BATCH_PROMPTS + 1)}, ValueError, "more than 10,000 prompts"),
    ],
)
def test_garbage_from_the_sandbox_is_refused_with_what_to_do(
    payload: Mapping[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        wire_request("rlm_query", payload)


def test_prompt_characters_are_capped_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_hostcalls, "MAX_BATCH_CHARS", 100)
    wire_request("llm_query", {"prompts": ["x" * 50, "y" * 50]})
    with pytest.raises(ValueError, match="101 characters, over the limit of 100"):
        wire_request("llm_query", {"prompts": ["x" * 50, "y" * 51]})
    with pytest.raises(ValueError, match="at least 150 characters, over the limit of 100"):
        model_request("llm_query_batched", ["x" * 50] * 3 + ["never converted"])


@settings(max_examples=200, deadline=None)
@given(
    op=st.sampled_from(["llm_query", "rlm_query"]) | st.text(max_size=10),
    payload=st.dictionaries(
        st.sampled_from(["prompts", "contexts", "model", "id"]),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=10),
            lambda inner: st.lists(inner, max_size=4),
            max_leaves=12,
        ),
    ),
)
def test_fuzz_requests_are_checked_or_refused(op: str, payload: dict[str, object]) -> None:
    try:
        request = wire_request(op, payload)
    except (TypeError, ValueError):
        return
    assert isinstance(request, HostRequest) and all(type(p) is str for p in request.prompts)
    assert request.contexts is None or len(request.contexts) == len(request.prompts)


def test_model_arguments_are_read_lazily_and_bounded() -> None:
    with pytest.raises(ValueError, match="more than 10,000 prompts"):
        model_request("llm_query_batched", itertools.count())  # endless: never materialised
    with pytest.raises(ValueError, match="more than 10,000 contexts"):
        model_request("rlm_query_batched", ["a"], itertools.repeat("c"))
    with pytest.raises(TypeError, match="prompts must be a list, not int"):
        model_request("llm_query_batched", 5)
    assert model_request("llm_query_batched", "one").prompts == ["one"]
    assert model_request("llm_query", 42).prompts == ["42"]
    assert model_request("rlm_query", "q", "ctx").contexts == ["ctx"]


# ------------------------------------------------------------------- through both sandboxes
class Sloppy(FakeBridge):
    """Breaks the one-answer rule in every way, by prompt."""

    async def llm_query_batched(self, prompts: list[str], model: str | None) -> list[str]:
        self.llm_calls.append((list(prompts), model))
        if prompts[0] == "raise":
            raise RuntimeError("bridge bug")
        if prompts[0] == "few":
            return ["only one"]
        if prompts[0] == "many":
            return ["1", "2", "3", "4"]
        if prompts[0] == "none":
            return None  # type: ignore[return-value]
        return [7, b"x"]  # type: ignore[list-item]


CATCH = (
    "try:\n    r = {call}\nexcept Exception as e:\n    r = f'{{type(e).__name__}}: {{e}}'\n"
    "print(r)"
)


async def _outputs(make_sandbox: MakeSandbox, kind: str, calls: list[str],
                   bridge: FakeBridge) -> list[str]:
    sb: Sandbox = await make_sandbox(kind, fake=bridge)
    outputs = []
    for call in calls:
        result = await sb.execute(CATCH.format(call=call))
        assert result.error is None and not result.restarted, result
        outputs.append(result.stdout.strip())
    await assert_alive(sb)
    return outputs


SLOPPY_CALLS = [
    "llm_query_batched(['raise', 'b'])",
    "llm_query_batched(['few', 'b'])",
    "llm_query_batched(['many', 'b'])",
    "llm_query_batched(['none', 'b'])",
    "llm_query_batched(['types', 'b'])",
    "llm_query('raise')",
]


@pytest.mark.sandbox
async def test_a_sloppy_bridge_gives_the_same_answers_on_both_sandboxes(
    make_sandbox: MakeSandbox,
) -> None:
    isolated = await _outputs(make_sandbox, "auto", SLOPPY_CALLS, Sloppy())
    in_process = await _outputs(make_sandbox, "none", SLOPPY_CALLS, Sloppy())
    assert isolated == in_process
    no_answer = "[error: no_answer: the host gave no answer to this prompt]"
    assert isolated == [
        str(["[error: host_error: RuntimeError: bridge bug]"] * 2),
        str(["only one", no_answer]),
        str(["1", "2"]),
        str([no_answer] * 2),
        str(["[error: bad_answer: the host answered with a int, not text]",
             "[error: bad_answer: the host answered with a bytes, not text]"]),
        "[error: host_error: RuntimeError: bridge bug]",
    ]


GARBAGE_CALLS = [
    "llm_query_batched(5)",
    "llm_query_batched(__import__('itertools').count())",
    "llm_query_batched(range(10**12))",
    "llm_query('x', model=5)",
    "llm_query('x', model='m' * 10_000)",
    "rlm_query_batched(['a'], contexts=[1, 2])",
    "rlm_query_batched(['a', 'b'], contexts=__import__('itertools').repeat(1))",
    "llm_query_batched([object()] * 3)[0][:5]",
]


@pytest.mark.sandbox
async def test_garbage_arguments_fail_in_model_code_alike_on_both_sandboxes(
    make_sandbox: MakeSandbox,
) -> None:
    isolated_bridge, in_process_bridge = FakeBridge(), FakeBridge()
    isolated = await _outputs(make_sandbox, "auto", GARBAGE_CALLS, isolated_bridge)
    in_process = await _outputs(make_sandbox, "none", GARBAGE_CALLS, in_process_bridge)
    assert isolated == in_process
    assert isolated[:-1] == [
        "TypeError: llm_query_batched: prompts must be a list, not int",
        "ValueError: llm_query_batched: more than 10,000 prompts in one call; send them in "
        "batches of at most 10,000",
        "ValueError: llm_query_batched: more than 10,000 prompts in one call; send them in "
        "batches of at most 10,000",
        "TypeError: llm_query: model must be a str or None, not int",
        "ValueError: llm_query: a model name has at most 200 characters",
        "ValueError: rlm_query_batched: 1 prompts but 2 contexts; pass one context per "
        "prompt, or none",
        "ValueError: rlm_query_batched: more than 10,000 contexts in one call; send them in "
        "batches of at most 10,000",
    ]
    assert isolated[-1] == "answe"  # objects are sent as their str(), as before
    for bridge in (isolated_bridge, in_process_bridge):  # only the last call reached the host
        assert [len(prompts) for prompts, _ in bridge.llm_calls] == [3]
        assert bridge.rlm_calls == []


@BOTH
@pytest.mark.sandbox
async def test_a_huge_valid_batch_is_one_refusal_not_ten_thousand_sub_calls(
    make_sandbox: MakeSandbox, bridge: FakeBridge, kind: str
) -> None:
    sb = await make_sandbox(kind)
    result = await sb.execute(f"llm_query_batched(['p'] * {MAX_BATCH_PROMPTS + 1})")
    assert result.error is not None and "more than 10,000 prompts" in result.error
    assert _hostcalls.__file__ not in result.error  # the REPL's own frames stay hidden
    result = await sb.execute(f"len(llm_query_batched(['p'] * {MAX_BATCH_PROMPTS}))")
    assert result.stdout.strip() == str(MAX_BATCH_PROMPTS)
    assert bridge.llm_prompts == MAX_BATCH_PROMPTS


HAND = "llm_query.__self__._host_call"


@pytest.mark.sandbox
async def test_a_forged_in_process_host_call_is_refused_in_model_code(
    make_sandbox: MakeSandbox, bridge: FakeBridge
) -> None:
    sb = await make_sandbox("none")
    for payload in ("{'prompts': 5}", "{'prompts': [1]}", "{'prompts': ['a'], 'model': 3}"):
        result = await sb.execute(f"{HAND}('llm_query', {payload})")
        assert result.error is not None and "TypeError: llm_query:" in result.error
    result = await sb.execute(f"{HAND}('launch', {{'prompts': ['a']}})")
    assert result.error is not None and "unknown host call 'launch'" in result.error
    result = await sb.execute(f"{HAND}(5, {{'prompts': ['a']}})")
    assert result.error is not None and "unknown host call of type int" in result.error
    result = await sb.execute(f"{HAND}('llm_query', ['a'])")
    assert result.error is not None and "the request must be a dict, not list" in result.error
    assert bridge.llm_calls == []
    await assert_alive(sb)


@pytest.mark.sandbox
@pytest.mark.parametrize(
    "payload",
    ["{'prompts': [1]}", "{'prompts': ['a'], 'model': 3}", "{'prompts': ['a'] * 10_001}"],
)
async def test_a_forged_worker_host_call_is_a_protocol_violation(
    make_sandbox: MakeSandbox, bridge: FakeBridge, payload: str
) -> None:
    sb = await make_sandbox("auto")
    result = await sb.execute(f"{HAND}('llm_query', {payload})")
    assert result.restarted and result.error is not None
    assert "broke the protocol" in result.error and "malformed 'llm_query' frame" in result.error
    assert bridge.llm_calls == []
    await assert_alive(sb)


def test_every_error_answer_in_the_package_is_built_by_error_text() -> None:
    """No module writes an ``[error: ...]`` answer by hand, and every kind passed to
    ``error_text`` is one the documentation lists."""
    import re
    from pathlib import Path

    import fastrlm

    root = Path(fastrlm.__file__).parent
    kinds: set[str] = set()
    for path in root.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        if path.name != "error_text.py":  # the vocabulary's one owner
            hand_built = re.search(r"""["']\[error: (?!\.\.\.)""", source)
            assert hand_built is None, f"{path} builds an error text by hand"
        kinds |= set(re.findall(r"""error_text\(\s*["'](\w+)["']""", source))
    assert kinds and kinds <= set(error_kinds.ERROR_KINDS)
    documented = (root.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    for kind in error_kinds.ERROR_KINDS:
        assert f"`{kind}`" in documented


# ---------------------------------------------------------------------- host tools (the tool op)

SPEC = ToolSpec("find", (ToolParam("q", "positional_or_keyword", None, "str"),
                         ToolParam("k", "keyword_only", "5", "int")), "list", "Find things.")


@pytest.mark.parametrize(
    "payload",
    [{"name": 5, "arguments": {}}, {"name": "not an identifier", "arguments": {}},
     {"name": "x" * 65, "arguments": {}}, {"name": "find", "arguments": [1]},
     {"name": "find", "arguments": {1: 2}}, {"name": "find"}, ["find"]],
)
def test_a_forged_tool_request_is_refused(payload: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        wire_tool_request(payload)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "reply",
    [None, "text", {"ok": True}, {"ok": True, "json": 5}, {"ok": False, "kind": "Bad Kind",
     "message": "m"}, {"ok": False, "kind": "x"}, {"ok": "yes", "json": "1"}, [1]],
)
def test_a_malformed_tool_reply_becomes_bad_answer(reply: object) -> None:
    fixed = tool_reply(reply)
    assert fixed == {"ok": False, "kind": "bad_answer",
                     "message": "the host answered the tool call with no result"}
    with pytest.raises(ToolError, match=r"find: the host answered .* \[bad_answer\]"):
        tool_value("find", fixed)


def test_tool_arguments_and_results_are_json_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    assert tool_request("find", {"q": (1, 2)}) == {"name": "find", "arguments": {"q": [1, 2]}}
    with pytest.raises(TypeError, match="must be JSON"):
        tool_request("find", {"q": {1, 2}})
    with pytest.raises(TypeError, match="must be JSON"):
        tool_request("find", {"q": float("inf")})
    monkeypatch.setattr(_hostcalls, "MAX_TOOL_JSON_CHARS", 100)
    with pytest.raises(ValueError, match="over the limit of 100"):
        tool_request("find", {"q": "x" * 200})
    assert tool_value("find", {"ok": True, "json": '{"a": [1]}'}) == {"a": [1]}
    with pytest.raises(ToolError) as raised:
        tool_value("find", {"ok": False, "kind": "tool_timeout", "message": "slow"})
    assert raised.value.kind == "tool_timeout" and raised.value.tool == "find"


def test_a_tool_spec_round_trips_and_renders_its_signature() -> None:
    assert ToolSpec.from_wire(SPEC.to_wire()) == SPEC
    assert SPEC.signature_text() == "find(q: str, *, k: int = 5) -> list"
    only = ToolSpec("f", (ToolParam("a", "positional_only"), ToolParam("b", "var_positional"),
                          ToolParam("c", "var_keyword")))
    assert only.signature_text() == "f(a, /, *b, **c)"


class _ToolRaising(FakeBridge):
    async def call_tool(self, name: str, arguments: dict[str, object]) -> dict[str, object]:
        raise RuntimeError("the bridge broke")


class _ToolSloppy(FakeBridge):
    async def call_tool(self, name: str, arguments: dict[str, object]) -> dict[str, object]:
        return {"ok": True, "json": object()}  # type: ignore[dict-item]


@pytest.mark.sandbox
@pytest.mark.parametrize("kind", ["none", "auto"])
async def test_a_broken_bridge_gives_the_cell_a_tool_error_on_both_sandboxes(
    make_sandbox: MakeSandbox, kind: str
) -> None:
    for fake, expected in ((_ToolRaising(), "host_error"), (_ToolSloppy(), "bad_answer")):
        sb = await make_sandbox(kind, fake=fake, tools=(SPEC,))
        result = await sb.execute("try:\n    find('a')\nexcept Exception as e:\n"
                                  "    print(type(e).__name__, e.kind)")
        assert result.stdout.strip() == f"ToolError {expected}", result
        await assert_alive(sb)


@pytest.mark.sandbox
@pytest.mark.parametrize("kind", ["none", "auto"])
async def test_a_tool_call_reaches_the_bridge_with_bound_arguments(
    make_sandbox: MakeSandbox, bridge: FakeBridge, kind: str
) -> None:
    sb = await make_sandbox(kind, tools=(SPEC,))
    result = await sb.execute("print(find('a', k=2))\nprint(find(q='b'))")
    assert result.error is None, result.error
    assert bridge.tool_calls == [("find", {"q": "a", "k": 2}), ("find", {"q": "b"})]
    result = await sb.execute("find = 1")
    assert "find" in result.restored


@pytest.mark.sandbox
@pytest.mark.parametrize("payload", ["{'name': 'find', 'arguments': [1]}",
                                     "{'name': 5, 'arguments': {}}",
                                     "{'name': 'find', 'arguments': {'q': 'x'}, 'x': 1}"])
async def test_a_forged_worker_tool_call_is_a_protocol_violation(
    make_sandbox: MakeSandbox, bridge: FakeBridge, payload: str
) -> None:
    sb = await make_sandbox("auto", tools=(SPEC,))
    result = await sb.execute(f"{HAND}('tool', {payload})")
    if "'x': 1" in payload:  # extra fields are ignored: the call is well-formed
        assert not result.restarted and bridge.tool_calls == [("find", {"q": "x"})]
        return
    assert result.restarted and result.error is not None
    assert "broke the protocol" in result.error and "malformed 'tool' frame" in result.error
    assert bridge.tool_calls == []
    await assert_alive(sb)


# ------------------------------------------- what crosses into a host tool: checked on the host
def _nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def test_tool_arguments_are_bounded_in_size_and_depth_without_recursion() -> None:
    limit = _hostcalls.MAX_TOOL_JSON_CHARS
    assert tool_arguments("find", {"q": ("a", 1)}) == {"q": ["a", 1]}
    assert tool_arguments("find", '{"q": [1, {"k": null}]}') == {"q": [1, {"k": None}]}
    deep = _nested(_hostcalls.MAX_TOOL_JSON_DEPTH - 1)  # the arguments' dict is one level
    assert tool_arguments("find", {"q": deep}) == {"q": deep}
    refusals: list[tuple[object, type[Exception], str]] = [
        ({"q": _nested(5_000)}, ValueError, "nested more than 100 levels deep"),
        ({"q": _nested(_hostcalls.MAX_TOOL_JSON_DEPTH)}, ValueError, "nested more than"),
        ('{"q": ' + "[" * 5_000 + "]" * 5_000 + "}", ValueError, "nested more than"),
        ({"q": "x" * (40 * 2**20)}, ValueError, f"over the limit of {limit:,}"),
        ({"q": ["x" * 2**20] * 40}, ValueError, f"over the limit of {limit:,}"),
        ({"q": [0] * (limit + 1)}, ValueError, f"over the limit of {limit:,}"),
        ('{"q": "' + "x" * (40 * 2**20) + '"}', ValueError, f"over the limit of {limit:,}"),
        ({"q": {1: 2}}, TypeError, "a dict key of type int"),
        ({"q": object()}, TypeError, "a value of type object"),
        ({"q": float("nan")}, TypeError, "must be JSON"),
        ("[1, 2]", TypeError, "must be a JSON object"),
        ("{not json", TypeError, "must be a JSON object"),
    ]
    for arguments, error, message in refusals:
        with pytest.raises(error, match=message):
            tool_arguments("find", arguments)
    loop: list[object] = []
    loop.append(loop)  # a cycle is as deep as it goes
    with pytest.raises(ValueError, match="nested more than"):
        tool_arguments("find", {"q": loop})
    with pytest.raises(ValueError, match="nested more than"):  # the REPL's side: the same check
        tool_request("find", {"q": _nested(5_000)})


HUGE = "v = 'x' * (40 * 2**20)"
DEEP = "v = []\nfor _ in range(500):\n    v = [v]"


@pytest.mark.sandbox
@pytest.mark.parametrize("kind", ["none", "bwrap", "landlock"])
@pytest.mark.parametrize(("value", "message"), [(HUGE, "over the limit"),
                                                (DEEP, "nested more than 100")],
                         ids=["40MiB", "500-deep"])
async def test_a_raw_tool_host_call_past_the_limits_never_reaches_the_host_tool(
    make_sandbox: MakeSandbox, bridge: FakeBridge, kind: str, value: str, message: str
) -> None:
    """Model code that skips the REPL's tool functions and sends the request by hand gets a
    ``bad_arguments`` reply for that call; the host tool is never called, the run goes on."""
    sb = await make_sandbox(kind)
    code = (f"{value}\nreply = {HAND}('tool', {{'name': 'find', 'arguments': {{'q': v}}}})\n"
            "print(reply['ok'], reply['kind'], reply['message'][:200])\n"
            f"print({HAND}('tool', {{'name': 'find', 'arguments': {{'q': 'small'}}}})['ok'])")
    result = await sb.execute(code)
    assert result.error is None and not result.restarted, result.error
    first, second = result.stdout.strip().splitlines()
    assert first.startswith("False bad_arguments find(): the arguments") and message in first
    assert second == "True"
    assert bridge.tool_calls == [("find", {"q": "small"})]
    await assert_alive(sb)


PIPE = "llm_query.__self__._host_call.__self__"


@pytest.mark.sandbox
@pytest.mark.parametrize("field", ["final", "answer_content", "stdout"])
async def test_a_forged_cell_result_past_the_limits_is_refused_on_the_host(
    make_sandbox: MakeSandbox, isolated_kind: str, field: str
) -> None:
    """Model code that knows the request's nonce (it is in the worker's memory) writes a
    ``done`` frame of its own, past the answer or output limit its REPL would apply: the host
    refuses it and replaces the worker."""
    sb = await make_sandbox(isolated_kind, max_answer_chars=1_000, max_output_bytes=1_000)
    big = "'x' * 5_000"
    value = {"final": f"{{'text': {big}, 'source': 'FINAL'}}", "answer_content": big,
             "stdout": big}
    fields = {"final": "None", "answer_content": "None", "stdout": "''"} | {field: value[field]}
    code = (
        f"import json, os, struct\nw = {PIPE}\n"
        "body = json.dumps({'op': 'done', 'nonce': w._nonce, 'stderr': '', 'error': None, "
        "'restored': [], 'timed_out': False, 'dropped_bytes': 0, "
        + ", ".join(f"'{k}': {v}" for k, v in fields.items())
        + "}).encode()\nos.write(w._fd_out, struct.pack('>I', len(body)) + body)\n"
        "import time\ntime.sleep(30)"
    )
    result = await sb.execute(code)
    assert result.restarted and result.final is None, result
    assert result.error is not None and "over the 1,000 of" in result.error
    await assert_alive(sb)
