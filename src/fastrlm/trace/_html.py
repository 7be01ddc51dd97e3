"""A trace as one self-contained HTML page: inline CSS, a few lines of JS, no network.

:func:`render_html` reads the events of a :class:`~fastrlm.trace.Trace` once, groups them by run
and iteration, and writes a page whose size follows the trace, not the context: sub-calls are
summarised per iteration (counts, totals, the slowest few, a capped list), long texts are clipped
with a note, and the context itself is never in a trace to begin with. Child runs are nested
under the parent iteration that spawned them. Every string from the trace is HTML-escaped: model
output is untrusted.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from itertools import count
from typing import Any

from ._html_assets import CSS, JS
from ._reader import Trace

#: Sub-calls listed one by one per iteration; the rest are only counted.
LISTED_SUBCALLS = 100
#: Slowest sub-calls shown with their prompt preview, per iteration.
SLOWEST_SUBCALLS = 5
#: Answers longer than this are folded in a ``<details>``.
FOLD_ANSWER_CHARS = 2000

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*([A-Za-z0-9_+-]*)")
_LIMIT_REASONS = {"max_iterations", "budget_usd", "budget_subcalls", "budget_tokens",
                  "budget_requests", "timeout"}
Item = tuple[str, Any]


@dataclass(slots=True)
class _Subcalls:
    """Per-iteration sub-call totals; keeps a bounded sample so 10,000 calls stay cheap."""

    done: int = 0
    failed: int = 0
    cached: int = 0
    refused: int = 0
    refusals: list[str] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    unfinished: int = 0
    listed: list[dict[str, Any]] = field(default_factory=list)
    slowest: list[tuple[float, int, dict[str, Any]]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def add(self, call: dict[str, Any], seq: int) -> None:
        self.done += 1
        self.failed += int(bool(call.get("error")))
        self.cached += int(bool(call.get("cached")))
        self.input_tokens += _int(call.get("input_tokens"))
        self.output_tokens += _int(call.get("output_tokens"))
        self.cost_usd += _float(call.get("cost_usd"))
        latency = _float(call.get("latency_s"))
        self.latency_s += latency
        if len(self.listed) < LISTED_SUBCALLS:
            self.listed.append(call)
        if call.get("error") and len(self.errors) < SLOWEST_SUBCALLS:
            self.errors.append(call)
        entry = (latency, seq, call)
        if len(self.slowest) < SLOWEST_SUBCALLS:
            heapq.heappush(self.slowest, entry)
        elif entry > self.slowest[0]:
            heapq.heapreplace(self.slowest, entry)


@dataclass(slots=True)
class _Iteration:
    number: int
    max_iterations: int | None = None
    response: dict[str, Any] | None = None
    items: list[Item] = field(default_factory=list)
    subcalls: _Subcalls | None = None

    def calls(self) -> _Subcalls:
        if self.subcalls is None:
            self.subcalls = _Subcalls()
            self.items.append(("subcalls", None))
        return self.subcalls


@dataclass(slots=True)
class _Run:
    run_id: str
    started: dict[str, Any] | None = None
    finished: dict[str, Any] | None = None
    sandbox: dict[str, Any] | None = None
    final: dict[str, Any] | None = None
    iterations: list[_Iteration] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    pending: dict[str, _Subcalls] = field(default_factory=dict)  # call_id -> its iteration's

    def current(self) -> _Iteration:
        if not self.iterations:
            self.iterations.append(_Iteration(0))
        return self.iterations[-1]


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _float(value: Any) -> float:
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


def _group(trace: Trace) -> tuple[dict[str, _Run], list[str]]:
    """Runs by id, and the ids of top-level runs in order of appearance."""
    runs: dict[str, _Run] = {}
    tops: list[str] = []
    starts: dict[tuple[str, str], dict[str, Any]] = {}
    seen_children: set[str] = set()
    seq = count()
    for ev in trace.events:
        run_id = str(ev.get("run_id", ""))
        run = runs.get(run_id)
        if run is None:
            run = runs[run_id] = _Run(run_id)
            if ev.get("type") != "run.started" or ev.get("parent_run_id") is None:
                tops.append(run_id)
        kind = ev.get("type")
        if kind == "run.started":
            run.started = ev
        elif kind == "sandbox.started":
            run.sandbox = ev
        elif kind == "iteration.started":
            run.iterations.append(
                _Iteration(_int(ev.get("iteration")), _int(ev.get("max_iterations")) or None)
            )
        elif kind == "model.response":
            run.current().response = ev
        elif kind == "code.executed":
            run.current().items.append(("block", ev))
        elif kind == "subcall.started":
            call_id = str(ev.get("call_id"))
            starts[(run_id, call_id)] = ev
            run.pending[call_id] = run.current().calls()
        elif kind == "subcall.finished":
            call_id = str(ev.get("call_id"))
            start = starts.pop((run_id, call_id), None) or {}
            calls = run.pending.pop(call_id, None) or run.current().calls()
            calls.add({**ev, "prompt_preview": start.get("prompt_preview", ""),
                       "prompt_chars": start.get("prompt_chars")}, next(seq))
        elif kind == "subcalls.refused":
            calls = run.current().calls()
            calls.refused += _int(ev.get("count"))
            if len(calls.refusals) < SLOWEST_SUBCALLS:
                calls.refusals.append(str(ev.get("message") or ev.get("reason") or ""))
        elif kind in ("child.started", "child.finished"):
            child_id = str(ev.get("child_run_id"))
            runs.setdefault(child_id, _Run(child_id))
            if kind == "child.started" and child_id not in seen_children:
                seen_children.add(child_id)
                run.current().items.append(("child", child_id))
        elif kind == "sandbox.restarted":
            run.current().items.append(("restart", ev))
        elif kind == "budget.warning":
            run.warnings.append(ev)
            run.current().items.append(("warning", ev))
        elif kind == "final":
            run.final = ev
            run.current().items.append(("final", ev))
        elif kind == "run.finished":
            run.finished = ev
    for run in runs.values():
        for calls in run.pending.values():
            calls.unfinished += 1
    return runs, tops


class _Page:
    """Accumulates HTML fragments; ``t`` escapes and clips untrusted text."""

    def __init__(self, runs: dict[str, _Run], max_chars: int) -> None:
        self.runs = runs
        self.max_chars = max_chars
        self.out: list[str] = []
        self.drawn: set[str] = set()

    def t(self, value: Any, limit: int | None = None) -> str:
        text = "" if value is None else str(value)
        cap = self.max_chars if limit is None else limit
        if len(text) > cap:
            more = len(text) - cap
            return escape(text[:cap]) + f'<span class="note">… [{more:,} more characters]</span>'
        return escape(text)

    def pre(self, text: Any, cls: str = "") -> None:
        self.out.append(f'<pre class="{cls}">{self.t(text)}</pre>')

    def run(self, run: _Run) -> None:
        if run.run_id in self.drawn:
            return
        self.drawn.add(run.run_id)
        for it in run.iterations:
            if it.number == 0 and not it.items and it.response is None:
                continue
            self.iteration(run, it)

    def header(self, run: _Run, complete: bool) -> None:
        st, fin = run.started or {}, run.finished or {}
        stop = str(fin.get("stop_reason", "")) if fin else "incomplete"
        state = "ok" if stop == "final" else "warn" if stop in _LIMIT_REASONS else "bad"
        o = self.out
        o.append(f'<header><h1>{self.t(st.get("question", "(no question recorded)"), 2000)}</h1>')
        badge = f'<span class="badge {state}">{self.t(stop)}</span>'
        if not complete:
            badge += ' <span class="badge bad">incomplete</span>'
        o.append(f'<p class="meta">{badge} run <code>{self.t(run.run_id)}</code>'
                 f"{_when(st.get('ts'))}</p>")
        if not complete:
            o.append('<p class="banner bad">This trace is incomplete: the run did not finish '
                     "(the process was killed or is still running).</p>")
        rows: list[tuple[str, str]] = [
            ("models", f"root {self.t(st.get('model'))} · sub {self.t(st.get('sub_model'))}"),
            ("sandbox", self._sandbox(run)),
            ("context", _context(st.get("context"))),
        ]
        budget = {k: v for k, v in (st.get("budget") or {}).items() if v is not None}
        if budget:
            rows.append(("budget", self.t(", ".join(f"{k}={v}" for k, v in budget.items()))))
        if fin:
            usage = fin.get("usage") or {}
            rows += [
                ("cost", f"${_float(fin.get('cost_usd')):.4f}"),
                ("tokens", f"{_int(usage.get('input_tokens')):,} in · "
                           f"{_int(usage.get('output_tokens')):,} out"),
                ("duration", f"{_float(fin.get('duration_s')):.2f}s · "
                             f"{_int(fin.get('iterations'))} iteration(s) · "
                             f"{_int(fin.get('subcalls'))} sub-call(s)"),
            ]
            if fin.get("error"):
                kind = f" ({self.t(fin.get('error_kind'))})" if fin.get("error_kind") else ""
                rows.append(("error", f'<span class="bad">{self.t(fin["error"])}</span>{kind}'))
        if run.warnings:
            rows.append(("budget warnings", ", ".join(
                f"{self.t(w.get('resource'))} at {_float(w.get('fraction')):.0%}"
                for w in run.warnings)))
        o.append("<table class=\"facts\">" + "".join(
            f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>")
        if fin:
            o.append("<h2>Answer</h2>")
            self.answer(str(fin.get("answer", "")))
        o.append("</header>")

    def _sandbox(self, run: _Run) -> str:
        asked = self.t((run.started or {}).get("sandbox", "?"))
        if run.sandbox is None:
            return f"{asked} (not started)"
        layer = self.t(run.sandbox.get("layer"))
        unsafe = ' <span class="badge bad">UNSAFE: in-process</span>' if run.sandbox.get(
            "unsafe") else ""
        return (f"{layer}{unsafe} (asked: {asked}; ready in "
                f"{_float(run.sandbox.get('startup_s')):.2f}s)")

    def answer(self, text: str) -> None:
        if not text:
            self.out.append('<p class="note">(no answer)</p>')
        elif len(text) > FOLD_ANSWER_CHARS:
            self.out.append(f"<details class=\"answer\"><summary>answer ({len(text):,} chars): "
                            f"{self.t(' '.join(text[:200].split()))}…</summary>")
            self.pre(text, "answer")
            self.out.append("</details>")
        else:
            self.pre(text, "answer")

    def iteration(self, run: _Run, it: _Iteration) -> None:
        o = self.out
        title = "before the first iteration" if it.number == 0 else f"iteration {it.number}"
        if it.max_iterations:
            title += f"/{it.max_iterations}"
        resp = it.response
        stats = ""
        if resp is not None:
            stats = (f" · {self.t(resp.get('model'))} · {_int(resp.get('input_tokens')):,} in / "
                     f"{_int(resp.get('output_tokens')):,} out · "
                     f"${_float(resp.get('cost_usd')):.4f} · {_float(resp.get('latency_s')):.1f}s")
        o.append(f'<section class="iter"><h3>{title}<span class="stats">{stats}</span></h3>')
        if resp is not None:
            self.reply(str(resp.get("text", "")))
        for kind, payload in it.items:
            if kind == "block":
                self.block(payload)
            elif kind == "subcalls" and it.subcalls is not None:
                self.subcalls(it.subcalls)
            elif kind == "child":
                self.child(payload)
            elif kind == "restart":
                o.append(f'<p class="banner bad">sandbox restarted: '
                         f"{self.t(payload.get('reason'))}</p>")
            elif kind == "warning":
                o.append(f'<p class="banner warn">budget warning: '
                         f"{self.t(payload.get('resource'))} at "
                         f"{_float(payload.get('fraction')):.0%}</p>")
            elif kind == "final":
                o.append(f'<p class="banner ok">answer delivered via '
                         f"{self.t(payload.get('source'))} "
                         f"({_int(payload.get('answer_chars')):,} chars)</p>")
        o.append("</section>")

    def reply(self, text: str) -> None:
        """Prose as wrapped text, fenced blocks in ``<pre>`` (the ones the REPL runs marked)."""
        clipped = len(text) > self.max_chars
        text = text[: self.max_chars]
        self.out.append('<div class="reply">')
        for is_code, lang, chunk in _split_fences(text):
            if is_code:
                label = f'<span class="lang">{self.t(lang)}</span>' if lang else ""
                self.out.append(f'<pre class="code">{label}{self.t(chunk)}</pre>')
            elif chunk.strip():
                self.out.append(f'<div class="prose">{self.t(chunk.strip())}</div>')
        if clipped:
            self.out.append('<p class="note">(reply clipped)</p>')
        self.out.append("</div>")

    def block(self, ev: dict[str, Any]) -> None:
        o = self.out
        flags = []
        if ev.get("timed_out"):
            flags.append('<span class="badge bad">timed out</span>')
        if ev.get("restarted"):
            flags.append('<span class="badge bad">sandbox restarted</span>')
        if ev.get("error"):
            flags.append('<span class="badge bad">error</span>')
        bad = " bad" if flags else ""
        o.append(f'<div class="block{bad}"><div class="blockhead">block {_int(ev.get("block"))}'
                 f" ran in {_float(ev.get('duration_s')):.2f}s {' '.join(flags)}</div>")
        o.append(f"<details><summary>code</summary><pre class=\"code\">"
                 f"{self.t(ev.get('code'))}</pre></details>")
        output = str(ev.get("output", ""))
        raw = _int(ev.get("output_chars"))
        cut = f" (cut from {raw:,} chars)" if raw > len(output) else ""
        o.append(f'<div class="label">output the model saw{cut}</div>')
        self.pre(output, "output")
        if ev.get("error"):
            o.append('<div class="label bad">error</div>')
            self.pre(ev["error"], "error")
        if ev.get("restored"):
            o.append(f'<p class="note">restored after restart: '
                     f"{self.t(', '.join(map(str, ev['restored'])))}</p>")
        o.append("</div>")

    def subcalls(self, s: _Subcalls) -> None:
        o = self.out
        parts = [f"{s.done:,} sub-call(s)"]
        if s.failed:
            parts.append(f'<span class="bad">{s.failed:,} failed</span>')
        if s.refused:
            parts.append(f'<span class="bad">{s.refused:,} refused</span>')
        if s.unfinished:
            parts.append(f'<span class="bad">{s.unfinished:,} unfinished</span>')
        if s.cached:
            parts.append(f"{s.cached:,} cached")
        parts += [f"{s.input_tokens:,} in / {s.output_tokens:,} out tokens",
                  f"${s.cost_usd:.4f}", f"{s.latency_s:.1f}s total latency"]
        o.append(f'<details class="subcalls"><summary>{" · ".join(parts)}</summary>')
        for message in s.refusals:
            o.append(f'<p class="banner bad">refused: {self.t(message)}</p>')
        if s.done > SLOWEST_SUBCALLS:
            o.append("<div class=\"label\">slowest</div>")
            self.call_table([c for _, _, c in sorted(s.slowest, reverse=True)])
        if s.errors:
            o.append("<div class=\"label bad\">failures</div>")
            self.call_table(s.errors)
        if s.listed:
            o.append(f"<details><summary>all sub-calls (first {len(s.listed):,})</summary>")
            self.call_table(s.listed)
            if s.done > len(s.listed):
                o.append(f'<p class="note">… {s.done - len(s.listed):,} more not listed '
                         "(`fastrlm show --subcalls` prints them all)</p>")
            o.append("</details>")
        o.append("</details>")

    def call_table(self, calls: list[dict[str, Any]]) -> None:
        rows = []
        for c in calls:
            reply = (f'<span class="bad">{self.t(c["error"], 300)}</span>' if c.get("error")
                     else self.t(c.get("response_preview"), 300))
            cached = " (cached)" if c.get("cached") else ""
            rows.append(
                f"<tr><td><code>{self.t(c.get('call_id'))}</code></td>"
                f"<td>{self.t(c.get('model'))}{cached}</td>"
                f"<td>{_float(c.get('latency_s')):.2f}s</td>"
                f"<td>{_int(c.get('input_tokens')):,}/{_int(c.get('output_tokens')):,}</td>"
                f"<td>{self.t(c.get('prompt_preview'), 300)}</td><td>{reply}</td></tr>"
            )
        self.out.append("<table class=\"calls\"><tr><th>call</th><th>model</th><th>latency</th>"
                        "<th>tokens in/out</th><th>prompt</th><th>reply</th></tr>"
                        + "".join(rows) + "</table>")

    def child(self, child_id: str) -> None:
        child = self.runs.get(child_id) or _Run(child_id)
        st, fin = child.started or {}, child.finished
        stop = str(fin.get("stop_reason")) if fin else "incomplete"
        cost = f" · ${_float(fin.get('cost_usd')):.4f}" if fin else ""
        state = "ok" if stop == "final" else "warn" if stop in _LIMIT_REASONS else "bad"
        self.out.append(
            f'<details class="child"><summary>child run <code>{self.t(child_id)}</code> '
            f"(depth {_int(st.get('depth'))}) <span class=\"badge {state}\">{self.t(stop)}</span>"
            f"{cost}: {self.t(st.get('question', ''), 200)}</summary>"
        )
        self.run(child)
        if fin:
            self.out.append('<div class="label">child answer</div>')
            self.answer(str(fin.get("answer", "")))
        self.out.append("</details>")


def _when(ts: Any) -> str:
    try:
        return " · " + datetime.fromtimestamp(float(ts)).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


def _context(ctx: Any) -> str:
    """Shape only (type, sizes, hash): the trace never holds the context text."""
    if not isinstance(ctx, dict):
        return "?"
    size = f", {_int(ctx.get('size_bytes')):,} bytes" if ctx.get("size_bytes") else ""
    return escape(
        f"{ctx.get('type', '?')}, {_int(ctx.get('total_chars')):,} chars in "
        f"{_int(ctx.get('n_chunks')) or 1:,} chunk(s){size}, sha256 {ctx.get('sha256', '?')}"
    )


def _split_fences(text: str) -> list[tuple[bool, str, str]]:
    """``(is_code, lang, text)`` pieces of a reply in order; an unclosed fence runs to the end."""
    pieces: list[tuple[bool, str, str]] = []
    prose: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            prose.append(lines[i])
            i += 1
            continue
        fence, lang = match.group(1), match.group(2)
        end = i + 1
        while end < len(lines):
            stripped = lines[end].strip()
            if stripped and set(stripped) == {fence[0]} and len(stripped) >= len(fence):
                break
            end += 1
        if prose:
            pieces.append((False, "", "\n".join(prose)))
            prose = []
        pieces.append((True, lang, "\n".join(lines[i + 1:end])))
        i = end + 1
    if prose:
        pieces.append((False, "", "\n".join(prose)))
    return pieces





def render_html(trace: Trace, *, max_chars: int = 20_000) -> str:
    """The whole trace as one HTML document (a ``str``), self-contained and safe to open.

    ``max_chars`` clips any single reply, output, error or answer (with a note saying how much
    was left out). An unfinished trace renders, marked "incomplete". Never raises on odd events:
    missing fields render as blanks or zeros.
    """
    runs, tops = _group(trace)
    page = _Page(runs, max_chars)
    root_id = (trace.root or {}).get("run_id") or (tops[0] if tops else trace.path.stem)
    root = runs.get(str(root_id)) or _Run(str(root_id))
    complete = trace.finished is not None
    title = escape(str((root.started or {}).get("question", root.run_id))[:120])
    page.out.append(
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>fastrlm · {title}</title><style>{CSS}</style><script>{JS}</script></head>"
        f'<body><div class="tools"><button onclick="setAll(true)">expand all</button> '
        f'<button onclick="setAll(false)">collapse all</button></div>'
    )
    page.header(root, complete)
    page.run(root)
    for run_id in tops:
        if run_id not in page.drawn:
            page.out.append(f"<h2>other run <code>{escape(run_id)}</code></h2>")
            page.run(runs[run_id])
    if trace.truncated_lines:
        page.out.append(f'<p class="note">{trace.truncated_lines} unreadable trace line(s) '
                        "skipped.</p>")
    page.out.append(f'<p class="note">trace: {escape(str(trace.path))}</p></body></html>\n')
    return "".join(page.out)
