"""The official package's ``metadata`` (``run_metadata`` and ``iterations``), made from fastrlm's
run events."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .._foundation.events import CodeExecuted, Event, ModelResponse

__all__ = ["record_iteration", "shown_kwargs"]


def shown_kwargs(kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Backend or environment kwargs for ``run_metadata``: secrets redacted, values that JSON
    cannot hold as their ``repr``."""
    shown: dict[str, Any] = {}
    for key, value in (kwargs or {}).items():
        if "key" in str(key).lower() or "token" in str(key).lower():
            shown[str(key)] = "<redacted>"
        elif value is None or isinstance(value, str | int | float | bool):
            shown[str(key)] = value
        else:
            shown[str(key)] = repr(value)
    return shown


def record_iteration(iterations: list[dict[str, Any]], event: Event) -> None:
    """The official ``metadata["iterations"]`` entries, from the root's events: one per model
    reply, its code blocks and what they printed (``prompt`` is None: the messages are in
    fastrlm's trace, not in its events)."""
    if isinstance(event, ModelResponse):
        iterations.append({
            "type": "iteration", "iteration": len(iterations) + 1,
            "timestamp": datetime.fromtimestamp(event.ts).isoformat(), "prompt": None,
            "response": event.text, "code_blocks": [], "final_answer": None,
            "iteration_time": float(event.latency_s),
        })
    elif isinstance(event, CodeExecuted) and iterations:
        entry = iterations[-1]
        entry["code_blocks"].append({"code": event.code, "result": {
            "stdout": event.output, "stderr": event.error or "", "locals": {},
            "execution_time": float(event.duration_s), "rlm_calls": []}})
        entry["iteration_time"] += float(event.duration_s)
