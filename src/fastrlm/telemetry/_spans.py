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

The engine enters :meth:`SpanRecorder.current` around the top-level run in the caller's task:
the run's span is started then and is the current OpenTelemetry context while the run goes on,
so spans other libraries open meanwhile (an instrumented HTTP client, a user's tool) nest under
it, in the run's own task and every task it starts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from .._foundation import events as evt
from .._foundation.events import event_from_dict

AGENT = "fastrlm"

_Call = evt.ModelResponse | evt.ModelCallFailed | evt.SubcallStarted | evt.SubcallFinished


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
    typed events or their ``to_dict()`` form (rebuilt with ``event_from_dict``); types it does
    not know are ignored."""

    def __init__(self, tracer_provider: trace.TracerProvider, *, capture_content: bool = False,
                 parent: otel_context.Context | None = None) -> None:
        self._tracer = tracer_provider.get_tracer("fastrlm")
        self._parent = otel_context.get_current() if parent is None else parent
        self._capture = capture_content
        self._runs: dict[str, _RunSpans] = {}
        self._child_parents: dict[str, Span] = {}  # child run id -> the span it runs under
        self._early: dict[str, Span] = {}  # run id -> its span, started before run.started

    @contextmanager
    def current(self, run_id: str) -> Iterator[None]:
        """Start the span of run ``run_id`` now and make it the current context until the
        block ends (entered around the run, in the caller's task). Its ``run.started`` fills
        in its attributes; a run that ends without ``run.finished`` (refused before it began,
        or cancelled) has its span ended here, as an error."""
        span = self._tracer.start_span(f"invoke_agent {AGENT}", context=self._parent,
                                       kind=SpanKind.INTERNAL,
                                       attributes={"gen_ai.operation.name": "invoke_agent",
                                                   "gen_ai.agent.name": AGENT,
                                                   "fastrlm.run_id": run_id})
        self._early[run_id] = span
        token = otel_context.attach(trace.set_span_in_context(span, self._parent))
        try:
            yield
        except BaseException as exc:
            self._unfinished(run_id, span, type(exc).__name__)
            raise
        finally:
            otel_context.detach(token)
        self._unfinished(run_id, span, "the run ended without run.finished")

    def _unfinished(self, run_id: str, span: Span, why: str) -> None:
        """End ``span`` if its run never finished (idempotent)."""
        self._early.pop(run_id, None)
        self._runs.pop(run_id, None)
        if span.is_recording():
            span.set_status(Status(StatusCode.ERROR, why))
            span.set_attribute("error.type", why if why.isidentifier() else "unfinished")
            span.end()

    def __call__(self, event: evt.Event | Mapping[str, Any]) -> None:
        ev = event if isinstance(event, evt.Event) else event_from_dict(event)
        match ev:
            case evt.RunStarted():
                self._run_started(ev)
            case evt.RunFinished():
                self._run_finished(ev)
            case evt.SandboxStarted():
                self._sandbox_started(ev)
            case evt.SandboxRestarted() | evt.BudgetWarning() | evt.SubcallsRefused():
                self._note(ev)
            case evt.IterationStarted():
                self._iteration_started(ev)
            case evt.ModelResponse() | evt.ModelCallFailed():
                self._root_turn(ev)
            case evt.CodeExecuted():
                self._code_executed(ev)
            case evt.SubcallStarted():
                self._subcall_started(ev)
            case evt.SubcallFinished():
                self._subcall_finished(ev)
            case evt.ToolStarted():
                self._tool_started(ev)
            case evt.ToolFinished():
                self._tool_finished(ev)
            case evt.ChildRunStarted():
                self._child_started(ev)

    # ------------------------------------------------------------------ runs
    def _run_started(self, e: evt.RunStarted) -> None:
        parent_id = e.parent_run_id
        parent = self._runs.get(parent_id) if parent_id else None
        under = self._child_parents.pop(e.run_id, None)
        if under is None and parent is not None:
            under = parent.span
        ctx = trace.set_span_in_context(under) if under is not None else self._parent
        provider, model = _split_model(e.model)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": AGENT,
            "gen_ai.agent.id": e.run_id,
            "gen_ai.request.model": model,
            "fastrlm.run_id": e.run_id,
            "fastrlm.depth": e.depth,
            "fastrlm.sandbox.requested": e.sandbox,
        }
        if provider:
            attributes["gen_ai.provider.name"] = provider
        if parent_id:
            attributes["fastrlm.parent_run_id"] = parent_id
        if e.sub_model:
            attributes["fastrlm.sub_model"] = e.sub_model
        shape = e.context or {}
        for key in ("sha256", "type", "total_chars"):
            if shape.get(key) is not None:
                attributes[f"fastrlm.context.{key}"] = shape[key]
        if self._capture:
            attributes["gen_ai.input.messages"] = _messages("user", e.question)
        early = self._early.pop(e.run_id, None)
        if early is not None:  # started by current(): it is the caller's current context
            early.set_attributes(attributes)
            span = early
        else:
            span = self._tracer.start_span(f"invoke_agent {AGENT}", context=ctx,
                                           kind=SpanKind.INTERNAL, attributes=attributes,
                                           start_time=_ns(e.ts))
        self._runs[e.run_id] = _RunSpans(e.run_id, span, e.ts, parent, cell_started=e.ts)

    def _run_finished(self, e: evt.RunFinished) -> None:
        run = self._runs.pop(e.run_id, None)
        if run is None:
            return
        end = _ns(e.ts)
        for span in run.open.values():
            span.set_status(Status(StatusCode.ERROR, "the run ended first"))
            span.end(end_time=end)
        if run.cell is not None:
            run.cell.end(end_time=end)
        usage = e.usage or {}
        input_tokens = usage.get("input_tokens", run.input_tokens)
        output_tokens = usage.get("output_tokens", run.output_tokens)
        if run.parent is not None:
            run.parent.input_tokens += run.input_tokens
            run.parent.output_tokens += run.output_tokens
        span = run.span
        span.set_attributes({
            "fastrlm.stop_reason": e.stop_reason,
            "fastrlm.cost_usd": float(e.cost_usd),
            "fastrlm.iterations": e.iterations,
            "fastrlm.subcalls": e.subcalls,
            "gen_ai.usage.input_tokens": input_tokens,
            "gen_ai.usage.output_tokens": output_tokens,
        })
        if e.depth == 0:
            span.set_attribute("fastrlm.requests", e.requests)
            if e.limited_by:
                span.set_attribute("fastrlm.limited_by", e.limited_by)
        if self._capture and e.answer:
            span.set_attribute("gen_ai.output.messages", _messages("assistant", e.answer))
        if e.stop_reason == "error":
            kind = e.error_kind or "error"
            span.set_attribute("error.type", kind)
            # the error's text may be a provider's error body: on the span only with capture
            text = (e.error or "the run failed") if self._capture else f"{kind} error"
            span.set_status(Status(StatusCode.ERROR, text))
        span.end(end_time=end)

    def _sandbox_started(self, e: evt.SandboxStarted) -> None:
        run = self._runs.get(e.run_id)
        if run is not None:
            run.span.set_attribute("fastrlm.sandbox.layer", e.layer)
            run.span.set_attribute("fastrlm.sandbox.unsafe", bool(e.unsafe))

    def _note(self, e: evt.SandboxRestarted | evt.BudgetWarning | evt.SubcallsRefused) -> None:
        """budget.warning, sandbox.restarted, subcalls.refused: an event on the span they
        happened in, with the event's own fields."""
        run = self._runs.get(e.run_id)
        if run is None:
            return
        own = {f.name: getattr(e, f.name) for f in fields(e)
               if f.name not in ("run_id", "depth", "ts", "extra")}
        attributes = {f"fastrlm.{k}": v for k, v in own.items()
                      if isinstance(v, str | int | float | bool)}
        (run.cell or run.span).add_event(f"fastrlm.{e.type}", attributes,
                                         timestamp=_ns(e.ts))

    # ------------------------------------------------------------------ root turns
    def _iteration_started(self, e: evt.IterationStarted) -> None:
        run = self._runs.get(e.run_id)
        if run is not None:
            run.turns[e.iteration] = e.ts

    def _root_turn(self, e: evt.ModelResponse | evt.ModelCallFailed) -> None:
        run = self._runs.get(e.run_id)
        if run is None:
            return
        began = run.turns.pop(e.iteration, None)
        if isinstance(e, evt.ModelResponse):  # the call itself (the first runs while hashing)
            began = e.ts - float(e.latency_s)
        began = max(run.started, began if began is not None else run.started)
        span = self._chat(run.span, e, began, {"fastrlm.iteration": e.iteration})
        extra = _response_attributes(e) if isinstance(e, evt.ModelResponse) else {}
        if self._capture and isinstance(e, evt.ModelResponse) and e.text:
            extra["gen_ai.output.messages"] = _messages("assistant", e.text)
        self._booked(run, span, e, extra)
        span.end(end_time=_ns(e.ts))
        run.cell_started = e.ts

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

    def _code_executed(self, e: evt.CodeExecuted) -> None:
        run = self._runs.get(e.run_id)
        if run is None:
            return
        span = run.cell
        if span is None:
            began = max(run.cell_started, e.ts - float(e.duration_s))
            run.cell_started = began
            span = self._cell_of(run)
        span.set_attributes({
            "fastrlm.iteration": e.iteration,
            "fastrlm.block": e.block,
            "fastrlm.cell.duration_s": float(e.duration_s),
            "fastrlm.cell.output_chars": e.output_chars,
            "fastrlm.cell.timed_out": bool(e.timed_out),
            "fastrlm.cell.restarted": bool(e.restarted),
        })
        if self._capture:
            span.set_attribute("gen_ai.tool.call.arguments", e.code)
            span.set_attribute("gen_ai.tool.call.result", e.output)
        if e.error:
            _fail(span, e.error, capture=self._capture, traceback=True)
        span.end(end_time=_ns(e.ts))
        run.cell = None
        run.cell_started = e.ts

    # ------------------------------------------------------------------ sub-calls
    def _subcall_started(self, e: evt.SubcallStarted) -> None:
        run = self._runs.get(e.run_id)
        if run is None:
            return
        extra = {"fastrlm.call_id": e.call_id,
                 "fastrlm.prompt_chars": e.prompt_chars,
                 "fastrlm.prompt_sha256": e.prompt_sha256}
        if self._capture:
            extra["gen_ai.input.messages"] = _messages("user", e.prompt or e.prompt_preview)
        run.open[("subcall", e.call_id)] = self._chat(self._cell_of(run), e, e.ts, extra)

    def _subcall_finished(self, e: evt.SubcallFinished) -> None:
        run = self._runs.get(e.run_id)
        if run is None:
            return
        span = run.open.pop(("subcall", e.call_id), None)
        if span is None:
            span = self._chat(self._cell_of(run), e, e.ts - float(e.latency_s),
                              {"fastrlm.call_id": e.call_id})
        extra: dict[str, Any] = {"fastrlm.cached": bool(e.cached),
                                 "fastrlm.response_chars": e.response_chars,
                                 **_response_attributes(e)}
        if self._capture and e.response_preview:
            extra["gen_ai.output.messages"] = _messages("assistant", e.response_preview)
        self._booked(run, span, e, extra)
        if e.error:
            _fail(span, e.error, capture=self._capture)
        span.end(end_time=_ns(e.ts))

    # ------------------------------------------------------------------ tools, children
    def _tool_started(self, e: evt.ToolStarted) -> None:
        run = self._runs.get(e.run_id)
        if run is None:
            return
        run.open[("tool", str(e.call_id))] = self._tool(self._cell_of(run), e, e.ts)

    def _tool_finished(self, e: evt.ToolFinished) -> None:
        run = self._runs.get(e.run_id)
        if run is None:
            return
        span = run.open.pop(("tool", str(e.call_id)), None)
        if span is None:
            span = self._tool(self._cell_of(run), e, e.ts - float(e.duration_s))
        span.set_attribute("fastrlm.result_chars", e.result_chars)
        if self._capture:
            span.set_attribute("gen_ai.tool.call.result", e.result_preview)
        if e.error:
            _fail(span, e.error, capture=self._capture)
        span.end(end_time=_ns(e.ts))

    def _tool(self, parent: Span, e: evt.ToolStarted | evt.ToolFinished, began: float) -> Span:
        attributes = _tool_attributes(e.tool, "function", e.run_id)
        attributes["gen_ai.tool.call.id"] = str(e.call_id)
        if self._capture and isinstance(e, evt.ToolStarted):
            attributes["gen_ai.tool.call.arguments"] = e.arguments_preview
        return self._tracer.start_span(f"execute_tool {e.tool}",
                                       context=trace.set_span_in_context(parent),
                                       kind=SpanKind.INTERNAL, attributes=attributes,
                                       start_time=_ns(began))

    def _child_started(self, e: evt.ChildRunStarted) -> None:
        run = self._runs.get(e.run_id)
        if run is not None:
            self._child_parents[e.child_run_id] = self._cell_of(run)

    # ------------------------------------------------------------------ shared
    def _chat(self, parent: Span, e: _Call, began: float, extra: dict[str, Any]) -> Span:
        provider, model = _split_model(e.model)
        attributes: dict[str, Any] = {"gen_ai.operation.name": "chat",
                                      "gen_ai.request.model": model,
                                      "fastrlm.run_id": e.run_id, **extra}
        if provider:
            attributes["gen_ai.provider.name"] = provider
        return self._tracer.start_span(f"chat {model}", context=trace.set_span_in_context(parent),
                                       kind=SpanKind.CLIENT, attributes=attributes,
                                       start_time=_ns(began))

    def _booked(self, run: _RunSpans, span: Span, e: evt.ModelResponse | evt.ModelCallFailed
                | evt.SubcallFinished, extra: dict[str, Any]) -> None:
        """The ledger's booking of a call (and ``extra``), on its span and in its run's
        totals."""
        input_tokens = int(e.input_tokens)
        output_tokens = int(e.output_tokens)
        extra.update({"gen_ai.usage.input_tokens": input_tokens,
                      "gen_ai.usage.output_tokens": output_tokens,
                      "fastrlm.cost_usd": float(e.cost_usd),
                      "fastrlm.attempts": int(e.attempts)})
        anomaly = None if isinstance(e, evt.ModelCallFailed) else e.anomaly
        if anomaly:
            extra["fastrlm.anomaly"] = anomaly
        span.set_attributes(extra)
        if isinstance(e, evt.ModelCallFailed):
            _fail(span, e.error or "the call failed", capture=self._capture)
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


def _response_attributes(e: evt.ModelResponse | evt.SubcallFinished) -> dict[str, Any]:
    """The GenAI conventions' recommended attributes of a chat span that its reply tells:
    ``gen_ai.response.model`` / ``.id`` / ``.finish_reasons`` (an array, one per choice: fastrlm
    asks for one) and the endpoint's ``server.address`` / ``server.port``; each only when
    known."""
    found: dict[str, Any] = {}
    if e.response_model:
        found["gen_ai.response.model"] = e.response_model
    if e.response_id:
        found["gen_ai.response.id"] = e.response_id
    if e.finish_reason:
        found["gen_ai.response.finish_reasons"] = [e.finish_reason]
    if e.server_address:
        found["server.address"] = e.server_address
    if e.server_port is not None:
        found["server.port"] = int(e.server_port)
    return found


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
