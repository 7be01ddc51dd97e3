"""Typed events: the one stream the CLI, the trace writer and the server all consume.

Every event has a stable ``type`` string, the ``run_id`` of the RLM run that emitted it (a child
RLM has its own ``run_id`` and names its parent), its ``depth`` (root = 0) and a wall-clock
``ts``. ``to_dict()`` gives the JSON form used by ``--stream-json`` and the trace;
``event_from_dict`` rebuilds the typed event from it, for a trace written by any version (fields
it lacks get empty defaults, fields this version does not know are kept in ``extra``, an event
type it does not know becomes an :class:`UnknownEvent`), so ``to_dict()`` gives back what was
read. Events never carry the context itself: only its sha256, size and shape.
"""

from __future__ import annotations

import copy
import time
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from typing import Any, ClassVar


@dataclass(frozen=True, kw_only=True)
class Event:
    type: ClassVar[str] = "event"
    run_id: str
    depth: int = 0
    ts: float = field(default_factory=time.time)
    # Fields of a recorded event that this version does not know (a trace written by a newer
    # version, or what the trace writer adds): kept so that to_dict() loses nothing.
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: every field (containers copied), the unknown ``extra`` fields under
        them, and ``type``. Built from the instance's fields directly, not through
        ``dataclasses.asdict``: the trace writer calls this for every event of a fan-out."""
        return self._json_form(self.type, "extra")

    def _json_form(self, kind: str, *hidden: str) -> dict[str, Any]:
        data = dict(self.__dict__)
        for name in hidden:
            del data[name]
        if self.extra:
            data = {**self.extra, **data}
        if not _ATOMS.issuperset(map(type, data.values())):
            for name, value in data.items():  # rebinding keys only: no resize while iterating
                data[name] = _copied(value)
        data["type"] = kind
        return data


@dataclass(frozen=True, kw_only=True)
class RunStarted(Event):
    """A run began. ``context`` is ``ContextInfo.to_dict()`` (sha256, type, sizes; no text)."""

    type: ClassVar[str] = "run.started"
    parent_run_id: str | None
    question: str
    model: str
    sub_model: str
    context: dict[str, Any]
    sandbox: str
    budget: dict[str, Any]
    session_id: str | None = None  # rlm.session(): every question's run carries its id
    session_question: int = 0  # 1, 2, ... within the session (0: not in a session)
    #: RLM(candidates=k): the candidate (0..k-1) this run is; None for any other run. Every
    #: event of the candidate carries its run_id, which leads here.
    candidate: int | None = None


@dataclass(frozen=True, kw_only=True)
class IterationStarted(Event):
    type: ClassVar[str] = "iteration.started"
    iteration: int
    max_iterations: int


@dataclass(frozen=True, kw_only=True)
class ModelResponse(Event):
    """The root model's reply for one iteration (the code it wrote lives in here).

    Tokens and cost are what the budget ledger booked for the call, failed attempts included
    (``attempts`` HTTP requests); ``anomaly`` says why the provider's reported usage cannot be
    true (booked as reported all the same)."""

    type: ClassVar[str] = "model.response"
    iteration: int
    model: str
    text: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_s: float
    attempts: int = 1
    anomaly: str | None = None
    #: What the provider's reply said of itself (None where it did not say, or on a cache hit
    #: for the endpoint): the model that answered, the reply's id, why it stopped, and the
    #: endpoint's host and port (OpenTelemetry's ``gen_ai.response.*`` and ``server.*``).
    response_model: str | None = None
    response_id: str | None = None
    finish_reason: str | None = None
    server_address: str | None = None
    server_port: int | None = None


@dataclass(frozen=True, kw_only=True)
class ModelCallFailed(Event):
    """A root turn got no answer (after its retries); what its attempts cost, as booked."""

    type: ClassVar[str] = "model.failed"
    iteration: int
    model: str
    error: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    attempts: int


@dataclass(frozen=True, kw_only=True)
class CallRetrying(Event):
    """An LM request failed and will be sent again after ``wait_s`` seconds (the provider's
    retry policy), as it happens: ``attempt`` is the number of the attempt that failed,
    ``subcall`` says whether the call is a sub-call (else a root turn). The failed attempt is
    booked at its worst case (a reservation for the budget, not a charge)."""

    type: ClassVar[str] = "call.retrying"
    model: str
    attempt: int
    error: str
    wait_s: float
    subcall: bool = False


@dataclass(frozen=True, kw_only=True)
class CodeExecuted(Event):
    """One code block ran. ``output`` is what the model was shown (already truncated)."""

    type: ClassVar[str] = "code.executed"
    iteration: int
    block: int
    code: str
    output: str
    output_chars: int
    error: str | None
    duration_s: float
    timed_out: bool = False
    restarted: bool = False
    restored: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class SubcallStarted(Event):
    """A sub-call was admitted by the budget gate and is about to be sent."""

    type: ClassVar[str] = "subcall.started"
    call_id: str
    model: str
    prompt_chars: int
    prompt_sha256: str
    prompt_preview: str
    prompt: str | None = None  # only with full tracing
    round: int = 0  # a sub-agent's tool round (1, 2, ...); 0 for a plain sub-call
    agent_id: str | None = None  # a sub-agent's rounds share the call_id of its first round


@dataclass(frozen=True, kw_only=True)
class SubcallFinished(Event):
    """A sub-call ended, answered or not (``error``). Tokens and cost are the ledger's booking
    for all its ``attempts``; ``anomaly`` flags usage the provider cannot have used."""

    type: ClassVar[str] = "subcall.finished"
    call_id: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_s: float
    cached: bool
    error: str | None
    response_chars: int
    response_preview: str
    attempts: int = 1
    anomaly: str | None = None
    round: int = 0
    agent_id: str | None = None
    tool_calls: int = 0  # tool calls the sub-model asked for in this round
    #: As :class:`ModelResponse`'s: the reply's own model, id, finish reason, endpoint.
    response_model: str | None = None
    response_id: str | None = None
    finish_reason: str | None = None
    server_address: str | None = None
    server_port: int | None = None
    response: str | None = None  # only with full tracing, like SubcallStarted.prompt


@dataclass(frozen=True, kw_only=True)
class ToolStarted(Event):
    """A host tool was called: by root code (``subcall_id`` None) or by a sub-agent (the
    ``call_id`` of its first round). Arguments appear as a preview only."""

    type: ClassVar[str] = "tool.started"
    call_id: str
    tool: str
    arguments_preview: str
    subcall_id: str | None = None
    arguments: str | None = None  # the whole arguments (JSON), only with full tracing


@dataclass(frozen=True, kw_only=True)
class ToolFinished(Event):
    """A host tool call ended: ``error`` is ``"<kind>: <message>"`` when it failed."""

    type: ClassVar[str] = "tool.finished"
    call_id: str
    tool: str
    duration_s: float
    error: str | None
    result_chars: int
    result_preview: str
    subcall_id: str | None = None
    result: str | None = None  # the whole result, only with full tracing


@dataclass(frozen=True, kw_only=True)
class SubcallsRefused(Event):
    """Sub-calls the budget gate refused; they were never sent."""

    type: ClassVar[str] = "subcalls.refused"
    count: int
    reason: str
    message: str


@dataclass(frozen=True, kw_only=True)
class ChildRunStarted(Event):
    """Emitted by the parent; the child's own events carry ``child_run_id`` as their run_id."""

    type: ClassVar[str] = "child.started"
    child_run_id: str
    prompt_preview: str
    model: str


@dataclass(frozen=True, kw_only=True)
class ChildRunFinished(Event):
    type: ClassVar[str] = "child.finished"
    child_run_id: str
    stop_reason: str
    cost_usd: float
    answer_preview: str


@dataclass(frozen=True, kw_only=True)
class SandboxStarted(Event):
    """The REPL worker is ready. ``layer`` names the isolation really in force."""

    type: ClassVar[str] = "sandbox.started"
    layer: str
    unsafe: bool
    startup_s: float


@dataclass(frozen=True, kw_only=True)
class SandboxRestarted(Event):
    type: ClassVar[str] = "sandbox.restarted"
    reason: str


@dataclass(frozen=True, kw_only=True)
class BudgetWarning(Event):
    """A limit passed 80% of its allowance (sent once per limit and run tree). ``run_id`` and
    ``depth`` are those of the run whose call took it past the mark."""

    type: ClassVar[str] = "budget.warning"
    resource: str
    fraction: float


@dataclass(frozen=True, kw_only=True)
class FinalAnswer(Event):
    type: ClassVar[str] = "final"
    source: str
    answer_chars: int
    answer_preview: str


@dataclass(frozen=True, kw_only=True)
class RunFinished(Event):
    """A run ended. For the top-level run this is the last event of the stream.

    ``subcalls`` and ``cost_usd`` cover this run and its children. The top-level run also
    carries the tree's ledger totals: ``requests`` sent, ``subcalls_refused``,
    ``subcalls_failed`` and ``limited_by`` (the first budget limit that refused a call)."""

    type: ClassVar[str] = "run.finished"
    stop_reason: str
    answer: str
    iterations: int
    subcalls: int
    usage: dict[str, Any]
    cost_usd: float
    duration_s: float
    error: str | None
    error_kind: str | None = None
    requests: int = 0
    subcalls_refused: int = 0
    subcalls_failed: int = 0
    limited_by: str | None = None
    tool_calls: int = 0  # host tool calls of the whole tree (depth 0 only)


@dataclass(frozen=True, kw_only=True)
class UnknownEvent(Event):
    """A recorded event whose type this version does not know: its fields stay in ``extra``
    and ``to_dict()`` writes it back under its own ``event_type``."""

    type: ClassVar[str] = "unknown"
    event_type: str

    def to_dict(self) -> dict[str, Any]:
        return self._json_form(self.event_type, "extra", "event_type")


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        RunStarted,
        IterationStarted,
        ModelResponse,
        ModelCallFailed,
        CallRetrying,
        CodeExecuted,
        SubcallStarted,
        SubcallFinished,
        SubcallsRefused,
        ChildRunStarted,
        ChildRunFinished,
        SandboxStarted,
        SandboxRestarted,
        ToolStarted,
        ToolFinished,
        BudgetWarning,
        FinalAnswer,
        RunFinished,
    )
}


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """Rebuild an event from its ``to_dict()`` form, as written by this or any other version.

    A field the record lacks gets its constant default, else an empty value of its type
    (``""``, ``0``, ``0.0`` for ``ts``, ``None`` for an optional field, ``[]``, ...); keys the
    class does not have are kept in ``extra``; an unknown ``type`` gives an
    :class:`UnknownEvent`. So ``event_from_dict(d).to_dict()`` holds every key of ``d``, with
    the same value."""
    exact = _EXACT.get(data.get("type"))
    if exact is not None and data.keys() == exact[1]:
        # The common case (a record this version wrote): every field there, nothing else. The
        # same event as below, made with no per-field work: the record, less its type, becomes
        # the instance's __dict__ (a 100,000-call trace rebuilds 200,000 of these at once).
        fields_of = dict(data)
        del fields_of["type"]
        fields_of["extra"] = {}
        event = object.__new__(exact[0])
        object.__setattr__(event, "__dict__", fields_of)
        return event
    kind = str(data.get("type", ""))
    cls = EVENT_TYPES.get(kind, UnknownEvent)
    spec = _SPECS.get(cls) or _SPECS.setdefault(cls, _Spec.of(cls))
    values = {**spec.constants, **data}
    values.pop("type", None)
    # a set difference (nearly always empty): a trace of a 100,000-call fan-out is 200,000
    # records, read in one go
    extra = {name: values.pop(name) for name in values.keys() - spec.names}
    for name, make in spec.factories.items():
        if name not in data:
            values[name] = make()
    values["extra"] = extra
    if cls is UnknownEvent:
        values["event_type"] = kind
    # the fields set as the frozen __init__ would set them, without its per-field setattr
    event = object.__new__(cls)
    event.__dict__.update(values)
    return event


@dataclass(frozen=True)
class _Spec:
    """What a record that lacks a field of one event class gets for it: a shared immutable
    value (``constants``) or a fresh one (``factories``: dicts, lists)."""

    names: frozenset[str]
    constants: dict[str, Any]
    factories: dict[str, Callable[[], Any]]

    @classmethod
    def of(cls, event_class: type[Event]) -> _Spec:
        hints = typing.get_type_hints(event_class)
        constants: dict[str, Any] = {}
        factories: dict[str, Callable[[], Any]] = {}
        for f in fields(event_class):
            if f.name in ("extra", "event_type"):
                continue
            if f.default is not MISSING:
                constants[f.name] = f.default
                continue
            # ts too: a record without a time was not made now
            empty = _empty_of(hints[f.name])
            if empty in (dict, list):
                factories[f.name] = empty
            else:
                constants[f.name] = empty()
        return cls(frozenset(constants) | frozenset(factories), constants, factories)


_SPECS: dict[type[Event], _Spec] = {}

# Per event type: its class and the keys of a record that has exactly the class's fields.
_EXACT: dict[Any, tuple[type[Event], frozenset[str]]] = {
    kind: (cls, frozenset(f.name for f in fields(cls) if f.name != "extra") | {"type"})
    for kind, cls in EVENT_TYPES.items()
}


def _empty_of(hint: Any) -> Callable[[], Any]:
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) and type(None) in args:
        return lambda: None
    origin = typing.get_origin(hint) or hint
    if origin in (str, int, float, bool, dict, list):
        return typing.cast(Callable[[], Any], origin)
    raise TypeError(f"no empty value for a field of type {hint!r}")


_ATOMS = frozenset({str, int, float, bool, type(None)})


def _copied(value: Any) -> Any:
    """``value`` copied as ``dataclasses.asdict`` copies a field (dicts, lists and tuples
    rebuilt, dataclasses turned into dicts, anything else deep-copied), so that changing what
    ``to_dict()`` returned never changes the event."""
    kind = type(value)
    if kind in _ATOMS:
        return value
    if kind is dict or isinstance(value, Mapping):
        return {key: _copied(item) for key, item in value.items()}
    if kind is list:
        return [_copied(item) for item in value]
    if kind is tuple:
        return tuple(_copied(item) for item in value)
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return copy.deepcopy(value)


EventCallback = Callable[[Event], object]


def preview(text: str, limit: int = 200) -> str:
    """A short one-line preview of ``text`` for events and displays."""
    flat = " ".join(text[: 8 * limit].split())  # never split a 400 MB answer whole
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def progress_line(event: Event) -> str | None:
    """The progress line for an engine event worth telling a person about, else ``None`` (the
    MCP server's progress notifications and the HTTP server's reasoning deltas). Child runs
    (``depth`` > 0) report through their parent's sub-call events."""
    if event.depth and not isinstance(event, SubcallFinished):
        return None
    if isinstance(event, IterationStarted):
        return f"iteration {event.iteration}/{event.max_iterations}"
    if isinstance(event, CodeExecuted):
        state = " (timed out)" if event.timed_out else " (error)" if event.error else ""
        return f"ran code block {event.block} of iteration {event.iteration}{state}"
    if isinstance(event, SubcallFinished):
        return "sub-call " + ("failed" if event.error else "answered")
    if isinstance(event, SubcallsRefused):
        return f"{event.count} sub-call(s) refused: {event.message}"
    if isinstance(event, BudgetWarning):
        return f"budget: {event.resource} at {float(event.fraction):.0%}"
    if isinstance(event, FinalAnswer):
        return f"answer ready ({event.answer_chars:,} chars)"
    return None
