"""A real OpenAI-compatible HTTP server on 127.0.0.1, scripted, for tests and benchmarks.

:class:`FakeOpenAIServer` speaks ``POST /v1/chat/completions`` (plain JSON, and server-sent
events when ``stream`` is true, with a final usage chunk when
``stream_options.include_usage`` is set) and ``GET /v1/models``. Point the official ``openai`` SDK
(or anything else) at :attr:`FakeOpenAIServer.base_url`::

    with FakeOpenAIServer(replies=["hello", Fault.rate_limit(retry_after="0.1"), "again"]) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="x")

Replies come from ``replies`` (consumed in order, then ``default``) or from ``handler``, a function
of the :class:`FakeRequest` that returns a ``str``, a :class:`FakeReply` or a :class:`Fault`.
When neither has anything left the server answers 400 ``script exhausted`` (never a retryable
status, so a test with a short script fails loudly instead of retrying).

The server records every request (:attr:`requests`) and the highest number of requests it held
at once (:attr:`max_in_flight`). ``latency_s`` delays every reply; ``hold_until_in_flight=n``
makes requests wait until ``n`` are in flight at once (or ``hold_timeout_s`` passes), which lets
a test prove that nothing on the client side limits concurrency below ``n`` without sleeping.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

if TYPE_CHECKING:
    from .._foundation.httpd import ThreadedHTTPServer

FaultKind = Literal[
    "status", "stall", "malformed_json", "missing_usage", "empty_choices", "disconnect", "raw"
]


@dataclass(frozen=True, slots=True)
class Fault:
    """A failure the server injects instead of a normal reply. Build with the classmethods."""

    kind: FaultKind
    status: int = 500
    retry_after: str | None = None
    stall_s: float = 60.0
    text: str = "ok"
    message: str = "injected fault"

    @classmethod
    def rate_limit(cls, retry_after: str | None = None) -> Fault:
        """429 with an optional ``Retry-After`` header (seconds, or an HTTP date)."""
        return cls("status", status=429, retry_after=retry_after, message="rate limited")

    @classmethod
    def server_error(cls, status: int = 500, retry_after: str | None = None) -> Fault:
        """A 5xx answer (500 by default)."""
        return cls("status", status=status, retry_after=retry_after, message="server error")

    @classmethod
    def http_status(cls, status: int, message: str = "injected status") -> Fault:
        """Any status with an OpenAI-style error body (401 for a bad key, 400, ...)."""
        return cls("status", status=status, message=message)

    @classmethod
    def stall(cls, seconds: float = 60.0) -> Fault:
        """Hold the request ``seconds`` (past the client's timeout), then drop the connection."""
        return cls("stall", stall_s=seconds)

    @classmethod
    def malformed_json(cls) -> Fault:
        """A 200 whose body is not JSON."""
        return cls("malformed_json", status=200)

    @classmethod
    def missing_usage(cls, text: str = "ok") -> Fault:
        """A normal 200 reply with ``text`` but no ``usage`` object."""
        return cls("missing_usage", status=200, text=text)

    @classmethod
    def empty_choices(cls) -> Fault:
        """A 200 reply whose ``choices`` list is empty."""
        return cls("empty_choices", status=200)

    @classmethod
    def raw(cls, body: str, status: int = 200) -> Fault:
        """Answer ``status`` with exactly ``body`` (as ``application/json``), e.g. a reply whose
        JSON is valid but whose fields have the wrong types."""
        return cls("raw", status=status, text=body)

    @classmethod
    def disconnect(cls) -> Fault:
        """Close the connection without answering."""
        return cls("disconnect")


@dataclass(frozen=True, slots=True)
class FakeReply:
    """A full reply. Token counts left ``None`` are estimated (4 characters a token)."""

    text: str | None = "ok"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    finish_reason: str = "stop"
    thinking: str | None = None
    latency_s: float | None = None
    cost: float | None = None
    #: Tool calls the model asks for: ``(name, arguments)`` pairs (ids are made up).
    tool_calls: tuple[tuple[str, dict[str, Any]], ...] = ()


Reply = str | FakeReply | Fault


@dataclass(frozen=True, slots=True)
class FakeRequest:
    """One request as the server received it (header names lowercased)."""

    index: int
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages = self.body.get("messages", [])
        return messages if isinstance(messages, list) else []

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))

    @property
    def prompt(self) -> str:
        """The text of the last message, whatever its role; ``""`` if there is none."""
        return _content_text(self.messages[-1].get("content")) if self.messages else ""

    @property
    def is_root(self) -> bool:
        """Whether this is an RLM *root turn* rather than a sub-call: fastrlm sends its system
        prompt with every root turn (top-level and child RLMs alike), while ``llm_query`` sends
        the prompt alone as one user message. So: a system message (or the Messages API's
        ``system`` field) means root."""
        if self.body.get("system"):
            return True
        return any(isinstance(m, dict) and m.get("role") == "system" for m in self.messages)

    @property
    def turn(self) -> int:
        """1 for a conversation's first turn, then one more per assistant message in it."""
        return 1 + sum(1 for m in self.messages
                       if isinstance(m, dict) and m.get("role") == "assistant")


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(block.get("text", "")) for block in content if isinstance(block, dict))
    return ""


def estimate(text: str) -> int:
    """The server's token estimate: 4 characters a token, at least 1."""
    return max(1, (len(text) + 3) // 4)


class FakeOpenAIServer:
    """A scripted OpenAI-compatible server on ``127.0.0.1`` and a random (or given) port.

    Use as a context manager (``with`` or ``async with``) or call :meth:`start` / :meth:`close`.
    Thread-safe. Served by aiohttp on a thread of its own; the script's side of a request
    (``handler``, the script, ``hold_until_in_flight``) runs on a worker thread, so a handler
    may block.
    """

    api_prefix = "/v1"

    def __init__(
        self,
        replies: Iterable[Reply] = (),
        *,
        handler: Callable[[FakeRequest], Reply] | None = None,
        default: Reply | None = None,
        latency_s: float = 0.0,
        model_ids: Sequence[str] = ("fake-model",),
        hold_until_in_flight: int | None = None,
        hold_timeout_s: float = 10.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._script: list[Reply] = list(replies)
        self._handler = handler
        self._default = default
        self.latency_s = latency_s
        self.model_ids = tuple(model_ids)
        self._hold_n = hold_until_in_flight
        self._hold_timeout_s = hold_timeout_s
        self._host = host
        self._port = port
        self._lock = threading.Condition()
        self._closing = threading.Event()
        self._requests: list[FakeRequest] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._httpd: ThreadedHTTPServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve in a background thread. Returns ``self``."""
        if self._httpd is not None:
            return self
        from ._fake_http import serve  # aiohttp is imported when a fake starts, not before

        self._closing.clear()
        self._httpd = serve(self, self._host, self._port)
        return self

    def close(self) -> None:
        """Stop serving; stalled and held requests are released (their connections dropped)."""
        self._closing.set()
        with self._lock:
            self._lock.notify_all()
        if self._httpd is not None:
            self._httpd.close()
            self._httpd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        import asyncio

        await asyncio.to_thread(self.close)

    # -- what tests read ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        return self._httpd.port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no API prefix)."""
        return f"http://{self._host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What an SDK takes as its base URL: ``http://127.0.0.1:PORT/v1``."""
        return self.url + self.api_prefix

    @property
    def requests(self) -> list[FakeRequest]:
        """Every request so far (a copy), in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def completion_requests(self) -> list[FakeRequest]:
        """The model-call requests only (not ``/v1/models``)."""
        return [r for r in self.requests if r.method == "POST"]

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    @property
    def max_in_flight(self) -> int:
        """The most requests the server was handling at the same moment."""
        with self._lock:
            return self._max_in_flight

    def add_replies(self, *replies: Reply) -> None:
        """Append to the script."""
        with self._lock:
            self._script.extend(replies)

    # -- serving (called from handler threads) -----------------------------------------------

    def _admit(
        self, method: str, path: str, headers: dict[str, str], body: dict[str, Any]
    ) -> FakeRequest:
        with self._lock:
            request = FakeRequest(len(self._requests), method, path, headers, body, time.time())
            self._requests.append(request)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            self._lock.notify_all()
            if self._hold_n is not None:
                deadline = time.monotonic() + self._hold_timeout_s
                while (
                    self._max_in_flight < self._hold_n
                    and not self._closing.is_set()
                    and (left := deadline - time.monotonic()) > 0
                ):
                    self._lock.wait(left)
            return request

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _next_reply(self, request: FakeRequest) -> Reply | None:
        if self._handler is not None:
            return self._handler(request)
        with self._lock:
            if self._script:
                return self._script.pop(0)
        return self._default

    def _take(self, method: str, path: str, headers: dict[str, str], body: dict[str, Any]
              ) -> tuple[FakeRequest, Reply | None]:
        """Record a request and pick its reply (on a worker thread: either may block)."""
        request = self._admit(method, path, headers, body)
        try:
            return request, self._next_reply(request) if method == "POST" else None
        except BaseException:
            self._leave()
            raise

    # -- wire format (overridden by the Anthropic-shaped fake) -------------------------------

    def _is_completion_path(self, path: str) -> bool:
        return path.rstrip("/") == self.api_prefix + "/chat/completions"

    def _completion_body(
        self, request: FakeRequest, reply: FakeReply, usage: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": f"chatcmpl-fake-{request.index}",
            "object": "chat.completion",
            "created": int(request.received_at),
            "model": request.model or self.model_ids[0],
            "choices": [
                {
                    "index": 0,
                    "message": self._message(request, reply),
                    "finish_reason": "tool_calls" if reply.tool_calls else reply.finish_reason,
                    "logprobs": None,
                }
            ],
        }
        if usage:
            body["usage"] = self._usage(request, reply)
        return body

    def _message(self, request: FakeRequest, reply: FakeReply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{request.index}_{i}", "type": "function",
                 "function": {"name": name, "arguments": json.dumps(arguments)}}
                for i, (name, arguments) in enumerate(reply.tool_calls)
            ]
        return message

    def _usage(self, request: FakeRequest, reply: FakeReply) -> dict[str, Any]:
        prompt, completion = self._tokens(request, reply)
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {
                "cached_tokens": reply.cached_tokens,
                "cache_write_tokens": reply.cache_write_tokens,
            },
            "completion_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
        }
        if reply.cost is not None:
            usage["cost"] = reply.cost
        return usage

    def _tokens(self, request: FakeRequest, reply: FakeReply) -> tuple[int, int]:
        prompt = reply.prompt_tokens
        if prompt is None:
            prompt = sum(estimate(_content_text(m.get("content"))) for m in request.messages)
            if request.body.get("system"):
                prompt += estimate(_content_text(request.body.get("system")))
        completion = reply.completion_tokens
        if completion is None:
            completion = estimate(reply.text or "") + reply.reasoning_tokens
        return prompt, completion

    def _error_body(self, status: int, message: str) -> dict[str, Any]:
        kind = "rate_limit_exceeded" if status == 429 else "fake_error"
        return {"error": {"message": message, "type": kind, "code": str(status), "param": None}}

    def _stream_events(self, request: FakeRequest, reply: FakeReply) -> list[tuple[str, Any]]:
        """(event name, data) pairs; the OpenAI stream has unnamed events and ends with [DONE]."""
        base = {
            "id": f"chatcmpl-fake-{request.index}",
            "object": "chat.completion.chunk",
            "created": int(request.received_at),
            "model": request.model or self.model_ids[0],
        }
        text = reply.text or ""
        pieces = [text[i : i + 16] for i in range(0, len(text), 16)] or [""]
        events: list[tuple[str, Any]] = [
            ("", {**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
        ]
        for piece in pieces:
            events.append(("", {**base, "choices": [{"index": 0, "delta": {"content": piece}}]}))
        last = {"index": 0, "delta": {}, "finish_reason": reply.finish_reason}
        events.append(("", {**base, "choices": [last]}))
        options = request.body.get("stream_options") or {}
        if isinstance(options, dict) and options.get("include_usage"):
            events.append(("", {**base, "choices": [], "usage": self._usage(request, reply)}))
        events.append(("", "[DONE]"))
        return events

    def _models_body(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "fastrlm"}
                for m in self.model_ids
            ],
        }


__all__ = ["FakeOpenAIServer", "FakeReply", "FakeRequest", "Fault", "Reply", "estimate"]
