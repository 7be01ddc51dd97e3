"""The OpenAI Chat Completions shape, mapped onto an RLM run. Pure functions, no I/O.

Request -> run (:func:`parse_chat_request`):

- the *question* is the text of the last ``user`` message (one too long to show the root, such
  as a document piped into it, is read in the REPL: ``fastrlm._core.prompts.question_home``);
- the *context* is the body's ``context`` field when present (a str, a list of str or any
  JSON value; the openai SDK sends it with ``extra_body={"context": ...}``), otherwise the whole
  conversation, every message as ``"<role>: <content>"`` separated by blank lines (drop-in mode);
- ``fastrlm`` (``extra_body={"fastrlm": {...}}``) may carry ``max_usd``, ``max_subcalls``,
  ``max_requests``, ``max_seconds``, ``max_iterations`` and ``max_depth``: they can only
  *lower* the server's limits (:func:`effective_budget`), and ``progress`` (bool, default
  true) turns the streamed progress chunks on or off, ``reasoning`` (bool, default: the
  server's ``reasoning`` setting, off unless ``fastrlm serve --reasoning``) sends the run's
  progress as ``reasoning_content`` deltas that standard clients show (vLLM's, DeepSeek's and
  litellm's field; the answer's ``content`` stays the answer alone), and ``session`` (an id)
  keeps one REPL and conversation across requests of the same API key
  (``server/_sessions.py``).

- ``response_format``: ``json_schema`` asks for a typed answer (``completion(output=schema)``:
  the model is told the schema, a mismatch goes back to it, the reply's content is the JSON),
  ``json_object`` for any JSON object, ``text`` (the default) for plain text.

Other Chat Completions fields (``temperature``, ``max_tokens``, ``tools`` ...) are accepted and
ignored: the server's configuration decides how the models are called, and its tools are the
ones it was started with.

Run -> response: :func:`completion_body`, :func:`chunk`, :func:`result_status`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from .._foundation.budget import BUDGET_KEYS, Budget
from .._foundation.errors import ConfigurationError, InvalidSettingError
from .._foundation.result import RLMResult
from .._foundation.stop import StopReason
from .._foundation.validate import BUDGET_RULES
from ..context import context_problem
from ._http import HTTPError

#: error_kind -> (HTTP status, error type, error code)
_ERROR_STATUS = {
    "provider": (502, "api_error", "provider_error"),
    "sandbox": (503, "api_error", "sandbox_unavailable"),
    "context": (400, "invalid_request_error", "invalid_context"),
}

_SESSION_ID = re.compile(r"[A-Za-z0-9._-]{1,128}\Z")

#: The budget fields a request may lower (the CLI's flags), checked by the rules Budget uses.
_OVERRIDES = BUDGET_KEYS
#: The other ``fastrlm`` fields of a request.
_OPTIONS = ("progress", "reasoning", "session")


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What one ``POST /v1/chat/completions`` asks for."""

    model: str
    question: str
    context: object
    drop_in: bool
    stream: bool = False
    include_usage: bool = False
    progress: bool = True
    overrides: dict[str, float | int] = field(default_factory=dict)
    output: dict[str, Any] | None = None  # response_format: the JSON schema the answer must match
    session: str | None = None  # fastrlm.session: keep the REPL and conversation across requests
    reasoning: bool | None = None  # fastrlm.reasoning: progress as reasoning_content (None: server)


def bad_request(message: str, code: str | None = None) -> HTTPError:
    return HTTPError(400, message, code=code)


def parse_chat_request(body: bytes, models: frozenset[str]) -> ChatRequest:
    """Validate a request body. Raises :class:`HTTPError` (400, or 404 for an unknown model)."""
    data = json_object(body)
    model = model_of(data, models)
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' is required: a non-empty list of messages",
                          "missing_messages")
    turns = [_turn(i, m) for i, m in enumerate(messages)]
    stream = _flag(data, "stream")
    options = data.get("stream_options") or {}
    if not isinstance(options, dict):
        raise bad_request("'stream_options' must be an object", "invalid_stream_options")
    return request_from(data, model, turns, output=_response_format(data.get("response_format")),
                        stream=stream, include_usage=stream and _flag(options, "include_usage"))


def json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object. Raises :class:`HTTPError` 400."""
    try:
        data = json.loads(body)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, a number past int's limit
        raise bad_request(f"the body is not valid JSON: {exc}", "invalid_json") from exc
    except RecursionError as exc:  # the C decoder's own depth guard: a clean, catchable stop
        raise bad_request("the body's JSON nests too deep to parse; nest less (a response_format "
                          "schema can name repeated parts in $defs and use $ref)",
                          "invalid_json") from exc
    if not isinstance(data, dict):
        raise bad_request("the body must be a JSON object", "invalid_json")
    return data


def model_of(data: dict[str, Any], models: frozenset[str]) -> str:
    """The body's ``model``, one this server serves. Raises :class:`HTTPError` 400 or 404."""
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("'model' is required (a string)", "missing_model")
    if model not in models:
        raise HTTPError(404, f"the model {model!r} does not exist here; this server serves "
                        f"{', '.join(sorted(models))}", code="model_not_found")
    return model


def request_from(
    data: dict[str, Any], model: str, turns: list[tuple[str, str]], *,
    output: dict[str, Any] | None, stream: bool, include_usage: bool = False,
) -> ChatRequest:
    """The run a conversation of ``(role, text)`` turns asks for, with the body's ``context``
    and ``fastrlm`` fields (the same for every door). Raises :class:`HTTPError` 400."""
    questions = [text for role, text in turns if role == "user"]
    if not questions or not questions[-1].strip():
        raise bad_request("the last user message is the question: it is missing or empty",
                          "missing_question")
    drop_in = "context" not in data
    if drop_in:
        context: object = "\n\n".join(f"{role}: {text}" for role, text in turns)
    else:
        context = data["context"]
        _check_context(context)
    extra = data.get("fastrlm") or {}
    if not isinstance(extra, dict):
        raise bad_request("'fastrlm' must be an object", "invalid_fastrlm")
    progress = extra.get("progress", True)
    if not isinstance(progress, bool):
        raise bad_request("'fastrlm.progress' must be a boolean", "invalid_fastrlm")
    reasoning = extra.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, bool):
        raise bad_request("'fastrlm.reasoning' must be a boolean (or null: the server's "
                          "--reasoning setting)", "invalid_fastrlm")
    session = extra.get("session")
    if session is not None and not (isinstance(session, str) and _SESSION_ID.match(session)):
        raise bad_request("'fastrlm.session' must be an id of 1 to 128 letters, digits, '.', "
                          "'_' or '-'", "invalid_fastrlm")
    return ChatRequest(
        output=output,
        model=model,
        question=questions[-1],
        context=context,
        drop_in=drop_in,
        stream=stream,
        include_usage=include_usage,
        progress=progress,
        reasoning=reasoning,
        overrides=_overrides({k: v for k, v in extra.items() if k not in _OPTIONS}),
        session=session,
    )


def _response_format(value: object) -> dict[str, Any] | None:
    """The schema a ``response_format`` asks for: ``json_schema`` gives its schema,
    ``json_object`` any JSON object, ``text`` (or none) plain text. Raises HTTPError 400."""
    if isinstance(value, dict) and value.get("type") == "json_schema":
        spec = value.get("json_schema")
        return output_schema(value, spec if isinstance(spec, dict) else None, "response_format",
                             "response_format.json_schema.schema")
    return output_schema(value, None, "response_format", "")


def output_schema(value: object, spec: dict[str, Any] | None, field_name: str,
                  schema_name: str) -> dict[str, Any] | None:
    """The schema an answer format asks for (``field_name``: where it came from, for errors):
    ``json_schema`` gives ``spec``'s ``schema`` (named by its ``name``), ``json_object`` any
    JSON object, ``text`` (or none) plain text. Raises HTTPError 400."""
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise bad_request(f"'{field_name}' must be an object with a 'type'",
                          "invalid_response_format")
    kind = value["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict) or not schema:
            raise bad_request(f"'{schema_name}' must be a JSON schema object",
                              "invalid_response_format")
        name = spec.get("name") if isinstance(spec, dict) else None
        if isinstance(name, str) and name and "title" not in schema:
            schema = {**schema, "title": name}
        try:
            from .._core.output import output_spec

            output_spec(schema)
        except ConfigurationError as exc:
            raise bad_request(f"{field_name}: {exc}", "invalid_response_format") from exc
        return schema
    raise bad_request(f"{field_name} type {kind!r} is not supported (text, json_object, "
                      "json_schema)", "invalid_response_format")


def _turn(index: int, message: object) -> tuple[str, str]:
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise bad_request(f"messages[{index}] must be an object with a 'role'", "invalid_message")
    content = message.get("content")
    if content is None:
        return message["role"], ""
    if isinstance(content, str):
        return message["role"], content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(
                part.get("text"), str
            ):
                raise bad_request(f"messages[{index}]: only text content parts are supported",
                                  "unsupported_content")
            texts.append(part["text"])
        return message["role"], "\n".join(texts)
    raise bad_request(f"messages[{index}].content must be a string or a list of text parts",
                      "invalid_message")


def _check_context(context: object) -> None:
    problem = context_problem(context)
    if problem is None:
        return
    if problem[0] == "missing":
        raise bad_request("'context' is null: give a string, a list of strings or a JSON value, "
                          "or leave it out to use the conversation", "invalid_context")
    raise bad_request(f"'context' {problem[1]}", "empty_context")


def _flag(data: dict[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"'{name}' must be a boolean", f"invalid_{name}")
    return value


def _overrides(extra: dict[str, Any]) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for key, value in extra.items():
        if key not in _OVERRIDES:
            known = ", ".join(sorted([*_OVERRIDES, *_OPTIONS]))
            raise bad_request(f"unknown field fastrlm.{key} (known: {known})", "invalid_fastrlm")
        rule = BUDGET_RULES[key]
        try:
            checked = rule.check(f"fastrlm.{key}", value)
        except InvalidSettingError as exc:
            raise bad_request(str(exc), "invalid_fastrlm") from exc
        if checked is not None:  # null: keep the server's limit
            out[key] = checked
    return out


def effective_budget(server: Budget, overrides: dict[str, float | int]) -> Budget:
    """The server's budget, lowered by a request's overrides: each limit is the smaller of the
    two (a limit the server leaves unset takes the request's value). Never raises a limit."""
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        # An unset max_requests still has a cap derived from max_subcalls: never exceed it.
        current = server.request_cap if key == "max_requests" else getattr(server, key)
        changes[key] = value if current is None else min(current, value)
    return replace(server, **changes)


def budget_limits(budget: Budget) -> dict[str, object]:
    return {k: getattr(budget, k) for k in _OVERRIDES}


def finish_reason(result: RLMResult) -> str:
    """``stop`` for a clean ``FINAL``; ``length`` when a limit stopped the run or a budget
    refused some of its calls (the answer is partial either way)."""
    limited = result.stop_reason.is_limit or result.limited_by is not None
    return "length" if limited else "stop"


def result_status(result: RLMResult) -> HTTPError | None:
    """``None`` when the run answered (FINAL, or a limit with the best partial answer), else the
    error to send: 502 provider, 503 sandbox, 400 context, 500 anything else."""
    if result.stop_reason is StopReason.FINAL or result.stop_reason.is_limit:
        return None
    if result.stop_reason is StopReason.CANCELLED:
        return HTTPError(503, "the run was cancelled (the server is shutting down)",
                         type="api_error", code="cancelled", extra=extension(result))
    status, kind, code = _ERROR_STATUS.get(result.error_kind or "",
                                           (500, "api_error", "run_failed"))
    return HTTPError(status, result.error or "the run failed", type=kind, code=code,
                     extra=extension(result))


def usage_body(result: RLMResult) -> dict[str, int]:
    prompt, completion = result.usage.input_tokens, result.usage.output_tokens
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def extension(result: RLMResult, budget: Budget | None = None) -> dict[str, object]:
    """The non-standard top-level ``fastrlm`` object of a response."""
    info: dict[str, object] = {
        "stop_reason": result.stop_reason.value,
        "partial": result.partial,
        "cost_usd": round(result.cost_usd, 8),
        "subcalls": result.subcalls,
        "subcalls_refused": result.subcalls_refused,
        "subcalls_failed": result.subcalls_failed,
        "requests": result.requests,
        "limited_by": result.limited_by.value if result.limited_by else None,
        "iterations": result.iterations,
        "sandbox": result.sandbox,
        "trace_id": result.trace_id,
        "duration_s": round(result.duration_s, 4),
        "error": result.error,
    }
    if budget is not None:
        info["budget"] = budget_limits(budget)
    return {"fastrlm": info}


def completion_body(
    result: RLMResult, *, completion_id: str, created: int, model: str, budget: Budget,
    reasoning: str | None = None,
) -> dict[str, object]:
    """A ``chat.completion``; ``reasoning`` (the run's progress lines, when asked for) is the
    message's ``reasoning_content``, beside a ``content`` that holds only the answer."""
    message: dict[str, object] = {"role": "assistant", "content": result.answer, "refusal": None}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": finish_reason(result),
        }],
        "usage": usage_body(result),
        **extension(result, budget),
    }


def chunk(
    *, completion_id: str, created: int, model: str, delta: dict[str, object] | None = None,
    finish: str | None = None, choices: bool = True, **extra: object,
) -> dict[str, object]:
    """One ``chat.completion.chunk``; ``choices=False`` gives the usage chunk's empty list."""
    body: dict[str, object] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta or {}, "logprobs": None,
                     "finish_reason": finish}] if choices else [],
    }
    body.update(extra)
    return body


#: One server-sent event: its ``event:`` name (None: none) and its data (a JSON object, or a
#: literal str such as ``[DONE]``).
Frame = tuple[str | None, object]


class StreamShape(Protocol):
    """The frames of one streamed run in a route's shape (:class:`ChatStream`, the Responses
    API's ``ResponsesStream``): the server sends :meth:`opening`, :meth:`progress` per engine
    event, then :meth:`closing` for an answered run or :meth:`failed`."""

    def opening(self) -> list[Frame]: ...

    def progress(self, event: dict[str, object] | None, line: str | None) -> list[Frame]: ...

    def closing(self, result: RLMResult, budget: Budget) -> list[Frame]: ...

    def failed(self, error: HTTPError) -> list[Frame]: ...


class ChatStream:
    """The ``chat.completion.chunk`` frames of one streamed run, in order: :meth:`opening`,
    :meth:`progress` per engine event, then :meth:`closing` (answered) or :meth:`failed`."""

    id_prefix = "chatcmpl-"

    def __init__(self, chat: ChatRequest, completion_id: str, created: int) -> None:
        self.chat = chat
        self.completion_id = completion_id
        self.created = created

    def _chunk(self, **kwargs: Any) -> Frame:
        return None, chunk(completion_id=self.completion_id, created=self.created,
                           model=self.chat.model, **kwargs)

    def opening(self) -> list[Frame]:
        return [self._chunk(delta={"role": "assistant", "content": ""})]

    def progress(self, event: dict[str, object] | None, line: str | None) -> list[Frame]:
        """A chunk for one engine event: ``line`` (a progress line, when reasoning deltas are
        on) as ``delta.reasoning_content``, ``event`` (when progress is on) as ``fastrlm``."""
        extra: dict[str, object] = {"fastrlm": {"event": event}} if event is not None else {}
        delta = {"reasoning_content": line + "\n"} if line is not None else None
        return [self._chunk(delta=delta, **extra)]

    def closing(self, result: RLMResult, budget: Budget) -> list[Frame]:
        frames = [self._chunk(delta={"content": result.answer})] if result.answer else []
        frames.append(self._chunk(finish=finish_reason(result), **extension(result, budget)))
        if self.chat.include_usage:
            frames.append(self._chunk(choices=False, usage=usage_body(result)))
        return [*frames, (None, "[DONE]")]

    def failed(self, error: HTTPError) -> list[Frame]:
        return [(None, error.body()), (None, "[DONE]")]
