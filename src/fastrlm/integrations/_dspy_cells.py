"""The cells the DSPy interpreter runs in the sandbox besides the model's own: pure functions that
build their source, and read back what they deliver.

- :func:`bind_cell` (run before every model cell): defines ``SUBMIT`` for the output fields,
  the REPL functions of the host tools (from :func:`tool_spec`; each calls the one dispatching
  host tool, :data:`DISPATCH_TOOL`) and the runner of DSPy cells.
- :func:`payload` and :func:`assignment_cell` (run when an input is new or changed): each
  input's payload is put into the REPL under :func:`staged_name` by ``Sandbox.define`` (so it
  crosses to the worker once, as data), and the cell rebuilds the input from it.
- :func:`run_cell` (each DSPy cell): runs the cell as DSPy's interpreter does.
- :func:`delivered`: reading back what a cell delivered (SUBMIT, its value, its exception).

Everything here is text handling on the host; the generated cells use the standard library
only (and ``pandas`` for a DataFrame input, imported in the worker from the host's packages).
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import io
import json
import keyword
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._core import tools as _tools
from ..sandbox import ToolParam, ToolSpec

#: How deeply a value sent to or from the sandbox may nest.
MAX_DEPTH = 200
#: The private REPL name an input's payload is defined under while it is being sent.
STAGED_PREFIX = "_fastrlm_input_"
#: The key of the JSON object ``SUBMIT`` delivers through ``FINAL``.
SUBMIT_KEY = "__fastrlm_dspy_submit__"
#: The key of the JSON object a cell's trailing expression value is delivered under.
VALUE_KEY = "__fastrlm_dspy_value__"
#: The key of the JSON object a failed cell's exception (type name and args) is delivered under.
ERROR_KEY = "__fastrlm_dspy_error__"
#: The exception ``SUBMIT`` raises to end the cell (a ``BaseException``: ``except Exception`` in
#: model code does not stop it). The cell's answer is already delivered, so the error it leaves
#: is never shown: a delivered answer wins over the cell's error.
SUBMIT_STOP = "_FastrlmSubmitted"
#: The one host tool every worker is started with: the REPL functions of DSPy's tools call it
#: with their name and bound arguments, so tools can be added, changed or removed between
#: cells of a live worker (the sandbox's own tool functions are fixed when it starts).
DISPATCH_TOOL = "_fastrlm_tool"
#: The filename DSPy cells are compiled under (tracebacks show their lines).
CELL_FILENAME = "<dspy-cell>"

_BIND_TEMPLATE = '''\
import json as _fastrlm_json


class {stop}(BaseException):
    """SUBMIT was called: the rest of the cell does not run."""


def _fastrlm_plain(value):
    """What JSON cannot hold, as the closest thing it can."""
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    for method in ("model_dump", "tolist", "item"):
        if callable(getattr(value, method, None)):
            return getattr(value, method)()
    if type(value).__name__ == "DataFrame" and callable(getattr(value, "to_dict", None)):
        return value.to_dict(orient="records")
    return str(value)


def _fastrlm_deliver(key, value, _final=FINAL):
    """Hand ``value`` to the host under ``key`` (through FINAL, as JSON)."""
    try:
        text = _fastrlm_json.dumps({{key: value}}, ensure_ascii=False, default=_fastrlm_plain)
    except (TypeError, ValueError, RecursionError):  # a cycle, an odd default: as text
        text = _fastrlm_json.dumps({{key: str(value)}}, ensure_ascii=False)
    _final(text)


def _fastrlm_run(source, _deliver=_fastrlm_deliver, _stop={stop}):
    """Run one DSPy cell as DSPy's interpreter does: the trailing expression's value is
    delivered (when not None); an exception's type and args are delivered, then re-raised."""
    import ast
    import linecache

    linecache.cache[{filename!r}] = (len(source), None, source.splitlines(True), {filename!r})
    scope = globals()
    try:
        tree = ast.parse(source, {filename!r}, "exec")
        tail = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            tail = ast.Expression(tree.body.pop().value)
        exec(compile(tree, {filename!r}, "exec"), scope)
        value = None if tail is None else eval(compile(tail, {filename!r}, "eval"), scope)
    except _stop:
        raise
    except BaseException as exc:
        try:
            args = _fastrlm_json.loads(_fastrlm_json.dumps(list(exc.args), default=str))
        except BaseException:  # args that even str() fails on: none shown
            args = []
        _deliver({error_key!r}, {{"type": type(exc).__name__, "args": args}})
        raise
    if value is not None:
        _deliver({value_key!r}, value)


def _fastrlm_submit(names, _deliver=_fastrlm_deliver, _stop={stop}):
    """DSPy's SUBMIT: a function whose parameters are the output fields."""
    scope = {{"_deliver": _deliver, "_stop": _stop}}
    fields = ", ".join(f"{{name!r}}: {{name}}" for name in names)
    exec(
        f"def SUBMIT({{', '.join(names)}}):\\n"
        f"    _deliver({submit_key!r}, {{{{{{fields}}}}}})\\n"
        f"    raise _stop('SUBMIT')\\n",
        scope,
    )
    SUBMIT = scope["SUBMIT"]
    SUBMIT.__doc__ = f"Deliver the outputs and end the run: SUBMIT({{', '.join(names)}})"
    return SUBMIT


def _fastrlm_tool_function(spec):
    """The REPL function of host tool ``spec``: the tool's signature, a call through the one
    dispatching host tool."""
    import inspect

    kinds = {{
        "positional_only": inspect.Parameter.POSITIONAL_ONLY,
        "positional_or_keyword": inspect.Parameter.POSITIONAL_OR_KEYWORD,
        "var_positional": inspect.Parameter.VAR_POSITIONAL,
        "keyword_only": inspect.Parameter.KEYWORD_ONLY,
        "var_keyword": inspect.Parameter.VAR_KEYWORD,
    }}

    class Shown:
        def __init__(self, text):
            self.text = text

        def __repr__(self):
            return self.text

    params = [
        inspect.Parameter(
            name, kinds[kind],
            default=inspect.Parameter.empty if default is None else Shown(default),
            annotation=inspect.Parameter.empty if annotation is None else Shown(annotation),
        )
        for name, kind, default, annotation in spec["params"]
    ]
    returns = spec.get("returns")
    signature = inspect.Signature(
        params, return_annotation=inspect.Signature.empty if returns is None else Shown(returns)
    )
    name = spec["name"]

    def tool(*args, **kwargs):
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{{name}}(): {{exc}}") from None
        try:
            return {dispatch}(name, dict(bound.arguments))
        except ToolError as exc:  # named for the tool the code called, not the dispatcher
            message = str(exc).removeprefix({dispatch!r} + ": ").removesuffix(f" [{{exc.kind}}]")
            raise ToolError(name, exc.kind, message) from None

    tool.__name__ = tool.__qualname__ = name
    tool.__doc__ = spec.get("doc") or None
    tool.__signature__ = signature
    tool._fastrlm_host_tool = True
    return tool


def _fastrlm_bind_tools(specs):
    """Bind the host tools of ``specs`` (dropping those bound before and now gone)."""
    import types

    scope = globals()
    for name in [name for name, value in scope.items()
                 if type(value) is types.FunctionType
                 and value.__dict__.get("_fastrlm_host_tool")]:
        del scope[name]
    for spec in specs:
        scope[spec["name"]] = _fastrlm_tool_function(spec)


SUBMIT = _fastrlm_submit({names!r})
_fastrlm_bind_tools(_fastrlm_json.loads({specs!r}))
'''


def check_name(name: object, what: str, reserved: frozenset[str]) -> str:
    """``name`` if it can be bound in the sandbox's namespace. Raises ``ValueError`` naming the
    problem (not an identifier, a keyword, or one of ``reserved``)."""
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"{what} name {name!r} is not a Python identifier")
    if name in reserved:
        raise ValueError(
            f"{what} name {name!r} is taken by fastrlm's REPL ({', '.join(sorted(reserved))}); "
            "rename it"
        )
    return name


def bind_cell(output_fields: list[dict[str, Any]] | None, tools: Sequence[ToolSpec] = ()) -> str:
    """The cell run before every DSPy cell: it (re)defines ``SUBMIT`` for ``output_fields``
    (DSPy's ``[{"name": ..., "type": ...}]``; ``None``: one value, ``SUBMIT(output)``), the REPL
    functions of host ``tools`` (the ones bound before and gone now are dropped) and the runner
    of DSPy cells (:func:`run_cell`)."""
    names = field_names(output_fields)
    specs = json.dumps([spec.to_wire() for spec in tools], ensure_ascii=False)
    return _BIND_TEMPLATE.format(
        stop=SUBMIT_STOP, submit_key=SUBMIT_KEY, value_key=VALUE_KEY, error_key=ERROR_KEY,
        dispatch=DISPATCH_TOOL, filename=CELL_FILENAME, names=names, specs=specs,
    )


def field_names(output_fields: list[dict[str, Any]] | None) -> list[str]:
    """The parameters of ``SUBMIT`` for DSPy's ``output_fields`` (``["output"]`` for None).
    Raises ``ValueError`` for a malformed field list, a name that is not a Python identifier
    (or is a keyword) or a name given twice."""
    if output_fields is None:
        return ["output"]
    if not isinstance(output_fields, list) or not all(
            isinstance(f, Mapping) and "name" in f for f in output_fields):
        raise ValueError("output_fields must be a list of {'name': ..., 'type': ...} dicts")
    names = [check_name(f["name"], "output field", frozenset()) for f in output_fields]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"output field name(s) {', '.join(twice)} given more than once")
    return names


def run_cell(code: str) -> str:
    """The cell that runs DSPy cell ``code`` through the runner :func:`bind_cell` defines (its
    trailing value and its exception are delivered to the host; see :func:`delivered`)."""
    return f"_fastrlm_run({code!r})\n"


#: The one host tool a worker starts with (:data:`DISPATCH_TOOL`).
DISPATCH_SPEC = ToolSpec(
    name=DISPATCH_TOOL,
    params=(ToolParam("name", "positional_or_keyword", None, "str"),
            ToolParam("arguments", "positional_or_keyword", None, "dict")),
    doc="Call host tool `name` with its bound arguments (the REPL functions of DSPy's tools do).",
)


def tool_spec(name: str, fn: Callable[..., Any]) -> ToolSpec:
    """What the REPL shows of host tool ``fn`` under ``name`` (its signature and docstring):
    the sandbox binds a function of that signature that makes the ``tool`` host call."""
    return _tools.tool_spec(name, fn)


#: Positional and keyword arguments for a host function from a ``tool`` call's bound arguments
#: (the engine's own binding, shared with ``RLM(tools=...)``).
call_arguments = _tools.call_arguments


def delivered(text: str) -> tuple[str, Any] | None:
    """What a cell delivered through ``FINAL``, if ``text`` came from the bind cell's
    functions: ``(SUBMIT_KEY, fields)``, ``(VALUE_KEY, value)`` or ``(ERROR_KEY, {"type": ...,
    "args": [...]})``; None for any other text (the model's own ``FINAL``)."""
    if not text.startswith('{"__fastrlm_dspy_'):
        return None
    try:
        outcome = json.loads(text)
    except (ValueError, RecursionError):  # model-made text: a plain answer, whatever it holds
        return None
    if not isinstance(outcome, dict) or len(outcome) != 1:
        return None
    (key, value), = outcome.items()
    if key == SUBMIT_KEY and isinstance(value, dict):
        return key, value
    if key == ERROR_KEY and isinstance(value, dict) and isinstance(value.get("type"), str) \
            and isinstance(value.get("args"), list):
        return key, value
    if key == VALUE_KEY:
        return key, value
    return None


def is_dataframe(value: object) -> bool:
    """A pandas DataFrame (checked without importing pandas)."""
    return any(
        cls.__name__ == "DataFrame" and cls.__module__.startswith("pandas")
        for cls in type(value).__mro__
    )


def jsonable(value: Any, *, depth: int = 0) -> Any:
    """``value`` as plain JSON data, as DSPy's interpreter converts values: pydantic models
    dumped, dataclasses and named tuples as dicts, tuples as lists, sets as sorted lists (in
    their own order when they cannot be sorted), what pydantic can encode (dates, enums, UUIDs)
    encoded, anything else as it is (``json.dumps`` decides). Raises ``TypeError`` for a
    pydantic model that cannot be dumped or nesting past :data:`MAX_DEPTH`."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if depth > MAX_DEPTH:
        raise TypeError(f"it is nested deeper than {MAX_DEPTH} levels; flatten it")
    deeper = functools.partial(jsonable, depth=depth + 1)
    if callable(getattr(value, "model_dump", None)) and not isinstance(value, type):
        try:
            return deeper(value.model_dump(mode="json"))
        except Exception as exc:  # noqa: BLE001 - a model's own serializers may raise anything
            raise TypeError(f"Unable to serialize {type(value).__name__} as JSON: {exc}"
                            ) from None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        try:
            return deeper(dataclasses.asdict(value))
        except Exception:  # noqa: BLE001 - a field deepcopy refuses: JSON (or str) decides
            return value
    if isinstance(value, tuple) and callable(getattr(value, "_asdict", None)):
        return deeper(value._asdict())  # type: ignore[attr-defined]
    if isinstance(value, dict):
        return {k: deeper(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [deeper(v) for v in value]
    if isinstance(value, set | frozenset):
        try:
            return [deeper(v) for v in sorted(value)]
        except TypeError:
            return [deeper(v) for v in value]
    from pydantic_core import PydanticSerializationError, to_jsonable_python

    try:
        return to_jsonable_python(value)
    except PydanticSerializationError:
        return value


def value_json(value: Any) -> str:
    """The JSON text of a tool's result or an input, as DSPy's interpreter sends it: None as
    ``""``, :func:`jsonable` data as JSON (no NaN), else its ``str``. Raises ``TypeError`` as
    :func:`jsonable` does."""
    value = jsonable(value)
    if value is None:
        value = ""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps(str(value), ensure_ascii=False)


def context_value(value: object) -> object:
    """An input named ``context`` as the sandbox's context: str and JSON data as they are, a
    DataFrame as a list of row dicts (the sandbox's context is text or JSON)."""
    if isinstance(value, str):
        return value
    if is_dataframe(value):
        return json.loads(value.to_json(orient="records", date_format="iso"))  # type: ignore[attr-defined]
    return jsonable(value)


def payload(value: object) -> tuple[str, str]:
    """``value`` as ``(kind, text)`` for the worker to rebuild (:data:`_DECODERS`): a str as
    it is, bytes as base64, a DataFrame as Parquet in base64 (dtypes kept; pandas' JSON table
    form without pyarrow), anything else as JSON. Raises ``TypeError`` for a value that fits
    none of these."""
    if isinstance(value, str):
        return "str", value
    if isinstance(value, bytes):
        return "bytes", base64.b64encode(value).decode("ascii")
    if is_dataframe(value):
        frame: Any = value
        try:
            buffer = io.BytesIO()
            frame.to_parquet(buffer)
        except ImportError:
            return "frame_json", frame.to_json(orient="table", date_format="iso")
        return "parquet", base64.b64encode(buffer.getvalue()).decode("ascii")
    if type(value) is list or type(value) is dict:  # plain data (most inputs): as it is,
        try:  # without a walk of each of its items in Python
            return "json", json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError):  # sets, models ...: converted below
            pass
    try:
        return "json", json.dumps(jsonable(value), ensure_ascii=False)
    except (TypeError, ValueError) as exc:  # an object JSON has no form for: refused, as DSPy
        raise TypeError(f"Unsupported value type: {exc}") from None


#: How the worker rebuilds each payload kind from its text (``t``).
_DECODERS = {
    "str": "t",
    "bytes": "__import__('base64').b64decode(t)",
    "json": "_fastrlm_json.loads(t)",
    "parquet": "__import__('pandas').read_parquet(__import__('io').BytesIO("
               "__import__('base64').b64decode(t)))",
    "frame_json": "__import__('pandas').read_json(__import__('io').StringIO(t), orient='table')",
}


def staged_name(name: str) -> str:
    """The REPL name input ``name``'s payload is defined under (``Sandbox.define``) until the
    assignment cell has rebuilt it: private, so never a user variable."""
    return STAGED_PREFIX + name


def assignment_cell(kinds: Mapping[str, str]) -> str:
    """The cell that binds each input of ``kinds`` (name -> payload kind; names already
    checked) from its payload, defined in the REPL under :func:`staged_name` (no source literal
    for the worker to parse), rebuilt by its kind's decoder."""
    lines = ["import json as _fastrlm_json"]
    for name, kind in kinds.items():
        lines.append(f"{name} = (lambda t: {_DECODERS[kind]})({staged_name(name)})")
    return "\n".join(lines) + "\n"
