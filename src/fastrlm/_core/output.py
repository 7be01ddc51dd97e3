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

Why over 500 lines: the schema validator (``_check_schema`` and below) is half of it; it is the
part to move to a module of its own if it grows.
"""

from __future__ import annotations

import asyncio
import json
import math
import operator
import re
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._foundation.errors import ConfigurationError
from .parsing import MAX_VALUE_DEPTH, nests_deeper

#: The longest schema text the model is shown; a longer one is cut with a note.
MAX_SCHEMA_CHARS = 20_000
#: The deepest an output schema's own JSON may nest (objects and arrays).
MAX_SCHEMA_DEPTH = 128
#: How many schemas deep one check of an answer may go ($ref, anyOf, properties ... each one
#: level): the validator recurses, and this keeps it well inside Python's recursion limit.
MAX_CHECK_DEPTH = 200
#: How many (sub)schema checks one answer may take in all: anyOf/oneOf branches that share
#: subschemas multiply (20 levels of two-way anyOf over one $ref are a million checks), and this
#: keeps any schema's check of any answer short.
MAX_CHECK_STEPS = 200_000


class OutputInvalid(Exception):
    """An answer that does not match the output type: the message lists what is wrong."""


@dataclass(frozen=True)
class OutputSpec:
    """What an answer must be: ``schema`` (JSON schema, told to the model and to servers'
    clients), ``name`` (for messages) and the validator."""

    schema: Mapping[str, Any]
    name: str
    target: Any = field(repr=False, default=None)  # the Python type, or None for a schema dict

    def parse(self, text: str, max_chars: int | None = None) -> tuple[object, str]:
        """The typed value of an answer ``text`` and its canonical JSON. Raises
        :class:`OutputInvalid` saying what does not match, or that ``text`` is longer than
        ``max_chars`` or nests deeper than :data:`MAX_VALUE_DEPTH` (checked first, without
        recursion, so no parser or validator sees an answer it cannot handle)."""
        bound_answer(text, max_chars)
        if self.target is None:
            data = _loads(text, self.schema)
            try:
                canonical = _dumps(data)
            except ValueError:
                raise OutputInvalid(
                    "the answer holds NaN or Infinity (or a number too large for a float), "
                    "which JSON cannot carry; deliver finite numbers or null") from None
            errors = schema_errors(data, self.schema)
            if errors:
                raise OutputInvalid("; ".join(errors[:20]))
            return data, canonical
        from pydantic import ValidationError

        adapter = _adapter(self.target)
        try:
            try:
                value = adapter.validate_json(text)
            except ValidationError as exc:
                if not any(e.get("type") == "json_invalid" for e in exc.errors()):
                    raise
                value = adapter.validate_python(text)  # a bare str / number as text
            canonical = adapter.dump_json(value).decode("utf-8")
        except ValidationError as exc:
            raise OutputInvalid(_pydantic_errors(exc)) from None
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - the user's validator on a model's value
            # A validator or serializer that raises anything else (KeyboardInterrupt included)
            # failed on this answer: the model sees it, as it sees a tool's failure.
            raise OutputInvalid(
                f"checking the answer raised {type(exc).__name__}: {_message(exc)}") from None
        return value, canonical

    def schema_text(self) -> str:
        text = json.dumps(self.schema, ensure_ascii=False)
        if len(text) > MAX_SCHEMA_CHARS:
            text = text[:MAX_SCHEMA_CHARS] + " ... (cut)"
        return text


def _message(exc: BaseException) -> str:
    try:
        return str(exc)[:500]
    except BaseException:  # noqa: BLE001 - an exception whose own __str__ fails
        return "(its message could not be shown)"


def bound_answer(text: str, max_chars: int | None = None) -> None:
    """Refuse a model-made answer before it is parsed: raises :class:`OutputInvalid` for one
    longer than ``max_chars`` or nesting deeper than :data:`MAX_VALUE_DEPTH`."""
    if max_chars is not None and len(text) > max_chars:
        raise OutputInvalid(
            f"the answer has {len(text):,} characters, over the limit of {max_chars:,} "
            "(Limits.max_answer_chars); deliver a shorter value")
    if nests_deeper(text, MAX_VALUE_DEPTH):
        raise OutputInvalid(
            f"the answer nests more than {MAX_VALUE_DEPTH} levels deep, the limit for a typed "
            "answer (fixed: fastrlm._core.parsing.MAX_VALUE_DEPTH); deliver a flatter value")


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
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _check_schema(schema: Mapping[str, Any]) -> None:
    if _nests_deeper(schema, MAX_SCHEMA_DEPTH):
        raise ConfigurationError(
            f"the output schema nests more than {MAX_SCHEMA_DEPTH} levels deep (objects and "
            "arrays); name repeated parts in $defs and point at them with $ref")
    try:
        json.dumps(schema)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"the output schema is not JSON: {exc}") from exc
    if schema.get("type") is None and not any(
            k in schema for k in ("anyOf", "oneOf", "enum", "const", "properties", "$ref",
                                  "allOf")):
        raise ConfigurationError(
            "the output schema says nothing about the answer (no type, properties, enum, "
            'anyOf ...); e.g. {"type": "object", "properties": {"name": {"type": "string"}}}'
        )
    schemas = _all_schemas(schema)
    for node in schemas:
        problem = _keyword_problem(node)
        if problem is not None:
            raise ConfigurationError(f"the output schema's {problem}")
    _check_ref_cycles(schema, schemas)


_KNOWN_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
_COUNTS = ("minLength", "maxLength", "minItems", "maxItems")
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


def _keyword_problem(node: Mapping[str, Any]) -> str | None:
    """What is wrong with the keywords ``schema_errors`` reads in one (sub)schema, so that a
    bad schema is refused up front rather than crashing the check of an answer."""
    kind = node.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not all(isinstance(k, str) and k in _KNOWN_TYPES for k in kinds):
            return f"type {kind!r} is not a JSON Schema type"
    for key in _COUNTS:
        if key in node and not (isinstance(node[key], int) and not isinstance(node[key], bool)):
            return f"{key} {node[key]!r} is not an integer"
    for key in _BOUNDS:
        if key in node and not isinstance(node[key], int | float):
            return f"{key} {node[key]!r} is not a number"
    for key in ("enum", "required", *_SCHEMA_LISTS):
        if key in node and not isinstance(node[key], list):
            return f"{key} is not a list"
    if not all(isinstance(name, str) for name in node.get("required", ())):
        return "required holds a name that is not a string"
    for key in ("properties", "$defs", "definitions"):
        if key in node and not isinstance(node[key], Mapping):
            return f"{key} is not an object"
        if not all(isinstance(sub, Mapping | bool) for sub in (node.get(key) or {}).values()):
            return f"{key} holds a value that is not a schema"
    for key in _SCHEMA_LISTS:
        if not all(isinstance(sub, Mapping | bool) for sub in node.get(key, ())):
            return f"{key} holds an item that is not a schema"
    if "additionalProperties" in node and not isinstance(node["additionalProperties"],
                                                         Mapping | bool):
        return "additionalProperties is not a schema or a boolean"
    if "items" in node and not isinstance(node["items"], Mapping | bool | list):
        return "items is not a schema, a boolean or a list"  # a list (draft 4): not checked
    if "pattern" in node:
        try:
            re.compile(node["pattern"])
        except (re.error, TypeError) as exc:
            return f"pattern {node['pattern']!r} is not a regular expression ({exc})"
    return None


def _nests_deeper(value: object, limit: int) -> bool:
    """Whether the dicts and lists of ``value`` nest more than ``limit`` deep, found without
    recursion."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, Mapping):
            children: Any = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


_SAME_VALUE = ("anyOf", "oneOf", "allOf")


def _same_value_subschemas(node: Mapping[str, Any], root: Mapping[str, Any]
                           ) -> list[Mapping[str, Any]]:
    """The schemas that check the same value as ``node`` does (its $ref target, or its
    anyOf/oneOf/allOf branches): following them does not go one level into the answer."""
    if "$ref" in node:
        target = _resolve(root, str(node["$ref"]))
        return [target] if target is not None else []
    return [sub for key in _SAME_VALUE for sub in (node.get(key) or ())
            if isinstance(sub, Mapping)]


def _subschemas(node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every schema written inside ``node``."""
    found: list[Mapping[str, Any]] = []
    for key, value in node.items():
        if key in ("properties", "$defs", "definitions") and isinstance(value, Mapping):
            found += [v for v in value.values() if isinstance(v, Mapping)]
        elif key in (*_SAME_VALUE, "prefixItems") and isinstance(value, list):
            found += [v for v in value if isinstance(v, Mapping)]
        elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
            found.append(value)
    return found


def _all_schemas(root: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """``root`` and every schema written inside it, found without recursion."""
    schemas: list[Mapping[str, Any]] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen.add(id(node))
            schemas.append(node)
            stack.extend(_subschemas(node))
    return schemas


def _check_ref_cycles(root: Mapping[str, Any], schemas: list[Mapping[str, Any]]) -> None:
    """Refuse a schema whose $ref/anyOf/oneOf/allOf lead back to themselves without going into
    the value (``{"$ref": "#/$defs/a"}`` with ``a`` a ``$ref`` to itself): checking any answer
    against it would never end. A recursive schema that descends (a tree's ``children``) is
    fine. Iterative, so any schema is checked safely."""
    done: set[int] = set()
    for start in schemas:
        if id(start) in done:
            continue
        path: list[tuple[Mapping[str, Any], list[Mapping[str, Any]]]] = [
            (start, _same_value_subschemas(start, root))]
        on_path = {id(start)}
        while path:
            node, pending = path[-1]
            if not pending:
                path.pop()
                on_path.discard(id(node))
                done.add(id(node))
                continue
            child = pending.pop()
            if id(child) in on_path:
                refs = [str(n["$ref"]) for n, _ in path if "$ref" in n]
                raise ConfigurationError(
                    "the output schema refers back to itself without going into the value "
                    f"(through {' -> '.join(refs) or 'anyOf/oneOf/allOf'}), so no answer could "
                    "ever be checked against it; point the $ref at a schema that describes the "
                    "value, e.g. a property of an object")
            if id(child) not in done:
                path.append((child, _same_value_subschemas(child, root)))
                on_path.add(id(child))


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
    oneOf, allOf, $ref to ``#/$defs/...`` or ``#/definitions/...``. Others are not checked.
    A check that would go more than :data:`MAX_CHECK_DEPTH` schemas deep stops there with an
    error saying so."""
    try:
        return _errors(value, schema, where, _Walk(root if root is not None else schema))
    except _TooDeep as exc:
        return [f"{exc}: too deeply nested to check against the schema (over "
                f"{MAX_CHECK_DEPTH} schema levels); deliver a flatter value"]
    except _TooLong as exc:
        return [f"{exc}: checking the answer against the schema took over {MAX_CHECK_STEPS:,} "
                "steps (its anyOf/oneOf alternatives multiply); deliver a simpler value"]


class _TooDeep(Exception):
    """A check past :data:`MAX_CHECK_DEPTH`; ends the whole check (an anyOf must not read it as
    one failed alternative)."""


class _TooLong(Exception):
    """A check past :data:`MAX_CHECK_STEPS`; ends the whole check, as :class:`_TooDeep`."""


@dataclass
class _Walk:
    """One check of an answer: the schema ``$ref`` resolves against, and how deep it is."""

    root: Mapping[str, Any]
    depth: int = 0
    steps: int = 0
    enums: dict[int, tuple[frozenset[Any], list[Any]]] = field(default_factory=dict)

    def in_enum(self, value: object, options: list[Any]) -> bool:
        """``value in options``, through a set of its hashable members made once per check:
        a long array checked against a long enum stays linear, not their product."""
        cached = self.enums.get(id(options))
        if cached is None:
            hashable = [o for o in options if not isinstance(o, list | dict)]
            cached = (frozenset(hashable), [o for o in options if isinstance(o, list | dict)])
            self.enums[id(options)] = cached
        if isinstance(value, list | dict):
            return value in cached[1]
        return value in cached[0]


def _errors(value: object, schema: Mapping[str, Any] | bool, where: str, walk: _Walk
            ) -> list[str]:
    if isinstance(schema, bool):  # the schemas true (anything) and false (nothing)
        return [] if schema else [f"{where}: no value is allowed here"]
    if walk.depth >= MAX_CHECK_DEPTH:
        raise _TooDeep(where)
    walk.steps += 1
    if walk.steps > MAX_CHECK_STEPS:
        raise _TooLong(where)
    walk.depth += 1
    try:
        return _checked(value, schema, where, walk)
    finally:
        walk.depth -= 1


def _checked(value: object, schema: Mapping[str, Any], where: str, walk: _Walk) -> list[str]:
    if "$ref" in schema:
        target = _resolve(walk.root, str(schema["$ref"]))
        if target is None:
            return [f"{where}: the schema's $ref {schema['$ref']!r} cannot be resolved"]
        return _errors(value, target, where, walk)
    errors: list[str] = []
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_is_type(value, k) for k in kinds if k in _TYPES or k in ("integer",
                                                                            "number")):
            return [f"{where}: expected {' or '.join(kinds)}, got {_json_kind(value)}"]
    if "enum" in schema and not walk.in_enum(value, schema["enum"]):
        errors.append(f"{where}: must be one of {json.dumps(schema['enum'])[:300]}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where}: must be {json.dumps(schema['const'])[:300]}")
    if isinstance(value, dict):
        errors += _object_errors(value, schema, where, walk)
    if isinstance(value, list):
        errors += _array_errors(value, schema, where, walk)
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
    for key, enough in (("anyOf", 1), ("oneOf", 2)):
        if key in schema:
            matches = 0
            for sub in schema[key]:  # stop once the outcome is known: nested ones multiply
                matches += not _errors(value, sub, where, walk)
                if matches == enough:
                    break
            if key == "anyOf" and not matches or key == "oneOf" and matches != 1:
                more = " or more" if matches == enough == 2 else ""
                errors.append(f"{where}: matches {matches}{more} of the {key} alternatives")
    for sub in schema.get("allOf", ()):
        errors += _errors(value, sub, where, walk)
    return errors


def _object_errors(value: dict[Any, Any], schema: Mapping[str, Any], where: str,
                   walk: _Walk) -> list[str]:
    errors = [f"{where}: missing required field {name!r}" for name in schema.get("required", ())
              if name not in value]
    properties = schema.get("properties") or {}
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in properties:
            errors += _errors(item, properties[key], f"{where}.{key}", walk)
        elif extra is False:
            errors.append(f"{where}: unexpected field {key!r}")
        elif isinstance(extra, Mapping):
            errors += _errors(item, extra, f"{where}.{key}", walk)
    return errors


def _array_errors(value: list[Any], schema: Mapping[str, Any], where: str,
                  walk: _Walk) -> list[str]:
    errors = []
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(f"{where}: fewer than {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{where}: more than {schema['maxItems']} items")
    prefix = schema.get("prefixItems") or []
    for index, item in enumerate(value):
        sub = prefix[index] if index < len(prefix) else schema.get("items")
        if isinstance(sub, Mapping | bool):
            errors += _errors(item, sub, f"{where}[{index}]", walk)
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
