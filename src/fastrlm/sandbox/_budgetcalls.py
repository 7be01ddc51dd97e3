"""The budget's host calls: ``budget()`` (what is left, read-only and free) and the combinators
``llm_map``, ``llm_filter`` and ``llm_reduce`` (many sub-calls whose cost is bounded, and checked
against what is left, before the first one is sent).

Both sides of the wire, like :mod:`._hostcalls`: :func:`combine_request` turns the model's
arguments into a request (sandbox side), :func:`wire_combine_request` checks one that came from
the sandbox (host side) with the same limits and messages; :func:`budget_reply` and
:func:`combine_reply` hold a bridge to the replies' shapes, :func:`combine_value` is what the
cell gets (or :class:`BudgetError`). Standard library only: the worker imports it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Literal

from ._hostcalls import (
    MAX_BATCH_CHARS,
    MAX_BATCH_PROMPTS,
    MAX_MODEL_NAME_CHARS,
    checked_reply,
    exact_text,
    tool_error_reply,
)

#: The wire op of ``budget()``.
BUDGET_OP = "budget"
#: The wire op of the combinators (``kind``: which one).
COMBINE_OP = "llm_combine"
CombineKind = Literal["map", "filter", "reduce"]
_KINDS: tuple[CombineKind, ...] = ("map", "filter", "reduce")
#: What ``budget()`` reports, each a number left (``None``: no limit) and under ``"limits"``
#: the limit itself.
BUDGET_FIELDS = ("usd", "subcalls", "requests", "input_tokens", "output_tokens", "seconds",
                 "depth", "iterations")
#: The longest JSON text a combinator's ``schema=`` may have.
MAX_SCHEMA_JSON_CHARS = 20_000
#: The widest tree ``llm_reduce(fanin=...)`` may ask for.
MAX_FANIN = 1_000


class BudgetError(RuntimeError):
    """Raised in model code when a combinator was refused before anything was sent: ``kind``
    says why (``budget_usd``, ``budget_subcalls``, ``budget_tokens``, ``budget_requests``,
    ``timeout``: the bound does not fit what is left; ``prompt_too_long``: an item is over the
    sub-model's window; ``bad_arguments``, ``subcalls_disabled``, ``unknown_model``); the message
    says the bound, what is left and what to do."""

    def __init__(self, name: str, kind: str, message: str) -> None:
        super().__init__(f"{name}: {message} [{kind}]")
        self.kind = kind


@dataclass(frozen=True, slots=True)
class BudgetRequest:
    """A checked ``budget`` request (it carries nothing)."""


@dataclass(frozen=True, slots=True)
class CombineRequest:
    """A checked combinator request: ``template`` (``{item}`` / ``{items}`` marks where the item
    goes; without it the item follows the template), ``items`` (str), ``schema`` (a JSON schema
    dict each answer must match, ``map`` only), ``model`` (a configured name or ``None``),
    ``max_tokens`` (each call's output cap, ``None``: the sub-calls' own) and ``fanin``
    (``reduce`` only: how many pieces one call combines)."""

    kind: CombineKind
    template: str
    items: list[str]
    schema: dict[str, object] | None = None
    model: str | None = None
    max_tokens: int | None = None
    fanin: int = 8

    def payload(self) -> dict[str, object]:
        return {"kind": self.kind, "template": self.template, "items": self.items,
                "schema": self.schema, "model": self.model, "max_tokens": self.max_tokens,
                "fanin": self.fanin}


#: The keys a worker frame adds to every host call's payload.
_FRAME_KEYS = frozenset({"op", "id", "nonce"})


def wire_budget_request(payload: Mapping[str, object]) -> BudgetRequest:
    """Check a ``budget`` request: it carries nothing (a worker frame's own ``op``, ``id`` and
    ``nonce`` apart). Raises ``TypeError`` for anything else."""
    if not isinstance(payload, Mapping) or not set(payload) <= _FRAME_KEYS:
        raise TypeError("budget: the request carries nothing (an empty dict)")
    return BudgetRequest()


def budget_reply(returned: object) -> dict[str, object]:
    """Exactly the reply ``budget()`` promises, whatever the bridge returned: every field of
    :data:`BUDGET_FIELDS` a finite number or ``None``, and ``"limits"`` the same."""
    given = returned if isinstance(returned, dict) else {}
    limits = given.get("limits")
    limits = limits if isinstance(limits, dict) else {}
    reply: dict[str, object] = {name: _number(given.get(name)) for name in BUDGET_FIELDS}
    reply["limits"] = {name: _number(limits.get(name)) for name in BUDGET_FIELDS}
    return reply


def _number(value: object) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def combine_request(name: str, kind: CombineKind, template: object, items: object, *,
                    schema: object = None, model: object = None, max_tokens: object = None,
                    fanin: object = 8) -> CombineRequest:
    """The request a combinator call makes with these model arguments (sandbox side). Items
    that are not ``str`` are converted with ``str()``. Raises ``TypeError``/``ValueError`` (in
    model code) for arguments the host would refuse."""
    if not isinstance(items, Iterable) or isinstance(items, str | bytes):
        raise TypeError(f"{name}: items must be a list of texts, not {type(items).__name__}")
    values = list(islice(items, MAX_BATCH_PROMPTS + 1))
    if len(values) > MAX_BATCH_PROMPTS:
        raise ValueError(f"{name}: more than {MAX_BATCH_PROMPTS:,} items in one call; send them "
                         f"in batches of at most {MAX_BATCH_PROMPTS:,}")
    texts: list[str] = []
    chars = 0
    for value in values:
        texts.append(exact_text(value))
        chars += len(texts[-1])
        if chars > MAX_BATCH_CHARS:
            raise _too_long(name, chars)
    if isinstance(schema, dict):
        try:
            schema = json.loads(json.dumps(schema, allow_nan=False)[: MAX_SCHEMA_JSON_CHARS + 1])
        except (TypeError, ValueError, RecursionError) as exc:
            raise TypeError(f"{name}: schema must be a JSON schema dict of at most "
                            f"{MAX_SCHEMA_JSON_CHARS:,} characters of JSON ({exc})") from None
    request = CombineRequest(kind, exact_text(template), texts, schema, model,  # type: ignore[arg-type]
                             max_tokens, fanin)  # type: ignore[arg-type]
    return _check(name, request)


def wire_combine_request(payload: Mapping[str, object]) -> CombineRequest:
    """Check a combinator request from the sandbox (untrusted), converting nothing. Raises
    ``TypeError``/``ValueError`` for one the contract does not allow."""
    name = COMBINE_OP
    if not isinstance(payload, Mapping):
        raise TypeError(f"{name}: the request must be a dict, not {type(payload).__name__}")
    kind = payload.get("kind")
    if kind not in _KINDS:
        raise ValueError(f"{name}: kind must be one of {', '.join(_KINDS)}")
    items = payload.get("items")
    if not isinstance(items, list) or len(items) > MAX_BATCH_PROMPTS or not all(
            type(item) is str for item in items):
        raise TypeError(f"{name}: items must be a list of at most {MAX_BATCH_PROMPTS:,} str")
    chars = sum(len(item) for item in items)
    if chars > MAX_BATCH_CHARS:
        raise _too_long(name, chars)
    template = payload.get("template")
    if type(template) is not str:
        raise TypeError(f"{name}: template must be a str")
    schema = payload.get("schema")
    if schema is not None:
        if not isinstance(schema, dict):
            raise TypeError(f"{name}: schema must be a JSON schema dict or None")
        try:
            text = json.dumps(schema, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            raise TypeError(f"{name}: schema must be JSON") from None
        schema = json.loads(text)
    request = CombineRequest(kind, template, list(items), schema,
                             payload.get("model"), payload.get("max_tokens"),  # type: ignore[arg-type]
                             payload.get("fanin"))  # type: ignore[arg-type]  # checked next
    return _check(name, request)


def _check(name: str, request: CombineRequest) -> CombineRequest:
    """Limits shared by both sides."""
    if len(request.template) > MAX_BATCH_CHARS:
        raise _too_long(name, len(request.template))
    model = request.model
    if model is not None and (not isinstance(model, str) or len(model) > MAX_MODEL_NAME_CHARS):
        raise TypeError(f"{name}: model must be None or a model name of at most "
                        f"{MAX_MODEL_NAME_CHARS} characters")
    if request.schema is not None:
        if request.kind != "map":
            raise TypeError(f"{name} takes no schema: only llm_map(..., schema=...) does")
        if len(json.dumps(request.schema)) > MAX_SCHEMA_JSON_CHARS:
            raise ValueError(f"{name}: the schema has more than {MAX_SCHEMA_JSON_CHARS:,} "
                             "characters of JSON; pass a smaller one")
    tokens = request.max_tokens
    if tokens is not None and (type(tokens) is not int or tokens < 1):
        raise ValueError(f"{name}: max_tokens must be a whole number of at least 1, or None")
    fanin = request.fanin
    if type(fanin) is not int or not 2 <= fanin <= MAX_FANIN:
        raise ValueError(f"{name}: fanin must be a whole number from 2 to {MAX_FANIN}")
    return request


def _too_long(name: str, chars: int) -> ValueError:
    return ValueError(f"{name}: the items of one call hold {chars:,} characters, over the limit "
                      f"of {MAX_BATCH_CHARS:,}; send fewer or shorter items per call")


def combine_reply(reply: object) -> dict[str, object]:
    """Exactly one well-formed combinator reply, whatever the bridge returned: ``{"ok": True,
    "json": str}`` (the result as JSON) or ``{"ok": False, "kind": str, "message": str}``;
    anything else becomes a ``bad_answer`` refusal (the shape is :func:`checked_reply`'s)."""
    checked = checked_reply(reply)
    if checked is not None:
        return checked
    return combine_refusal("bad_answer", "the host answered the call with no result")


def combine_refusal(kind: str, message: str) -> dict[str, object]:
    """A refused combinator call's reply (the error shape a tool's has)."""
    return tool_error_reply(kind, message)


def combine_value(name: str, reply: object) -> object:
    """What the cell gets of a combinator reply: the result, or :class:`BudgetError`."""
    checked = combine_reply(reply)
    if checked["ok"] is True:
        return json.loads(str(checked["json"]))
    raise BudgetError(name, str(checked["kind"]), str(checked["message"]))
