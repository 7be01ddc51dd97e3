"""Record a run as it happens, and replay it: the engine side of resume and fork.

One :class:`Recorder` per run tree (on its :class:`~fastrlm._core.call_tree.CallTree`) sits at
the few doors everything a replay needs passes through:

- every root reply (top-level and child runs), by the run's *scope* and turn number;
- every host operation, at the one entry the sandbox calls (``SubcallBridge.call``), keyed by
  the op and its request: whatever op the host table holds, now or later, is recorded and
  replayed with no branch of its own;
- every plain sub-call reply, by its messages, so a fan-out cut short replays the answers it got;
- every cell's output (its digest), to find where a replay stops matching.

Live, each is written to the run's record (``trace/_record.py``: the file, its fsync policy).
Replaying, each is answered from a :class:`Recorded` first, and goes live once the record has
no more: the recorded run's spend is carried into the new ledger once (:meth:`Recorded.carry`)
and answering from the record costs nothing. A cell whose output differs from the record ends
the run with :class:`~fastrlm.trace.ReplayError` (the first divergence, never skipped).

Scopes name runs the same way in every process: ``""`` is the top-level run, a child is its
parent's scope, the digest of its prompt and model, and its occurrence (``/3fa9...#0``). Every
entry carries ``t``, the top-level turn it happened in, so a fork at turn k keeps what happened
before k and nothing after.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._foundation.budget import Budget
from .._foundation.errors import ReplayError
from .._foundation.events import EventCallback
from .._foundation.text import json_text
from .._foundation.usage import TokenUsage
from ..lm import ChatMessage, LMResponse
from .ledger import Account, Booking, BudgetLedger

if TYPE_CHECKING:
    from ..trace import RecordFile

log = logging.getLogger("fastrlm")

#: Characters of a cell's output kept in the record, to show a divergence.
_PREVIEW_CHARS = 300


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def request_key(op: str, request: object) -> str:
    """The key of one host request: its op and every field, so a replay answers only the same
    request (a dataclass request is taken field by field)."""
    fields = asdict(request) if is_dataclass(request) and not isinstance(request, type) \
        else request
    return _sha(op + "\n" + json_text(fields, sort_keys=True, default=repr))


def call_key(model: str, messages: Iterable[ChatMessage], max_tokens: int) -> str:
    """The key of one plain sub-call: its model, messages and output cap."""
    return _sha(json_text([model, list(messages), max_tokens], sort_keys=True, default=repr))


@dataclass
class Recorded:
    """A run's record, indexed for replay. ``head`` is its first entry (the question, models),
    ``turns`` the top-level replies it holds. Built by :func:`load`."""

    head: dict[str, Any]
    turns: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    host: dict[tuple[str, str], deque[dict[str, Any]]] = field(
        default_factory=lambda: defaultdict(deque))
    calls: dict[str, deque[dict[str, Any]]] = field(default_factory=lambda: defaultdict(deque))
    cells: dict[tuple[str, int, int], dict[str, Any]] = field(default_factory=dict)
    #: What the recorded run paid, one row per model and top-level turn (see :func:`_row`).
    spent: list[dict[str, Any]] = field(default_factory=list)

    @property
    def top_turns(self) -> int:
        """How many top-level root replies the record holds."""
        return sum(1 for scope, _ in self.turns if scope == "")

    @property
    def usd(self) -> float:
        return sum(float(e.get("usd", 0.0)) for e in self.spent)

    @property
    def seconds(self) -> float:
        return max((float(e.get("el", 0.0)) for e in self.spent), default=0.0)

    @property
    def subcalls(self) -> int:
        return sum(int(e.get("subs", 0)) for e in self.spent)

    def carried(self) -> list[dict[str, Any]]:
        """The spend as rows for the new run's head: one per model and turn, so the new
        record holds it once (its replayed entries are written unpaid) and a fork of it
        still keeps only what was spent before its turn."""
        rows: dict[tuple[str, int], dict[str, Any]] = {}
        for entry in self.spent:
            if not any(entry[name] for name in ("in", "out", "usd", "subs", "req")):
                continue  # a replayed or given reply: nothing was paid for it here
            key = (str(entry["m"]), int(entry["t"]))
            row = rows.setdefault(key, {"m": key[0], "t": key[1], "in": 0, "out": 0,
                                        "usd": 0.0, "subs": 0, "req": 0, "el": 0.0})
            for name in ("in", "out", "usd", "subs", "req"):
                row[name] += entry[name]
            row["el"] = max(row["el"], entry["el"])
        return list(rows.values())

    def carry(self, ledger: BudgetLedger, account: Account) -> None:
        """Book the recorded spend into ``ledger`` once, per model."""
        for row in self.carried():
            ledger.carry(row["m"], TokenUsage(int(row["in"]), int(row["out"])),
                         float(row["usd"]), subcalls=int(row["subs"]), requests=int(row["req"]),
                         account=account)
        ledger.carry_seconds(self.seconds)


def _row(entry: dict[str, Any]) -> dict[str, Any]:
    """A paid entry (or a carried row) as a spend row."""
    return {"m": str(entry.get("m", "")), "t": int(entry.get("t", 0)),
            "in": int(entry.get("in", 0)), "out": int(entry.get("out", 0)),
            "usd": float(entry.get("usd", 0.0)),
            "subs": int(entry.get("subs", int(bool(entry.get("sub"))))),
            "req": int(entry.get("req", 0)), "el": float(entry.get("el", 0.0))}


def _unpaid(entry: dict[str, Any], turn: int) -> dict[str, Any]:
    """A replayed entry as the new record keeps it: its spend is in the head's rows."""
    return {**entry, "t": turn, "usd": 0.0, "in": 0, "out": 0, "req": 0, "sub": False}


def load(entries: list[dict[str, Any]], *, before_turn: int | None = None,
         reply: str | None = None) -> Recorded:
    """Index a record's ``entries`` (``trace.read_record``). With ``before_turn`` (a fork), only
    what happened before that top-level turn is kept, and ``reply`` (if given) is the
    top-level reply of that turn. Raises :class:`ReplayError` for a record with no head."""
    if not entries or entries[0].get("k") != "head":
        raise ReplayError("the replay record has no head entry (it is not a record of a run, "
                          "or its first line is damaged)")
    recorded = Recorded(head=entries[0])
    for row in entries[0].get("carried", []):
        if before_turn is None or int(row.get("t", 0)) < before_turn:
            recorded.spent.append(_row(row))
    for entry in entries[1:]:
        kind, turn = entry.get("k"), int(entry.get("t", 0))
        if before_turn is not None and turn >= before_turn:
            continue
        scope = str(entry.get("s", ""))
        if kind == "turn":
            recorded.turns[(scope, int(entry["n"]))] = entry
            recorded.spent.append(_row(entry))
        elif kind == "call":
            recorded.calls[str(entry["key"])].append(entry)
            recorded.spent.append(_row(entry))
        elif kind == "host":
            recorded.host[(scope, str(entry["key"]))].append(entry)
        elif kind == "cell":
            recorded.cells[(scope, int(entry["n"]), int(entry["b"]))] = entry
    if reply is not None and before_turn is not None:
        recorded.turns[("", before_turn)] = {"k": "turn", "s": "", "n": before_turn,
                                             "t": before_turn, "text": reply, "m": "fork"}
    return recorded


class Recorder:
    """Records one run tree and, when it holds a :class:`Recorded`, answers from it first.
    Single event loop. A record that cannot be written is logged once and recording stops; the
    run goes on (a lost record costs a resume, never a run)."""

    def __init__(self, file: RecordFile | None = None, recorded: Recorded | None = None) -> None:
        self._file = file
        self._made = file  # kept when recording stops: settled() waits for what it holds
        self._recorded = recorded
        self._children: dict[tuple[str, str], int] = defaultdict(int)
        self._messages: dict[str, list[ChatMessage]] = {}
        #: The top-level turn now running: every entry says which one it happened in.
        self.turn = 0

    @property
    def active(self) -> bool:
        return self._file is not None or self._recorded is not None

    def write(self, entry: dict[str, Any], *, durable: bool = False) -> None:
        if self._file is None:
            return
        try:
            self._file.append(entry, durable=durable)
        except (OSError, TypeError, ValueError) as exc:
            log.warning("the replay record %s stopped (%s); this run cannot be resumed past "
                        "this point", self._file.path, exc)
            self._file.close()
            self._file = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    async def settled(self) -> None:
        """Wait until the entries written so far are in the record's file (made on the
        trace's I/O thread while a loop runs)."""
        if self._made is not None:
            await self._made.settled()

    # -------------------------------------------------------------- scopes
    def child_scope(self, parent: str, prompt: str, model: str) -> str:
        """The scope of a new child run of ``parent`` (the same in every process)."""
        digest = _sha(model + "\n" + prompt)[:16]
        occurrence = self._children[(parent, digest)]
        self._children[(parent, digest)] += 1
        return f"{parent}/{digest}#{occurrence}"

    # -------------------------------------------------------------- root replies
    def replayed_turn(self, scope: str, number: int, messages: list[ChatMessage]
                      ) -> tuple[LMResponse, Booking] | None:
        """Turn ``number`` of the run ``scope`` from the record (re-recorded with the
        ``messages`` this process built for it), or None."""
        if scope == "":
            self.turn = number
        entry = None if self._recorded is None else self._recorded.turns.pop((scope, number),
                                                                              None)
        if entry is None:
            return None
        self.write({**_unpaid(entry, self.turn), **self._sent(scope, messages)}, durable=True)
        response = LMResponse(text=str(entry["text"]), usage=TokenUsage(0, 0),
                              model=str(entry.get("m", "")), cached=True)
        return response, Booking()

    def record_turn(self, scope: str, number: int, model: str, messages: list[ChatMessage],
                    response: LMResponse, booking: Booking, *, subcall: bool,
                    elapsed: float) -> None:
        self.write(_paid("turn", model, response, booking, subcall, elapsed,
                         s=scope, n=number, t=self.turn, **self._sent(scope, messages)),
                   durable=True)

    def _sent(self, scope: str, messages: list[ChatMessage]) -> dict[str, Any]:
        """The messages of a root turn as a delta on the scope's previous turn: ``keep``
        messages of it, then ``add`` (a history built for prompt caching mostly extends the
        previous one, so the record grows with the turns, not their square)."""
        if not self.active:
            return {}
        previous = self._messages.get(scope, [])
        keep = 0
        for old, new in zip(previous, messages, strict=False):
            if old != new:
                break
            keep += 1
        self._messages[scope] = [dict(m) for m in messages]  # type: ignore[misc]
        return {"keep": keep, "add": [_plain(m) for m in messages[keep:]]}

    # -------------------------------------------------------------- host operations
    async def host(self, scope: str, op: str, request: object,
                   live: Callable[[], Awaitable[object]]) -> object:
        """The reply to host call ``op`` of run ``scope``: the recorded one for the same
        request, else ``live()``'s; recorded either way."""
        if not self.active:
            return await live()
        key = request_key(op, request)
        queue = None if self._recorded is None else self._recorded.host.get((scope, key))
        if queue:
            entry = queue.popleft()
            self.write({**entry, "t": self.turn})
            return entry["reply"]
        reply = await live()
        self.write({"k": "host", "s": scope, "op": op, "key": key, "t": self.turn,
                    "reply": reply})
        return reply

    # -------------------------------------------------------------- sub-calls
    def replayed_call(self, key: str) -> str | None:
        queue = None if self._recorded is None else self._recorded.calls.get(key)
        if not queue:
            return None
        entry = queue.popleft()
        self.write(_unpaid(entry, self.turn))
        return str(entry["text"])

    def record_call(self, key: str, model: str, prompt: str, response: LMResponse,
                    booking: Booking, elapsed: float) -> None:
        self.write(_paid("call", model, response, booking, True, elapsed, key=key, t=self.turn,
                         prompt=prompt))

    # -------------------------------------------------------------- cells
    def cell(self, scope: str, number: int, block: int, code: str, output: str) -> None:
        """Record a cell's output; replaying, check it against the record first. Raises
        :class:`ReplayError` at the first cell whose output differs."""
        if not self.active:
            return
        code_sha, out_sha = _sha(code), _sha(output)
        entry = None if self._recorded is None else self._recorded.cells.pop(
            (scope, number, block), None)
        if entry is not None and entry.get("code") == code_sha and entry.get("out") != out_sha:
            where = f"turn {number}, block {block}" + (f" of child run {scope}" if scope else "")
            run_id = self._recorded.head.get("run") if self._recorded is not None else None
            raise ReplayError(
                f"the replay diverged at {where}: the cell printed something else than when "
                f"it was recorded.\n  recorded: {entry.get('preview', '')!r}\n  now:      "
                f"{output[:_PREVIEW_CHARS]!r}\nThe cell is not deterministic (time, random "
                "numbers, files or the network it read). The run stopped there; to go on "
                f"differently, fork it at that turn: rlm.fork({run_id!r}, at_turn={number})"
                if not scope else
                f"the replay diverged at {where}: the cell printed something else than when "
                f"it was recorded (recorded {entry.get('preview', '')!r}, now "
                f"{output[:_PREVIEW_CHARS]!r}); the run stopped there"
            )
        self.write({"k": "cell", "s": scope, "n": number, "b": block, "t": self.turn,
                    "code": code_sha, "out": out_sha, "preview": output[:_PREVIEW_CHARS]},
                   durable=True)


def _plain(message: ChatMessage) -> dict[str, Any]:
    """A chat message as the record keeps it (role and text; images by their count)."""
    plain: dict[str, Any] = {"role": message["role"], "content": message["content"]}
    images = message.get("images")
    if images:
        plain["images"] = len(images)
    return plain


def _paid(kind: str, model: str, response: LMResponse, booking: Booking, subcall: bool,
          elapsed: float, **names: object) -> dict[str, Any]:
    return {"k": kind, **names, "text": response.text, "m": model,
            "usd": booking.cost_usd, "in": booking.input_tokens, "out": booking.output_tokens,
            "req": booking.attempts, "sub": subcall, "el": round(elapsed, 3)}


@dataclass(frozen=True)
class Replay:
    """A recorded run made ready to resume or fork: the record to answer from, the question and
    context to run again, the budget to go on with, and ``origin`` (which run, which turn) for
    the new run's record."""

    recorded: Recorded
    question: str
    context: object
    budget: Budget
    origin: dict[str, object]
    #: Where the new run's trace and record go: the RLM's own trace, else beside the old run.
    trace: bool | str | Path | EventCallback


def prepare(ref: str, context: object, *, missing: object, home: str | Path | None,
            trace: bool | str | Path | EventCallback, model: str, budget: Budget | None,
            sub_model: str | None = None, at_turn: int | None = None,
            reply: str | None = None) -> Replay:
    """Read the run ``ref`` (an id, a unique prefix, ``last`` or a trace path, under ``home``,
    else the home of the RLM's ``trace``, else ``$FASTRLM_HOME``) and check that it can go on:
    with ``at_turn`` (a fork) from that top-level turn, else (a resume) from where its record
    ends, on the root ``model``. ``context`` is the run's own context again (``missing`` when
    the run was asked without one). ``budget`` (None: the run's own) must leave something once
    the recorded spend is counted. Raises :class:`ReplayError` saying what to pass, or
    :class:`~fastrlm.trace.TraceNotFoundError`."""
    from ..context import as_context, context_digest
    from ..trace import read_record, read_trace, record_path, resolve_run

    context = as_context(context)
    where = (Path(home).expanduser() if home is not None else
             Path(str(trace)).expanduser() if isinstance(trace, str | Path) else None)
    if trace is False or home is not None:  # the new run is recorded where the old one is
        trace = where if where is not None else True
    trace_path = resolve_run(ref, where)
    run_id = trace_path.stem
    entries = read_record(record_path(trace_path.parent, run_id))
    head = entries[0] if entries else {}
    if at_turn is not None:
        top = sum(1 for e in entries if e.get("k") == "turn" and e.get("s") == "")
        if not 1 <= at_turn <= top + 1:
            raise ReplayError(f"run {run_id} has {top} recorded turn(s): fork it at a turn "
                              f"from 1 to {top + 1}, not {at_turn}")
    recorded = load(entries, before_turn=at_turn, reply=reply)
    for role, given in (("root model", model), ("sub-model", sub_model)):
        made = head.get("model" if role == "root model" else "sub_model")
        if at_turn is None and given is not None and made != given:
            raise ReplayError(
                f"run {run_id} was made with the {role} {made!r}, this RLM's is {given!r}: "
                "resume it with an RLM of the same models, or fork it to go on with others "
                f"(rlm.fork({run_id!r}, at_turn=K, model=..., sub_model=...))")
    root = read_trace(trace_path).root_event
    recorded_context = dict(root.context or {}) if root is not None else {}
    question = str(head.get("question", ""))
    if head.get("drop_in"):
        if context is not missing:
            raise ReplayError(f"run {run_id} was asked without a context (the question was "
                              "its own): resume it without one")
        context = question
    elif context is missing:
        raise ReplayError(
            f"run {run_id} was asked about a context of {recorded_context.get('total_chars', 0):,}"
            f" characters (sha256 {str(recorded_context.get('sha256', ''))[:12]}...), which "
            "traces never keep: pass the same context again (rlm.resume(run, context=...), "
            "`fastrlm resume RUN --context PATH`)")
    else:
        digest, _ = context_digest(context)
        if recorded_context.get("sha256") and digest != recorded_context["sha256"]:
            raise ReplayError(
                f"the context given is not run {run_id}'s (sha256 {digest[:12]}..., the run's "
                f"is {str(recorded_context['sha256'])[:12]}...): its recorded cells would "
                "not replay; pass the context the run was asked about")
    if budget is None:
        known = {f.name for f in fields(Budget)}
        saved = root.budget if root is not None else {}
        budget = Budget(**{k: v for k, v in (saved or {}).items() if k in known})
    _check_left(run_id, recorded, budget)
    origin: dict[str, object] = {"run": run_id}
    if at_turn is not None:
        origin["at_turn"] = at_turn
    return Replay(recorded, question, context, budget, origin, trace)


def _check_left(run_id: str, recorded: Recorded, budget: Budget) -> None:
    """Refuse a budget the recorded spend already uses up, naming what to pass."""
    usd = recorded.usd
    if budget.max_usd is not None and usd >= budget.max_usd:
        raise ReplayError(
            f"run {run_id} already spent ${usd:.4f}, and the budget given allows "
            f"${budget.max_usd:.4f} in all (the spend is counted once, not again): pass a "
            f"larger one, e.g. budget=Budget(max_usd={max(usd * 2, usd + 0.01):.2f}) "
            "(`--max-usd` on the command line)")
    subcalls = recorded.subcalls
    if budget.max_subcalls is not None and subcalls >= budget.max_subcalls:
        raise ReplayError(
            f"run {run_id} already made {subcalls} sub-calls, and the budget given allows "
            f"{budget.max_subcalls} in all: pass a larger max_subcalls (`--max-subcalls`)")


def session_records(ref: str, home: str | Path | None,
                    trace: bool | str | Path | EventCallback
                    ) -> list[tuple[Recorded, str | None]]:
    """The recorded questions of the session ``ref`` (its id or a unique prefix), in the order
    they were asked, each loaded for replay with the sha256 of the context its run was asked
    about (from its trace's ``run.started``; None when the trace is gone or has none). Raises
    :class:`ReplayError` when none is found, the prefix names several sessions, or a
    question's record is missing."""
    from ..trace import RECORD_SUFFIX, read_head, read_record, read_trace, traces_dir

    where = (Path(home).expanduser() if home is not None else
             Path(str(trace)).expanduser() if isinstance(trace, str | Path) else None)
    folder = traces_dir(where)
    heads: dict[str, list[tuple[int, Path]]] = defaultdict(list)
    for path in folder.glob(f"*{RECORD_SUFFIX}") if folder.is_dir() else ():
        head = read_head(path)
        session = None if head is None else head.get("session")
        if isinstance(session, str) and session.startswith(ref):
            heads[session].append((int(head.get("q", 0)), path))  # type: ignore[union-attr]
    if not heads:
        raise ReplayError(f"no recorded session matches {ref!r} under {folder} (sessions are "
                          "recorded when their RLM traces: RLM(trace=...), `fastrlm chat`)")
    if len(heads) > 1:
        raise ReplayError(f"{ref!r} matches {len(heads)} sessions ({', '.join(sorted(heads))}):"
                          " give more of the id")
    [(session, asked)] = heads.items()
    asked.sort()
    numbers = [number for number, _ in asked]
    if numbers != list(range(len(numbers))):
        missing = sorted(set(range(max(numbers) + 1)) - set(numbers))
        raise ReplayError(f"session {session} lacks the record of question(s) "
                          f"{', '.join(str(n + 1) for n in missing)}: its later questions "
                          "cannot be replayed without them")
    def digest(record: Path) -> str | None:
        trace = record.with_suffix(".jsonl")
        root = read_trace(trace).root_event if trace.is_file() else None
        sha = (root.context or {}).get("sha256") if root is not None else None
        return sha if isinstance(sha, str) and sha else None

    return [(load(read_record(path)), digest(path)) for _, path in asked]
