"""An Anthropic-shaped fake: the Messages API (``POST /v1/messages``) on 127.0.0.1.

Same script, faults, recording and concurrency measurement as :class:`FakeOpenAIServer`; only the
wire format differs. :attr:`FakeAnthropicServer.base_url` has no ``/v1`` (the ``anthropic`` SDK
adds it). A :class:`FakeReply` with ``thinking`` set returns a thinking block before the text;
``cached_tokens`` / ``cache_write_tokens`` come back as ``cache_read_input_tokens`` /
``cache_creation_input_tokens``, and ``input_tokens`` is the uncached rest, as Anthropic counts.
"""

from __future__ import annotations

from typing import Any

from ._fake_server import FakeOpenAIServer, FakeReply, FakeRequest

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class FakeAnthropicServer(FakeOpenAIServer):
    """A scripted server speaking Anthropic's Messages API (non-streaming and SSE)."""

    @property
    def base_url(self) -> str:
        """What ``anthropic.Anthropic(base_url=...)`` takes: ``http://127.0.0.1:PORT``."""
        return self.url

    def _is_completion_path(self, path: str) -> bool:
        return path.split("?", 1)[0].rstrip("/") == self.api_prefix + "/messages"

    def _completion_body(
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
        cached = reply.cached_tokens + reply.cache_write_tokens
        return {
            "input_tokens": max(prompt - cached, 0),
            "output_tokens": completion,
            "cache_read_input_tokens": reply.cached_tokens,
            "cache_creation_input_tokens": reply.cache_write_tokens,
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
