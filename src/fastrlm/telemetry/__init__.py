"""OpenTelemetry spans for RLM runs (the ``otel`` extra: ``pip install 'fastrlm[otel]'``).

Turned on by ``RLM(telemetry=True)`` (or a :class:`Telemetry`), by ``FASTRLM_OTEL=1``, or by the
standard ``OTEL_EXPORTER_OTLP_*`` variables. A :class:`~fastrlm.telemetry._spans.SpanRecorder`
is an event consumer: it turns the engine's typed events into spans (each run, root turn, code
cell, sub-call, tool call and child run), nested as the call tree is, with the GenAI semantic
conventions' attributes plus fastrlm's own. Importing this package does not import
OpenTelemetry; that happens only when telemetry is on.
"""

from ._options import Telemetry
from ._settings import (
    enabled_by_environment,
    http_server_span,
    span_recorder_factory,
    trace_context_of,
)

__all__ = ["Telemetry", "enabled_by_environment", "http_server_span", "span_recorder_factory",
           "trace_context_of"]
