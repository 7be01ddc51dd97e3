"""Host tools: functions the root's REPL may call (``RLM(tools=...)``) and tools a sub-LLM may
call (``RLM(sub_tools=...)``).

A :class:`Tool` is a host function with a name, a one-line description and a JSON schema of its
parameters. It always runs **on the host** (the sandbox has no network, keys or host files):
the REPL's function of the same name sends its arguments over the ``tool`` host call
(``sandbox/_hostcalls.py``), :func:`run_tool` runs it under its timeout and call cap, and the
result comes back as JSON. Every failure is a reply with an error kind; the cell gets a
``ToolError``, a sub-LLM gets the error text as the tool's result.

Why over 500 lines: a tool's whole life (declared, its schema read from the signature, run under
its cap and timeout, its reply made JSON) is one concern; the schema half (``tool_spec`` and
below) is the part to move out if it grows.
"""

from __future__ import annotations

import asyncio
import builtins
import contextvars
import dataclasses
import importlib
import inspect
import json
import keyword
import logging
import os
import re
import sys
import threading
import time
import types
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .._foundation.errors import ConfigurationError
from .._foundation.events import Event, ToolFinished, ToolStarted, preview
from .._foundation.validate import TOOL_RULES, check_fields, first_repeat
from .._foundation.wire import MAX_TOOL_JSON_CHARS
from ..sandbox import (
    MAX_TOOL_NAME_CHARS,
    RESERVED_NAMES,
    ToolParam,
    ToolSpec,
    tool_error_reply,
)

log = logging.getLogger("fastrlm")

#: Names a tool may not take: the REPL's own, what sessions add, and Python's builtins.
_SESSION_NAME = re.compile(r"context_\d+\Z|history\Z")
DEFAULT_TOOL_TIMEOUT_S = 60.0
T = TypeVar("T")


@dataclass(frozen=True)
class Tool:
    """A host function offered to the model.

    ``fn`` is a plain or ``async`` callable; it runs on the host with JSON arguments (parameter
    name -> value) and must return something JSON can hold (str, numbers, bool, None, lists and
    dicts of them; a dataclass or pydantic model is converted). ``name`` (default: the
    function's) is the REPL name and must be a free identifier; ``description`` (default: the
    docstring's first line) is what the model is told; ``parameters`` (default: from the
    signature's annotations) is the JSON schema sub-LLMs see. ``timeout_s`` bounds one call
    (a sync function keeps running in its thread after a timeout: Python cannot stop it, so
    make it honour its own deadline); ``max_calls`` caps the calls over a whole run tree.

    Raises :class:`~fastrlm.ConfigurationError` for a bad name, a non-callable ``fn``, or a
    ``timeout_s``/``max_calls`` out of range.
    """

    fn: Callable[..., Any]
    name: str = ""
    description: str = ""
    parameters: Mapping[str, Any] | None = None
    timeout_s: float = DEFAULT_TOOL_TIMEOUT_S
    max_calls: int | None = None
    spec: ToolSpec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise ConfigurationError(f"Tool: fn must be callable, not {type(self.fn).__name__}")
        name = self.name or getattr(self.fn, "__name__", "")
        set_ = object.__setattr__
        set_(self, "name", name)
        check_tool_name(name)
        if not self.description:
            set_(self, "description", _first_line(inspect.getdoc(self.fn) or ""))
        check_fields(self, TOOL_RULES, f"Tool({name!r})")
        signature = _signature(self.fn)
        set_(self, "spec", _spec_of(name, signature, self.fn))
        if self.parameters is None:
            set_(self, "parameters", _schema_of(signature, self.fn))
        elif not (isinstance(self.parameters, Mapping)
                  and self.parameters.get("type") == "object"):
            raise ConfigurationError(
                f"Tool {name!r}: parameters must be a JSON schema of type 'object' "
                '(e.g. {"type": "object", "properties": {"q": {"type": "string"}}})'
            )

    @property
    def signature(self) -> str:
        """``name(a: str, k: int = 5) -> list``: how the REPL and the prompt show it."""
        return self.spec.signature_text()

    def schema(self) -> dict[str, Any]:
        """The provider-neutral tool schema: ``name``, ``description``, ``parameters``."""
        return {"name": self.name, "description": self.description,
                "parameters": dict(self.parameters or {})}


def as_tools(items: Iterable[Callable[..., Any] | Tool] | None, what: str) -> tuple[Tool, ...]:
    """``items`` (callables or :class:`Tool`) as tools with distinct names. Raises
    :class:`~fastrlm.ConfigurationError` naming ``what`` (``tools`` / ``sub_tools``)."""
    if items is None:
        return ()
    if isinstance(items, Tool) or callable(items) and not isinstance(items, type):
        items = [items]
    if isinstance(items, str | bytes) or not isinstance(items, Iterable):
        raise ConfigurationError(f"{what} must be a list of functions or fastrlm.Tool objects")
    tools = tuple(item if isinstance(item, Tool) else Tool(item) for item in items)
    repeated = first_repeat(tool.name for tool in tools)
    if repeated is not None:
        raise ConfigurationError(f"{what}: two tools are named {repeated!r}; give one "
                                 "another name with fastrlm.Tool(fn, name=...)")
    return tools


def check_tool_name(name: object, what: str = "tool",
                    fix: str = "fastrlm.Tool(fn, name=...)") -> None:
    """Raises :class:`~fastrlm.ConfigurationError` unless ``name`` can be a REPL name of its
    own: an identifier, not a keyword, not private, not a name the REPL or Python already uses.
    ``what`` names it in the message (a ``tool``, a ``variable``), ``fix`` says how to rename."""
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ConfigurationError(f"a {what} name must be a Python identifier, not {name!r}; "
                                 f"pick another with {fix}")
    if len(name) > MAX_TOOL_NAME_CHARS:
        raise ConfigurationError(f"{what} name {name[:20]!r}... is longer than "
                                 f"{MAX_TOOL_NAME_CHARS} characters")
    if name.startswith("_"):
        raise ConfigurationError(f"{what} name {name!r} starts with '_'; the REPL hides such "
                                 "names from the model: pick a public name")
    if name in RESERVED_NAMES or name == "ToolError" or _SESSION_NAME.match(name):
        raise ConfigurationError(f"{what} name {name!r} is taken by the REPL itself (context, "
                                 f"llm_query, FINAL, ...): pick another with {fix}")
    if hasattr(builtins, name):
        raise ConfigurationError(f"{what} name {name!r} would hide Python's builtin {name}(): "
                                 f"pick another with {fix}")


def as_variables(values: Mapping[str, object] | None,
                 tools: Sequence[Tool]) -> tuple[tuple[str, str, str], ...]:
    """``RLM(variables=...)`` as (name, JSON text, type name) triples, each bound in the REPL
    before the first cell of every run (through the sandbox's ``define``). A value must be JSON
    (str, numbers, bool, None, lists and dicts of them): it is kept as its JSON text, and each
    run binds a fresh copy decoded from it, the same on every sandbox (a tuple is a list), so
    neither model code nor the caller changing the object reaches another run. Raises
    :class:`~fastrlm.ConfigurationError` naming the entry: a bad or taken name (a tool's
    included), a value JSON cannot hold."""
    if values is None:
        return ()
    if not isinstance(values, Mapping):
        raise ConfigurationError("variables must be a dict of name -> JSON value (e.g. "
                                 f"variables={{'limit': 10}}), not {type(values).__name__}")
    tool_names = {tool.name for tool in tools}
    pairs = []
    for name, value in values.items():
        check_tool_name(name, "variable", "another key in variables")
        if name in tool_names:
            raise ConfigurationError(f"variable name {name!r} is also a tool's: the REPL has "
                                     "one name for one thing; rename one of them")
        try:
            text = json.dumps(value)
        except (TypeError, ValueError, RecursionError) as exc:
            raise ConfigurationError(
                f"variables[{name!r}] is a {type(value).__name__}, which cannot cross into the "
                f"sandbox ({exc}): give a JSON value (str, numbers, lists, dicts), or a tool "
                "that returns it"
            ) from None
        pairs.append((name, text, type(json.loads(text)).__name__))
    return tuple(pairs)


def load_tools(spec: str) -> tuple[Tool, ...]:
    """Tools from ``"package.module:function,other.module:name"``: each entry names a callable,
    a :class:`Tool`, or a list of them (``module:TOOLS``). The current directory is importable
    (as with ``python -m``). Raises ``ConfigurationError`` saying what could not be found."""
    found: list[Any] = []
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: tools next to the user's files
    for entry in (part.strip() for part in spec.split(",")):
        if not entry:
            continue
        module_name, colon, attribute = entry.partition(":")
        if not colon or not module_name or not attribute:
            raise ConfigurationError(f"--tools: {entry!r} is not module:function "
                                     "(e.g. mytools:search)")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - a module that fails to import, whatever it raises
            raise ConfigurationError(f"--tools: cannot import {module_name!r} ({exc}); is it "
                                     "on PYTHONPATH?") from exc
        value: Any = module
        for part in attribute.split("."):
            if not hasattr(value, part):
                raise ConfigurationError(f"--tools: {module_name!r} has no {attribute!r}")
            value = getattr(value, part)
        found.extend(value if isinstance(value, list | tuple) else [value])
    return as_tools(found, "--tools")


# ---------------------------------------------------------------------- running a call
#: Tool calls running at once in one run tree (each sync one holds a thread).
MAX_CONCURRENT_TOOL_CALLS = 32


@dataclass
class ToolCounter:
    """Calls made per tool over one run tree (for ``max_calls``) and in all, and the tree's
    one limit on tool calls running at once."""

    counts: dict[str, int] = field(default_factory=dict)
    total: int = 0
    failed: int = 0
    full: bool = False  # tool events carry whole arguments and results (full tracing)
    _ids: int = 0
    limiter: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(MAX_CONCURRENT_TOOL_CALLS))

    def next_id(self) -> str:
        self._ids += 1
        return f"t{self._ids}"


async def run_tool(
    tools: Mapping[str, Tool],
    name: str,
    arguments: Mapping[str, object],
    *,
    counter: ToolCounter,
    emit: Callable[[Event], None],
    run_id: str,
    depth: int,
    subcall_id: str | None = None,
) -> dict[str, object]:
    """Run host tool ``name`` with JSON ``arguments``; never raises (but for cancellation).
    Returns ``{"ok": True, "json": text}`` or ``{"ok": False, "kind": ..., "message": ...}``
    and emits ``tool.started`` / ``tool.finished`` for every call that passed its cap."""
    tool = tools.get(name)
    if tool is None:
        known = ", ".join(sorted(tools)) or "(none)"
        return tool_error_reply("unknown_tool", f"no tool named {name!r}; the tools are {known}")
    used = counter.counts.get(name, 0)
    if tool.max_calls is not None and used >= tool.max_calls:
        counter.failed += 1
        return tool_error_reply("tool_limit", f"{name} may be called {tool.max_calls} times "
                                "per run, and that many calls were made")
    counter.counts[name] = used + 1
    counter.total += 1
    call_id = counter.next_id()
    async with counter.limiter:
        shown = _compact(arguments)
        emit(ToolStarted(run_id=run_id, depth=depth, call_id=call_id, tool=name,
                         arguments_preview=preview(shown), subcall_id=subcall_id,
                         arguments=shown if counter.full else None))
        started = time.monotonic()
        reply = await _call(tool, arguments)
    ok = reply["ok"] is True
    counter.failed += 0 if ok else 1
    text = str(reply["json"] if ok else reply["message"])
    emit(ToolFinished(
        run_id=run_id, depth=depth, call_id=call_id, tool=name,
        duration_s=time.monotonic() - started,
        error=None if ok else f"{reply['kind']}: {text}",
        result_chars=len(text) if ok else 0,
        result_preview=preview(text) if ok else "",
        subcall_id=subcall_id,
        result=text if ok and counter.full else None,
    ))
    return reply


async def _call(tool: Tool, arguments: Mapping[str, object]) -> dict[str, object]:
    try:
        args, kwargs = _bind(tool, arguments)
    except TypeError as exc:
        return tool_error_reply("bad_arguments", f"{tool.signature}: {exc}")
    try:
        async with asyncio.timeout(tool.timeout_s):
            if inspect.iscoroutinefunction(tool.fn) or inspect.iscoroutinefunction(
                getattr(tool.fn, "__call__", None)  # noqa: B004 - a callable object's method
            ):
                value = await tool.fn(*args, **kwargs)
            else:
                value = await _in_daemon_thread(tool.name, tool.fn, args, kwargs)
                if inspect.isawaitable(value):
                    value = await value
    except TimeoutError:
        return tool_error_reply("tool_timeout", f"no answer within {tool.timeout_s:g} s "
                                "(Tool.timeout_s)")
    except BaseException as exc:  # noqa: BLE001 - whatever a tool raises is the model's to see
        return tool_error_reply("tool_error", f"raised {tool_failure(exc)}")
    return _result(tool, value)


class _Raised(Exception):  # noqa: N818 - a carrier, not an error of its own
    """What a sync tool raised in its thread, carried to the awaiting task as it is (a
    ``KeyboardInterrupt`` or ``CancelledError`` set on a future would mean something else)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error


async def carried(awaitable: Awaitable[T]) -> T:
    """``await awaitable`` with whatever a tool's code raises there, but the cancellation of the
    awaiting task, carried as an ``Exception`` that :func:`tool_failure` reads: a task made to
    run a tool's coroutine must never hand ``KeyboardInterrupt`` or ``SystemExit`` to the event
    loop (asyncio re-raises those out of ``run_forever``)."""
    try:
        return await awaitable
    except Exception:
        raise
    except BaseException as exc:  # noqa: BLE001 - carried to the caller, never swallowed
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise asyncio.CancelledError from exc
        raise _Raised(exc) from None


def tool_failure(exc: BaseException) -> str:
    """``"<type>: <message>"`` of what a tool raised (in the tool or in converting its result),
    whatever it is: ``KeyboardInterrupt``, ``SystemExit`` and a ``CancelledError`` the tool
    raised itself included, so that the caller can make it the model's to see. Re-raises only
    the cancellation of the task that awaits the tool (the run being stopped), as
    ``CancelledError``."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        if isinstance(exc, asyncio.CancelledError):
            raise exc
        raise asyncio.CancelledError from exc
    error = exc.error if isinstance(exc, _Raised) else exc
    return f"{type(error).__name__}: {_message(error)}"


def _message(error: BaseException) -> str:
    try:
        return str(error)
    except BaseException:  # noqa: BLE001 - an exception whose own __str__ fails
        return "(its message could not be shown)"


def _bind(tool: Tool, arguments: Mapping[str, object]) -> tuple[list[Any], dict[str, Any]]:
    return call_arguments(tool.fn, arguments)


def call_arguments(fn: Callable[..., Any], arguments: Mapping[str, Any]
                   ) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword arguments for ``fn`` from a ``tool`` call's bound ``arguments``
    (parameter name -> value, as the REPL's function bound them: ``*args`` as a list and
    ``**kwargs`` as a dict under their own names). Raises ``TypeError`` for arguments ``fn``
    does not take, or a missing required one."""
    signature = _signature(fn)
    if signature is None:
        return [], dict(arguments)
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    left = dict(arguments)
    varargs = any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values())
    for param in signature.parameters.values():
        if param.name not in left:
            continue
        value = left.pop(param.name)
        if param.kind is param.VAR_POSITIONAL:
            if not isinstance(value, list):
                raise TypeError(f"*{param.name} must be a list")
            args.extend(value)
        elif param.kind is param.VAR_KEYWORD:
            if not isinstance(value, dict):
                raise TypeError(f"**{param.name} must be a dict")
            kwargs.update(value)
        elif param.kind is param.POSITIONAL_ONLY or (
            varargs and param.kind is param.POSITIONAL_OR_KEYWORD
        ):  # before *args a parameter can only be filled by position
            args.append(value)
        else:
            kwargs[param.name] = value
    if left:
        raise TypeError(f"unexpected argument(s) {', '.join(sorted(left))}")
    signature.bind(*args, **kwargs)  # raises TypeError for a missing required argument
    return args, kwargs


def tool_spec(name: str, fn: Callable[..., Any]) -> ToolSpec:
    """The :class:`ToolSpec` the REPL shows for ``fn`` under ``name`` (no name checks: for
    callers with names of their own, such as DSPy's tools)."""
    return _spec_of(name, _signature(fn), fn)


def _in_daemon_thread(name: str, fn: Callable[..., Any], args: list[Any],
                      kwargs: dict[str, Any]) -> asyncio.Future[Any]:
    """Run a sync tool in a daemon thread of its own: one that hangs past its timeout can
    neither hold a pool's worker nor keep the interpreter from exiting."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def work() -> None:
        try:
            value = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            error: BaseException | None = _Raised(exc)
            value = None
        else:
            error = None
        try:
            loop.call_soon_threadsafe(settle, value, error)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    # in a copy of the caller's context (as asyncio.to_thread): the run's span stays current
    threading.Thread(target=contextvars.copy_context().run, args=(work,),
                     name=f"fastrlm-tool-{name}", daemon=True).start()
    return future


def _result(tool: Tool, value: object) -> dict[str, object]:
    if inspect.iscoroutine(value):
        value.close()  # an async tool's result awaits nothing more: never run, so never warn
    try:
        text = json.dumps(_plain(value), ensure_ascii=False, allow_nan=False)
    except BaseException as exc:  # noqa: BLE001 - a result object's own methods may raise
        # anything (SystemExit from model_dump too): the tool failed, the run goes on
        return tool_error_reply("bad_result", f"returned a {type(value).__name__}, which JSON "
                                f"cannot hold ({tool_failure(exc)}); return "
                                "str, numbers, lists or dicts")
    if len(text) > MAX_TOOL_JSON_CHARS:
        return tool_error_reply("bad_result", f"returned {len(text):,} characters of JSON, "
                                f"over the limit of {MAX_TOOL_JSON_CHARS:,}")
    return {"ok": True, "json": text}


def _plain(value: object) -> object:
    """Dataclasses and pydantic models as dicts (their fields); other values as they are."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return dump(mode="json")
    return value


def _compact(arguments: Mapping[str, object]) -> str:
    try:
        return json.dumps(dict(arguments), ensure_ascii=False)[:400]
    except (TypeError, ValueError):
        return repr(arguments)[:400]


# ---------------------------------------------------------------------- describing a tool
def _first_line(doc: str) -> str:
    return doc.strip().split("\n\n", 1)[0].replace("\n", " ").strip()


def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - annotations that do not resolve are shown as written
        return {}


def _spec_of(name: str, signature: inspect.Signature | None, fn: Callable[..., Any]) -> ToolSpec:
    if signature is None:
        return ToolSpec(name, (ToolParam("kwargs", "var_keyword"),),
                        doc=inspect.getdoc(fn) or "")
    hints = _hints(fn)
    params = []
    for p in signature.parameters.values():
        annotation = hints.get(p.name, p.annotation)
        params.append(ToolParam(
            p.name,
            p.kind.name.lower(),
            None if p.default is p.empty else _shown_default(p.default),
            None if annotation is p.empty else _type_text(annotation),
        ))
    returns = hints.get("return", signature.return_annotation)
    return ToolSpec(
        name, tuple(params),
        None if returns is inspect.Signature.empty else _type_text(returns),
        inspect.getdoc(fn) or "",
    )


def _shown_default(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_text(annotation: object) -> str:
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, type) and not isinstance(annotation, types.GenericAlias):
        return annotation.__qualname__
    return str(annotation).replace("typing.", "")


_JSON_TYPES: dict[object, str] = {str: "string", int: "integer", float: "number",
                                  bool: "boolean", type(None): "null", list: "array",
                                  tuple: "array", dict: "object"}


def _schema_of(signature: inspect.Signature | None, fn: Callable[..., Any]) -> dict[str, Any]:
    """A JSON schema of ``fn``'s parameters from its annotations (unannotated: any value)."""
    if signature is None:
        return {"type": "object", "properties": {}, "additionalProperties": True}
    hints = _hints(fn)
    properties: dict[str, Any] = {}
    required: list[str] = []
    extra = False
    for p in signature.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            extra = True
            continue
        schema = type_schema(hints.get(p.name, Any))
        if p.kind is p.VAR_POSITIONAL:
            schema = {"type": "array", "items": schema}
        elif p.default is not p.empty:
            try:
                json.dumps(p.default)
                schema = {**schema, "default": p.default}
            except (TypeError, ValueError):
                pass
        else:
            required.append(p.name)
        properties[p.name] = schema
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    if not extra:
        out["additionalProperties"] = False
    return out


def type_schema(annotation: object) -> dict[str, Any]:
    """The JSON schema of a Python annotation: builtins, ``list[X]``, ``dict[str, X]``,
    ``X | None``, ``Literal[...]``; anything else accepts any value."""
    if annotation in _JSON_TYPES:
        return {"type": _JSON_TYPES[annotation]}
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [type_schema(a) for a in args]}
    if origin in (list, tuple, set, frozenset) or origin is Iterable:
        item = args[0] if args else Any
        return {"type": "array", "items": type_schema(item)}
    if origin is dict or origin is Mapping:
        value = args[1] if len(args) == 2 else Any
        return {"type": "object", "additionalProperties": type_schema(value)}
    return {}
