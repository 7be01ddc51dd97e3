"""What a user implements to plug into fastrlm, behind one public door.

- :class:`LM`: a model (``complete(messages, max_tokens=...) -> LMResponse``, ``aclose()``,
  ``model``, ``temperature``, ``cache_key()``), with the message and reply values it speaks:
  :class:`ChatMessage`, :class:`LMResponse` (with the call's :class:`TokenUsage`),
  :class:`ToolCall`.
- :class:`Sandbox`: where model-written code runs (``start(context, bridge)``,
  ``execute(code) -> ExecResult``, ``define``, ``show_vars``, ``close``), and the
  :class:`HostBridge` it calls back through (``call(op, request)``, the request a
  :class:`HostRequest` or a :class:`ToolRequest`); :class:`ExecResult`, :class:`FinalValue` and
  :class:`SandboxLimits` are the values they exchange.
- :class:`ResponseCache`: a sub-call cache (``key_for``, ``get``, ``put``);
  :class:`fastrlm.lm.SubcallCache` is the SQLite one.
- :data:`EventCallback`: what ``RLM(on_event=...)`` takes (``fastrlm.events`` has the events).

Each name here is the very object the engine uses (tests/test_abc.py checks it), so a class
written against this module is what the engine calls. docs/architecture.md states each contract.
"""

from __future__ import annotations

from ._core.call_tree import ResponseCache
from ._foundation.events import EventCallback
from ._foundation.usage import TokenUsage
from .lm import LM, ChatMessage, LMResponse, ToolCall
from .sandbox import (
    ExecResult,
    FinalValue,
    HostBridge,
    HostRequest,
    Sandbox,
    SandboxLimits,
    ToolRequest,
)

__all__ = [
    "LM",
    "ChatMessage",
    "EventCallback",
    "ExecResult",
    "FinalValue",
    "HostBridge",
    "HostRequest",
    "LMResponse",
    "ResponseCache",
    "Sandbox",
    "SandboxLimits",
    "TokenUsage",
    "ToolCall",
    "ToolRequest",
]
