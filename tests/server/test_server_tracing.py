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
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

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
    spans = exporter.get_finished_spans()
    runs = [s for s in spans if s.name == "invoke_agent fastrlm"]
    https = [s for s in spans if s.kind is SpanKind.SERVER]
    [continued] = [s for s in runs if s.attributes["fastrlm.run_id"] == body["fastrlm"]["trace_id"]]
    assert format(continued.context.trace_id, "032x") == TRACE_ID
    # the run nests under the request's HTTP server span, which continues the caller's trace
    [http] = [s for s in https if s.context.span_id == continued.parent.span_id]  # type: ignore[union-attr]
    assert http.parent is not None and format(http.parent.span_id, "016x") == PARENT_ID
    assert http.parent.is_remote
    assert http.name == "POST /v1/chat/completions"
    assert http.attributes["http.request.method"] == "POST"
    assert http.attributes["http.route"] == "/v1/chat/completions"
    assert http.attributes["url.path"] == "/v1/chat/completions"
    assert http.attributes["http.response.status_code"] == 200
    # the name the request addressed (its Host header, `test`, no port: http's 80)
    assert http.attributes["server.address"] == "test"
    assert http.attributes["server.port"] == 80
    assert http.attributes["client.address"] == "127.0.0.1"
    assert http.status.status_code is StatusCode.UNSET
    [fresh] = [s for s in runs if s is not continued]
    [fresh_http] = [s for s in https if s.context.span_id == fresh.parent.span_id]  # type: ignore[union-attr]
    assert fresh_http.parent is None and format(fresh.context.trace_id, "032x") != TRACE_ID
    assert all(span.context.trace_id == continued.context.trace_id
               for span in spans
               if span.attributes.get("fastrlm.run_id") == continued.attributes["fastrlm.run_id"])


async def test_a_refused_request_is_a_server_span_with_its_status() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with serving(root(ECHO_SHAPE), telemetry=Telemetry(tracer_provider=provider)) as (
            server, _):
        missing = await raw_request(server.port, "GET", "/nowhere", b"")
        models = await raw_request(server.port, "GET", "/v1/models/rlm", b"")
    assert missing[0] == 404 and models[0] == 200
    by_path = {s.attributes["url.path"]: s for s in exporter.get_finished_spans()
               if s.kind is SpanKind.SERVER}
    lost = by_path["/nowhere"]
    assert lost.name == "GET" and "http.route" not in lost.attributes  # no route matched
    assert lost.attributes["http.response.status_code"] == 404
    assert lost.status.status_code is StatusCode.UNSET  # a 4xx is the client's, not an error
    assert by_path["/v1/models/rlm"].name == "GET /v1/models/{model}"


async def test_traceparent_is_ignored_when_spans_are_off() -> None:
    async with serving(root(ECHO_SHAPE), telemetry=False) as (server, _):
        status, _, _ = await raw_request(
            server.port, "POST", "/v1/chat/completions", BODY,
            headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01",
                     "Content-Type": "application/json"})
        assert status == 200 and server._rlm.telemetry is False
