"""A job's output schema: the instruction the root model gets, and the check of its answer.

The schema is a JSON Schema object; the check covers the part of it that describes a value's
shape: ``type`` (one name or a list), ``properties``, ``required``, ``items``, ``enum``. Other
keywords are passed to the model in the instruction but not checked here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def instruction(question: str, schema: Mapping[str, Any]) -> str:
    """``question`` with the request for a JSON answer of ``schema``'s shape."""
    return (
        f"{question}\n\nGive the final answer as JSON (no prose around it) matching this JSON "
        f"schema:\n{json.dumps(schema, ensure_ascii=False)}"
    )


def parse_answer(answer: str, schema: Mapping[str, Any]) -> tuple[Any, str | None]:
    """``(value, None)`` when ``answer`` is JSON of the schema's shape, else ``(None, why)``.
    A Markdown code fence around the JSON is accepted."""
    text = answer.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0].strip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"the answer is not JSON ({exc.msg})"
    problem = mismatch(value, schema, "$")
    return (value, None) if problem is None else (None, problem)


def mismatch(value: Any, schema: Mapping[str, Any], where: str) -> str | None:
    """Where ``value`` first departs from ``schema`` (a JSONPath-like ``where``), or None."""
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_is(value, name) for name in names):
            return f"{where} should be {' or '.join(map(str, names))}, not {_kind(value)}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} should be one of {json.dumps(schema['enum'])}"
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            if name not in value:
                return f"{where} lacks the required key {name!r}"
        for name, sub in (schema.get("properties") or {}).items():
            if name in value and isinstance(sub, Mapping):
                found = mismatch(value[name], sub, f"{where}.{name}")
                if found:
                    return found
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            found = mismatch(item, schema["items"], f"{where}[{i}]")
            if found:
                return found
    return None


def _is(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    return isinstance(value, _TYPES.get(name, (object,)))


def _kind(value: Any) -> str:
    for name in _TYPES:
        if _is(value, name):
            return name
    return type(value).__name__
