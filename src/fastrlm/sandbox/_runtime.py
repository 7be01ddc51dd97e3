"""REPL semantics, identical in every sandbox: the namespace, the REPL API and the answer channel.

This module runs *inside* the worker process (and, for the unsafe ``none`` sandbox, inside a host
thread). It must import nothing from the host beyond the standard library: the worker has no
handle to host objects. Calls to sub-models go through ``host_call(op, payload)``, a synchronous
callable that the sandbox supplies (framed pipes in the worker, a thread hand-off in process).

Why over 500 lines: it is the REPL model code sees, whole (namespace, every REPL function and
the answer channel), and it must be the same in every sandbox; the host-call checks are
:mod:`._hostcalls` and :mod:`._budgetcalls`.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import io
import json
import linecache
import sys
import traceback
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from typing import Any, TextIO, cast

from . import _budgetcalls, _hostcalls, kinds
from ._budgetcalls import (
    BUDGET_OP,
    COMBINE_OP,
    BudgetError,
    CombineKind,
    combine_request,
    combine_value,
)
from ._hostcalls import (
    HOST_CALLS,
    TOOL_OP,
    HostCallSpec,
    ToolError,
    ToolSpec,
    exact_text,
    model_request,
    tool_request,
    tool_value,
)

HostCall = Callable[[str, dict[str, Any]], Any]

MAX_ERROR_CHARS = 4_000
#: The REPL's own files: their frames are left out of the tracebacks model code sees.
_OWN_FILES = frozenset({__file__, _hostcalls.__file__, _budgetcalls.__file__})


class CellTimeout(BaseException):
    """Raised inside a cell by the soft timeout. A BaseException, so ``except Exception`` in model
    code does not swallow it."""


class CappedWriter(io.TextIOBase):
    """A text sink that keeps at most ``limit`` bytes (UTF-8) and counts what it drops."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self._parts: list[str] = []
        self._room = limit
        self.dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        if self._room <= 0:
            self.dropped += len(s)
            return len(s)
        data = s.encode("utf-8", "replace")
        if len(data) <= self._room:
            self._parts.append(s)
            self._room -= len(data)
        else:
            kept = data[: self._room].decode("utf-8", "ignore")
            self._parts.append(kept)
            self.dropped += len(data) - self._room
            self._room = 0
        return len(s)

    def getvalue(self) -> str:
        return "".join(self._parts)


def _describe(value: object) -> str:
    kind = type(value).__name__
    try:
        size = f", len={len(value):,}" if hasattr(value, "__len__") else ""
    except BaseException:  # noqa: BLE001 - a model-defined __len__ may raise anything
        size = ""
    return f"{kind}{size}"


class AnswerTooLarge(ValueError):
    """An answer longer than ``max_answer_chars``."""


def answer_json(value: object) -> object:
    """A dict or list answer as JSON text (what a caller can parse), not a Python repr; anything
    else, or a container JSON cannot hold (a set inside, a cycle), as it is. Raises
    ``ValueError`` for a container nested too deep to write out at all."""
    if isinstance(value, (dict, list)):
        try:
            return json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            return value
        except RecursionError:
            raise ValueError("the answer nests too deep to deliver (past Python's recursion "
                             "limit); deliver a flatter value") from None
    return value


def one_line_error(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception_only(type(exc), exc)).strip()[:MAX_ERROR_CHARS]
    except BaseException:  # noqa: BLE001 - even str(exc) is model code
        return type(exc).__name__


class ReplRuntime:
    """One persistent namespace plus the REPL API. ``execute`` never raises for model errors.

    ``stdout_target`` lets the caller route ``sys.stdout`` itself (the in-process sandbox uses a
    per-thread router); by default ``execute`` swaps ``sys.stdout``/``sys.stderr`` for the cell.
    """

    def __init__(
        self,
        context: object,
        host_call: HostCall,
        *,
        max_output_bytes: int = 1_000_000,
        max_answer_chars: int = 64 * 1024 * 1024,
        tools: Sequence[ToolSpec] = (),
    ) -> None:
        self._host_call = host_call
        self.max_output_bytes = max_output_bytes
        self.max_answer_chars = max_answer_chars
        self._cell = 0
        self._final: tuple[str, str] | None = None
        self.ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        self._originals: dict[str, Any] = {
            "context": context,
            **{spec.name: self._host_function(spec) for spec in HOST_CALLS},
            "budget": self._budget_fn,
            "llm_map": self._llm_map,
            "llm_filter": self._llm_filter,
            "llm_reduce": self._llm_reduce,
            "BudgetError": BudgetError,
            "FINAL": self._final_fn,
            "FINAL_VAR": self._final_var,
            "SHOW_VARS": self._show_vars_fn,
        }
        for spec in tools:
            self._originals[spec.name] = self._tool_function(spec)
        if tools:  # so that `except ToolError:` in model code names something
            self._originals["ToolError"] = ToolError
        self.ns.update(self._originals)
        self._bind_inputs(context)
        self.ns["answer"] = {"content": "", "ready": False}
        self.redirect_streams = True
        #: Appended to a MemoryError: what the limit is and where it is set.
        self.memory_note = ""

    # ----------------------------------------------------------------- REPL API
    def _host_function(self, spec: HostCallSpec) -> Callable[..., object]:
        """The REPL function of host call ``spec`` (a method of this runtime, so every REPL
        function has the same shape): the parameters the entry names, a wrong call a
        ``TypeError`` naming the function; one answer, or a list for a batched call."""
        first, *rest = spec.params
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        params = [inspect.Parameter(first, kind),
                  *(inspect.Parameter(p, kind, default=None) for p in rest)]
        signature = inspect.Signature(params)
        name, batched = spec.name, spec.batched

        def host_function(runtime: ReplRuntime, *args: object, **kwargs: object) -> object:
            try:
                given = signature.bind(*args, **kwargs).arguments
            except TypeError as exc:
                raise TypeError(f"{name}(): {exc}") from None
            contexts = given.get("contexts", given.get("context"))
            answers = runtime._ask(name, given[first], contexts, given.get("model"),
                                   given.get("images"), given.get("budget"))
            return answers if batched else answers[0]

        host_function.__name__ = host_function.__qualname__ = name
        host_function.__doc__ = spec.doc or None
        host_function.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter("self", kind), *params])
        return types.MethodType(host_function, self)

    def _ask(
        self, name: str, prompts: object, contexts: object, model: object, images: object = None,
        budget: object = None,
    ) -> list[str]:
        """One host call; the host answers each prompt with exactly one str (see
        ``_hostops.dispatch``). Raises TypeError/ValueError for arguments it would refuse."""
        request = model_request(name, prompts, contexts, model, images, budget)
        if not request.prompts:
            return []
        answers: list[str] = self._host_call(request.op, request.payload())
        return answers

    def _budget_fn(self) -> dict[str, object]:
        """What is left of this run's budget, read-only and free (no sub-call, nothing
        booked): ``usd``, ``subcalls``, ``requests``, ``input_tokens``, ``output_tokens``,
        ``seconds``, ``depth`` (levels of real ``rlm_query`` children below this run) and
        ``iterations`` (turns) left, ``None`` where nothing limits it; ``"limits"`` holds the
        limits themselves."""
        reply = self._host_call(BUDGET_OP, {})
        if isinstance(reply, dict) and reply.get("error"):
            raise RuntimeError(f"budget(): the host could not read the budget: {reply['error']}")
        return dict(reply)

    def _llm_map(self, template: object, items: object, *, schema: object = None,
                 model: object = None, max_tokens: object = None) -> object:
        """One sub-call per item: ``template`` with the item at ``{item}`` (or after it), all
        at once; returns the answers in order (with ``schema=``, a JSON schema dict, each
        answer parsed and checked, retried within the bound). Before anything is sent the
        cost is bounded and checked against the budget: raises ``BudgetError`` (nothing spent)
        when it cannot fit, or when an item is over the sub-model's window. A call that fails
        anyway answers its slot with an ``"[error: ...]"`` string."""
        return self._combine("llm_map", "map", template, items, schema=schema, model=model,
                             max_tokens=max_tokens)

    def _llm_filter(self, question: object, items: object, *, model: object = None,
                    max_tokens: object = None) -> object:
        """The items for which a sub-model answers yes to ``question`` (one sub-call each,
        bounded like ``llm_map``); an item it could not judge is left out, and said so."""
        if isinstance(items, Iterable) and not isinstance(items, str | bytes | list | tuple):
            items = list(islice(items, _hostcalls.MAX_BATCH_PROMPTS + 1))
        kept = self._combine("llm_filter", "filter", question, items, model=model,
                             max_tokens=max_tokens)
        if not isinstance(kept, dict) or not isinstance(kept.get("keep"), list):
            return []
        if kept.get("unjudged"):
            print(f"llm_filter: {kept['unjudged']} item(s) could not be judged and were left "
                  f"out (first: {kept.get('first_error')})")
        assert isinstance(items, list | tuple)
        return [item for item, keep in zip(items, kept["keep"], strict=False) if keep is True]

    def _llm_reduce(self, template: object, items: object, *, fanin: object = 8,
                    model: object = None, max_tokens: object = None) -> object:
        """Combine ``items`` into one answer by a tree of sub-calls: ``template`` with up to
        ``fanin`` pieces at ``{items}`` (or after it), then the answers combined the same way
        until one is left. An item over the sub-model's window is split into pieces. The whole
        tree's cost is bounded and checked first, like ``llm_map``."""
        return self._combine("llm_reduce", "reduce", template, items, model=model,
                             max_tokens=max_tokens, fanin=fanin)

    def _combine(self, name: str, kind: CombineKind, template: object, items: object,
                 **options: object) -> object:
        request = combine_request(name, kind, template, items, **options)
        return combine_value(name, self._host_call(COMBINE_OP, request.payload()))

    def _tool_function(self, spec: ToolSpec) -> Callable[..., object]:
        """The REPL function of host tool ``spec``: it has the tool's signature (``help()`` and
        ``inspect.signature`` show it), binds its arguments as the tool would (a wrong call is
        a ``TypeError`` here) and sends them to the host; a failed call raises ``ToolError``."""
        signature = _signature_of(spec)
        name = spec.name
        host_call = self._host_call

        def tool(*args: object, **kwargs: object) -> object:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{name}(): {exc}") from None
            return tool_value(name, host_call(TOOL_OP, tool_request(name, bound.arguments)))

        tool.__name__ = tool.__qualname__ = name
        tool.__doc__ = spec.doc or None
        tool.__signature__ = signature  # type: ignore[attr-defined]
        return tool

    def _bind_inputs(self, context: object) -> None:
        """A dict of named inputs (:func:`.kinds.input_names`): each input is also a REPL
        name of its own, bound through :meth:`define` (restored when a cell rebinds it). A
        name a tool already has stays the tool's (the input is ``context[name]``)."""
        try:
            names = kinds.input_names(context)
        except ValueError:  # refused on the host already; never bind a name it refused
            return
        for name in names or ():
            if name not in self._originals:
                self.define(name, context[name])  # type: ignore[index]

    def define(self, name: str, value: object = None, alias: str | None = None) -> None:
        """Bind ``name`` in the namespace as one of the REPL's own names (restored when a cell
        rebinds it): a session's ``context_<n>``, and ``context`` as the latest one. With
        ``alias``, ``name`` is bound to the REPL's own value of that name (no copy)."""
        if alias is not None:
            value = self._originals[alias]
        self.ns[name] = value
        self._originals[name] = value

    def _answer_text(self, value: object, what: str) -> str:
        """``value`` as the answer text, the same for every channel (a dict or list as its JSON,
        see :func:`answer_json`); raises :class:`AnswerTooLarge` past the limit (checked before
        any copy for a str, so a 400 MB str costs nothing)."""
        value = answer_json(value)
        if isinstance(value, str) and len(value) > self.max_answer_chars:
            size = len(value)
        else:
            text = exact_text(value)
            if len(text) <= self.max_answer_chars:
                return text
            size = len(text)
        raise AnswerTooLarge(
            f"{what}: the answer has {size:,} characters, over the limit of "
            f"{self.max_answer_chars:,} (Limits.max_answer_chars). Deliver a shorter answer "
            "(a summary, or the part that was asked for); the run goes on."
        )

    def _final_fn(self, value: object) -> None:
        """Deliver ``value`` as the answer; the run ends after this cell. A str that is just the
        name of one of the model's variables (``FINAL("result")``) delivers that variable: the
        model meant ``FINAL_VAR``, and is told so in the cell's output."""
        if self._final is not None:
            return
        if (isinstance(value, str) and value.isidentifier() and value in self.user_variables()
                and not (isinstance(self.ns[value], str) and self.ns[value] == value)):
            print(f"Note: FINAL({value!r}) names your variable `{value}`, so its value was "
                  f"delivered; FINAL_VAR({value!r}) says that directly.")
            value = self.ns[value]
        self._final = (self._answer_text(value, "FINAL"), "FINAL")

    def _final_var(self, name: object) -> None:
        """Deliver the variable called ``name`` as the answer; the run ends after this cell."""
        if not isinstance(name, str):
            value: object = name
        else:
            key = name.strip().strip("'\"").strip()
            if key not in self.ns or key.startswith("__"):
                names = ", ".join(self.user_variables()) or "(none)"
                raise NameError(
                    f"FINAL_VAR: no variable named {key!r}. Existing variables: {names}. "
                    "To answer with literal text use FINAL(text)."
                )
            value = self.ns[key]
        if self._final is None:
            self._final = (self._answer_text(value, "FINAL_VAR"), "FINAL_VAR")

    def _show_vars_fn(self) -> None:
        """Print the user variables with their types and sizes."""
        print(self.show_vars())

    # ----------------------------------------------------------------- introspection
    def user_variables(self) -> list[str]:
        return [
            k
            for k, v in self.ns.items()
            if not k.startswith("_")
            and k not in self._originals
            and k != "answer"
            and not isinstance(v, types.ModuleType)
        ]

    def show_vars(self) -> str:
        names = self.user_variables()
        if not names:
            return "No variables yet (besides context, answer and the REPL functions)."
        return "\n".join(f"{k}: {_describe(self.ns[k])}" for k in names)

    # ----------------------------------------------------------------- execution
    @contextmanager
    def _streams(self, out: io.TextIOBase, err: io.TextIOBase) -> Iterator[None]:
        if not self.redirect_streams:
            yield
            return
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = cast(TextIO, out), cast(TextIO, err)
        try:
            yield
        finally:
            sys.stdout, sys.stderr = saved

    def execute(self, code: str, out: CappedWriter | None = None,
                err: CappedWriter | None = None) -> dict[str, Any]:
        """Run one cell. Returns the ``ExecResult`` fields as a plain (JSON-able) dict."""
        self._cell += 1
        self._final = None
        out = out or CappedWriter(self.max_output_bytes)
        err = err or CappedWriter(max(self.max_output_bytes // 4, 1024))
        filename = f"<cell-{self._cell}>"
        error: str | None = None
        timed_out = False
        try:
            tree = ast.parse(code, filename, "exec")
        except SyntaxError as exc:
            error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        except Exception as exc:  # noqa: BLE001 - too deep, out of memory: the cell's error
            error = one_line_error(exc)
        else:
            linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
            tail: ast.expr | None = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                tail = tree.body.pop().value  # type: ignore[attr-defined]
            with self._streams(out, err):
                try:
                    exec(compile(tree, filename, "exec"), self.ns)
                    if tail is not None:
                        value = eval(compile(ast.Expression(tail), filename, "eval"), self.ns)
                        if value is not None:
                            print(repr(value))
                except CellTimeout as exc:
                    timed_out = True
                    error = f"TimeoutError: {exc or 'the cell ran past its time limit'}"
                    error += " (variables are kept)"
                except BaseException as exc:  # noqa: BLE001 - model code may raise anything
                    error = self._format_error(exc)
                    if isinstance(exc, MemoryError) and self.memory_note:
                        error += f"\n({self.memory_note})"
        final, content, problem = self._collect()
        restored = self._restore()
        if problem is not None:
            error = problem if error is None else f"{error}\n{problem}"
        return {
            "stdout": out.getvalue(),
            "stderr": err.getvalue(),
            "error": error,
            "final": None if final is None else {"text": final[0], "source": final[1]},
            "answer_content": content,
            "restored": restored,
            "timed_out": timed_out,
            "dropped_bytes": out.dropped + err.dropped,
        }

    def _collect(self) -> tuple[tuple[str, str] | None, str | None, str | None]:
        """Read the cell's answer: (final, answer content, error). Model objects run here
        (``bool(answer["ready"])``, ``str(answer["content"])``, a dict subclass's ``get``):
        whatever they raise, a soft timeout included, becomes the error, and the worker and the
        namespace stay as they are."""
        final = self._final
        content: str | None = None
        answer = self.ns.get("answer")
        try:
            if isinstance(answer, dict):
                raw = dict.get(answer, "content")
                if raw is not None and not (isinstance(raw, str) and raw == ""):
                    content = self._answer_text(raw, "answer['content']")
                if final is None and dict.get(answer, "ready"):
                    final = (content or "", "answer")
                    # delivered once: a session's next question starts with a fresh answer,
                    # so its first cell does not end with this one (as the official package)
                    self.ns["answer"] = {"content": "", "ready": False}
        except BaseException as exc:  # noqa: BLE001 - model objects may raise anything
            return final, None, f"the answer dict could not be read: {one_line_error(exc)}"
        return final, content, None

    def _restore(self) -> list[str]:
        restored = []
        for name, original in self._originals.items():
            if self.ns.get(name) is not original:
                self.ns[name] = original
                restored.append(name)
        if not isinstance(self.ns.get("answer"), dict):
            self.ns["answer"] = {"content": "", "ready": False}
            restored.append("answer")
        return restored

    @staticmethod
    def _format_error(exc: BaseException) -> str:
        frames = [
            f for f in traceback.extract_tb(exc.__traceback__) if f.filename not in _OWN_FILES
        ]
        lines = ["Traceback (most recent call last):\n"]
        lines += traceback.format_list(frames[-8:])
        lines += traceback.format_exception_only(type(exc), exc)
        text = "".join(lines).rstrip()
        if len(text) > MAX_ERROR_CHARS:
            text = "…" + text[-MAX_ERROR_CHARS:]
        return text


class _Shown:
    """A default as the REPL shows it (its repr from the host); never sent: an argument left
    out takes the host function's own default."""

    def __init__(self, text: str) -> None:
        self._text = text

    def __repr__(self) -> str:
        return self._text


def _signature_of(spec: ToolSpec) -> inspect.Signature:
    kinds = {
        "positional_only": inspect.Parameter.POSITIONAL_ONLY,
        "positional_or_keyword": inspect.Parameter.POSITIONAL_OR_KEYWORD,
        "var_positional": inspect.Parameter.VAR_POSITIONAL,
        "keyword_only": inspect.Parameter.KEYWORD_ONLY,
        "var_keyword": inspect.Parameter.VAR_KEYWORD,
    }
    params = [
        inspect.Parameter(
            p.name, kinds[p.kind],
            default=inspect.Parameter.empty if p.default is None else _Shown(p.default),
            annotation=inspect.Parameter.empty if p.annotation is None else _Shown(p.annotation),
        )
        for p in spec.params
    ]
    returns = inspect.Signature.empty if spec.returns is None else _Shown(spec.returns)
    return inspect.Signature(params, return_annotation=returns)
