"""RLMServer: an OpenAI-compatible HTTP server whose one model is a Recursive Language Model.

Routes: ``GET /v1/models`` (``rlm`` and ``rlm/<root model>``), ``GET /v1/models/{id}``,
``POST /v1/chat/completions`` and ``POST /v1/responses`` (JSON or server-sent events; two
shapes of one run path), ``GET /health`` (no auth).

Concurrency: at most ``max_concurrent_runs`` runs at once; up to ``max_queued_runs`` more wait
in line (FIFO); past that a request gets 429 with ``Retry-After``. A client that disconnects
while its request waits or runs cancels it (the engine then cancels its sub-calls and kills its
worker). :meth:`RLMServer.close` stops accepting, cancels every run (their clients get 503, or
an error event on a stream) and closes the models' HTTP clients.

Why over 500 lines: one server's request life (read, authenticate, queue, run, answer, log,
close) in one place; the request shapes are :mod:`._doors`, sessions :mod:`._sessions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from aiohttp import web

from .. import RLM, Budget, RLMResult
from .._foundation.errors import ConfigurationError, ContextError, RLMError
from .._foundation.events import Event, progress_line
from .._foundation.pricing import unpriced_message
from .._foundation.validate import SERVER_RULES
from ..lm import LM
from ..telemetry import http_server_span
from ._access import CLIENT_GONE, AccessRecord, log_access
from ._doors import Door, chat_door, responses_door
from ._http import (
    EventStream,
    HTTPError,
    HTTPLimits,
    client_of,
    error_response,
    json_response,
    listen,
    lowered,
    protocol_of,
    read_body,
)
from ._protocol import ChatRequest, Frame, StreamShape, effective_budget, result_status
from ._sessions import SessionPool, owner_of

if TYPE_CHECKING:
    from ..sandbox import WarmWorkers

log = logging.getLogger("fastrlm.server")

_SHUTDOWN_GRACE_S = 10.0


class RLMServer:
    """Serve an RLM over HTTP on an asyncio event loop.

    ``rlm`` is the :class:`~fastrlm.RLM` every request runs on: its models, sandbox, limits,
    tools, prices, trace and telemetry are the server's (one RLM, built once by the caller, so
    every ``RLM`` option reaches the server without being re-declared here). Its ``budget`` is
    the most any one request may spend; a request can only lower it. A request's ``tools``
    field is ignored: tools are the RLM's, set at start. ``server_key``: when set, every
    ``/v1`` request needs ``Authorization: Bearer <server_key>``.
    Sessions (``extra_body={"fastrlm": {"session": id}}``) belong to the request's API key:
    at most ``max_sessions`` in all and ``max_sessions_per_key`` (default: ``max_sessions``) per
    key, idle ones closed after ``session_idle_s``; room is made only from the asking key's own
    idle sessions (else 429), and a request for a session closed since gets 410
    ``session_closed``. ``keep_sessions`` (a folder) keeps sessions across a restart of the
    server (the RLM must trace to disk): see :mod:`fastrlm.server._sessions`. With
    telemetry on, a request's W3C ``traceparent`` header makes its run part of the caller's
    trace. ``reasoning``: every request's progress goes out as ``reasoning_content`` (a
    request's ``fastrlm.reasoning`` decides for itself). Each request is one line on the
    ``fastrlm.server.access``
    logger (``server/_access.py``). ``warm_workers`` (default on): from :meth:`start` on,
    each request's sandbox worker is forked from one warm process (:meth:`RLM.awarm_workers`)
    instead of started cold, so a request's worker costs milliseconds, not a fresh interpreter;
    every request still gets a fresh process. :meth:`close` closes the RLM's model clients
    (an RLM makes new ones on its next event loop).

    The older form ``RLMServer(model, sub_model, budget=..., limits=..., sandbox=...,
    trace=..., base_url=..., api_key=..., prices=..., tools=..., sub_tools=...,
    telemetry=...)`` still builds the RLM from those keywords, with a
    :class:`DeprecationWarning`; it goes in the next release.

    Raises :class:`~fastrlm.ConfigurationError` for a model that cannot be resolved, for an RLM
    given together with RLM options, or for a ``budget.max_usd`` that cannot be enforced
    because a model has no known price (a request that sets ``max_usd`` in that case gets 400
    ``unpriced_model``).

    Use as ``async with RLMServer(rlm) as server: await server.start(port=0)`` or call
    :meth:`start` and :meth:`close` yourself; :attr:`base_url` is the ``/v1`` URL to give a client.
    """

    def __init__(
        self,
        rlm: RLM | str | LM,
        sub_model: str | LM | None = None,
        *,
        max_concurrent_runs: int = 4,
        max_queued_runs: int = 16,
        server_key: str | None = None,
        http_limits: HTTPLimits | None = None,
        max_sessions: int = 32,
        max_sessions_per_key: int | None = None,
        session_idle_s: float = 600.0,
        max_session_chars: int = 1 << 30,
        keep_sessions: str | Path | None = None,
        reasoning: bool = False,
        warm_workers: bool = True,
        **rlm_options: Any,
    ) -> None:
        SERVER_RULES["max_concurrent_runs"].check("max_concurrent_runs", max_concurrent_runs)
        SERVER_RULES["max_queued_runs"].check("max_queued_runs", max_queued_runs)
        if not isinstance(rlm, RLM):
            rlm = _legacy_rlm(rlm, sub_model, rlm_options)
        elif sub_model is not None or rlm_options:
            given = sorted(rlm_options) + (["sub_model"] if sub_model is not None else [])
            raise ConfigurationError(
                f"RLMServer(rlm, ...) takes the RLM as it is: {', '.join(given)} belong to "
                "RLM(...) (or rlm.with_options(...))")
        self._rlm = rlm
        SERVER_RULES["max_sessions"].check("max_sessions", max_sessions)
        if max_sessions_per_key is not None:
            SERVER_RULES["max_sessions"].check("max_sessions_per_key", max_sessions_per_key)
        SERVER_RULES["session_idle_s"].check("session_idle_s", session_idle_s)
        SERVER_RULES["max_session_chars"].check("max_session_chars", max_session_chars)
        self.sessions = SessionPool(rlm, max_sessions=max_sessions, idle_s=session_idle_s,
                                    max_chars=max_session_chars,
                                    max_per_owner=max_sessions_per_key,
                                    keep=keep_sessions)
        # RLM(...) above refused the server's own max_usd over unpriced models (one rule)
        self._unpriced = rlm.prices.unpriced((rlm.root_lm.model, rlm.sub_lm.model,
                                              *(lm.model for lm in rlm.child_lms.values())))
        self.root_model = rlm.root_lm.model
        self.model_ids = frozenset({"rlm", f"rlm/{self.root_model}"})
        self.max_concurrent_runs = max_concurrent_runs
        if not isinstance(reasoning, bool):
            raise ConfigurationError(f"RLMServer(reasoning=...) takes True or False, not "
                                     f"{reasoning!r} (fastrlm serve --reasoning)")
        self.reasoning = reasoning
        self.max_queued_runs = max_queued_runs
        if not isinstance(warm_workers, bool):
            raise ConfigurationError(f"RLMServer(warm_workers=...) takes True or False, not "
                                     f"{warm_workers!r} (fastrlm serve --cold-workers)")
        self.warm_workers = warm_workers
        self._warm: WarmWorkers | None = None
        self.http_limits = http_limits or HTTPLimits()
        self._key = server_key.encode() if server_key else None
        self._slots = asyncio.Semaphore(max_concurrent_runs)
        self._listener: asyncio.Server | None = None
        self._http: web.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()  # requests being answered
        self._runs: set[asyncio.Task[RLMResult]] = set()
        self._closing = False
        self._watchers: list[tuple[Callable[[RLMServer], bool], asyncio.Future[None]]] = []
        self.active_runs = 0
        self.queued_runs = 0
        self.host = "127.0.0.1"
        self.port = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host:port`` (0 picks a free port; see :attr:`port`). Raises ``OSError``."""
        self._listener, self._http = await listen(self._handle, host, port, self.http_limits,
                                                  self._refused)
        self.host = host
        self.port = self._listener.sockets[0].getsockname()[1]
        self.sessions.start()
        if self.warm_workers and self._warm is None:
            # every worker alive at once has room: the runs', and each kept session's
            self._warm = await self._rlm.awarm_workers(
                self.max_concurrent_runs + self.sessions.max_sessions)
            if self._warm.problem is not None:
                log.info("sandbox workers start cold: %s", self._warm.problem)

    @property
    def budget(self) -> Budget:
        """The most any one request may spend (a request can only lower it)."""
        return self._rlm.budget

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    async def close(self) -> None:
        """Stop accepting, cancel every run, answer or drop their clients, close the models."""
        self._closing = True
        if self._listener is not None:
            self._listener.close()
        for run in list(self._runs):
            run.cancel()
        pending = list(self._handlers)
        if pending:  # each answers its client (503, or an error event on a stream)
            _, late = await asyncio.wait(pending, timeout=_SHUTDOWN_GRACE_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._http is not None:
            await self._http.shutdown(_SHUTDOWN_GRACE_S)  # and closes the idle connections
        if self._listener is not None:
            await self._listener.wait_closed()
        await self.sessions.close()
        if self._warm is not None:  # after every run and session: their workers die with it
            await asyncio.to_thread(self._warm.close)
            self._warm = None
        await self._rlm.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def wait_until(self, predicate: Callable[[RLMServer], bool]) -> None:
        """Return once ``predicate(self)`` holds; it is re-checked whenever a run is queued,
        starts or ends (for tests and monitoring: no polling, no sleeps)."""
        if predicate(self):
            return
        future = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._watchers.append(entry)
        try:
            await future
        finally:
            self._watchers.remove(entry)

    def _notify(self) -> None:
        for predicate, future in self._watchers:
            if not future.done() and predicate(self):
                future.set_result(None)

    # ------------------------------------------------------------------ requests
    def _refused(self, client: str, error: HTTPError) -> None:
        log_access(AccessRecord(client, status=error.status, error=error.code))

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Answer one request and log its line. A client that leaves cancels this handler (and
        so its run): its line says 499."""
        task = asyncio.current_task()
        assert task is not None
        connection = protocol_of(request)
        connection.head_done()
        self._handlers.add(task)
        record = AccessRecord(client_of(request), request.method, request.path)
        try:
            try:
                body = await read_body(request, self.http_limits)
            except HTTPError as error:  # the request's framing: nothing more is read from it
                record.status, record.error = error.status, error.code
                return error_response(error, keep_alive=False)
            keep = request.keep_alive and not self._closing
            try:
                with self._server_span(request, record):
                    return await self._dispatch(request, body, keep, record)
            except HTTPError as error:
                record.status, record.error = error.status, error.code
                return error_response(error, keep_alive=keep and error.status < 500)
        except (ConnectionError, TimeoutError, asyncio.CancelledError):
            record.status = CLIENT_GONE
            raise
        except BaseException:
            record.status = 500
            raise
        finally:
            log_access(record)
            self._handlers.discard(task)
            connection.await_head()

    def _server_span(self, request: web.BaseRequest,
                     record: AccessRecord) -> contextlib.AbstractContextManager[None]:
        """With spans on, the request's HTTP server span, current while it is answered (its
        parent the request's ``traceparent``): the run it starts nests under it."""
        if not self._rlm.telemetry:
            return contextlib.nullcontext()
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        return http_server_span(
            self._rlm, method=request.method, path=request.path,
            headers=lowered(request.headers), client=record.client,
            server=(str(sock[0]), int(sock[1])) if isinstance(sock, tuple) else None,
            templates=("/v1/models/{model}",), status=lambda: record.status)

    async def _dispatch(
        self, request: web.BaseRequest, body: bytes, keep: bool, record: AccessRecord,
    ) -> web.StreamResponse:
        """Answer one request. A response returned here is a 200 unless the request's
        ``record`` says otherwise."""
        path = request.path.rstrip("/") or "/"
        record.status = 200
        if path == "/health":
            _allow(request, "GET", "HEAD")
            return json_response(200, self._health(), keep_alive=keep)
        if not path.startswith("/v1/"):
            raise HTTPError(404, f"no route for {request.path}", code="not_found")
        self._authorize(request)
        if path == "/v1/models":
            _allow(request, "GET")
            return json_response(200, {"object": "list", "data": self._models()},
                                 keep_alive=keep)
        if path.startswith("/v1/models/"):
            _allow(request, "GET")
            name = path.removeprefix("/v1/models/")
            found = [m for m in self._models() if m["id"] == name]
            if not found:
                raise HTTPError(404, f"the model {name!r} does not exist", code="model_not_found")
            return json_response(200, found[0], keep_alive=keep)
        if path in ("/v1/chat/completions", "/v1/responses"):
            _allow(request, "POST")
            if self._closing:
                raise HTTPError(503, "the server is shutting down", type="api_error",
                                code="shutting_down")
            door = chat_door(body, self.model_ids) if path == "/v1/chat/completions" else \
                responses_door(body, self.model_ids)
            return await self._chat(door, request, keep, record)
        if path.startswith("/v1/responses/"):  # retrieve, delete, cancel, input_items
            raise HTTPError(404, "this server stores no responses, so none can be retrieved, "
                            "cancelled or deleted: read each one from its own request's reply",
                            code="response_not_found")
        raise HTTPError(404, f"no route for {request.path}", code="not_found")

    def _authorize(self, request: web.BaseRequest) -> None:
        if self._key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                                 self._key):
            raise HTTPError(401, "invalid or missing API key (send Authorization: Bearer <key>)",
                            type="invalid_request_error", code="invalid_api_key",
                            headers={"WWW-Authenticate": "Bearer"})

    def _models(self) -> list[dict[str, object]]:
        return [{"id": name, "object": "model", "created": 0, "owned_by": "fastrlm"}
                for name in sorted(self.model_ids)]

    def _health(self) -> dict[str, object]:
        return {"status": "closing" if self._closing else "ok", "active_runs": self.active_runs,
                "queued_runs": self.queued_runs}

    # ------------------------------------------------------------------ runs (both doors)
    async def _chat(
        self, door: Door, request: web.BaseRequest, keep: bool, record: AccessRecord,
    ) -> web.StreamResponse:
        """Run the request; a client that leaves cancels this (aiohttp cancels the handler).
        With spans on, the run's span nests under the request's HTTP server span (current
        here: :meth:`_server_span`), itself under the request's ``traceparent``."""
        return await self._respond(door, request, keep, record)

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        if self._slots.locked() and self.queued_runs >= self.max_queued_runs:
            raise HTTPError(
                429, f"the server is busy ({self.max_concurrent_runs} runs, "
                f"{self.queued_runs} queued): retry later", type="rate_limit_error",
                code="server_busy", headers={"Retry-After": "1"})
        self.queued_runs += 1
        self._notify()
        try:
            await self._slots.acquire()
        finally:
            self.queued_runs -= 1
            self._notify()
        self.active_runs += 1
        self._notify()
        try:
            yield
        finally:
            self.active_runs -= 1
            self._slots.release()
            self._notify()

    async def _respond(self, door: Door, request: web.BaseRequest, keep: bool,
                       record: AccessRecord) -> web.StreamResponse:
        chat = door.request
        budget = effective_budget(self.budget, chat.overrides)
        if budget.max_usd is not None and self._unpriced:
            raise HTTPError(400, _unpriced_message(self._unpriced, "this request's"),
                            code="unpriced_model")
        reply_id = f"{door.prefix}{uuid.uuid4().hex}"
        created = int(time.time())
        reasoning = self.reasoning if chat.reasoning is None else chat.reasoning
        owner = owner_of(request.headers.get("authorization", ""))
        async with self._slot():
            if self._closing:
                raise HTTPError(503, "the server is shutting down", type="api_error",
                                code="shutting_down")
            if chat.stream:
                stream = EventStream(request, keep)
                await self._stream(chat, door.stream(reply_id, created), stream, budget, record,
                                   owner, reasoning)
                return stream.response
            lines: list[str] = []

            def on_event(event: Event) -> None:
                record.seen(event)
                line = progress_line(event) if reasoning else None
                if line is not None:
                    lines.append(line + "\n")

            result = await self._run(chat, budget, on_event, owner)
        error = result_status(result)
        if error is not None:
            raise error
        body = door.body(result, reply_id, created, budget,
                         "".join(lines) if reasoning else None)
        return json_response(200, body, keep_alive=keep)

    async def _run(self, chat: ChatRequest, budget: Budget,
                   on_event: Callable[[Event], None], owner: str = "") -> RLMResult:
        """Run the request as a task the server can cancel on shutdown (in its session when it
        names one: ``owner`` is whose). Raises :class:`HTTPError` for a refused context, a full
        session pool or a shutdown; a cancellation of the caller propagates."""
        if chat.session is not None:
            run = asyncio.create_task(self._in_session(chat, budget, on_event, owner))
        else:
            run = asyncio.create_task(self._rlm.acompletion(chat.question, chat.context,
                                                            budget=budget, on_event=on_event,
                                                            output=chat.output))
        self._runs.add(run)
        try:
            return await run
        except RLMError as exc:
            if exc.result is not None:  # a failed run: result_status() maps it to a status
                return exc.result
            if isinstance(exc, ContextError):
                raise HTTPError(400, str(exc), code="invalid_context") from exc
            raise
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if me is not None and me.cancelling():
                raise
            raise HTTPError(503, "the run was cancelled: the server is shutting down",
                            type="api_error", code="shutting_down") from None
        finally:
            if not run.done():
                run.cancel()
                await asyncio.gather(run, return_exceptions=True)
            self._runs.discard(run)

    async def _in_session(self, chat: ChatRequest, budget: Budget,
                          on_event: Callable[[Event], None], owner: str) -> RLMResult:
        """One question of a session: the request's context (if it brought one; in drop-in mode
        the first request's conversation, and a later request's question when it is too long to
        show the root) is the session's next context."""
        assert chat.session is not None
        async with self.sessions.use(owner, chat.session, chat.context, drop_in=chat.drop_in,
                                     question=chat.question) as (session, context):
            return await session.aask(chat.question, context, budget=budget, on_event=on_event,
                                      output=chat.output)

    async def _stream(
        self, chat: ChatRequest, shape: StreamShape, stream: EventStream, budget: Budget,
        record: AccessRecord, owner: str, reasoning: bool,
    ) -> None:
        """Stream one run in ``shape``'s frames: progress as it happens (engine events when
        ``chat.progress``, progress lines when ``reasoning``), then the answer or the error."""
        queue: asyncio.Queue[tuple[Event | None, str | None] | None] = asyncio.Queue()

        def on_event(event: Event) -> None:
            record.seen(event)
            line = progress_line(event) if reasoning else None
            if chat.progress or line is not None:
                queue.put_nowait((event if chat.progress else None, line))

        async def send(frames: list[Frame]) -> None:
            for name, data in frames:
                await stream.send(data, event=name)

        runner = asyncio.create_task(self._run(chat, budget, on_event, owner))
        runner.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            await stream.start()
            await send(shape.opening())
            while (item := await queue.get()) is not None:
                event, line = item
                await send(shape.progress(event.to_dict() if event is not None else None, line))
            try:
                result = await runner
            except HTTPError as refused:
                await send(shape.failed(refused))
                stream.keep_alive = False
                await stream.end()
                return
        finally:
            if not runner.done():
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)
        error = result_status(result)
        if error is not None:
            await send(shape.failed(error))
            stream.keep_alive = False
        else:
            await send(shape.closing(result, budget))
        await stream.end()


def _allow(request: web.BaseRequest, *methods: str) -> None:
    if request.method not in methods:
        raise HTTPError(405, f"{request.method} is not allowed here (allowed: "
                        f"{', '.join(methods)})", code="method_not_allowed",
                        headers={"Allow": ", ".join(methods)})


def _unpriced_message(models: list[str], whose: str) -> str:
    return unpriced_message(models, f"{whose} max_usd",
                            "Add them to $FASTRLM_HOME/prices.json, or set no dollar limit.")


#: The RLM keywords the older ``RLMServer(model, ...)`` form took.
_LEGACY_OPTIONS = frozenset({"budget", "limits", "sandbox", "trace", "base_url", "api_key",
                             "prices", "tools", "sub_tools", "telemetry"})


def _legacy_rlm(model: str | LM, sub_model: str | LM | None, options: dict[str, Any]) -> RLM:
    unknown = sorted(set(options) - _LEGACY_OPTIONS)
    if unknown:
        raise TypeError(f"RLMServer() got unexpected keyword argument(s): {', '.join(unknown)}")
    warnings.warn(
        "RLMServer(model, sub_model, budget=..., ...) is deprecated: build the RLM once and "
        "pass it, RLMServer(RLM(model, sub_model, ...)); this form goes in the next release",
        DeprecationWarning, stacklevel=3)
    options.setdefault("trace", True)  # this form's default: a trace of every request
    return RLM(model, sub_model, **options)
