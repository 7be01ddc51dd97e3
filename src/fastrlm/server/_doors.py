"""The server's doors: what each route makes of its body for the one run path.

``POST /v1/chat/completions`` and ``POST /v1/responses`` parse their bodies into the same
:class:`~._protocol.ChatRequest`; a :class:`Door` carries it to ``RLMServer._respond`` with the
route's own shapes (its reply id prefix, its finished body, its stream's frames), so slots,
budget, sessions, cancellation and tracing are written once, in :mod:`._app`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .._foundation.budget import Budget
from .._foundation.result import RLMResult
from ._protocol import ChatRequest, ChatStream, StreamShape, completion_body, parse_chat_request
from ._responses import ResponsesStream, parse_responses_request, response_body


@dataclass(frozen=True, slots=True)
class Door:
    """What one route makes of the one run path: the request it parsed, the prefix of its
    reply ids, its finished body (``reasoning``: the progress lines, when asked for) and its
    stream's frames."""

    request: ChatRequest
    prefix: str
    body: Callable[[RLMResult, str, int, Budget, str | None], dict[str, object]]
    stream: Callable[[str, int], StreamShape]


def chat_door(body: bytes, models: frozenset[str]) -> Door:
    """``POST /v1/chat/completions``. Raises :class:`~._http.HTTPError` for a bad body."""
    chat = parse_chat_request(body, models)

    def finished(result: RLMResult, reply_id: str, created: int, budget: Budget,
                 reasoning: str | None) -> dict[str, object]:
        return completion_body(result, completion_id=reply_id, created=created,
                               model=chat.model, budget=budget, reasoning=reasoning)

    return Door(chat, ChatStream.id_prefix, finished,
                lambda reply_id, created: ChatStream(chat, reply_id, created))


def responses_door(body: bytes, models: frozenset[str]) -> Door:
    """``POST /v1/responses``. Raises :class:`~._http.HTTPError` for a bad body."""
    request, echo = parse_responses_request(body, models)

    def finished(result: RLMResult, reply_id: str, created: int, budget: Budget,
                 reasoning: str | None) -> dict[str, object]:
        return response_body(result, response_id=reply_id, created=created,
                             model=request.model, budget=budget, echo=echo, reasoning=reasoning)

    return Door(request, ResponsesStream.id_prefix, finished,
                lambda reply_id, created: ResponsesStream(request, reply_id, created, echo))
