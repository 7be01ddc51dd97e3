"""A scripted run with sub-calls and an rlm_query child, as OpenTelemetry spans."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("opentelemetry.sdk")  # the otel extra

from opentelemetry.sdk.trace import ReadableSpan  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from fastrlm.telemetry import Telemetry  # noqa: E402
from fastrlm.telemetry._spans import SpanRecorder  # noqa: E402

from .helpers import (  # noqa: E402
    CHILD_ANSWER,
    SECRET_QUESTION,
    by_name,
    memory_provider,
    traced_rlm,
)


def _parent(span: ReadableSpan, spans: tuple[ReadableSpan, ...]) -> ReadableSpan | None:
    if span.parent is None:
        return None
    [found] = [s for s in spans if s.context.span_id == span.parent.span_id]
    return found


async def test_a_run_is_a_tree_of_spans_nested_as_its_call_tree() -> None:
    provider, exporter = memory_provider()
    result = await traced_rlm(provider).acompletion(SECRET_QUESTION, context="some context")
    assert result.answer == f"done: {CHILD_ANSWER}"
    spans = exporter.get_finished_spans()
    runs = by_name(spans, "invoke_agent fastrlm")
    [root] = [s for s in runs if s.parent is None]
    [child] = [s for s in runs if s.parent is not None]
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    assert {s.attributes["fastrlm.run_id"] for s in spans} == {
        root.attributes["fastrlm.run_id"], child.attributes["fastrlm.run_id"]}

    # the root run: two turns and two cells below it
    assert root.attributes["fastrlm.run_id"] == result.trace_id
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["fastrlm.stop_reason"] == "final"
    assert root.attributes["fastrlm.cost_usd"] == result.cost_usd
    assert root.attributes["fastrlm.sandbox.layer"] == "none"
    assert len(str(root.attributes["fastrlm.context.sha256"])) == 64
    assert root.attributes["fastrlm.context.total_chars"] == len("some context")
    assert root.attributes["gen_ai.usage.input_tokens"] == result.usage.input_tokens
    assert root.attributes["gen_ai.usage.output_tokens"] == result.usage.output_tokens
    below_root = [s for s in spans if _parent(s, spans) is root]
    assert sorted(s.name for s in below_root) == ["chat root", "chat root",
                                                  "execute_tool repl", "execute_tool repl"]
    turn = below_root[0] if below_root[0].name == "chat root" else below_root[1]
    assert turn.kind is SpanKind.CLIENT
    assert turn.attributes["gen_ai.operation.name"] == "chat"
    assert turn.attributes["gen_ai.provider.name"] == "scripted"
    assert turn.attributes["gen_ai.request.model"] == "root"
    assert turn.attributes["gen_ai.usage.output_tokens"] > 0

    # the first cell holds both sub-calls and the child run
    [cell] = [s for s in below_root if s.name == "execute_tool repl"
              and s.attributes["fastrlm.iteration"] == 1]
    in_cell = [s for s in spans if _parent(s, spans) is cell]
    assert sorted(s.name for s in in_cell) == ["chat sub", "chat sub", "invoke_agent fastrlm"]
    sub = by_name(in_cell, "chat sub")[0]
    assert sub.attributes["gen_ai.request.model"] == "sub"
    assert sub.attributes["fastrlm.call_id"].startswith("c")
    assert sub.attributes["gen_ai.usage.input_tokens"] > 0
    assert cell.start_time <= sub.start_time <= sub.end_time <= cell.end_time

    # the child run: its parent run id, its own turn, cell and sub-call
    assert child.attributes["fastrlm.parent_run_id"] == result.trace_id
    assert child.attributes["fastrlm.depth"] == 1
    assert child.attributes["fastrlm.stop_reason"] == "final"
    below_child = [s for s in spans if _parent(s, spans) is child]
    assert sorted(s.name for s in below_child) == ["chat root", "execute_tool repl"]
    [child_cell] = by_name(below_child, "execute_tool repl")
    assert [s.name for s in spans if _parent(s, spans) is child_cell] == ["chat sub"]
    assert child.attributes["gen_ai.usage.input_tokens"] > 0
    assert len(spans) == 11  # 2 runs, 3 root turns, 3 cells, 3 sub-calls


async def test_no_text_is_on_the_spans_unless_content_capture_is_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    provider, exporter = memory_provider()
    await traced_rlm(provider).acompletion(SECRET_QUESTION, context="some context")
    dumped = json.dumps([dict(s.attributes or {}) for s in exporter.get_finished_spans()])
    for text in (SECRET_QUESTION, "alpha", "sub reply", "llm_query", CHILD_ANSWER):
        assert text not in dumped


@pytest.mark.parametrize("how", ["option", "environment"])
async def test_content_capture_puts_prompts_replies_and_code_on_the_spans(
    how: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider, exporter = memory_provider()
    if how == "environment":
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    await traced_rlm(provider, capture=True if how == "option" else None).acompletion(
        SECRET_QUESTION, context="some context")
    spans = exporter.get_finished_spans()
    [root] = [s for s in by_name(spans, "invoke_agent fastrlm") if s.parent is None]
    [question] = json.loads(str(root.attributes["gen_ai.input.messages"]))
    assert question["parts"][0]["content"] == SECRET_QUESTION
    assert CHILD_ANSWER in str(root.attributes["gen_ai.output.messages"])
    prompts = {str(s.attributes["gen_ai.input.messages"]) for s in by_name(spans, "chat sub")}
    assert any("alpha" in p for p in prompts)
    assert any("llm_query_batched" in str(s.attributes.get("gen_ai.tool.call.arguments"))
               for s in by_name(spans, "execute_tool repl"))


async def test_the_run_span_is_a_child_of_the_callers_current_span() -> None:
    provider, exporter = memory_provider()
    caller = provider.get_tracer("caller")
    rlm = traced_rlm(provider)
    with caller.start_as_current_span("caller work") as outer:
        await rlm.acompletion(SECRET_QUESTION, context="some context")
    spans = exporter.get_finished_spans()
    [root] = [s for s in by_name(spans, "invoke_agent fastrlm")
              if s.attributes["fastrlm.depth"] == 0]
    assert root.parent is not None and root.parent.span_id == outer.get_span_context().span_id
    assert {s.context.trace_id for s in spans} == {outer.get_span_context().trace_id}


def test_the_blocking_completion_keeps_the_callers_span_as_parent() -> None:
    provider, exporter = memory_provider()
    rlm = traced_rlm(provider)
    with provider.get_tracer("caller").start_as_current_span("caller work") as outer:
        rlm.completion(SECRET_QUESTION, context="some context")
    [root] = [s for s in by_name(exporter.get_finished_spans(), "invoke_agent fastrlm")
              if s.attributes["fastrlm.depth"] == 0]
    assert root.parent is not None and root.parent.span_id == outer.get_span_context().span_id


async def test_a_failed_sub_call_and_a_failed_cell_are_error_spans() -> None:
    from fastrlm import RLM, ProviderResponseError
    from fastrlm.testing import ScriptedLM

    replies = ["```repl\nr = llm_query('x')\nundefined_name\n```", "```repl\nFINAL(r)\n```"]
    sub = ScriptedLM([ProviderResponseError("upstream broke", provider="p", model="m")],
                     model="scripted/sub")
    provider, exporter = memory_provider()
    rlm = RLM(ScriptedLM(replies, model="scripted/root"), sub, sandbox="none",
              telemetry=Telemetry(tracer_provider=provider))
    await rlm.acompletion("q", context="c")
    spans = exporter.get_finished_spans()
    [failed_sub] = by_name(spans, "chat sub")
    assert failed_sub.status.status_code is StatusCode.ERROR
    assert failed_sub.attributes["error.type"] == "ProviderResponseError"
    first_cell = [s for s in by_name(spans, "execute_tool repl")
                  if s.attributes["fastrlm.iteration"] == 1][0]
    assert first_cell.status.status_code is StatusCode.ERROR
    assert first_cell.attributes["error.type"] == "NameError"


async def test_a_run_that_fails_is_an_error_span_with_its_stop_reason() -> None:
    from fastrlm import RLM, ProviderResponseError
    from fastrlm.testing import ScriptedLM

    root = ScriptedLM([ProviderResponseError("down", provider="p", model="m")],
                      model="scripted/root")
    provider, exporter = memory_provider()
    rlm = RLM(root, sandbox="none", telemetry=Telemetry(tracer_provider=provider))
    with pytest.raises(ProviderResponseError):
        await rlm.acompletion("q", context="c")
    spans = exporter.get_finished_spans()
    [run] = by_name(spans, "invoke_agent fastrlm")
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes["fastrlm.stop_reason"] == "error"
    assert run.attributes["error.type"] == "provider"
    [turn] = by_name(spans, "chat root")
    assert turn.status.status_code is StatusCode.ERROR and turn.parent is not None


def test_tool_events_become_execute_tool_spans_inside_their_cell() -> None:
    """tool.started / tool.finished, fed as their to_dict() form (the recorder reads types by
    name, so it needs no class of theirs)."""
    provider, exporter = memory_provider()
    recorder = SpanRecorder(provider, capture_content=False)
    base = {"run_id": "r1", "depth": 0}
    feed = [
        {"type": "run.started", "ts": 10.0, "parent_run_id": None, "question": "q",
         "model": "openai/gpt-5", "sub_model": "openai/gpt-5-mini", "context": {},
         "sandbox": "none", "budget": {}},
        {"type": "model.response", "ts": 11.0, "iteration": 1, "model": "openai/gpt-5",
         "text": "code", "input_tokens": 5, "output_tokens": 7, "cost_usd": 0.01,
         "latency_s": 1.0},
        {"type": "tool.started", "ts": 11.5, "call_id": "t1", "tool": "search",
         "arguments_preview": "{'q': 'secret'}"},
        {"type": "tool.finished", "ts": 12.0, "call_id": "t1", "tool": "search",
         "duration_s": 0.5, "error": None, "result_chars": 42, "result_preview": "hits"},
        {"type": "tool.finished", "ts": 12.5, "call_id": "t2", "tool": "fetch",
         "duration_s": 0.25, "error": "TimeoutError: slow", "result_chars": 0,
         "result_preview": ""},
        {"type": "code.executed", "ts": 13.0, "iteration": 1, "block": 1, "code": "c",
         "output": "o", "output_chars": 1, "error": None, "duration_s": 2.0},
        {"type": "run.finished", "ts": 14.0, "stop_reason": "final", "answer": "a",
         "iterations": 1, "subcalls": 0, "usage": {}, "cost_usd": 0.01, "duration_s": 4.0,
         "error": None},
    ]
    for event in feed:
        recorder({**base, **event})
    spans = exporter.get_finished_spans()
    [cell] = by_name(spans, "execute_tool repl")
    [search] = by_name(spans, "execute_tool search")
    [fetch] = by_name(spans, "execute_tool fetch")
    assert search.parent is not None and search.parent.span_id == cell.context.span_id
    assert search.attributes["gen_ai.tool.name"] == "search"
    assert search.attributes["gen_ai.tool.call.id"] == "t1"
    assert search.attributes["fastrlm.result_chars"] == 42
    assert "gen_ai.tool.call.arguments" not in search.attributes
    assert (search.start_time, search.end_time) == (11_500_000_000, 12_000_000_000)
    assert fetch.start_time == 12_250_000_000  # no tool.started seen: begun duration_s before
    assert fetch.status.status_code is StatusCode.ERROR
    assert fetch.attributes["error.type"] == "TimeoutError"
    assert cell.start_time == 11_000_000_000  # the cell began when the reply arrived
    [turn] = by_name(spans, "chat gpt-5")
    assert turn.attributes["gen_ai.provider.name"] == "openai"
    assert turn.start_time == 10_000_000_000


MARKER = "SECRET-MARKER-7f3a"


def _everything_on(spans: tuple[ReadableSpan, ...]) -> str:
    """Every attribute, event (name and attributes) and status description of ``spans``."""
    parts: list[object] = []
    for span in spans:
        parts += [span.name, dict(span.attributes or {}), span.status.description]
        parts += [(e.name, dict(e.attributes or {})) for e in span.events]
    return json.dumps(parts, default=str)


@pytest.mark.parametrize("capture", [False, True])
async def test_no_provider_text_reaches_span_status_or_events_with_capture_off(
    capture: bool, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A provider's error body was copied verbatim into the span status of the failed call and
    # of the run, capture off or not.
    from fastrlm import RLM, ProviderError
    from fastrlm.testing import FakeOpenAIServer
    from fastrlm.testing._fake_server import FakeRequest, Fault, Reply

    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    code = ("```repl\nr = llm_query('x')\nprint(r)\n"
            f"raise ValueError('cell says {MARKER}')\n```")

    def handle(request: FakeRequest) -> Reply:
        if not request.is_root:
            return Fault.http_status(400, f"sub body {MARKER}")
        if len(request.messages) <= 2:
            return code
        return Fault.http_status(400, f"root body {MARKER}")

    provider, exporter = memory_provider()
    with FakeOpenAIServer(handler=handle) as srv:
        rlm = RLM("openai/fake", base_url=srv.base_url, api_key="k", sandbox="none",
                  telemetry=Telemetry(tracer_provider=provider, capture_content=capture))
        with pytest.raises(ProviderError, match=MARKER):  # the caller still gets it all
            await rlm.acompletion("q", context="c")
    spans = exporter.get_finished_spans()
    assert (MARKER in _everything_on(spans)) is capture
    [run] = by_name(spans, "invoke_agent fastrlm")
    assert run.status.status_code is StatusCode.ERROR and run.attributes["error.type"] == "provider"
    failed = [s for s in spans if s.name.startswith("chat ")
              and s.status.status_code is StatusCode.ERROR]
    assert len(failed) == 2  # the sub-call and the last root turn
    assert {s.attributes["error.type"] for s in failed} == {"ProviderError"}
