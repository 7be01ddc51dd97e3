"""The cells the DSPy interpreter runs in the sandbox besides the model's own: pure functions that
build their source, and read back what they deliver.

- :func:`bind_cell` (run before every model cell): defines ``SUBMIT`` for the output fields.
  (Host tools are the REPL's own functions, from :func:`tool_spec`: the sandbox's ``tool``
  host call.)
- :func:`payload` and :func:`assignment_cell` (run when an input is new or changed): each
  input's payload is put into the REPL under :func:`staged_name` by ``Sandbox.define`` (so it
  crosses to the worker once, as data), and the cell rebuilds the input from it.
- :func:`submitted`: reading ``SUBMIT``'s delivery back.

Everything here is text handling on the host; the generated cells use the standard library
only (and ``pandas`` for a DataFrame input, imported in the worker from the host's packages).
"""

from __future__ import annotations

import base64
import io
import json
import keyword
from collections.abc import Callable, Mapping
from typing import Any

from .._core import tools as _tools
from ..sandbox import ToolSpec

#: The private REPL name an input's payload is defined under while it is being sent.
STAGED_PREFIX = "_fastrlm_input_"
#: The key of the JSON object ``SUBMIT`` delivers through ``FINAL``.
SUBMIT_KEY = "__fastrlm_dspy_submit__"
#: The exception ``SUBMIT`` raises to end the cell (a ``BaseException``: ``except Exception`` in
#: model code does not stop it). The cell's answer is already delivered, so the error it leaves
#: is never shown: a delivered answer wins over the cell's error.
SUBMIT_STOP = "_FastrlmSubmitted"

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


def _fastrlm_submit(names, _final=FINAL):
    def SUBMIT(*args, **kwargs):
        if names is None:
            if len(args) != 1 or kwargs:
                raise TypeError("SUBMIT takes one value: SUBMIT(output)")
            values = {{"output": args[0]}}
        else:
            if len(args) > len(names):
                raise TypeError(
                    f"SUBMIT takes {{len(names)}} values ({{', '.join(names)}}), got {{len(args)}}"
                )
            values = dict(zip(names, args))
            twice = sorted(set(values) & set(kwargs))
            if twice:
                raise TypeError(f"SUBMIT got {{twice}} both by position and by name")
            values.update(kwargs)
            unknown = sorted(set(values) - set(names))
            missing = [n for n in names if n not in values]
            if unknown or missing:
                raise TypeError(
                    f"SUBMIT needs exactly the fields {{', '.join(names)}}"
                    + (f"; missing {{missing}}" if missing else "")
                    + (f"; unknown {{unknown}}" if unknown else "")
                )
        _final(_fastrlm_json.dumps({{{key!r}: values}}, ensure_ascii=False,
                                   default=_fastrlm_plain))
        raise {stop}("SUBMIT")

    fields = ", ".join(names or ["output"])
    SUBMIT.__doc__ = f"Deliver the outputs and end the run: SUBMIT({{fields}})"
    return SUBMIT


SUBMIT = _fastrlm_submit({names!r})
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


def bind_cell(output_fields: list[dict[str, Any]] | None) -> str:
    """The cell that (re)defines ``SUBMIT`` for ``output_fields`` (DSPy's ``[{"name": ...,
    "type": ...}]``; ``None``: one value, ``SUBMIT(output)``)."""
    names = None if output_fields is None else [str(f["name"]) for f in output_fields]
    return _BIND_TEMPLATE.format(stop=SUBMIT_STOP, key=SUBMIT_KEY, names=names)


def tool_spec(name: str, fn: Callable[..., Any]) -> ToolSpec:
    """What the REPL shows of host tool ``fn`` under ``name`` (its signature and docstring):
    the sandbox binds a function of that signature that makes the ``tool`` host call."""
    return _tools.tool_spec(name, fn)


#: Positional and keyword arguments for a host function from a ``tool`` call's bound arguments
#: (the engine's own binding, shared with ``RLM(tools=...)``).
call_arguments = _tools.call_arguments


def submitted(text: str) -> dict[str, Any] | None:
    """The field values ``SUBMIT`` delivered, if ``text`` (a FINAL answer) came from it."""
    if not text.startswith("{") or SUBMIT_KEY not in text:
        return None
    try:
        outcome = json.loads(text)
    except (ValueError, RecursionError):  # model-made text: a plain answer, whatever it holds
        return None
    if isinstance(outcome, dict) and set(outcome) == {SUBMIT_KEY}:
        values = outcome[SUBMIT_KEY]
        if isinstance(values, dict):
            return values
    return None


def is_dataframe(value: object) -> bool:
    """A pandas DataFrame (checked without importing pandas)."""
    return any(
        cls.__name__ == "DataFrame" and cls.__module__.startswith("pandas")
        for cls in type(value).__mro__
    )


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: pydantic models dumped, tuples and sets as lists, what
    pydantic can encode (dates, enums, dataclasses) encoded. Raises ``TypeError`` when nothing
    fits."""
    try:
        json.dumps(value, allow_nan=True)
        return value
    except RecursionError:
        raise TypeError("it is nested too deeply for JSON; flatten it") from None
    except (TypeError, ValueError):
        pass
    if isinstance(value, (set, frozenset)):
        try:
            return [jsonable(v) for v in sorted(value)]
        except TypeError:
            return [jsonable(v) for v in value]
    from pydantic_core import PydanticSerializationError, to_jsonable_python

    try:
        return to_jsonable_python(value)
    except PydanticSerializationError as exc:
        raise TypeError(f"a {type(value).__name__} cannot be sent as JSON: {exc}") from None


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
    return "json", json.dumps(jsonable(value), ensure_ascii=False)


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
