"""The OpenAI Responses API shape (``POST /v1/responses``), mapped onto the same run as a chat
completion. Pure functions and frame builders, no I/O: :mod:`._app` runs the request on its one
request path (slots, budget, sessions, cancellation) and only the shapes differ.

Request -> run (:func:`parse_responses_request`): ``input`` is the conversation (a string is one
user message; a list holds message items whose ``content`` is a string or ``input_text`` /
``output_text`` parts), ``instructions`` a system message before it; the question, the
``context`` field and the ``fastrlm`` extensions are those of a chat completion
(:func:`._protocol.request_from`); ``reasoning`` items (an earlier response's output fed
back) are skipped. ``text.format`` asks for a typed answer like
``response_format``. ``previous_response_id`` and ``conversation`` are refused (this server
stores no responses: ``fastrlm.session`` keeps a conversation). Other fields (``tools``,
``temperature``, ``max_output_tokens``, ``store``, ``reasoning`` ...) are accepted and ignored.

Run -> response: a ``response`` object (:func:`response_body`) whose ``output`` is the answer as
one assistant message, after a ``reasoning`` item holding the run's progress lines when
``fastrlm.reasoning`` is on. A run stopped by a limit is ``status: incomplete`` (reason
``max_output_tokens``, the one a client knows for "ran out"; ``fastrlm.limited_by`` and
``stop_reason`` say which limit). Streamed (:class:`ResponsesStream`): ``response.created``,
``response.in_progress``, the reasoning item's events, the message's
``output_item.added`` / ``content_part.added`` / ``output_text.delta`` / ``output_text.done`` /
``content_part.done`` / ``output_item.done``, then ``response.completed`` (or
``response.incomplete``); a run that fails ends with ``response.failed``. Progress events
(``fastrlm.progress`` on) are ``fastrlm.event`` frames, an event type clients skip. Errors
before a stream starts are the usual ``{"error": ...}`` bodies with their HTTP status.
"""

from __future__ import annotations

import uuid
from typing import Any

from .._foundation.budget import Budget
from .._foundation.result import RLMResult
from ._http import HTTPError
from ._protocol import (
    ChatRequest,
    Frame,
    bad_request,
    extension,
    finish_reason,
    json_object,
    model_of,
    output_schema,
    request_from,
)

_INPUT_TEXT = frozenset({"input_text", "output_text", "text"})


def parse_responses_request(body: bytes, models: frozenset[str]) -> tuple[ChatRequest, Echo]:
    """Validate a ``/v1/responses`` body: the run it asks for and what its response echoes.
    Raises :class:`HTTPError` (400, or 404 for an unknown model)."""
    data = json_object(body)
    model = model_of(data, models)
    for field_name in ("previous_response_id", "conversation"):
        if data.get(field_name) is not None:
            raise bad_request(
                f"'{field_name}' is not supported: this server stores no responses. Send the "
                "whole conversation in 'input', or keep one across requests with "
                "extra_body={'fastrlm': {'session': ID}}", f"unsupported_{field_name}")
    instructions = data.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise bad_request("'instructions' must be a string", "invalid_instructions")
    turns = ([("system", instructions)] if instructions else []) + _turns(data.get("input"))
    text = data.get("text")
    if text is not None and not isinstance(text, dict):
        raise bad_request("'text' must be an object", "invalid_text")
    fmt = (text or {}).get("format")
    output = output_schema(fmt, fmt if isinstance(fmt, dict) else None, "text.format",
                           "text.format.schema")
    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise bad_request("'stream' must be a boolean", "invalid_stream")
    request = request_from(data, model, turns, output=output, stream=bool(stream))
    metadata = data.get("metadata")
    return request, Echo(instructions=instructions,
                         format=fmt if isinstance(fmt, dict) else {"type": "text"},
                         metadata=metadata if isinstance(metadata, dict) else {})


class Echo:
    """The request fields a response repeats back."""

    __slots__ = ("format", "instructions", "metadata")

    def __init__(self, *, instructions: str | None, format: dict[str, Any],
                 metadata: dict[str, Any]) -> None:
        self.instructions = instructions
        self.format = format
        self.metadata = metadata


def _turns(value: object) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [("user", value)]
    if not isinstance(value, list) or not value:
        raise bad_request("'input' is required: a string, or a non-empty list of messages",
                          "missing_input")
    return [_item(i, item) for i, item in enumerate(value) if not _is_reasoning(item)]


def _is_reasoning(item: object) -> bool:
    # a reasoning item of an earlier response (its progress lines), fed back by a client that
    # goes on with ``input += response.output``: not conversation, so not context
    return isinstance(item, dict) and item.get("type") == "reasoning"


def _item(index: int, item: object) -> tuple[str, str]:
    where = f"input[{index}]"
    if not isinstance(item, dict) or item.get("type", "message") != "message":
        kind = item.get("type") if isinstance(item, dict) else type(item).__name__
        raise bad_request(f"{where}: only message items are supported (got {kind!r}); tools "
                          "are the server's own", "unsupported_input")
    role = item.get("role")
    if not isinstance(role, str):
        raise bad_request(f"{where} must have a 'role'", "invalid_input")
    content = item.get("content")
    if isinstance(content, str):
        return role, content
    if not isinstance(content, list):
        raise bad_request(f"{where}.content must be a string or a list of input_text parts",
                          "invalid_input")
    texts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") not in _INPUT_TEXT or not isinstance(
            part.get("text"), str
        ):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise bad_request(f"{where}: only text parts are supported (got {kind!r})",
                              "unsupported_content")
        texts.append(part["text"])
    return role, "\n".join(texts)


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def usage_of(result: RLMResult) -> dict[str, object]:
    given, made = result.usage.input_tokens, result.usage.output_tokens
    return {"input_tokens": given, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": made, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": given + made}


def _status(result: RLMResult) -> tuple[str, dict[str, str] | None]:
    if finish_reason(result) == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    return "completed", None


def _message(message_id: str, text: str, status: str) -> dict[str, object]:
    return {"type": "message", "id": message_id, "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [],
                         "logprobs": []}] if status != "in_progress" else []}


def _reasoning(item_id: str, text: str | None, status: str) -> dict[str, object]:
    return {"type": "reasoning", "id": item_id, "status": status, "summary": [],
            "content": [{"type": "reasoning_text", "text": text}] if text is not None else []}


def _skeleton(response_id: str, created: int, model: str, echo: Echo) -> dict[str, object]:
    return {
        "id": response_id, "object": "response", "created_at": created, "model": model,
        "status": "in_progress", "output": [], "error": None, "incomplete_details": None,
        "instructions": echo.instructions, "metadata": echo.metadata,
        "parallel_tool_calls": False, "tool_choice": "auto", "tools": [], "temperature": None,
        "top_p": None, "max_output_tokens": None, "previous_response_id": None,
        "reasoning": None, "store": False, "text": {"format": echo.format},
        "truncation": "disabled", "usage": None,
    }


def response_body(
    result: RLMResult, *, response_id: str, created: int, model: str, budget: Budget, echo: Echo,
    reasoning: str | None = None,
) -> dict[str, object]:
    """The finished ``response`` object (``reasoning``: the progress lines, when asked for)."""
    status, incomplete = _status(result)
    output = [_reasoning(_new_id("rs"), reasoning, "completed")] if reasoning is not None else []
    output.append(_message(_new_id("msg"), result.answer, status))
    return {**_skeleton(response_id, created, model, echo), "status": status, "output": output,
            "incomplete_details": incomplete, "usage": usage_of(result),
            **extension(result, budget)}


_ERROR_CODE = {400: "invalid_prompt", 429: "rate_limit_exceeded"}


class ResponsesStream:
    """The Responses API's event frames of one streamed run, in order (see the module's
    docstring); each frame carries its ``event:`` name and a ``sequence_number``."""

    id_prefix = "resp_"

    def __init__(self, request: ChatRequest, response_id: str, created: int, echo: Echo) -> None:
        self.model = request.model
        self.response_id = response_id
        self.created = created
        self.echo = echo
        self._sequence = 0
        self._reasoning_id: str | None = None
        self._reasoning: list[str] = []

    def _frame(self, kind: str, **fields: object) -> Frame:
        data = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return kind, data

    def _response(self, **changes: object) -> dict[str, object]:
        return {**_skeleton(self.response_id, self.created, self.model, self.echo), **changes}

    def opening(self) -> list[Frame]:
        return [self._frame("response.created", response=self._response()),
                self._frame("response.in_progress", response=self._response())]

    def progress(self, event: dict[str, object] | None, line: str | None) -> list[Frame]:
        frames: list[Frame] = []
        if line is not None:
            if self._reasoning_id is None:
                self._reasoning_id = _new_id("rs")
                frames.append(self._frame(
                    "response.output_item.added", output_index=0,
                    item=_reasoning(self._reasoning_id, None, "in_progress")))
            self._reasoning.append(line + "\n")
            frames.append(self._frame("response.reasoning_text.delta",
                                      item_id=self._reasoning_id, output_index=0,
                                      content_index=0, delta=line + "\n"))
        if event is not None:
            frames.append(self._frame("fastrlm.event", event=event))
        return frames

    def _end_reasoning(self) -> tuple[list[Frame], list[dict[str, object]]]:
        if self._reasoning_id is None:
            return [], []
        text = "".join(self._reasoning)
        item = _reasoning(self._reasoning_id, text, "completed")
        return [self._frame("response.reasoning_text.done", item_id=self._reasoning_id,
                            output_index=0, content_index=0, text=text),
                self._frame("response.output_item.done", output_index=0, item=item)], [item]

    def closing(self, result: RLMResult, budget: Budget) -> list[Frame]:
        frames, output = self._end_reasoning()
        status, incomplete = _status(result)
        index, message_id, text = len(output), _new_id("msg"), result.answer
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        where = {"item_id": message_id, "output_index": index, "content_index": 0}
        message = _message(message_id, text, status)
        frames += [
            self._frame("response.output_item.added", output_index=index,
                        item=_message(message_id, "", "in_progress")),
            self._frame("response.content_part.added", **where, part=part),
        ]
        if text:
            frames.append(self._frame("response.output_text.delta", **where, delta=text,
                                      logprobs=[]))
        frames += [
            self._frame("response.output_text.done", **where, text=text, logprobs=[]),
            self._frame("response.content_part.done", **where, part={**part, "text": text}),
            self._frame("response.output_item.done", output_index=index, item=message),
            self._frame(f"response.{status}", response=self._response(
                status=status, output=[*output, message], incomplete_details=incomplete,
                usage=usage_of(result), **extension(result, budget))),
        ]
        return frames

    def failed(self, error: HTTPError) -> list[Frame]:
        frames, output = self._end_reasoning()
        code = _ERROR_CODE.get(error.status, "server_error")
        frames.append(self._frame("response.failed", response=self._response(
            status="failed", output=output, error={"code": code, "message": error.message},
            **error.extra)))
        return frames
