"""DSPy's ``CodeInterpreter`` on fastrlm's sandbox: ``dspy.RLM`` without Deno, with timeouts.

    import dspy
    from fastrlm.integrations.dspy import FastRLMInterpreter

    rlm = dspy.RLM("context, query -> answer: str, pages: list[int]",
                   interpreter_factory=FastRLMInterpreter.factory(sandbox="auto"))

The extra ``dspy`` (``pip install 'fastrlm[dspy]'``; tested with dspy 3.4.1, pinned
``dspy>=3.4.1,<3.5``: 3.4 replaced ``interpreter=`` by ``interpreter_factory=``). Importing this
module imports ``dspy``; importing ``fastrlm`` does not.

How DSPy's protocol maps onto the sandbox (``docs/architecture.md``, "DSPy bridge"):

- **Code** runs in one persistent worker (bubblewrap or Landlock, seccomp, rlimits: the layer
  :func:`fastrlm.sandbox.create_sandbox` gives for ``sandbox``), with the soft timeout
  (``SandboxLimits.exec_timeout_s``: the cell gets a ``TimeoutError``, state kept) and the hard
  one (``+ hard_grace_s``: the worker is killed and replaced; the inputs, tools and DSPy's setup
  cells are put back before the next cell). Either is a :class:`CodeExecutionError`, so
  ``dspy.RLM`` shows it to the model and goes on.
- **Tools**: ``llm_query`` / ``llm_query_batched`` are the REPL's own functions; the bridge
  answers them with DSPy's tools of those names (on the host, in the caller's ``dspy.context``),
  failures as ``"[error: ...]"`` strings. Every other tool (the user's, DSPy's sub-agent facade)
  is a REPL function of the tool's signature, bound before each cell (so tools DSPy adds,
  changes or removes on a live interpreter take effect at the next cell), that makes the
  sandbox's ``tool`` host call through the one tool every worker starts with; the bridge runs
  the tool on the host. Arguments and results are JSON, by DSPy's rules; a failure is a
  ``ToolError`` (a ``RuntimeError``) in the cell.
- **Results** are DSPy's: the trailing expression's value, else the printed output as printed;
  a failure worded ``"<Type>: <args>"`` (docs/architecture.md, "DSPy's interpreter contract").
- **SUBMIT(...)** checks the output fields and delivers them through the REPL's ``FINAL`` as
  JSON; :meth:`FastRLMInterpreter.execute` returns them as a ``FinalOutput``.
- **Variables**: an input is sent once, when it is new or its value changed (``dspy.RLM`` passes
  every input on every step). An input named ``context`` becomes the sandbox's ``context`` (the
  sealed, read-only buffer, decoded once); the worker is started with it when it first arrives,
  and the cells run before it (DSPy's setup) are run again there. Other inputs go in through
  the sandbox's one way to put a value into a live REPL, :meth:`~fastrlm.sandbox.Sandbox.define`
  (each input's payload under a private name, :func:`._dspy_cells.staged_name`), then an
  assignment cell rebuilds them (no source literal to parse) and the staged payloads are
  released. A DataFrame arrives as a DataFrame (Parquet through pandas in the worker), except
  as ``context``, which arrives as a list of row dicts.

A cell whose ``variables`` are all private names (``_x``, ``__dspy_host_token``) is a *setup
cell*: DSPy's facade install and ``SandboxSerializable`` inputs are. Setup cells are run again,
in order, whenever the worker is replaced.

Why over 500 lines: DSPy's interpreter contract is one object (start, execute with variables,
tools re-registered between cells, SUBMIT, shutdown) and its thread bridge to the sandbox.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import inspect
import json
import re
import threading
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from .._core.sync import SyncRunner
from .._core.tools import carried, tool_failure
from .._foundation.error_text import error_text
from .._foundation.errors import ContextError, MissingExtraError, SandboxError
from .._foundation.wire import MAX_TOOL_JSON_CHARS
from ..sandbox import (
    KINDS,
    MAX_FRAME_BYTES,
    MAX_TOOL_NAME_CHARS,
    RESERVED_NAMES,
    ExecResult,
    HandlerBridge,
    HostOpRequest,
    HostRequest,
    Sandbox,
    SandboxLimits,
    ToolSpec,
    create_sandbox,
)
from . import _dspy_cells as cells

try:
    from dspy.primitives.code_interpreter import (
        CodeExecutionError,
        CodeInterpreterError,
        FinalOutput,
    )
except ImportError as exc:
    raise MissingExtraError("dspy", "dspy", "fastrlm.integrations.dspy") from exc

__all__ = ["FastRLMInterpreter", "InterpreterFactory"]

T = TypeVar("T")

#: The tools answered through the REPL's own ``llm_query`` functions, not the ``tool`` call.
NATIVE_TOOLS = frozenset({"llm_query", "llm_query_batched"})
#: Names a tool or an input may not take: the REPL's own (``context`` is allowed as an input:
#: it becomes the sandbox's context), its ``ToolError``, DSPy's ``SUBMIT`` and ``print``.
_TAKEN = frozenset(RESERVED_NAMES) | {"SUBMIT", "ToolError", "print", "__builtins__"}
_PRIVATE = re.compile(r"_fastrlm|_Fastrlm")
_NO_VALUE = object()

_WHERE = {
    "none": "in the host process (fastrlm's unsafe debugging sandbox)",
    "process": "in a separate process (seccomp: no network; the file system stays readable)",
}
INSTRUCTIONS = (
    "Code runs as CPython {where}. Variables, imports and functions persist between steps. The "
    "host tools and SUBMIT are global functions; a failed tool call raises ToolError (a "
    "RuntimeError); `llm_query` failures come back as text starting with `[error:`. A step "
    "that runs longer than {soft} gets a TimeoutError (variables kept); one that ignores it is "
    "killed and the REPL restarts with only your inputs. `answer` is a name the sandbox keeps "
    "for itself: do not assign it (a value you give it is discarded after the step)."
)


def instructions(kind: str, soft: str) -> str:
    """What ``dspy.RLM`` tells its model about this runtime (``execution_instructions``)."""
    where = _WHERE.get(kind, "in fastrlm's sandbox: no network, a read-only file system, a "
                             "private /tmp")
    return INSTRUCTIONS.format(where=where, soft=soft)


class _Bridge:
    """The sandbox's :class:`~fastrlm.sandbox.HostBridge` for one interpreter: ``llm_query``
    prompts go to DSPy's ``llm_query`` tools, ``tool`` calls to the named tool; ``rlm_query``
    is refused (a text the model reads)."""

    def __init__(self, interpreter: FastRLMInterpreter) -> None:
        self._interpreter = interpreter
        self._ops = HandlerBridge({
            "llm_query": lambda request: self.llm_query_batched(request.prompts, request.model),
            "rlm_query": self._no_rlm_query,
            "tool": lambda request: self.call_tool(request.name, request.arguments),
        })

    async def call(self, op: str, request: HostOpRequest) -> object:
        """The one :class:`~fastrlm.sandbox.HostBridge` method, through the handler table."""
        return await self._ops.call(op, request)

    @staticmethod
    async def _no_rlm_query(request: HostRequest) -> list[str]:
        return [error_text("subcalls_disabled", "rlm_query is not available under dspy.RLM: "
                           "use llm_query, or a dspy.RLM sub-agent (import dspy)")
                ] * len(request.prompts)

    async def llm_query_batched(self, prompts: list[str], model: str | None) -> list[str]:
        """``llm_query`` / ``llm_query_batched``: DSPy's tools of those names answer."""
        if model is not None:
            return [error_text("unknown_model", f"no model {model!r} here: dspy.RLM has one "
                               "sub-model (its sub_lm); call llm_query(prompt)")] * len(prompts)
        tools = self._interpreter.tools
        single, batched = tools.get("llm_query"), tools.get("llm_query_batched")
        try:
            if single is not None and (len(prompts) == 1 or batched is None):
                answers = [await self._run(single, prompt) for prompt in prompts]
            elif batched is not None:
                answers = list(await self._run(batched, prompts))
            else:
                return [error_text("subcalls_disabled", "this interpreter was given no "
                                   "llm_query tool")] * len(prompts)
            shown = [a if isinstance(a, str) else str(a) for a in answers]
        except BaseException as exc:  # noqa: BLE001 - a failed tool is the prompt's answer,
            # whatever it raises (but the run's own cancellation)
            return [error_text("subcall_failed", tool_failure(exc))] * len(prompts)
        return shown

    async def call_tool(self, name: str, arguments: dict[str, object]) -> dict[str, object]:
        """The sandbox's ``tool`` host call: run DSPy tool ``name`` with the arguments the REPL's
        function bound; ``{"ok": True, "json": text}`` or ``{"ok": False, "kind": ...,
        "message": ...}`` (the cell gets a ``ToolError``, a ``RuntimeError``)."""
        if name == cells.DISPATCH_TOOL:  # a DSPy tool's REPL function: the real name inside
            name, arguments = str(arguments.get("name")), arguments.get("arguments")  # type: ignore[assignment]
            if not isinstance(arguments, dict):
                return _failed("bad_arguments", f"{name}(): the arguments must be a dict")
        tool = self._interpreter.tools.get(name)
        if tool is None or name in NATIVE_TOOLS:
            return _failed("unknown_tool", f"there is no host tool {name!r} now")
        try:
            args, kwargs = cells.call_arguments(tool, arguments)
        except TypeError as exc:
            return _failed("bad_arguments", f"{name}(): {exc}")
        try:
            value = await self._run(tool, *args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - the tool's failure is the model's to see,
            # whatever it raises (but the run's own cancellation)
            return _failed("tool_error", tool_failure(exc))
        try:
            text = cells.value_json(value)
        except BaseException as exc:  # noqa: BLE001 - a result's own methods may raise anything
            return _failed("bad_result", f"CodeInterpreterError: {name} returned what JSON "
                           f"cannot hold: {tool_failure(exc)}")
        if len(text) > MAX_TOOL_JSON_CHARS:
            return _failed("bad_result", f"{name} returned {len(text):,} characters of JSON, "
                           f"over the limit of {MAX_TOOL_JSON_CHARS:,}")
        return {"ok": True, "json": text}

    async def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in a thread, in the context of the caller of ``execute`` (so
        ``dspy.context(lm=...)`` reaches it); an awaitable result is awaited there too."""
        context = self._interpreter._caller_context.copy()
        loop = asyncio.get_running_loop()
        value = await loop.run_in_executor(None, context.run, functools.partial(fn, *args,
                                                                                **kwargs))
        if inspect.isawaitable(value):
            value = await loop.create_task(carried(value), context=context)
        return value


def _failed(kind: str, message: str) -> dict[str, object]:
    return {"ok": False, "kind": kind, "message": message}


class InterpreterFactory:
    """A zero-argument callable making :class:`FastRLMInterpreter`\\ s with fixed options, for
    ``dspy.RLM(interpreter_factory=...)``; its ``execution_instructions`` (added to the root's
    prompt by ``dspy.RLM``) state the time limit."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        limits = options.get("limits") or SandboxLimits()
        self.execution_instructions = instructions(options.get("sandbox", "auto"),
                                                   f"{limits.exec_timeout_s:g} s")

    def __call__(self) -> FastRLMInterpreter:
        return FastRLMInterpreter(**self.options)

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"FastRLMInterpreter.factory({options})"


class FastRLMInterpreter:
    """DSPy's ``CodeInterpreter`` protocol on one fastrlm sandbox worker (see the module
    docstring for the mapping).

    ``tools``: host callables the code may call by name (``dspy.RLM`` adds its own to this
    dict); ``output_fields``: DSPy's ``[{"name": ..., "type": ...}]`` for ``SUBMIT`` (``None``:
    ``SUBMIT(output)``); ``sandbox``: a :func:`~fastrlm.sandbox.create_sandbox` kind (``"auto"``:
    bubblewrap, else Landlock, never an unconfined one); ``limits``: the worker's
    :class:`~fastrlm.sandbox.SandboxLimits` (timeouts, memory, output). Raises ``ValueError``
    for an unknown sandbox kind or a tool name the REPL cannot bind.
    """

    execution_instructions: ClassVar[str] = instructions("auto", "its time limit")

    def __init__(
        self,
        tools: dict[str, Callable[..., Any]] | None = None,
        output_fields: list[dict[str, Any]] | None = None,
        *,
        sandbox: str = "auto",
        limits: SandboxLimits | None = None,
    ) -> None:
        if sandbox not in KINDS:
            raise ValueError(
                f"unknown sandbox kind {sandbox!r}; expected one of {', '.join(KINDS)}"
            )
        if limits is not None and not isinstance(limits, SandboxLimits):
            raise TypeError(f"limits must be a fastrlm.sandbox.SandboxLimits, not "
                            f"{type(limits).__name__}")
        self.tools: dict[str, Callable[..., Any]] = dict(tools or {})
        self._check_tools()
        self.output_fields = output_fields
        self.sandbox_kind = sandbox
        self.limits = limits if limits is not None else SandboxLimits()
        self._portal: SyncRunner | None = None
        self._sandbox: Sandbox | None = None
        self._context: object = _NO_VALUE  # what the worker's `context` holds
        self._values: dict[str, object] = {}  # inputs bound in the namespace, by name
        self._fresh = True  # the worker holds none of them yet
        self._setup: list[str] = []  # setup cells, replayed on a new worker
        self._model_cells = 0  # cells run on this worker that were not setup cells
        self._layer: str | None = None
        self._lock = threading.Lock()
        self._ended = False
        self._caller_context = contextvars.copy_context()
        #: How many workers this interpreter started (a replaced worker counts again).
        self.workers_started = 0

    @classmethod
    def factory(cls, **options: Any) -> InterpreterFactory:
        """``interpreter_factory=FastRLMInterpreter.factory(sandbox=..., limits=...)``."""
        cls(**options)  # check the options now, not at the first forward
        return InterpreterFactory(**options)

    @property
    def layer(self) -> str | None:
        """The isolation the worker ran under (``"bwrap+seccomp+rlimits"``, ...; kept after
        :meth:`shutdown`), or None before the first cell."""
        return self._layer

    # ----------------------------------------------------------------- protocol
    def start(self) -> None:
        """Prepare the event loop (the worker starts with the first cell, so that an input
        named ``context`` can be its context). Idempotent; raises ``CodeInterpreterError``
        after :meth:`shutdown`."""
        if self._ended:
            raise CodeInterpreterError("this FastRLMInterpreter session has ended (shutdown() was "
                                       "called); create a new interpreter for a fresh session")
        if self._portal is None:
            # the worker is bound to the loop that started it, so every cell runs on this one
            self._portal = SyncRunner("fastrlm-dspy-interpreter")

    def execute(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        """Run ``code`` after binding ``variables``. Returns the cell's output (``None`` when
        it printed nothing) or a ``FinalOutput`` when it called ``SUBMIT``. Raises
        ``SyntaxError``, ``CodeExecutionError`` (the code failed or timed out: recoverable), or
        ``CodeInterpreterError`` (bad arguments, no sandbox, shut down)."""
        if not isinstance(code, str):
            raise CodeInterpreterError(f"code must be a str, not {type(code).__name__}")
        if variables is not None and not isinstance(variables, dict):
            raise CodeInterpreterError("variables must be a dict of names to values")
        variables = dict(variables or {})
        try:
            self._check_tools()
            cells.field_names(self.output_fields)
        except ValueError as exc:
            raise CodeInterpreterError(str(exc)) from None
        for name in variables:
            if name != "context":
                try:
                    cells.check_name(name, "input", _TAKEN | set(self.tools))
                except ValueError as exc:
                    raise CodeInterpreterError(f"Invalid variable name: {name!r} ({exc})") from None
        if not self._lock.acquire(blocking=False):
            raise CodeInterpreterError(
                "this FastRLMInterpreter is already running a cell: it cannot execute "
                "recursively from one of its tools, nor from two threads at once"
            )
        try:
            self.start()
            assert self._portal is not None
            self._caller_context = contextvars.copy_context()
            return self._portal.run(self._execute(code, variables))
        finally:
            self._lock.release()

    def shutdown(self) -> None:
        """Stop the worker and the loop. Idempotent."""
        self._ended = True
        portal, self._portal = self._portal, None
        if portal is None:
            return
        try:
            if self._sandbox is not None:
                portal.run(self._sandbox.close())
        finally:
            self._sandbox = None
            portal.close()

    def __enter__(self) -> FastRLMInterpreter:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.shutdown()

    def __call__(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        return self.execute(code, variables)

    # ----------------------------------------------------------------- the cell
    async def _execute(self, code: str, variables: dict[str, Any]) -> Any:
        setup = bool(variables) and all(name.startswith("_") for name in variables)
        context = variables.pop("context", _NO_VALUE)
        if self._sandbox is None:
            await self._start_worker(None if context is _NO_VALUE else context)
        elif context is not _NO_VALUE and not _same(context, self._context):
            if self._model_cells:
                raise CodeInterpreterError(
                    "the `context` input changed after cells ran: it is the sandbox's read-only "
                    "context, fixed by the first cell that is not a setup cell; pass the same "
                    "`context` from that cell on, and make a new interpreter for another one"
                )
            await self._start_worker(context)
        changed = {k: v for k, v in variables.items()
                   if k not in self._values or not _same(v, self._values[k])}
        await self._prepare(changed)
        result = await self._cell(cells.run_cell(code))
        if result.restarted:
            self._fresh = True
            raise CodeExecutionError(
                f"{result.error or 'the worker was replaced'}\nYour inputs and the tools are set "
                "again before your next step; every other variable is gone."
            )
        if setup and result.error is None:
            self._setup.append(code)
        elif not setup:
            self._model_cells += 1
        return _outcome(result, self.output_fields)

    async def _start_worker(self, context: object) -> None:
        """A new worker holding ``context``, replacing the current one (DSPy's setup cells are
        replayed on it by :meth:`_prepare`)."""
        try:
            shipped = None if context is None else cells.context_value(context)
        except TypeError as exc:
            raise CodeInterpreterError(f"the `context` input cannot be sent: {exc}") from None
        if self._sandbox is not None:
            old, self._sandbox = self._sandbox, None
            await old.close()
        limits = dataclasses.replace(self.limits, tools=(cells.DISPATCH_SPEC,))
        try:
            sandbox = create_sandbox(self.sandbox_kind, limits)
        except SandboxError as exc:
            raise CodeInterpreterError(f"the fastrlm sandbox cannot start here: {exc} (see "
                                       "`fastrlm doctor`)") from exc
        try:
            await sandbox.start(shipped, _Bridge(self))
        except (SandboxError, ContextError) as exc:
            await sandbox.close()
            raise CodeInterpreterError(f"the fastrlm sandbox did not start: {exc}") from exc
        self._sandbox = sandbox
        self._layer = sandbox.layer
        self._context = context
        self._fresh = True
        self._model_cells = 0
        self.workers_started += 1

    async def _prepare(self, changed: dict[str, object]) -> None:
        """Bind the tools and SUBMIT, then the inputs that changed; on a fresh worker every
        input and the setup cells. A worker replaced in the meantime is prepared again, once.
        An input counts as sent only once its cell ran; after a failure the next call prepares
        the worker from scratch."""
        for _attempt in range(2):
            fresh, self._fresh = self._fresh, True
            values = {**self._values, **changed} if fresh else changed
            payloads = await asyncio.to_thread(_payloads, values)
            steps = [cells.bind_cell(self.output_fields, self._tool_specs())]
            if values:
                steps.append(cells.assignment_cell(
                    {name: kind for name, (kind, _) in payloads.items()}))
            if fresh:
                steps += [cells.run_cell(code) for code in self._setup]
            try:
                await self._stage(payloads)
                for step in steps:
                    result = await self._cell(step)
                    if result.restarted:
                        break
                    if result.error is not None:
                        raise CodeInterpreterError(
                            f"the interpreter could not prepare the sandbox: {result.error}"
                        )
                else:
                    self._values.update(changed)
                    self._fresh = False
                    return
            finally:
                await self._release(payloads)
        raise CodeInterpreterError("the sandbox worker was replaced twice while being prepared")

    async def _stage(self, payloads: dict[str, tuple[str, str]]) -> None:
        """Put each input's payload text into the REPL under its staged name
        (``Sandbox.define``), for the assignment cell to rebuild."""
        assert self._sandbox is not None
        for name, (_kind, text) in payloads.items():
            try:
                await self._sandbox.define(cells.staged_name(name), text)
            except ContextError as exc:
                raise CodeInterpreterError(f"input {name!r} cannot be sent to the sandbox: "
                                           f"{exc}") from None
            except SandboxError as exc:
                raise CodeInterpreterError(f"the fastrlm sandbox failed: {exc}") from exc

    async def _release(self, payloads: dict[str, tuple[str, str]]) -> None:
        """Drop the staged payloads (the worker and the host's record of what was defined
        keep none of them past the cell that used them)."""
        if self._sandbox is None:
            return
        for name in payloads:
            try:
                await self._sandbox.define(cells.staged_name(name), None)
            except (ContextError, SandboxError):  # the worker is gone: so is the payload
                return

    async def _cell(self, code: str) -> ExecResult:
        assert self._sandbox is not None
        try:
            return await self._sandbox.execute(code)
        except SandboxError as exc:  # no fresh worker could start: the session is over
            raise CodeInterpreterError(f"the fastrlm sandbox failed: {exc}") from exc

    def _tool_specs(self) -> list[ToolSpec]:
        """What the REPL shows of the host tools now (``llm_query*`` are the REPL's own): DSPy
        adds, changes and removes tools between cells, so they are bound before each one."""
        try:
            return [cells.tool_spec(name, self.tools[name])
                    for name in sorted(set(self.tools) - NATIVE_TOOLS)]
        except (TypeError, ValueError) as exc:
            raise CodeInterpreterError(f"a tool cannot be offered to the sandbox: {exc}") from None

    def _check_tools(self) -> None:
        for name in self.tools:
            if name not in NATIVE_TOOLS:
                cells.check_name(name, "tool", _TAKEN)
            if isinstance(name, str) and _PRIVATE.match(name):
                raise ValueError(f"tool name {name!r} is taken by fastrlm's DSPy bridge")
            if len(name) > MAX_TOOL_NAME_CHARS:
                raise ValueError(f"tool name {name[:20]!r}... is longer than the "
                                 f"{MAX_TOOL_NAME_CHARS} characters the sandbox allows")


#: The largest payload of one input, in bytes of the frame it travels in (the worker's
#: protocol caps a frame at ``MAX_FRAME_BYTES``; the rest is room for the frame's other fields).
MAX_INPUT_BYTES = MAX_FRAME_BYTES - 1024 * 1024


def _frame_bytes(text: str) -> int:
    """How many bytes ``text`` takes in a frame (JSON, UTF-8): measured only when it might not
    fit, since no character takes more than 6."""
    if len(text) * 6 <= MAX_INPUT_BYTES:
        return len(text)
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass")) - 2


def _payloads(values: dict[str, object]) -> dict[str, tuple[str, str]]:
    """Each input's payload (:func:`._dspy_cells.payload`). Raises ``CodeInterpreterError``
    naming an input that cannot be sent or is too large to."""
    payloads = {}
    for name, value in values.items():
        try:
            kind, text = cells.payload(value)
        except TypeError as exc:
            raise CodeInterpreterError(f"input {name!r} cannot be sent to the sandbox: {exc}"
                                       ) from None
        size = _frame_bytes(text)
        if size > MAX_INPUT_BYTES:
            raise CodeInterpreterError(
                f"input {name!r} takes {size:,} bytes once encoded, over the "
                f"{MAX_INPUT_BYTES:,} one input may take; pass it as `context` (the sandbox's "
                "own buffer, any size its memory allows)"
            )
        payloads[name] = (kind, text)
    return payloads


def _same(a: object, b: object) -> bool:
    """Whether input ``a`` is the value already sent as ``b`` (so it is not sent again)."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if cells.is_dataframe(a):
        return bool(a.equals(b))  # type: ignore[attr-defined]
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - an odd __eq__: send it again
        return False


def _outcome(result: ExecResult, output_fields: list[dict[str, Any]] | None) -> Any:
    """What ``execute`` returns (or raises) for a cell's result, as DSPy's own interpreter:
    ``FinalOutput`` for SUBMIT; the trailing expression's value when it is not None, else the
    printed output (``""`` when none); ``SyntaxError("Invalid Python syntax. message: ")`` or
    ``CodeExecutionError("<Type>: <args>")`` for a failure (the traceback and the printed
    output are the exception's notes)."""
    delivery = None if result.final is None else cells.delivered(result.final.text)
    if delivery is not None and delivery[0] == cells.SUBMIT_KEY:
        return FinalOutput(delivery[1])
    output = result.stdout
    if result.stderr:
        output += ("\n" if output and not output.endswith("\n") else "") + result.stderr
    if result.error is not None:
        raise _failure(result, output, delivery)
    if delivery is not None and delivery[0] == cells.VALUE_KEY:
        return delivery[1]
    if result.final is not None:  # fastrlm's FINAL or answer dict: the text, as the one output
        names = [str(f["name"]) for f in output_fields or [{"name": "output"}]]
        return FinalOutput({names[0]: result.final.text} if len(names) == 1
                           else result.final.text)
    notes = []
    if result.dropped_bytes:
        notes.append(f"[{result.dropped_bytes:,} more bytes of output were dropped]")
    kept = [n for n in result.restored if n != "answer"]
    if "answer" in result.restored:
        notes.append("[note: `answer` is kept by the sandbox; the value you gave it was "
                     "discarded: use another name]")
    if kept:
        notes.append(f"[note: {', '.join(kept)} cannot be rebound here and were restored]")
    if notes:
        output += ("\n" if output and not output.endswith("\n") else "") + "\n".join(notes)
    return output


def _failure(result: ExecResult, output: str,
             delivery: tuple[str, Any] | None) -> SyntaxError | CodeExecutionError:
    """The exception for a failed cell, worded as DSPy's interpreter words it (``SyntaxError:
    Invalid Python syntax. message: ``; else ``<Type>: <args as a list>``, or ``<Type>: <its
    last traceback line>`` when it has no args). A timeout keeps fastrlm's own text (DSPy's
    interpreter has none)."""
    assert result.error is not None
    error: SyntaxError | CodeExecutionError
    if result.timed_out or delivery is None or delivery[0] != cells.ERROR_KEY:
        error = CodeExecutionError(f"{output.rstrip()}\n{result.error}" if output.strip()
                                   else result.error)
        return error
    kind, args = delivery[1]["type"], delivery[1]["args"]
    if kind == "SyntaxError":
        error = SyntaxError("Invalid Python syntax. message: ")
    else:
        error = CodeExecutionError(f"{kind}: {args or result.error.strip().rsplit(chr(10), 1)[-1]}")
    error.add_note(_cell_traceback(result.error))
    if output.strip():
        error.add_note(f"printed before the error:\n{output.rstrip()}")
    return error


def _cell_traceback(text: str) -> str:
    """The runtime's traceback from the first frame of the DSPy cell on (the runner's frames
    are the bridge's, not the model's)."""
    at = text.find(f'  File "{cells.CELL_FILENAME}"')
    return text if at < 0 else "Traceback (most recent call last):\n" + text[at:]
