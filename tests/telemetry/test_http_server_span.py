"""The HTTP server span's ``server.address`` / ``server.port``: the name the client addressed
(the ``Host`` header), as OpenTelemetry's HTTP conventions prefer, else the socket's."""

from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

from fastrlm.telemetry._http import server_span  # noqa: E402

SOCKET = ("127.0.0.1", 8770)


@pytest.mark.parametrize(("host", "address", "port"), [
    ("RLM.example.com:8443", "rlm.example.com", 8443),
    ("rlm.example.com", "rlm.example.com", 80),
    ("[::1]:9000", "::1", 9000),
    ("", "127.0.0.1", 8770),  # no Host: the socket's
    ("evil host/path", "127.0.0.1", 8770),  # not a host: the socket's
    ("example.com:99999", "127.0.0.1", 8770),
    ("[::1", "127.0.0.1", 8770),
])
def test_the_server_is_named_as_the_client_addressed_it(host: str, address: str,
                                                        port: int) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    headers = {"host": host} if host else {}
    with server_span(provider, method="GET", path="/v1/models", headers=headers,
                     client="10.0.0.9:5555", server=SOCKET, status=lambda: 200):
        pass
    [span] = exporter.get_finished_spans()
    assert span.attributes is not None
    assert (span.attributes["server.address"], span.attributes["server.port"]) == (address, port)
    assert span.attributes["client.address"] == "10.0.0.9"
