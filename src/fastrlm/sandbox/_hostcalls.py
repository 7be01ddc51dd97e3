"""The host-call path: what model code may call on the host, and everything it gets back.

One module owns the REPL's contract with the host, for every sandbox:

- :data:`RESERVED_NAMES`: the names the REPL provides (restored when model code rebinds them);
- :data:`HOST_CALLS`: the REPL functions that reach the host, and the wire op each one uses;
- :func:`model_request` (sandbox side: turns model arguments into a :class:`HostRequest`) and
  :func:`wire_request` (host side: checks a request that came from untrusted code), with the
  same limits and the same messages (``TypeError`` for a wrong type, ``ValueError`` for a wrong
  count or size);
- the replies the host holds every bridge to (:func:`one_answer_per_prompt`, :func:`tool_reply`;
  the table of host operations and the one dispatch are in :mod:`._hostops`);
- :func:`error_text`: every ``[error: <kind>: <message>]`` answer the model can see;
- host tools (the ``tool`` op): :class:`ToolSpec` (what the REPL shows of a host function),
  :func:`tool_arguments` (the one check of a tool call's arguments, both sides and every
  sender, sub-LLMs included), :func:`tool_request` (sandbox side), :func:`tool_reply` (host
  side: exactly one well-formed reply) and :func:`tool_value` (sandbox side: the value, or
  :class:`ToolError` in the cell).

It runs on both sides (the worker imports it), so it uses the standard library only.

Why over 500 lines: it is the whole boundary, every check of what model code sends the host
and every shape of what comes back, so that a limit is written once and read by both sides.
"""

from __future__ import annotations

import binascii
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Literal

from .._foundation.error_text import (
    MAX_ERROR_MESSAGE_CHARS,
    error_text,
    is_error_kind,
)
from .._foundation.images import ImagePart
from .._foundation.wire import MAX_TOOL_JSON_CHARS, MAX_TOOL_JSON_DEPTH
from . import kinds

logger = logging.getLogger("fastrlm.sandbox")

#: Names the REPL provides and restores after each cell if model code rebinds them.
RESERVED_NAMES: tuple[str, ...] = (
    "context",
    "llm_query",
    "llm_query_batched",
    "rlm_query",
    "rlm_query_batched",
    "FINAL",
    "FINAL_VAR",
    "SHOW_VARS",
    "answer",
    "budget",
    "llm_map",
    "llm_filter",
    "llm_reduce",
    "BudgetError",
)

#: The most prompts one call may carry: each becomes a sub-call the host has to hold.
MAX_BATCH_PROMPTS = 10_000
#: The most prompt characters one call may carry (the worker's frames hold 256 MiB).
MAX_BATCH_CHARS = 128 * 1024 * 1024
#: The longest model name a call may ask for.
MAX_MODEL_NAME_CHARS = 200
#: The most images one prompt may carry (``llm_query(prompt, images=[...])``).
MAX_IMAGES_PER_PROMPT = 20
#: The largest image (encoded bytes) a prompt may carry; providers refuse larger ones.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}\Z")

#: The longest tool name.
MAX_TOOL_NAME_CHARS = 64

#: The wire ops of the prompt-carrying host calls (a :class:`HostRequest`'s ``op``).
QueryOp = Literal["llm_query", "rlm_query"]
#: The wire op of a host-tool call (``RLM(tools=...)``).
TOOL_OP = "tool"


@dataclass(frozen=True, slots=True)
class HostCallSpec:
    """One REPL function that reaches the host: its ``name`` in the REPL, the wire ``op`` it
    sends, whether it takes a list of prompts (``batched``) and whether it takes contexts;
    ``params``: its parameters in order (the first the prompt or prompts, the others ``None``
    by default: ``context``/``contexts``, ``model``, ``images``) and ``doc``, what ``help()``
    shows. The runtime builds the function from this entry."""

    name: str
    op: QueryOp
    batched: bool
    contexts: bool
    params: tuple[str, ...] = ()
    doc: str = ""


#: What a child's grant (``rlm_query(..., budget={...})``) may limit: ``Budget`` fields.
GRANT_KEYS = ("max_usd", "max_subcalls", "max_requests", "max_input_tokens",
              "max_output_tokens", "max_seconds", "max_iterations", "max_depth")

HOST_CALLS: tuple[HostCallSpec, ...] = (
    HostCallSpec(
        "llm_query", "llm_query", batched=False, contexts=False,
        params=("prompt", "model", "images"),
        doc="Ask a sub-model one prompt; returns its text (or an \"[error: ...]\" string). "
            "``images``: an image or a list of them (PNG/JPEG/GIF/WebP bytes or PIL images) "
            "for a vision-capable sub-model.",
    ),
    HostCallSpec(
        "llm_query_batched", "llm_query", batched=True, contexts=False,
        params=("prompts", "model", "images"),
        doc="Ask a sub-model many prompts concurrently; one answer per prompt, in order. "
            "``images``: None, or one entry per prompt (an image, a list of images, or None).",
    ),
    HostCallSpec(
        "rlm_query", "rlm_query", batched=False, contexts=True,
        params=("prompt", "context", "model", "budget"),
        doc="Ask a child RLM (its own REPL) one question; ``context`` defaults to the prompt. "
            "``budget``: a grant for the child and everything below it, carved from what is "
            "left (keys: " + ", ".join(f"``{k}``" for k in GRANT_KEYS if k) + "); what it "
            "does not spend returns.",
    ),
    HostCallSpec(
        "rlm_query_batched", "rlm_query", batched=True, contexts=True,
        params=("prompts", "contexts", "model", "budget"),
        doc="Many child RLMs concurrently; ``contexts`` is None or one per prompt; ``budget``: "
            "each child's own grant (see ``rlm_query``).",
    ),
)
_QUERY_OPS = frozenset(spec.op for spec in HOST_CALLS)

@dataclass(frozen=True, slots=True)
class HostRequest:
    """One checked host call: ``op``, one ``str`` per prompt, ``contexts`` (``rlm_query``
    only: ``None`` or one per prompt) and the ``model`` name asked for (``None``: default)."""

    op: QueryOp
    prompts: list[str]
    contexts: list[object] | None = None
    model: str | None = None
    #: ``llm_query`` only: None, or one list of images per prompt.
    images: list[list[ImagePart]] | None = None
    #: ``rlm_query`` only: None, or each child's grant (:data:`GRANT_KEYS` -> a number).
    budget: dict[str, int | float] | None = None

    def payload(self) -> dict[str, object]:
        """The request's fields as the worker sends them (``op`` apart)."""
        body: dict[str, object] = {"prompts": self.prompts, "model": self.model}
        if self.op == "rlm_query":
            body["contexts"] = self.contexts
        if self.budget is not None:
            body["budget"] = self.budget
        if self.images is not None:
            body["images"] = self.images
        return body


def exact_text(value: object) -> str:
    """``value`` as an exact ``str`` (a str subclass's own ``__str__`` is not trusted). Raises
    whatever a model object's ``__str__`` raises."""
    return str.__str__(value) if isinstance(value, str) else str.__str__(str(value))


def _check(name: str, request: HostRequest) -> HostRequest:
    """Limits shared by both sides. Raises ``ValueError``/``TypeError`` saying what to do."""
    if len(request.prompts) > MAX_BATCH_PROMPTS:
        raise _too_many(name, "prompts")
    chars = sum(len(p) for p in request.prompts)
    if chars > MAX_BATCH_CHARS:
        raise _too_long(name, chars, more=False)
    model = request.model
    if model is not None and not isinstance(model, str):
        raise TypeError(f"{name}: model must be a str or None, not {type(model).__name__}")
    if model is not None and len(model) > MAX_MODEL_NAME_CHARS:
        raise ValueError(f"{name}: a model name has at most {MAX_MODEL_NAME_CHARS} characters")
    if request.contexts is not None and len(request.contexts) != len(request.prompts):
        raise ValueError(
            f"{name}: {len(request.prompts)} prompts but {len(request.contexts)} contexts; "
            "pass one context per prompt, or none"
        )
    if request.images is not None:
        if len(request.images) != len(request.prompts):
            raise ValueError(
                f"{name}: {len(request.prompts)} prompts but {len(request.images)} image lists; "
                "pass one list of images per prompt (an empty list for none), or none"
            )
        for parts in request.images:
            if len(parts) > MAX_IMAGES_PER_PROMPT:
                raise ValueError(
                    f"{name}: more than {MAX_IMAGES_PER_PROMPT} images for one prompt; send "
                    "fewer (crop or tile them), or split the question"
                )
            for part in parts:
                if len(part["data"]) * 3 // 4 > MAX_IMAGE_BYTES:
                    raise ValueError(
                        f"{name}: an image of more than {MAX_IMAGE_BYTES // 2**20} MiB; scale "
                        "it down or crop it first"
                    )
                chars += len(part["data"])
        if chars > MAX_BATCH_CHARS:
            raise _too_long(name, chars, more=False)
    return request


def _too_many(name: str, what: str) -> ValueError:
    return ValueError(
        f"{name}: more than {MAX_BATCH_PROMPTS:,} {what} in one call; send them in batches of "
        f"at most {MAX_BATCH_PROMPTS:,}"
    )


def _too_long(name: str, chars: int, *, more: bool) -> ValueError:
    return ValueError(
        f"{name}: the prompts of one call hold {'at least ' if more else ''}{chars:,} characters, "
        f"over the limit of {MAX_BATCH_CHARS:,}; send fewer or shorter prompts per call"
    )


def _bounded_list(name: str, what: str, values: object) -> list[object]:
    """``values`` as a list, reading at most one item past the prompt limit (so a huge or
    endless iterable costs nothing). Raises ``TypeError`` for a non-iterable."""
    if not isinstance(values, Iterable):
        raise TypeError(f"{name}: {what} must be a list, not {type(values).__name__}")
    items = list(islice(values, MAX_BATCH_PROMPTS + 1))
    if len(items) > MAX_BATCH_PROMPTS:
        raise _too_many(name, what)
    return items


def _image_list(name: str, value: object) -> list[ImagePart]:
    """The images of one prompt: None (none), one image, or a list of them (see
    :func:`.kinds.image_part`)."""
    if value is None:
        return []
    if isinstance(value, (bytes, bytearray, memoryview)) or kinds.is_pil_image(value):
        values: list[object] = [value]
    elif isinstance(value, (list, tuple)):
        values = list(islice(value, MAX_IMAGES_PER_PROMPT + 1))
        if len(values) > MAX_IMAGES_PER_PROMPT:
            raise ValueError(
                f"{name}: more than {MAX_IMAGES_PER_PROMPT} images for one prompt; send fewer "
                "(crop or tile them), or split the question"
            )
    else:
        raise TypeError(
            f"{name}: images must be a list of images (bytes or PIL images), not "
            f"{type(value).__name__}"
        )
    parts: list[ImagePart] = []
    for item in values:
        part = kinds.image_part(item, name)
        parts.append(ImagePart(media_type=part["media_type"], data=part["data"]))
    return parts


def _request_images(
    name: str, spec: HostCallSpec, images: object, count: int
) -> list[list[ImagePart]] | None:
    if images is None:
        return None
    if spec.op != "llm_query":
        raise TypeError(f"{name} takes no images: use llm_query(prompt, images=[...])")
    if not spec.batched:
        return [_image_list(name, images)]
    if not isinstance(images, (list, tuple)):
        raise TypeError(
            f"{name}: images must be a list with one entry per prompt (an image, a list of "
            f"images, or None), not {type(images).__name__}"
        )
    if len(images) != count:
        raise ValueError(
            f"{name}: {count} prompts but {len(images)} image entries; pass one per prompt "
            "(None for a prompt without images)"
        )
    return [_image_list(name, entry) for entry in images]


def _grant(name: str, op: str, budget: object) -> dict[str, int | float] | None:
    """A child's grant as sent: None, or a dict of :data:`GRANT_KEYS` to numbers (the host
    checks their ranges). Raises ``TypeError``/``ValueError``."""
    if budget is None:
        return None
    if op != "rlm_query":
        raise TypeError(f"{name} takes no budget: rlm_query(..., budget={{...}}) does")
    if not isinstance(budget, dict):
        raise TypeError(f"{name}: budget must be a dict such as {{'max_usd': 0.1, "
                        f"'max_subcalls': 20}}, not {type(budget).__name__}")
    grant: dict[str, int | float] = {}
    for key, value in budget.items():
        if key not in GRANT_KEYS:
            raise ValueError(f"{name}: budget key {str(key)[:40]!r} is not one of "
                             f"{', '.join(GRANT_KEYS)}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{name}: budget[{key!r}] must be a number")
        grant[key] = int.__int__(value) if isinstance(value, int) else float.__float__(value)
    return grant


def model_request(
    name: str, prompts: object, contexts: object = None, model: object = None,
    images: object = None, budget: object = None,
) -> HostRequest:
    """The request a REPL call ``name`` (a :data:`HOST_CALLS` name) makes with these model
    arguments. A single-prompt call passes its one prompt; a batched one a list (a ``str`` is one
    prompt). Prompts that are not ``str`` are converted with ``str()``; a ``contexts`` that is a
    ``str``, ``bytes`` or not iterable is one context. ``images`` (``llm_query*`` only): for one
    prompt an image or a list of images, for a batch one such entry per prompt; an image is
    PNG, JPEG, GIF or WebP bytes or a PIL image. Raises ``TypeError`` or ``ValueError`` (raised
    in model code) for arguments the host would refuse."""
    spec = next(s for s in HOST_CALLS if s.name == name)
    if not spec.batched or isinstance(prompts, str):
        items: list[object] = [prompts]
    else:
        items = _bounded_list(name, "prompts", prompts)
    texts: list[str] = []
    chars = 0
    for item in items:
        texts.append(exact_text(item))
        chars += len(texts[-1])
        if chars > MAX_BATCH_CHARS:  # stop converting: the call is refused anyway
            raise _too_long(name, chars, more=len(texts) < len(items))
    ctx_list: list[object] | None = None
    if spec.contexts and contexts is not None:
        if not spec.batched or isinstance(contexts, (str, bytes)) or not isinstance(
            contexts, Iterable
        ):
            ctx_list = [contexts]
        else:
            ctx_list = _bounded_list(name, "contexts", contexts)
    image_lists = _request_images(name, spec, images, len(texts))
    request = HostRequest(spec.op, texts, ctx_list, model, image_lists,  # type: ignore[arg-type]
                          _grant(name, spec.op, budget))
    return _check(name, request)


def _wire_images(op: str, images: object, count: int) -> list[list[ImagePart]] | None:
    """``images`` of a request from the sandbox, checked field by field."""
    if images is None:
        return None
    if op != "llm_query" or not isinstance(images, list) or len(images) != count:
        raise TypeError(f"{op}: images must be a list of one image list per prompt "
                        "(llm_query only) or None")
    checked: list[list[ImagePart]] = []
    for parts in images:
        if not isinstance(parts, list):
            raise TypeError(f"{op}: each prompt's images must be a list")
        if len(parts) > MAX_IMAGES_PER_PROMPT:
            raise ValueError(f"{op}: more than {MAX_IMAGES_PER_PROMPT} images for one prompt")
        row: list[ImagePart] = []
        for part in parts:
            if (
                not isinstance(part, dict)
                or set(part) != {"media_type", "data"}
                or part["media_type"] not in kinds.IMAGE_TYPES
                or type(part["data"]) is not str
                or not _BASE64.match(part["data"])
            ):
                raise TypeError(f"{op}: an image must be {{'media_type': one of "
                                f"{sorted(kinds.IMAGE_TYPES)}, 'data': base64 str}}")
            data = part["data"]  # what the REPL's side sniffed, sniffed again: the host trusts
            # no sender (a provider refuses the whole request for one bad image)
            if len(data) % 4 or kinds.sniff_image(binascii.a2b_base64(data[:32])) != part[
                    "media_type"]:
                raise ValueError(f"{op}: an image's data is not base64 of a "
                                 f"{part['media_type']} image")
            row.append(ImagePart(media_type=part["media_type"], data=part["data"]))
        checked.append(row)
    return checked


def wire_request(op: str, payload: Mapping[str, object]) -> HostRequest:
    """Check a request that came from the sandbox (untrusted: a worker frame can be forged, an
    in-process call can be made by hand) without converting anything. Raises ``ValueError``
    for an unknown op, ``TypeError``/``ValueError`` for fields the contract does not allow."""
    if op not in _QUERY_OPS:
        shown = repr(op[:40]) if isinstance(op, str) else f"of type {type(op).__name__}"
        raise ValueError(f"unknown host call {shown}")
    if not isinstance(payload, Mapping):
        raise TypeError(f"{op}: the request must be a dict, not {type(payload).__name__}")
    prompts = payload.get("prompts")
    if not isinstance(prompts, list):
        raise TypeError(f"{op}: prompts must be a list of str")
    if len(prompts) > MAX_BATCH_PROMPTS:
        raise _too_many(op, "prompts")
    prompts = list(prompts)  # checked as it will be used: the caller may still hold the list
    if not all(type(p) is str for p in prompts):
        raise TypeError(f"{op}: prompts must be a list of str")
    contexts = payload.get("contexts")
    if contexts is not None and (op != "rlm_query" or not isinstance(contexts, list)):
        raise TypeError(f"{op}: contexts must be a list (rlm_query only) or None")
    contexts = None if contexts is None else list(contexts)
    images = _wire_images(op, payload.get("images"), len(prompts))
    request = HostRequest(op, prompts, contexts, payload.get("model"), images,  # type: ignore[arg-type]
                          _grant(op, op, payload.get("budget")))
    return _check(op, request)


def one_answer_per_prompt(answers: object, count: int) -> list[str]:
    """Exactly ``count`` strings: ``answers`` when it is a list of ``count`` str; otherwise
    what can be kept of it, each missing or non-str answer replaced by an :func:`error_text`
    (``no_answer``, ``bad_answer``) and extra answers dropped. Logs each repair: it is a bug of
    the bridge."""
    if not isinstance(answers, list):
        logger.error("HostBridge returned %s instead of a list", type(answers).__name__)
        answers = []
    if len(answers) != count:
        logger.error("HostBridge returned %d answers for %d prompts", len(answers), count)
    result = []
    for index in range(count):
        if index >= len(answers):
            result.append(error_text("no_answer", "the host gave no answer to this prompt"))
            continue
        answer = answers[index]
        if isinstance(answer, str):
            result.append(str.__str__(answer))
        else:
            logger.error("HostBridge returned a %s as an answer", type(answer).__name__)
            result.append(
                error_text("bad_answer", f"the host answered with a {type(answer).__name__}, "
                           "not text")
            )
    return result


# ---------------------------------------------------------------------- host tools
_PARAM_KINDS = (
    "positional_only", "positional_or_keyword", "var_positional", "keyword_only", "var_keyword",
)


class ToolError(RuntimeError):
    """Raised in model code when a host tool failed: ``kind`` is the error kind
    (``tool_error``: the tool raised; ``tool_timeout``, ``tool_limit``, ``bad_arguments``,
    ``bad_result``, ``unknown_tool``, ``host_error``), the message says what happened."""

    def __init__(self, tool: str, kind: str, message: str) -> None:
        super().__init__(f"{tool}: {message} [{kind}]")
        self.tool = tool
        self.kind = kind


@dataclass(frozen=True, slots=True)
class ToolParam:
    """One parameter of a host tool as the REPL shows it: ``kind`` is an
    ``inspect.Parameter`` kind in snake_case, ``default`` the default's repr (``None``:
    required), ``annotation`` its annotation as text (``None``: none)."""

    name: str
    kind: str
    default: str | None = None
    annotation: str | None = None


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What the sandbox knows of a host tool: its name, parameters, return annotation and
    docstring. It crosses to the worker as JSON (:meth:`to_wire` / :meth:`from_wire`)."""

    name: str
    params: tuple[ToolParam, ...] = ()
    returns: str | None = None
    doc: str = ""

    def signature_text(self) -> str:
        """``name(a: str, k: int = 5) -> list``, as the system prompt lists it."""
        parts: list[str] = []
        star = False
        for index, p in enumerate(self.params):
            if p.kind == "keyword_only" and not star:
                parts.append("*")
                star = True
            prefix = {"var_positional": "*", "var_keyword": "**"}.get(p.kind, "")
            star = star or p.kind == "var_positional"
            text = prefix + p.name + (f": {p.annotation}" if p.annotation else "")
            if p.default is not None:
                text += f" = {p.default}" if p.annotation else f"={p.default}"
            parts.append(text)
            following = self.params[index + 1] if index + 1 < len(self.params) else None
            if p.kind == "positional_only" and (following is None
                                                 or following.kind != "positional_only"):
                parts.append("/")
        returns = f" -> {self.returns}" if self.returns else ""
        return f"{self.name}({', '.join(parts)}){returns}"

    def to_wire(self) -> dict[str, object]:
        return {
            "name": self.name,
            "params": [[p.name, p.kind, p.default, p.annotation] for p in self.params],
            "returns": self.returns,
            "doc": self.doc,
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, object]) -> ToolSpec:
        params = data.get("params") or []
        assert isinstance(params, list)
        return cls(
            name=str(data["name"]),
            params=tuple(ToolParam(str(n), str(k), d, a) for n, k, d, a in params),
            returns=data.get("returns"),  # type: ignore[arg-type]
            doc=str(data.get("doc") or ""),
        )


def tool_arguments(name: str, arguments: object) -> dict[str, object]:
    """The arguments of a call of host tool ``name`` as the tool will get them: a fresh JSON
    copy (a tuple becomes a list, a ``str`` subclass a ``str``) of ``arguments``, a dict of
    parameter names to JSON values or the JSON text of one (as a provider sends it). The one
    check of what crosses into a host tool, on both sides and for every sender (the REPL's
    tool functions, a worker frame, a hand-made in-process call, a sub-LLM's tool call). Size
    and depth are measured before anything is decoded or copied, without recursion. Raises
    ``ValueError`` past :data:`MAX_TOOL_JSON_CHARS` characters of JSON or
    :data:`MAX_TOOL_JSON_DEPTH` levels of nesting, ``TypeError`` for arguments that are not a
    JSON object or hold a value JSON cannot carry."""
    what = f"{name}(): the arguments"
    if isinstance(arguments, str):
        if len(arguments) > MAX_TOOL_JSON_CHARS:
            raise _too_much_json(what, len(arguments))
        try:
            arguments = json.loads(arguments)
        except RecursionError:
            raise _too_deep(what) from None
        except ValueError as exc:
            raise TypeError(f"{what} must be a JSON object: {exc}") from None
    if not isinstance(arguments, dict):
        raise TypeError(f"{what} must be a JSON object (parameter name -> value), not "
                        f"{type(arguments).__name__}")
    _measure_json(what, arguments)
    try:
        text = json.dumps(arguments, ensure_ascii=False, allow_nan=False)
    except Exception as exc:  # noqa: BLE001 - a model object's own methods may raise anything
        raise _not_json(what, exc) from None
    if len(text) > MAX_TOOL_JSON_CHARS:
        raise _too_much_json(what, len(text))
    copied: dict[str, object] = json.loads(text)
    return copied


def _measure_json(what: str, value: dict[object, object]) -> None:
    """Walk ``value`` with an explicit stack (so no depth can exhaust the interpreter's),
    counting a lower bound of its JSON size; raises as soon as a limit is passed."""
    chars = 2
    stack: list[Iterator[object]] = [iter(dict.items(value))]
    while stack:
        item = next(stack[-1], _DONE)
        if item is _DONE:
            stack.pop()
            continue
        if type(stack[-1]) is _DICT_ITEMS:
            key: object
            key, item = item  # type: ignore[misc]
            if not isinstance(key, str):
                raise _not_json(what, TypeError(f"a dict key of type {type(key).__name__}"))
            chars += len(key) + 4
        if isinstance(item, str):
            chars += len(item) + 2
        elif item is None or isinstance(item, bool):
            chars += 4
        elif isinstance(item, int):
            chars += item.bit_length() * 3 // 10 + 1
        elif isinstance(item, float):
            chars += 3
        elif isinstance(item, dict | list | tuple):
            if len(stack) >= MAX_TOOL_JSON_DEPTH:
                raise _too_deep(what)
            chars += 2 + len(item)
            stack.append(iter(dict.items(item)) if isinstance(item, dict) else
                         iter(list.__iter__(item) if isinstance(item, list) else
                              tuple.__iter__(item)))
        else:
            raise _not_json(what, TypeError(f"a value of type {type(item).__name__}"))
        if chars > MAX_TOOL_JSON_CHARS:
            raise _too_much_json(what, chars, more=True)


_DONE = object()
_DICT_ITEMS: type = type(iter({}.items()))


def _not_json(what: str, exc: BaseException) -> TypeError:
    return TypeError(f"{what} must be JSON (str, int, float, bool, None, and lists and dicts "
                     f"of them): {exc}")


def _too_much_json(what: str, chars: int, *, more: bool = False) -> ValueError:
    return ValueError(
        f"{what} hold {'more than ' if more else ''}{chars:,} characters of JSON, over the "
        f"limit of {MAX_TOOL_JSON_CHARS:,}; pass less, or keep large data in the REPL"
    )


def _too_deep(what: str) -> ValueError:
    return ValueError(f"{what} are nested more than {MAX_TOOL_JSON_DEPTH} levels deep (lists "
                      "and dicts); pass flatter data, or keep it in the REPL")


def tool_request(name: str, arguments: Mapping[str, object]) -> dict[str, object]:
    """The ``tool`` request for a call of host tool ``name`` with its bound ``arguments``
    (sandbox side). The arguments are copied through JSON (:func:`tool_arguments`, the check
    the host makes again), so every sandbox sees the same values. Raises ``TypeError`` for
    arguments JSON cannot carry, ``ValueError`` past the size or depth limits."""
    return {"name": name, "arguments": tool_arguments(name, dict(arguments))}


def wire_tool_request(payload: Mapping[str, object]) -> tuple[str, dict[str, object]]:
    """Check a ``tool`` request from the sandbox (untrusted). Raises ``TypeError`` /
    ``ValueError`` for a request the contract does not allow."""
    if not isinstance(payload, Mapping):
        raise TypeError(f"tool: the request must be a dict, not {type(payload).__name__}")
    name = payload.get("name")
    if not isinstance(name, str) or not name.isidentifier() or len(name) > MAX_TOOL_NAME_CHARS:
        raise ValueError("tool: the tool name must be an identifier of at most "
                         f"{MAX_TOOL_NAME_CHARS} characters")
    arguments = payload.get("arguments")
    if not isinstance(arguments, dict) or not all(type(k) is str for k in arguments):
        raise TypeError("tool: arguments must be a dict of parameter names to values")
    return name, dict(arguments)


def tool_error_reply(kind: str, message: str) -> dict[str, object]:
    """A failed tool reply: ``kind`` one of :data:`ERROR_KINDS`."""
    if len(message) > MAX_ERROR_MESSAGE_CHARS:
        message = message[: MAX_ERROR_MESSAGE_CHARS - 1] + "…"
    return {"ok": False, "kind": kind, "message": message}


def checked_reply(reply: object) -> dict[str, object] | None:
    """``reply`` rebuilt as exactly one well-formed JSON reply (a tool's, a combinator's):
    ``{"ok": True, "json": str}`` or ``{"ok": False, "kind": str, "message": str}``; None for
    anything else."""
    if isinstance(reply, dict):
        if reply.get("ok") is True and isinstance(reply.get("json"), str):
            return {"ok": True, "json": str.__str__(reply["json"])}
        kind, message = reply.get("kind"), reply.get("message")
        if (reply.get("ok") is False and isinstance(kind, str) and is_error_kind(kind)
                and isinstance(message, str)):
            return tool_error_reply(kind, message)
    return None


def tool_reply(reply: object) -> dict[str, object]:
    """Exactly one well-formed tool reply, whatever the bridge returned
    (:func:`checked_reply`); anything else is logged (a bug of the bridge) and becomes a
    ``bad_answer`` reply."""
    checked = checked_reply(reply)
    if checked is not None:
        return checked
    logger.error("HostBridge.call_tool returned a malformed reply (%s)", type(reply).__name__)
    return tool_error_reply("bad_answer", "the host answered the tool call with no result")


def tool_value(name: str, reply: object) -> object:
    """The value a tool call returns in the cell (sandbox side), decoded from the reply's JSON.
    Raises :class:`ToolError` for a failed call (or a reply that is not a tool reply)."""
    if isinstance(reply, dict) and reply.get("ok") is True and isinstance(reply.get("json"), str):
        return json.loads(reply["json"])
    if isinstance(reply, dict) and reply.get("ok") is False:
        raise ToolError(name, str(reply.get("kind")), str(reply.get("message")))
    raise ToolError(name, "bad_answer", "the host answered the tool call with no result")
