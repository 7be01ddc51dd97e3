"""An Anthropic-shaped fake: the Messages API (``POST /v1/messages``) on 127.0.0.1.

Same script, faults, recording and concurrency measurement as :class:`FakeOpenAIServer`; only the
wire format differs. :attr:`FakeAnthropicServer.base_url` has no ``/v1`` (the ``anthropic`` SDK
adds it). A :class:`FakeReply` with ``thinking`` set returns a thinking block before the text;
``cached_tokens`` / ``cache_write_tokens`` come back as ``cache_read_input_tokens`` /
``cache_creation_input_tokens``, and ``input_tokens`` is the uncached rest, as Anthropic counts.

``prefix_cache=True`` models Anthropic's prompt cache instead: the text up to each
``cache_control`` block (system first, then the messages' blocks in order) is a cache entry. A
request reads the longest of its entries that a request which had *finished* (its response
built) before this one arrived wrote, and writes the rest up to its last mark: concurrent
requests sharing a prefix each pay a write, as on the real API. Token counts are the server's
estimate (4 characters a token); :attr:`FakeAnthropicServer.cache_reads` and
:attr:`~FakeAnthropicServer.cache_writes` count the requests billed each way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from ._fake_server import FakeOpenAIServer, FakeReply, FakeRequest, Reply, estimate

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class FakeAnthropicServer(FakeOpenAIServer):
    """A scripted server speaking Anthropic's Messages API (non-streaming and SSE).

    ``prefix_cache``: bill cache reads and writes as Anthropic's prompt cache would (module
    docstring); the other options are :class:`FakeOpenAIServer`'s."""

    def __init__(self, replies: Iterable[Reply] = (), *, prefix_cache: bool = False,
                 **options: Any) -> None:
        super().__init__(replies, **options)
        self.prefix_cache = prefix_cache
        self._written: set[str] = set()  # digests of the entries finished requests wrote
        # request index -> (tokens read, tokens written, digests of its entries)
        self._billed: dict[int, tuple[int, int, list[str]]] = {}
        self._reads = 0
        self._writes = 0

    @property
    def cache_reads(self) -> int:
        """Answered requests that read a cache entry (``prefix_cache``)."""
        with self._lock:
            return self._reads

    @property
    def cache_writes(self) -> int:
        """Answered requests that wrote a cache entry (``prefix_cache``)."""
        with self._lock:
            return self._writes

    def _admit(
        self, method: str, path: str, headers: dict[str, str], body: dict[str, Any]
    ) -> FakeRequest:
        if not self.prefix_cache or method != "POST":
            return super()._admit(method, path, headers, body)
        entries = _cache_entries(body)
        with self._lock:
            # what had finished when it arrived (before any hold_until_in_flight wait)
            hits = [text for text, digest in entries if digest in self._written]
            read = estimate(hits[-1]) if hits else 0
            last = entries[-1] if entries else None
            written = estimate(last[0]) - read if last and last[1] not in self._written else 0
            request = super()._admit(method, path, headers, body)
            self._billed[request.index] = (read, max(written, 0),
                                           [digest for _text, digest in entries])
            return request

    def _completion_body(
        self, request: FakeRequest, reply: FakeReply, usage: bool
    ) -> dict[str, Any]:
        with self._lock:
            billed = self._billed.get(request.index)
            if billed is not None:  # answered (a failed request is billed nothing)
                self._written.update(billed[2])  # its response is on its way: entries exist
                self._reads += billed[0] > 0
                self._writes += billed[1] > 0
        return self._reply_body(request, reply, usage)

    @property
    def base_url(self) -> str:
        """What ``anthropic.Anthropic(base_url=...)`` takes: ``http://127.0.0.1:PORT``."""
        return self.url

    def _is_completion_path(self, path: str) -> bool:
        return path.split("?", 1)[0].rstrip("/") == self.api_prefix + "/messages"

    def _reply_body(
        self, request: FakeRequest, reply: FakeReply, usage: bool
    ) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if reply.thinking is not None:
            content.append({"type": "thinking", "thinking": reply.thinking, "signature": "sig"})
        if reply.text is not None:
            content.append({"type": "text", "text": reply.text})
        for i, (name, arguments) in enumerate(reply.tool_calls):
            content.append({"type": "tool_use", "id": f"toolu_{request.index}_{i}",
                            "name": name, "input": arguments})
        stop = "tool_use" if reply.tool_calls else {"stop": "end_turn", "length": "max_tokens"}.get(
            reply.finish_reason, reply.finish_reason
        )
        body: dict[str, Any] = {
            "id": f"msg_fake_{request.index}",
            "type": "message",
            "role": "assistant",
            "model": request.model or self.model_ids[0],
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
        }
        if usage:
            body["usage"] = self._usage(request, reply)
        return body

    def _usage(self, request: FakeRequest, reply: FakeReply) -> dict[str, Any]:
        prompt, completion = self._tokens(request, reply)
        read, written = reply.cached_tokens, reply.cache_write_tokens
        with self._lock:
            billed = self._billed.get(request.index)
        if billed is not None:
            read, written = billed[0], billed[1]
        return {
            "input_tokens": max(prompt - read - written, 0),
            "output_tokens": completion,
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": written,
        }

    def _error_body(self, status: int, message: str) -> dict[str, Any]:
        kind = _ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def _stream_events(self, request: FakeRequest, reply: FakeReply) -> list[tuple[str, Any]]:
        body = self._completion_body(request, reply, usage=True)
        usage = body.pop("usage")
        content = body.pop("content")
        start = {**body, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
        events: list[tuple[str, Any]] = [
            ("message_start", {"type": "message_start", "message": start})
        ]
        for index, block in enumerate(content):
            kind = block["type"]
            empty = (
                {"type": kind, kind: ""}
                if kind != "thinking"
                else {"type": "thinking", "thinking": "", "signature": ""}
            )
            delta_type = "thinking_delta" if kind == "thinking" else "text_delta"
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": empty},
                )
            )
            events.append(
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": delta_type, kind: block[kind]},
                    },
                )
            )
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": body["stop_reason"], "stop_sequence": None},
                    "usage": {"output_tokens": usage["output_tokens"]},
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return events


def _cache_entries(body: dict[str, Any]) -> list[tuple[str, str]]:
    """The text up to each ``cache_control`` block of a Messages API request (system blocks,
    then each message's blocks), with its digest, in order."""
    blocks: list[object] = []
    for part in [body.get("system"), *(
            m.get("content") for m in body.get("messages") or () if isinstance(m, dict))]:
        if isinstance(part, str):
            blocks.append({"type": "text", "text": part})
        elif isinstance(part, list):
            blocks.extend(part)
    entries: list[tuple[str, str]] = []
    text = ""
    for block in blocks:
        if not isinstance(block, dict):
            continue
        text += str(block.get("text", block.get("content", "")))
        if block.get("cache_control"):
            entries.append((text, hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()))
    return entries
