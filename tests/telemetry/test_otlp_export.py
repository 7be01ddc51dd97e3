"""Spans leave the process over OTLP/HTTP: fastrlm's own provider, set up from the standard
variables, posts protobuf to a receiver this test runs on 127.0.0.1."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("opentelemetry.sdk")  # the otel extra

from opentelemetry import trace  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)

from fastrlm.telemetry import _settings  # noqa: E402

from .helpers import scripted_rlm  # noqa: E402


class _Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.posts: list[tuple[str, str, bytes]] = []  # (path, content type, body)


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts.append((self.path, self.headers["Content-Type"], body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


def test_the_otlp_variables_alone_send_the_runs_spans_to_the_collector(
    receiver: _Receiver, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{receiver.server_port}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "otlp-test")
    monkeypatch.setattr(_settings, "_default", None)  # a provider made from this environment
    # as in a program that set no global provider, whatever another test or library did
    monkeypatch.setattr(trace, "get_tracer_provider", trace.ProxyTracerProvider)
    rlm = scripted_rlm()
    assert rlm.telemetry is True
    result = rlm.completion("what is it", context="some context")
    provider = _settings.default_tracer_provider()
    try:
        assert provider.force_flush(timeout_millis=60_000)
    finally:
        provider.shutdown()
    assert receiver.posts, "no export reached the receiver"
    names: list[str] = []
    services: set[str] = set()
    run_ids: set[str] = set()
    for path, content_type, body in receiver.posts:
        assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            services |= {a.value.string_value for a in resource_spans.resource.attributes
                         if a.key == "service.name"}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    names.append(span.name)
                    run_ids |= {a.value.string_value for a in span.attributes
                                if a.key == "fastrlm.run_id"}
    assert len(names) == 11
    assert names.count("invoke_agent fastrlm") == 2 and names.count("chat sub") == 3
    assert services == {"otlp-test"}
    assert result.trace_id in run_ids
