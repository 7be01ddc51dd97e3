"""The ``telemetry=`` option of :class:`~fastrlm.RLM` (no imports: the engine's facade names it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Telemetry:
    """How an RLM's runs become OpenTelemetry spans: ``RLM(telemetry=Telemetry(...))``.

    ``tracer_provider``: an ``opentelemetry.trace.TracerProvider`` to make the spans with
    (default: the application's global provider when one is set, else fastrlm's own, which
    exports over OTLP/HTTP as the standard ``OTEL_EXPORTER_OTLP_*`` variables say).
    ``capture_content``: record prompt, response, code and answer text, and error messages
    (which quote them or a provider's error body), on the spans; off, a failed span says its
    error's type alone (default:
    the standard ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` variable; off when it is
    not ``true``, as the GenAI semantic conventions ask)."""

    tracer_provider: object | None = None
    capture_content: bool | None = None
