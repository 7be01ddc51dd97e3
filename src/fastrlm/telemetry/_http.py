"""The HTTP server span of a request to ``fastrlm serve`` (OpenTelemetry's HTTP semantic
conventions): kind SERVER, named ``{method} {route}`` (the method alone where no route matched),
the parent being the request's W3C ``traceparent`` when it carries one. The span is the current
context while the request is answered, so the run it starts (``invoke_agent fastrlm``) nests
under it. Imported only when telemetry is on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode


@contextmanager
def server_span(
    tracer_provider: Any, *, method: str, path: str, headers: Mapping[str, str],
    client: str, server: tuple[str, int] | None, templates: tuple[str, ...] = (),
    status: Callable[[], int | None],
) -> Iterator[None]:
    """Make the request's span current for the block. ``headers`` lower-cased; ``client``
    ``host:port`` of the peer (``-`` unknown); ``server`` the socket's (address, port), for
    ``server.address`` / ``server.port`` when the request has no usable ``Host`` header (the
    name the client addressed is preferred, as the conventions say); ``templates`` the
    routes with a parameter (``/v1/models/{model}``; any other path that was answered is its
    own route, a 404 has none); ``status()`` the response status once answered (an
    exception with a ``status`` attribute gives its own)."""
    parent = propagate.extract(dict(headers))  # the current context without a traceparent
    attributes: dict[str, Any] = {
        "http.request.method": method if method in _METHODS else "_OTHER",
        "url.path": path,
        "url.scheme": "http",
        "network.protocol.version": "1.1",
    }
    if method not in _METHODS:
        attributes["http.request.method_original"] = method
    where = _host_header(headers.get("host", "")) or server
    if where is not None:
        attributes["server.address"], attributes["server.port"] = where[0], int(where[1])
    host, _, port = client.rpartition(":")
    if host and port.isdigit():
        attributes["client.address"] = host.strip("[]")
        attributes["network.peer.port"] = int(port)
    agent = headers.get("user-agent")
    if agent:
        attributes["user_agent.original"] = agent
    tracer = tracer_provider.get_tracer("fastrlm")
    span = tracer.start_span(method if method in _METHODS else "HTTP", context=parent,
                             kind=SpanKind.SERVER, attributes=attributes)
    token = otel_context.attach(trace.set_span_in_context(span, parent))
    code: int | None = None
    failure: str | None = None
    try:
        yield
        code = status()
    except BaseException as exc:
        code = getattr(exc, "status", None)
        if not isinstance(code, int):
            code, failure = None, type(exc).__name__
        raise
    finally:
        otel_context.detach(token)
        _finish(span, method, code, failure, _route(path, code, templates))


def _host_header(value: str) -> tuple[str, int] | None:
    """(host, port) of a ``Host`` header: the server's name as the client addressed it, which
    the conventions prefer to the socket's address (no port: http's 80); None when absent or
    not a host."""
    value = value.strip()
    if not value or len(value) > 255 or any(c.isspace() or c in "/@?#" for c in value):
        return None
    if value.startswith("["):  # [::1]:8080
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
    else:
        host, _, port = value.partition(":")
    if not host or (port and (not port.isdigit() or not 0 < int(port) < 65536)):
        return None
    return host.lower(), int(port) if port else 80


def _route(path: str, status: int | None, templates: tuple[str, ...]) -> str | None:
    """The route template ``path`` matched, or None for a path no route served (a 404)."""
    if status == 404:
        return None
    for template in templates:
        if path.startswith(template.split("{", 1)[0]):
            return template
    return path.rstrip("/") or "/"


def _finish(span: Any, method: str, code: int | None, failure: str | None,
            route: str | None) -> None:
    if route is not None:
        span.set_attribute("http.route", route)
        span.update_name(f"{method if method in _METHODS else 'HTTP'} {route}")
    if code is not None:
        span.set_attribute("http.response.status_code", code)
        if code >= 500:  # a server span is an error only for 5xx (4xx is the client's)
            span.set_attribute("error.type", str(code))
            span.set_status(Status(StatusCode.ERROR))
    elif failure is not None:
        span.set_attribute("error.type", failure)
        span.set_status(Status(StatusCode.ERROR, failure))
    span.end()


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE",
                      "PATCH"})
