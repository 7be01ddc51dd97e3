"""SpanRecorder: the engine's events of one top-level run, as OpenTelemetry spans.

Span tree (names as the GenAI semantic conventions write them)::

    invoke_agent fastrlm            a run (root or child)
    ├── chat <model>                a root turn (iteration.started -> model.response/failed)
    └── execute_tool repl           a code cell (code.executed; started duration_s before)
        ├── chat <sub model>        a sub-call (subcall.started -> subcall.finished)
        ├── execute_tool <tool>     a tool call (tool.started -> tool.finished)
        └── invoke_agent fastrlm    a child run (rlm_query), with the same tree below it

Spans are timed by the events' own ``ts`` (wall clock). A cell span is opened when the first
call made from it starts (at the time the cell began: the reply before it, or the cell before it)
and ended by its ``code.executed``. Text (prompts, replies, code, answers, and error messages,
which quote them or a provider's error body) goes on spans only with content capture on; with
it off a failed span says its error's type alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from .._foundation.events import Event

AGENT = "fastrlm"


@dataclass
class _RunSpans:
    run_id: str
    span: Span
    started: float
    parent: _RunSpans | None
    cell: Span | None = None
    cell_started: float = 0.0
    turns: dict[int, float] = field(default_factory=dict)  # iteration -> when it began
    open: dict[tuple[str, str], Span] = field(default_factory=dict)  # sub-calls, tools
    input_tokens: int = 0
    output_tokens: int = 0


class SpanRecorder:
    """An event callback that makes the spans of one top-level run and its children.

    Make one per top-level run: its root span's parent is the OpenTelemetry context current
    when the recorder is made (the caller's span, or an incoming ``traceparent``). It takes
    typed events or their ``to_dict()`` form; types it does not know are ignored."""

    def __init__(self, tracer_provider: trace.TracerProvider, *, capture_content: bool = False,
                 parent: otel_context.Context | None = None) -> None:
        self._tracer = tracer_provider.get_tracer("fastrlm")
        self._parent = otel_context.get_current() if parent is None else parent
        self._capture = capture_content
        self._runs: dict[str, _RunSpans] = {}
        self._child_parents: dict[str, Span] = {}  # child run id -> the span it runs under

    def __call__(self, event: Event | Mapping[str, Any]) -> None:
        if isinstance(event, Event):  # its fields as they are: to_dict() deep-copies them
            data: Mapping[str, Any] = {**vars(event), "type": event.type}
        else:
            data = event
        handler = _HANDLERS.get(str(data.get("type")))
        if handler is not None:
            handler(self, data)

    # ------------------------------------------------------------------ runs
    def _run_started(self, e: Mapping[str, Any]) -> None:
        parent_id = e.get("parent_run_id")
        parent = self._runs.get(parent_id) if parent_id else None
        under = self._child_parents.pop(e["run_id"], None)
        if under is None and parent is not None:
            under = parent.span
        ctx = trace.set_span_in_context(under) if under is not None else self._parent
        provider, model = _split_model(e.get("model", ""))
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": AGENT,
            "gen_ai.agent.id": e["run_id"],
            "gen_ai.request.model": model,
            "fastrlm.run_id": e["run_id"],
            "fastrlm.depth": e.get("depth", 0),
            "fastrlm.sandbox.requested": e.get("sandbox", ""),
        }
        if provider:
            attributes["gen_ai.provider.name"] = provider
        if parent_id:
            attributes["fastrlm.parent_run_id"] = parent_id
        if e.get("sub_model"):
            attributes["fastrlm.sub_model"] = e["sub_model"]
        shape = e.get("context") or {}
        for key in ("sha256", "type", "total_chars"):
            if shape.get(key) is not None:
                attributes[f"fastrlm.context.{key}"] = shape[key]
        if self._capture:
            attributes["gen_ai.input.messages"] = _messages("user", e.get("question", ""))
        span = self._tracer.start_span(f"invoke_agent {AGENT}", context=ctx,
                                       kind=SpanKind.INTERNAL, attributes=attributes,
                                       start_time=_ns(e["ts"]))
        self._runs[e["run_id"]] = _RunSpans(e["run_id"], span, e["ts"], parent,
                                            cell_started=e["ts"])

    def _run_finished(self, e: Mapping[str, Any]) -> None:
        run = self._runs.pop(e["run_id"], None)
        if run is None:
            return
        end = _ns(e["ts"])
        for span in run.open.values():
            span.set_status(Status(StatusCode.ERROR, "the run ended first"))
            span.end(end_time=end)
        if run.cell is not None:
            run.cell.end(end_time=end)
        usage = e.get("usage") or {}
        input_tokens = usage.get("input_tokens", run.input_tokens)
        output_tokens = usage.get("output_tokens", run.output_tokens)
        if run.parent is not None:
            run.parent.input_tokens += run.input_tokens
            run.parent.output_tokens += run.output_tokens
        span = run.span
        span.set_attributes({
            "fastrlm.stop_reason": e.get("stop_reason", ""),
            "fastrlm.cost_usd": float(e.get("cost_usd", 0.0)),
            "fastrlm.iterations": e.get("iterations", 0),
            "fastrlm.subcalls": e.get("subcalls", 0),
            "gen_ai.usage.input_tokens": input_tokens,
            "gen_ai.usage.output_tokens": output_tokens,
        })
        if e.get("depth", 0) == 0:
            span.set_attribute("fastrlm.requests", e.get("requests", 0))
            if e.get("limited_by"):
                span.set_attribute("fastrlm.limited_by", e["limited_by"])
        if self._capture and e.get("answer"):
            span.set_attribute("gen_ai.output.messages", _messages("assistant", e["answer"]))
        if e.get("stop_reason") == "error":
            kind = e.get("error_kind") or "error"
            span.set_attribute("error.type", kind)
            # the error's text may be a provider's error body: on the span only with capture
            text = (e.get("error") or "the run failed") if self._capture else f"{kind} error"
            span.set_status(Status(StatusCode.ERROR, text))
        span.end(end_time=end)

    def _sandbox_started(self, e: Mapping[str, Any]) -> None:
        run = self._runs.get(e["run_id"])
        if run is not None:
            run.span.set_attribute("fastrlm.sandbox.layer", e.get("layer", ""))
            run.span.set_attribute("fastrlm.sandbox.unsafe", bool(e.get("unsafe")))

    def _note(self, e: Mapping[str, Any]) -> None:
        """budget.warning, sandbox.restarted, subcalls.refused: an event on the span they
        happened in."""
        run = self._runs.get(e["run_id"])
        if run is None:
            return
        skip = {"type", "run_id", "depth", "ts"}
        attributes = {f"fastrlm.{k}": v for k, v in e.items()
                      if k not in skip and isinstance(v, str | int | float | bool)}
        (run.cell or run.span).add_event(f"fastrlm.{e['type']}", attributes,
                                         timestamp=_ns(e["ts"]))

    # ------------------------------------------------------------------ root turns
    def _iteration_started(self, e: Mapping[str, Any]) -> None:
        run = self._runs.get(e["run_id"])
        if run is not None:
            run.turns[e["iteration"]] = e["ts"]

    def _root_turn(self, e: Mapping[str, Any]) -> None:
        run = self._runs.get(e["run_id"])
        if run is None:
            return
        began = run.turns.pop(e["iteration"], None)
        if e.get("latency_s") is not None:  # the call itself (the first runs while hashing)
            began = e["ts"] - float(e["latency_s"])
        began = max(run.started, began if began is not None else run.started)
        span = self._chat(run.span, e, began, {"fastrlm.iteration": e["iteration"]})
        extra = {}
        if self._capture and e.get("text"):
            extra["gen_ai.output.messages"] = _messages("assistant", e["text"])
        self._booked(run, span, e, extra)
        span.end(end_time=_ns(e["ts"]))
        run.cell_started = e["ts"]

    # ------------------------------------------------------------------ cells
    def _cell_of(self, run: _RunSpans) -> Span:
        """The span of the cell running now (opened when the first call from it starts)."""
        if run.cell is None:
            run.cell = self._tracer.start_span(
                "execute_tool repl", context=trace.set_span_in_context(run.span),
                kind=SpanKind.INTERNAL,
                attributes=_tool_attributes("repl", "extension", run.run_id),
                start_time=_ns(run.cell_started))
        return run.cell

    def _code_executed(self, e: Mapping[str, Any]) -> None:
        run = self._runs.get(e["run_id"])
        if run is None:
            return
        span = run.cell
        if span is None:
            began = max(run.cell_started, e["ts"] - float(e.get("duration_s", 0.0)))
            run.cell_started = began
            span = self._cell_of(run)
        span.set_attributes({
            "fastrlm.iteration": e.get("iteration", 0),
            "fastrlm.block": e.get("block", 0),
            "fastrlm.cell.duration_s": float(e.get("duration_s", 0.0)),
            "fastrlm.cell.output_chars": e.get("output_chars", 0),
            "fastrlm.cell.timed_out": bool(e.get("timed_out")),
            "fastrlm.cell.restarted": bool(e.get("restarted")),
        })
        if self._capture:
            span.set_attribute("gen_ai.tool.call.arguments", e.get("code", ""))
            span.set_attribute("gen_ai.tool.call.result", e.get("output", ""))
        if e.get("error"):
            _fail(span, e["error"], capture=self._capture, traceback=True)
        span.end(end_time=_ns(e["ts"]))
        run.cell = None
        run.cell_started = e["ts"]

    # ------------------------------------------------------------------ sub-calls
    def _subcall_started(self, e: Mapping[str, Any]) -> None:
        run = self._runs.get(e["run_id"])
        if run is None:
            return
        extra = {"fastrlm.call_id": e["call_id"],
                 "fastrlm.prompt_chars": e.get("prompt_chars", 0),
                 "fastrlm.prompt_sha256": e.get("prompt_sha256", "")}
        if self._capture:
            prompt = e.get("prompt") or e.get("prompt_preview", "")
            extra["gen_ai.input.messages"] = _messages("user", prompt)
        run.open[("subcall", e["call_id"])] = self._chat(self._cell_of(run), e, e["ts"], extra)

    def _subcall_finished(self, e: Mapping[str, Any]) -> None:
        run = self._runs.get(e["run_id"])
        if run is None:
            return
        span = run.open.pop(("subcall", e["call_id"]), None)
        if span is None:
            span = self._chat(self._cell_of(run), e, e["ts"] - float(e.get("latency_s", 0.0)),
                              {"fastrlm.call_id": e["call_id"]})
        extra = {"fastrlm.cached": bool(e.get("cached")),
                 "fastrlm.response_chars": e.get("response_chars", 0)}
        if self._capture and e.get("response_preview"):
            extra["gen_ai.output.messages"] = _messages("assistant", e["response_preview"])
        self._booked(run, span, e, extra)
        if e.get("error"):
            _fail(span, e["error"], capture=self._capture)
        span.end(end_time=_ns(e["ts"]))

    # ------------------------------------------------------------------ tools, children
    def _tool_started(self, e: Mapping[str, Any]) -> None:
        run = self._runs.get(e["run_id"])
        if run is None:
            return
        run.open[("tool", str(e["call_id"]))] = self._tool(self._cell_of(run), e, e["ts"])

    def _tool_finished(self, e: Mapping[str, Any]) -> None:
        run = self._runs.get(e["run_id"])
        if run is None:
            return
        span = run.open.pop(("tool", str(e["call_id"])), None)
        if span is None:
            span = self._tool(self._cell_of(run), e, e["ts"] - float(e.get("duration_s", 0.0)))
        span.set_attribute("fastrlm.result_chars", e.get("result_chars", 0))
        if self._capture and e.get("result_preview") is not None:
            span.set_attribute("gen_ai.tool.call.result", e["result_preview"])
        if e.get("error"):
            _fail(span, e["error"], capture=self._capture)
        span.end(end_time=_ns(e["ts"]))

    def _tool(self, parent: Span, e: Mapping[str, Any], began: float) -> Span:
        attributes = _tool_attributes(e.get("tool", ""), "function", e["run_id"])
        attributes["gen_ai.tool.call.id"] = str(e["call_id"])
        if self._capture and e.get("arguments_preview") is not None:
            attributes["gen_ai.tool.call.arguments"] = e["arguments_preview"]
        return self._tracer.start_span(f"execute_tool {e.get('tool', '')}",
                                       context=trace.set_span_in_context(parent),
                                       kind=SpanKind.INTERNAL, attributes=attributes,
                                       start_time=_ns(began))

    def _child_started(self, e: Mapping[str, Any]) -> None:
        run = self._runs.get(e["run_id"])
        if run is not None:
            self._child_parents[e["child_run_id"]] = self._cell_of(run)

    # ------------------------------------------------------------------ shared
    def _chat(self, parent: Span, e: Mapping[str, Any], began: float,
              extra: dict[str, Any]) -> Span:
        provider, model = _split_model(e.get("model", ""))
        attributes: dict[str, Any] = {"gen_ai.operation.name": "chat",
                                      "gen_ai.request.model": model,
                                      "fastrlm.run_id": e["run_id"], **extra}
        if provider:
            attributes["gen_ai.provider.name"] = provider
        return self._tracer.start_span(f"chat {model}", context=trace.set_span_in_context(parent),
                                       kind=SpanKind.CLIENT, attributes=attributes,
                                       start_time=_ns(began))

    def _booked(self, run: _RunSpans, span: Span, e: Mapping[str, Any],
                extra: dict[str, Any]) -> None:
        """The ledger's booking of a call (and ``extra``), on its span and in its run's
        totals."""
        input_tokens = int(e.get("input_tokens", 0))
        output_tokens = int(e.get("output_tokens", 0))
        extra.update({"gen_ai.usage.input_tokens": input_tokens,
                      "gen_ai.usage.output_tokens": output_tokens,
                      "fastrlm.cost_usd": float(e.get("cost_usd", 0.0)),
                      "fastrlm.attempts": int(e.get("attempts", 1))})
        if e.get("anomaly"):
            extra["fastrlm.anomaly"] = e["anomaly"]
        span.set_attributes(extra)
        if e.get("type") == "model.failed":
            _fail(span, e.get("error") or "the call failed", capture=self._capture)
        run.input_tokens += input_tokens
        run.output_tokens += output_tokens


def _ns(ts: float) -> int:
    return int(ts * 1_000_000_000)


def _split_model(spec: str) -> tuple[str, str]:
    """``"openai/gpt-5"`` -> (``"openai"``, ``"gpt-5"``); a bare name has no provider."""
    provider, slash, name = spec.partition("/")
    return (provider, name) if slash else ("", spec)


def _messages(role: str, text: str) -> str:
    """A message list as the GenAI conventions' ``gen_ai.*.messages`` JSON."""
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}]}],
                      ensure_ascii=False)


def _tool_attributes(name: str, kind: str, run_id: str) -> dict[str, Any]:
    return {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name,
            "gen_ai.tool.type": kind, "fastrlm.run_id": run_id}


def _fail(span: Span, error: str, *, capture: bool, traceback: bool = False) -> None:
    """Mark a span failed. ``error.type`` is the exception name the error names (``NameError:
    ...``): on the last line of a ``traceback`` (a cell's), else on the first (a call's
    ``"<Type>: <message>"``); ``error`` when there is none. The status describes the error by
    its first line only with content capture on: the message is the model's or the provider's
    text (an error body), so with capture off it is the type alone."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    line = (lines[-1] if traceback else lines[0]) if lines else ""
    name = line.partition(":")[0].strip().removeprefix("[error").strip()
    kind = name if name and name.replace(".", "").replace("_", "").isalnum() else "error"
    span.set_attribute("error.type", kind)
    span.set_status(Status(StatusCode.ERROR,
                           (lines[0] if lines else error)[:500] if capture else kind))


_HANDLERS: dict[str, Callable[[SpanRecorder, Mapping[str, Any]], None]] = {
    "run.started": SpanRecorder._run_started,
    "run.finished": SpanRecorder._run_finished,
    "sandbox.started": SpanRecorder._sandbox_started,
    "sandbox.restarted": SpanRecorder._note,
    "budget.warning": SpanRecorder._note,
    "subcalls.refused": SpanRecorder._note,
    "iteration.started": SpanRecorder._iteration_started,
    "model.response": SpanRecorder._root_turn,
    "model.failed": SpanRecorder._root_turn,
    "code.executed": SpanRecorder._code_executed,
    "subcall.started": SpanRecorder._subcall_started,
    "subcall.finished": SpanRecorder._subcall_finished,
    "tool.started": SpanRecorder._tool_started,
    "tool.finished": SpanRecorder._tool_finished,
    "child.started": SpanRecorder._child_started,
}
