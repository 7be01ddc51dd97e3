"""Caps on what a model or model-written code hands across into the host: one owner, read by
the sandbox's host-call checks and by the providers that decode a model's tool calls."""

from __future__ import annotations

#: The most characters a tool call's JSON arguments, or its JSON result, may hold.
MAX_TOOL_JSON_CHARS = 16 * 1024 * 1024
#: The deepest nesting of lists and dicts a tool call's arguments may have.
MAX_TOOL_JSON_DEPTH = 100
