"""Typed answers: ``completion(..., output=T)``.

``T`` is a pydantic model, a dataclass, a ``TypedDict``, a builtin or generic type (``int``,
``list[str]``, ``dict[str, float]``, ``Literal[...]``, ``X | None``) or a JSON schema dict. The
model is told the schema; each answer it delivers (``FINAL``, ``FINAL_VAR``, ``answer``) is
validated; a failure goes back to it as feedback and the run goes on (at most
``Limits.max_output_retries`` times). ``result.value`` is the typed value, ``result.answer`` its
JSON.

Python types are validated by pydantic's ``TypeAdapter`` (pydantic is a core dependency);
schema dicts by :func:`schema_errors`, a small validator of the JSON Schema keywords
structured-output APIs use.
"""

from __future__ import annotations

import json
import math
import operator
import re
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import ConfigurationError

#: The longest schema text the model is shown; a longer one is cut with a note.
MAX_SCHEMA_CHARS = 20_000


class OutputInvalid(Exception):
    """An answer that does not match the output type: the message lists what is wrong."""


@dataclass(frozen=True)
class OutputSpec:
    """What an answer must be: ``schema`` (JSON schema, told to the model and to servers'
    clients), ``name`` (for messages) and the validator."""

    schema: Mapping[str, Any]
    name: str
    target: Any = field(repr=False, default=None)  # the Python type, or None for a schema dict

    def parse(self, text: str) -> tuple[object, str]:
        """The typed value of an answer ``text`` and its canonical JSON. Raises
        :class:`OutputInvalid` saying what does not match."""
        if self.target is None:
            data = _loads(text, self.schema)
            errors = schema_errors(data, self.schema)
            if errors:
                raise OutputInvalid("; ".join(errors[:20]))
            return data, _dumps(data)
        from pydantic import ValidationError

        adapter = _adapter(self.target)
        try:
            try:
                value = adapter.validate_json(text)
            except ValidationError as exc:
                if not any(e.get("type") == "json_invalid" for e in exc.errors()):
                    raise
                value = adapter.validate_python(text)  # a bare str / number as text
        except ValidationError as exc:
            raise OutputInvalid(_pydantic_errors(exc)) from None
        return value, adapter.dump_json(value).decode("utf-8")

    def schema_text(self) -> str:
        text = json.dumps(self.schema, ensure_ascii=False)
        if len(text) > MAX_SCHEMA_CHARS:
            text = text[:MAX_SCHEMA_CHARS] + " ... (cut)"
        return text


def output_spec(output: object) -> OutputSpec | None:
    """``output`` as an :class:`OutputSpec` (None for None or ``str``: any text is an answer).
    Raises :class:`~fastrlm.ConfigurationError` for something that is neither a type pydantic
    can validate nor a JSON schema dict."""
    if output is None or output is str:
        return None
    if isinstance(output, OutputSpec):
        return output
    if isinstance(output, Mapping):
        schema = dict(output)
        _check_schema(schema)
        return OutputSpec(schema, str(schema.get("title") or "the output schema"))
    try:
        adapter = _adapter(output)
        schema = adapter.json_schema()
    except Exception as exc:  # noqa: BLE001 - pydantic raises several types for a bad type
        raise ConfigurationError(
            f"output={output!r} is not a type fastrlm can validate ({type(exc).__name__}: "
            f"{exc}); pass a pydantic model, a dataclass, a TypedDict, a builtin type such as "
            "int or list[str], or a JSON schema dict"
        ) from exc
    return OutputSpec(schema, getattr(output, "__name__", None) or str(output), output)


def _adapter(target: Any) -> Any:
    from pydantic import TypeAdapter

    cache = _ADAPTERS
    key = id(target)
    hit = cache.get(key)
    if hit is None or hit[0] is not target:
        hit = (target, TypeAdapter(_pydantic_compatible(target)))
        cache[key] = hit
    return hit[1]


def _pydantic_compatible(target: Any) -> Any:
    """Before Python 3.12 pydantic refuses ``typing.TypedDict``: the same fields as a
    ``typing_extensions.TypedDict`` (nested ones should be written with typing_extensions)."""
    if sys.version_info >= (3, 12) or not typing.is_typeddict(target):
        return target
    import typing_extensions

    make: Any = typing_extensions.TypedDict
    if type(target) is type(make("_Probe", {})):
        return target
    hints = typing.get_type_hints(target)
    required = getattr(target, "__required_keys__", frozenset(hints))
    fields = {name: hint if name in required else typing_extensions.NotRequired[hint]
              for name, hint in hints.items()}
    return make(target.__name__, fields)


_ADAPTERS: dict[int, tuple[Any, Any]] = {}


def _pydantic_errors(exc: Any) -> str:
    parts = []
    for error in exc.errors()[:20]:
        where = ".".join(str(p) for p in error.get("loc", ())) or "the answer"
        parts.append(f"{where}: {error.get('msg')}")
    return "; ".join(parts)


def _loads(text: str, schema: Mapping[str, Any]) -> object:
    try:
        return json.loads(text)
    except ValueError:
        if schema.get("type") == "string" or "string" in (schema.get("type") or []):
            return text
        raise OutputInvalid("the answer is not JSON; call FINAL with a dict, list or number "
                            "(it is sent as JSON), or FINAL_VAR with a variable holding one"
                            ) from None


def _dumps(value: object) -> str:
    """Compact JSON, as pydantic writes it, so every output kind reads the same."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _check_schema(schema: Mapping[str, Any]) -> None:
    try:
        json.dumps(schema)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"the output schema is not JSON: {exc}") from exc
    kind = schema.get("type")
    known = {"object", "array", "string", "number", "integer", "boolean", "null"}
    kinds = kind if isinstance(kind, list) else [kind]
    if kind is not None and not all(k in known for k in kinds):
        raise ConfigurationError(f"the output schema's type {kind!r} is not a JSON Schema type")
    if kind is None and not any(k in schema for k in ("anyOf", "oneOf", "enum", "const",
                                                         "properties", "$ref", "allOf")):
        raise ConfigurationError(
            "the output schema says nothing about the answer (no type, properties, enum, "
            'anyOf ...); e.g. {"type": "object", "properties": {"name": {"type": "string"}}}'
        )


_TYPES: dict[str, Any] = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
}


def _is_type(value: object, kind: str) -> bool:
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(
            value)
    return isinstance(value, _TYPES[kind])


def schema_errors(value: object, schema: Mapping[str, Any], where: str = "the answer",
                  root: Mapping[str, Any] | None = None) -> list[str]:
    """What ``value`` breaks of ``schema`` (empty: it matches). The keywords of structured
    output: type, enum, const, properties, required, additionalProperties, items, prefixItems,
    minItems/maxItems, minLength/maxLength, pattern, minimum/maximum (exclusive too), anyOf,
    oneOf, allOf, $ref to ``#/$defs/...`` or ``#/definitions/...``. Others are not checked."""
    root = root if root is not None else schema
    if "$ref" in schema:
        target = _resolve(root, str(schema["$ref"]))
        if target is None:
            return [f"{where}: the schema's $ref {schema['$ref']!r} cannot be resolved"]
        return schema_errors(value, target, where, root)
    errors: list[str] = []
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_is_type(value, k) for k in kinds if k in _TYPES or k in ("integer",
                                                                            "number")):
            return [f"{where}: expected {' or '.join(kinds)}, got {_json_kind(value)}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: must be one of {json.dumps(schema['enum'])[:300]}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where}: must be {json.dumps(schema['const'])[:300]}")
    if isinstance(value, dict):
        errors += _object_errors(value, schema, where, root)
    if isinstance(value, list):
        errors += _array_errors(value, schema, where, root)
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{where}: shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{where}: longer than {schema['maxLength']} characters")
        if "pattern" in schema and re.search(str(schema["pattern"]), value) is None:
            errors.append(f"{where}: does not match the pattern {schema['pattern']!r}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        for key, holds in (("minimum", operator.ge), ("maximum", operator.le),
                           ("exclusiveMinimum", operator.gt), ("exclusiveMaximum", operator.lt)):
            if key in schema and not holds(value, schema[key]):
                errors.append(f"{where}: {key} is {schema[key]}, got {value}")
    for key in ("anyOf", "oneOf"):
        if key in schema:
            matches = [not schema_errors(value, s, where, root) for s in schema[key]]
            if key == "anyOf" and not any(matches) or key == "oneOf" and sum(matches) != 1:
                errors.append(f"{where}: matches {sum(matches)} of the {key} alternatives")
    for sub in schema.get("allOf", ()):
        errors += schema_errors(value, sub, where, root)
    return errors


def _object_errors(value: dict[Any, Any], schema: Mapping[str, Any], where: str,
                   root: Mapping[str, Any]) -> list[str]:
    errors = [f"{where}: missing required field {name!r}" for name in schema.get("required", ())
              if name not in value]
    properties = schema.get("properties") or {}
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in properties:
            errors += schema_errors(item, properties[key], f"{where}.{key}", root)
        elif extra is False:
            errors.append(f"{where}: unexpected field {key!r}")
        elif isinstance(extra, Mapping):
            errors += schema_errors(item, extra, f"{where}.{key}", root)
    return errors


def _array_errors(value: list[Any], schema: Mapping[str, Any], where: str,
                  root: Mapping[str, Any]) -> list[str]:
    errors = []
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(f"{where}: fewer than {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{where}: more than {schema['maxItems']} items")
    prefix = schema.get("prefixItems") or []
    for index, item in enumerate(value):
        sub = prefix[index] if index < len(prefix) else schema.get("items")
        if isinstance(sub, Mapping):
            errors += schema_errors(item, sub, f"{where}[{index}]", root)
        if len(errors) > 20:
            break
    return errors


def _resolve(root: Mapping[str, Any], ref: str) -> Mapping[str, Any] | None:
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for part in ref[2:].split("/"):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, Mapping) else None


def _json_kind(value: object) -> str:
    for name, kind in (("null", type(None)), ("boolean", bool), ("integer", int),
                       ("number", float), ("string", str), ("array", list), ("object", dict)):
        if isinstance(value, kind):
            return name
    return type(value).__name__
