"""``fastrlm serve`` continues a caller's trace from the W3C ``traceparent`` header."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("opentelemetry.sdk")  # the otel extra

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

from fastrlm.telemetry import Telemetry  # noqa: E402

from .helpers import ECHO_SHAPE, raw_request, root, serving  # noqa: E402

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
BODY = json.dumps({"model": "rlm", "messages": [{"role": "user", "content": "q"}],
                   "context": "ctx"}).encode()


async def test_a_request_with_traceparent_runs_inside_the_callers_trace() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with serving(root(ECHO_SHAPE), telemetry=Telemetry(tracer_provider=provider)) as (
            server, _):
        status, _, body = await raw_request(
            server.port, "POST", "/v1/chat/completions", BODY,
            headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01",
                     "Content-Type": "application/json"})
        plain = await raw_request(server.port, "POST", "/v1/chat/completions", BODY,
                                  headers={"Content-Type": "application/json"})
    assert status == 200 and plain[0] == 200
    runs = [s for s in exporter.get_finished_spans() if s.name == "invoke_agent fastrlm"]
    [continued] = [s for s in runs if s.attributes["fastrlm.run_id"] == body["fastrlm"]["trace_id"]]
    assert format(continued.context.trace_id, "032x") == TRACE_ID
    assert continued.parent is not None and format(continued.parent.span_id, "016x") == PARENT_ID
    assert continued.parent.is_remote
    [fresh] = [s for s in runs if s is not continued]
    assert fresh.parent is None and format(fresh.context.trace_id, "032x") != TRACE_ID
    assert all(span.context.trace_id == continued.context.trace_id
               for span in exporter.get_finished_spans()
               if span.attributes["fastrlm.run_id"] == continued.attributes["fastrlm.run_id"])


async def test_traceparent_is_ignored_when_spans_are_off() -> None:
    async with serving(root(ECHO_SHAPE), telemetry=False) as (server, _):
        status, _, _ = await raw_request(
            server.port, "POST", "/v1/chat/completions", BODY,
            headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01",
                     "Content-Type": "application/json"})
        assert status == 200 and server._rlm.telemetry is False
