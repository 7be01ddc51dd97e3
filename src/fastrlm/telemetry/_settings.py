"""When telemetry is on, which tracer provider makes the spans, and continuing a caller's trace.

Nothing here imports OpenTelemetry at module level: the extra loads only when telemetry is on.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from .._foundation.errors import ConfigurationError, MissingExtraError
from .._foundation.events import EventCallback
from ._options import Telemetry

log = logging.getLogger("fastrlm.telemetry")

_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"0", "false", "no", "off", ""})
CAPTURE_VARIABLE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


def enabled_by_environment(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment turns spans on: ``FASTRLM_OTEL=1`` (``0`` turns them off
    whatever else is set), else any standard ``OTEL_EXPORTER_OTLP_*`` variable with a value
    (unless ``OTEL_SDK_DISABLED=true``). Raises ConfigurationError for a ``FASTRLM_OTEL`` that is
    neither on nor off."""
    env = os.environ if env is None else env
    flag = env.get("FASTRLM_OTEL")
    if flag is not None:
        value = flag.strip().lower()
        if value in _ON:
            return True
        if value in _OFF:
            return False
        raise ConfigurationError(f"FASTRLM_OTEL={flag!r} is not understood: set it to 1 "
                                 "(OpenTelemetry spans on) or 0 (off)")
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(name.startswith("OTEL_EXPORTER_OTLP_") and value
               for name, value in env.items())


def capture_content(options: Telemetry, env: Mapping[str, str] | None = None) -> bool:
    """Whether spans carry prompt, response, code and answer text (off unless asked for)."""
    if options.capture_content is not None:
        return options.capture_content
    env = os.environ if env is None else env
    return env.get(CAPTURE_VARIABLE, "").strip().lower() == "true"


def span_recorder_factory(
    telemetry: bool | Telemetry | None,
) -> Callable[[], EventCallback] | None:
    """What ``RLM(telemetry=...)`` turns into: None (no spans), or a function that makes one
    span recorder per top-level run, whose root span is a child of the OpenTelemetry context
    current when it is made. ``None`` asks the environment (:func:`enabled_by_environment`).

    Raises MissingExtraError when spans are asked for (``True``, a :class:`Telemetry`,
    ``FASTRLM_OTEL=1``) and the ``otel`` extra is not installed; set only by the
    ``OTEL_EXPORTER_OTLP_*`` variables (which other programs share), a missing extra is logged
    and spans stay off. Raises ConfigurationError for a value of another type."""
    if telemetry is None:
        if not enabled_by_environment():
            return None
        if os.environ.get("FASTRLM_OTEL") is None and not _installed():
            log.warning("fastrlm: OTEL_EXPORTER_OTLP_* is set but the otel extra is not "
                        "installed, so runs make no spans: pip install 'fastrlm[otel]' (or "
                        "FASTRLM_OTEL=0 to silence this)")
            return None
        options = Telemetry()
    elif telemetry is True:
        options = Telemetry()
    elif telemetry is False:
        return None
    elif isinstance(telemetry, Telemetry):
        options = telemetry
    else:
        raise ConfigurationError(
            "telemetry must be True, False, None (decided by FASTRLM_OTEL / OTEL_EXPORTER_OTLP_*)"
            f" or a fastrlm.telemetry.Telemetry(...), not {type(telemetry).__name__}")
    if not _installed():
        raise MissingExtraError("otel", "opentelemetry-sdk", "OpenTelemetry tracing")
    return SpanRecorders(options)


class SpanRecorders:
    """What ``RLM(telemetry=...)`` keeps: called, a new span recorder for one top-level run;
    :attr:`tracer_provider` is where its spans (and a server's HTTP spans) go."""

    def __init__(self, options: Telemetry) -> None:
        self.options = options

    @property
    def tracer_provider(self) -> Any:
        return _tracer_provider(self.options)

    def __call__(self) -> EventCallback:
        from ._spans import SpanRecorder

        return SpanRecorder(self.tracer_provider, capture_content=capture_content(self.options))


def trace_context_of(headers: Mapping[str, str]) -> contextvars.Context | None:
    """A copy of the current context in which the W3C trace context of an incoming request
    (``traceparent``, ``tracestate``, through the global propagator) is the current span, to
    run the request's task in; None when the request carries no ``traceparent``."""
    if "traceparent" not in headers:
        return None
    from opentelemetry import context, propagate

    incoming = propagate.extract(dict(headers))
    copied = contextvars.copy_context()
    copied.run(context.attach, incoming)  # only inside the copy: the task's own context
    return copied


def _installed() -> bool:
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
        import opentelemetry.sdk.trace  # noqa: F401
        import opentelemetry.trace  # noqa: F401
    except ImportError:
        return False
    return True


def _tracer_provider(options: Telemetry) -> Any:
    """The provider given, else the application's global one if it set one, else fastrlm's."""
    if options.tracer_provider is not None:
        return options.tracer_provider
    from opentelemetry import trace

    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider):
        return current
    return default_tracer_provider()


_default: Any = None
_default_lock = threading.Lock()


def default_tracer_provider() -> Any:
    """fastrlm's own provider (made once per process, never set as the global one): OTLP/HTTP
    protobuf to ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``
    (default ``http://localhost:4318``), batched; its spans are flushed at exit."""
    global _default
    with _default_lock:
        if _default is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            named = (os.environ.get("OTEL_SERVICE_NAME")
                     or "service.name" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", ""))
            resource = Resource.create({} if named else {"service.name": "fastrlm"})
            provider = TracerProvider(resource=resource)
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            _default = provider
        return _default


def http_server_span(rlm: Any, **request: Any) -> AbstractContextManager[None]:
    """The HTTP server span of one request to a server of ``rlm`` (``fastrlm serve``), current
    for the block; a no-op context when the RLM makes no spans. ``request``: the keywords of
    :func:`fastrlm.telemetry._http.server_span` less the tracer provider."""
    recorders = rlm._config.telemetry  # the one owner of the RLM's telemetry settings
    if not isinstance(recorders, SpanRecorders):
        return contextlib.nullcontext()
    from ._http import server_span  # imports OpenTelemetry: only with spans on

    return server_span(recorders.tracer_provider, **request)
