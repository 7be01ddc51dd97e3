"""The host operations: the table of what a REPL may ask of the host, and the one way the host
answers.

A host operation is one entry of :data:`HOST_OPS` (a :class:`HostOp`): its wire name, how the
host checks a request that came from the sandbox (``parse``: the frame's shape; ``admit``: limits
that refuse a request with a reply of its own, without asking the bridge), how whatever the
bridge returned is held to the operation's reply contract (``shape``) and what a raising bridge
answers (``failed``). :func:`dispatch` is the one path, for the worker and the in-process sandbox
alike: look the op up, check, ask ``bridge.call(op, request)``, shape.

The engine answers through a :class:`HostBridge`: one method, ``call(op, request)``. A bridge
written for the earlier protocol (``llm_query_batched``, ``rlm_query_batched``, ``call_tool``) is
still answered, through :func:`as_host_bridge`, and the engine's bridges keep those methods
(:class:`ThreeMethodFace`, warning) for a sandbox that calls them: both for one release.

A new capability is one entry here (and its REPL function in :mod:`._runtime`, its handler in the
engine's bridge); the sandboxes, the worker's frame check and every bridge that forwards calls
take it unchanged. Host side only (the worker's frame check reads :data:`HOST_OPS` through
:func:`parse_host_request`); standard library only, like the rest of the sandbox's wire code.
"""

from __future__ import annotations

import abc
import logging
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol, TypeAlias

from .._foundation.error_text import error_text
from .._foundation.images import ImagePart
from ._budgetcalls import (
    BUDGET_OP,
    COMBINE_OP,
    BudgetRequest,
    CombineRequest,
    budget_reply,
    combine_refusal,
    combine_reply,
    wire_budget_request,
    wire_combine_request,
)
from ._hostcalls import (
    TOOL_OP,
    HostRequest,
    one_answer_per_prompt,
    tool_arguments,
    tool_error_reply,
    tool_reply,
    wire_request,
    wire_tool_request,
)

logger = logging.getLogger("fastrlm.sandbox")


@dataclass(frozen=True, slots=True)
class ToolRequest:
    """A checked ``tool`` request: the host tool's ``name`` and its JSON ``arguments``
    (parameter name -> value, a fresh copy within the size and depth limits)."""

    name: str
    arguments: dict[str, object]


#: What a bridge is asked: a prompt batch (``llm_query``, ``rlm_query``), a tool call, a
#: ``budget()`` read or a combinator call.
HostOpRequest: TypeAlias = HostRequest | ToolRequest | BudgetRequest | CombineRequest


@dataclass(frozen=True, slots=True)
class Answered:
    """The reply to a request that never reaches the bridge (no prompts, arguments past a
    limit)."""

    reply: object


@dataclass(frozen=True, slots=True)
class HostOp:
    """One operation the REPL may ask of the host.

    - ``parse(payload)``: the checked request from an untrusted payload (a worker frame can be
      forged, an in-process call made by hand); raises ``TypeError``/``ValueError`` for one the
      contract does not allow (from the worker: a protocol violation).
    - ``admit(request)``: the request, or :class:`Answered` with the reply that refuses it (the
      bridge never sees it).
    - ``shape(request, returned)``: exactly the reply the contract promises, whatever the bridge
      returned (each repair logged: it is the bridge's bug).
    - ``failed(request, detail)``: the reply when the bridge raised (``detail``:
      ``"<ErrorType>: <message>"``).
    """

    name: str
    parse: Callable[[Mapping[str, object]], Any]
    admit: Callable[[Any], Any]
    shape: Callable[[Any, object], object]
    failed: Callable[[Any, str], object]


def _query_op(name: str) -> HostOp:
    def admit(request: HostRequest) -> HostRequest | Answered:
        return Answered([]) if not request.prompts else request

    def shape(request: HostRequest, answers: object) -> list[str]:
        return one_answer_per_prompt(answers, len(request.prompts))

    def failed(request: HostRequest, detail: str) -> list[str]:
        return [error_text("host_error", detail)] * len(request.prompts)

    return HostOp(name, lambda payload: wire_request(name, payload), admit, shape, failed)


def _parse_tool(payload: Mapping[str, object]) -> ToolRequest:
    return ToolRequest(*wire_tool_request(payload))


def _admit_tool(call: ToolRequest) -> ToolRequest | Answered:
    try:  # the sandbox side checked them too, but the host trusts no sender
        return ToolRequest(call.name, tool_arguments(call.name, call.arguments))
    except (TypeError, ValueError) as exc:
        return Answered(tool_error_reply("bad_arguments", str(exc)))


def _admit_combine(request: CombineRequest) -> CombineRequest | Answered:
    if request.items:
        return request
    return Answered({"ok": True, "json": '""' if request.kind == "reduce" else "[]"})


#: Every operation the REPL may ask of the host, by wire op.
HOST_OPS: Mapping[str, HostOp] = MappingProxyType({
    op.name: op for op in (
        _query_op("llm_query"),
        _query_op("rlm_query"),
        HostOp(TOOL_OP, _parse_tool, _admit_tool, lambda _call, reply: tool_reply(reply),
               lambda _call, detail: tool_error_reply("host_error", detail)),
        HostOp(BUDGET_OP, wire_budget_request, lambda request: request,
               lambda _request, reply: budget_reply(reply),
               lambda _request, detail: {**budget_reply({}), "error": detail}),
        HostOp(COMBINE_OP, wire_combine_request, _admit_combine,
               lambda _request, reply: combine_reply(reply),
               lambda _request, detail: combine_refusal("host_error", detail)),
    )
})
#: The wire ops of host calls (frames the worker may send while a request is in flight).
HOST_CALL_OPS: frozenset[str] = frozenset(HOST_OPS)


def host_op(op: object) -> HostOp:
    """The entry of ``op``. Raises ``ValueError`` for an op the table does not hold."""
    entry = HOST_OPS.get(op) if isinstance(op, str) else None
    if entry is None:
        shown = repr(op[:40]) if isinstance(op, str) else f"of type {type(op).__name__}"
        raise ValueError(f"unknown host call {shown}")
    return entry


def parse_host_request(op: str, payload: Mapping[str, object]) -> HostOpRequest:
    """``payload`` of host call ``op`` checked as the host will use it (the worker's frame check
    and :func:`dispatch` make the same one). Raises ``TypeError``/``ValueError``."""
    request: HostOpRequest = host_op(op).parse(payload)
    return request


class HostBridge(Protocol):
    """What sandboxed code may ask of the host: ``call(op, request)`` answers one checked
    request of a :data:`HOST_OPS` operation. ``llm_query`` / ``rlm_query`` get a
    :class:`~._hostcalls.HostRequest` and should return one ``str`` per prompt, in order (a
    failed or refused prompt an ``[error: ...]`` text); ``tool`` gets a :class:`ToolRequest` and
    should return ``{"ok": True, "json": text}`` or ``{"ok": False, "kind": ..., "message":
    ...}``. :func:`dispatch` holds the sandbox to those contracts even when a bridge raises or
    returns something else; an op a bridge does not answer may raise (the cell gets a
    ``host_error``). A bridge of the earlier three methods (``llm_query_batched``,
    ``rlm_query_batched``, ``call_tool``) is still answered for one release, through
    :func:`as_host_bridge` (deprecated, see ``docs/architecture.md``)."""

    async def call(self, op: str, request: HostOpRequest) -> object: ...


Handler: TypeAlias = Callable[[Any], Any]


class HandlerBridge:
    """A :class:`HostBridge` from a table of handlers: op -> ``async handler(request)``. The
    engine registers its operations this way; an op without a handler raises ``LookupError``
    (the cell gets a ``host_error``)."""

    def __init__(self, handlers: Mapping[str, Handler]) -> None:
        self.handlers = dict(handlers)

    async def call(self, op: str, request: HostOpRequest) -> object:
        handler = self.handlers.get(op)
        if handler is None:
            raise LookupError(f"this host does not answer {op!r} calls")
        return await handler(request)


class ThreeMethodFace(abc.ABC):
    """The earlier bridge methods (``llm_query_batched``, ``rlm_query_batched``, ``call_tool``)
    on a bridge that answers :meth:`HostBridge.call`, for a ``Sandbox`` written against them.
    Deprecated (each call warns): answer a payload through :func:`dispatch` (what these do: the
    host's checks and reply shapes hold here too), or call ``bridge.call(op, request)``. Kept
    for one release."""

    @abc.abstractmethod
    async def call(self, op: str, request: HostOpRequest) -> object:
        """What the bridge answers; these methods route through it."""

    async def llm_query_batched(self, prompts: list[str], model: str | None,
                                images: list[list[ImagePart]] | None = None) -> object:
        _deprecated("llm_query_batched")
        request = HostRequest("llm_query", prompts, None, model, images)
        return await dispatch(self, "llm_query", request.payload())

    async def rlm_query_batched(self, prompts: list[str], contexts: list[object] | None,
                                model: str | None) -> object:
        _deprecated("rlm_query_batched")
        request = HostRequest("rlm_query", prompts, contexts, model)
        return await dispatch(self, "rlm_query", request.payload())

    async def call_tool(self, name: str, arguments: dict[str, object]) -> object:
        _deprecated("call_tool")
        return await dispatch(self, TOOL_OP, {"name": name, "arguments": arguments})


def _deprecated(method: str) -> None:
    warnings.warn(
        f"HostBridge.{method}() is deprecated: the bridge has one method, call(op, request) "
        "(see fastrlm.abc.HostBridge); it goes away in the next release",
        DeprecationWarning, stacklevel=3,
    )


class _ThreeMethodBridge:
    """A bridge of the earlier protocol (``llm_query_batched``, ``rlm_query_batched``,
    ``call_tool``) answering :meth:`HostBridge.call`. Kept for one release."""

    def __init__(self, bridge: Any) -> None:
        self._bridge = bridge

    async def call(self, op: str, request: HostOpRequest) -> object:
        bridge = self._bridge
        if isinstance(request, ToolRequest):
            return await bridge.call_tool(request.name, request.arguments)
        if not isinstance(request, HostRequest):
            raise LookupError(f"a bridge of the earlier protocol does not answer {op!r} calls")
        if op == "rlm_query":
            return await bridge.rlm_query_batched(request.prompts, request.contexts,
                                                  request.model)
        if request.images is not None:  # only then: a bridge without vision needs no parameter
            return await bridge.llm_query_batched(request.prompts, request.model,
                                                  images=request.images)
        return await bridge.llm_query_batched(request.prompts, request.model)


def as_host_bridge(bridge: object) -> HostBridge:
    """``bridge`` as a :class:`HostBridge`: itself when it has ``call``, else (a bridge of the
    earlier three-method protocol, deprecated) an adapter that calls its methods."""
    if callable(getattr(bridge, "call", None)):
        return bridge  # type: ignore[return-value]
    return _ThreeMethodBridge(bridge)


async def dispatch(bridge: object, op: str, payload: Mapping[str, object]) -> object:
    """Answer one host call from the sandbox: look ``op`` up in :data:`HOST_OPS`, check the
    payload (raises ``ValueError`` for an unknown op, ``TypeError``/``ValueError`` for a forged
    or garbage request), ask the bridge, and return the reply the op's contract promises
    (query ops: exactly one ``str`` per prompt; ``tool``: exactly one tool reply). A bridge that
    raises gives the op's ``host_error`` reply; cancellation propagates."""
    entry = host_op(op)
    request = entry.admit(entry.parse(payload))
    if isinstance(request, Answered):
        return request.reply
    try:
        returned = await as_host_bridge(bridge).call(entry.name, request)
    except Exception as exc:  # the bridge must not raise; if it does, the run goes on (a
        # CancelledError is no Exception: cancellation propagates)
        logger.exception("HostBridge raised on a %r call instead of returning a reply", op)
        return entry.failed(request, f"{type(exc).__name__}: {exc}")
    return entry.shape(request, returned)
