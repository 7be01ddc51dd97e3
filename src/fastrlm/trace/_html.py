"""A trace as one self-contained HTML page: inline CSS and script, no network.

:func:`render_html` writes a page in two layers. The server-rendered layer is the whole run as
plain HTML, readable with JavaScript off: the question, facts, a cost and token breakdown per
model, the call tree of child runs, every root turn with its reply and each code cell once (the
reply's code fence is replaced by the cell that ran it, with its output, sub-call summary and
child runs), and the answer. The script layer draws from compact columns embedded as JSON
(:mod:`._html_data`): a timeline of root turns, cells and concurrent sub-calls, and a
virtualised list of every sub-call with filters (errors only, slowest, most expensive), so a
100,000-sub-call run opens without 100,000 table rows. The page's size follows the trace, not
the context (which is never in a trace). Every string from the trace is escaped: model output
is untrusted. :func:`render_parts` gives the two refreshable pieces alone, for the live view.
Why over 500 lines: the server-rendered page is one template; its parts share the escaping.
"""

from __future__ import annotations

import time
from datetime import datetime
from html import escape
from typing import Any

from .._foundation.events import ToolStarted
from .._foundation.text import well_formed
from ._html_assets import CSS, JS
from ._html_data import page_data, script_json
from ._html_model import (
    SLOWEST_SUBCALLS,
    Cell,
    Grouped,
    Iteration,
    Run,
    SubcallRow,
    Subcalls,
    ToolCall,
    as_float,
    as_int,
    group,
    split_fences,
    stop_state,
    take_cell,
)
from ._reader import Trace

__all__ = ["render_html", "render_parts"]

#: Answers longer than this are folded in a ``<details>``.
FOLD_ANSWER_CHARS = 2000


def _attr(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _td(text: Any, cls: str = "", limit: int = 300) -> str:
    """A one-line cell: clipped by CSS with an ellipsis, the full text in its tooltip."""
    value = "" if text is None else str(text)
    shown = " ".join(value[:limit].split())
    klass = f' class="{cls}"' if cls else ""
    return f'<td{klass} title="{_attr(value[:limit])}">{escape(shown)}</td>'


class _Page:
    """Accumulates HTML fragments; ``t`` escapes and clips untrusted text."""

    def __init__(self, grouped: Grouped, max_chars: int, writing: bool = False,
                 live: bool = False) -> None:
        self.writing = writing
        self.live = live
        # what a run without its run.finished is: still going while the writer holds the file
        self.unfinished = "running" if writing else "incomplete"
        self.runs = grouped.runs
        self.grouped = grouped
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

    def cell_text(self, text: Any, cls: str) -> None:
        """A cell's code, output or error whole: what the model wrote or saw is bounded by the
        run's own limits, so past ``max_chars`` the rest folds (click or tap to open) instead
        of being cut."""
        text = "" if text is None else str(text)
        if len(text) <= self.max_chars:
            self.pre(text, cls)
            return
        rest = text[self.max_chars:]
        self.out.append(f'<pre class="{cls} head">{escape(text[:self.max_chars])}</pre>'
                        f'<details class="more"><summary>show the other {len(rest):,} '
                        f'characters</summary><pre class="{cls} rest">{escape(rest)}</pre>'
                        "</details>")

    def run(self, run: Run) -> None:
        if run.run_id in self.drawn:
            return
        self.drawn.add(run.run_id)
        for it in run.iterations:
            if it.number == 0 and not (it.cells or it.tail) and it.response is None:
                continue
            self.iteration(it)
        for candidate_id in run.candidates:
            self.child(candidate_id)

    # ---- the summary: header, facts, per-model breakdown, call tree ----

    def header(self, run: Run, complete: bool) -> None:
        st, fin = run.started, run.finished
        stop = str(fin.stop_reason) if fin else self.unfinished
        o = self.out
        question = st.question if st else "(no question recorded)"
        o.append(f'<header><h1>{self.t(question, 2000)}</h1>')
        badge = f'<span class="badge {stop_state(stop)}">{self.t(stop)}</span>'
        o.append(f'<p class="meta">{badge} run <code>{self.t(run.run_id)}</code>'
                 f"{_when(st.ts or None if st else None)}</p>")
        if not complete and self.writing and self.live:
            o.append('<p class="banner live">This run is still running: the page shows it '
                     "as far as it has gone.</p>")
        elif not complete and self.writing:  # a page written once, opened who knows when
            o.append('<p class="banner live">This run was still running when this page was '
                     f"written{_when(time.time())}: the page is a snapshot of it. "
                     "<code>fastrlm view --follow</code> follows a run as it goes.</p>")
        elif not complete:
            o.append('<p class="banner bad">This trace is incomplete: the run did not finish, '
                     "and no process is writing it any more (it was killed or crashed, or "
                     "this is a copy of a trace).</p>")
        rows: list[tuple[str, str]] = [
            ("models", f"root {self.t(st and st.model)} · sub {self.t(st and st.sub_model)}"),
            ("sandbox", self._sandbox(run)),
            ("context", _context(st and st.context)),
        ]
        budget = {k: v for k, v in ((st and st.budget) or {}).items() if v is not None}
        if budget:
            rows.append(("budget", self.t(", ".join(f"{k}={v}" for k, v in budget.items()))))
        if fin:
            usage = fin.usage or {}
            rows += [
                ("cost", f"${as_float(fin.cost_usd):.4f}"),
                ("tokens", f"{as_int(usage.get('input_tokens')):,} in · "
                           f"{as_int(usage.get('output_tokens')):,} out"),
                ("duration", f"{as_float(fin.duration_s):.2f}s · "
                             f"{as_int(fin.iterations)} iteration(s) · "
                             f"{as_int(fin.subcalls)} sub-call(s)"),
            ]
            if fin.error:
                kind = f" ({self.t(fin.error_kind)})" if fin.error_kind else ""
                rows.append(("error", f'<span class="bad">{self.t(fin.error)}</span>{kind}'))
        if run.warnings:
            rows.append(("budget warnings", ", ".join(
                f"{self.t(w.resource)} at {as_float(w.fraction):.0%}"
                for w in run.warnings)))
        o.append('<table class="facts">' + "".join(
            f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>")
        self.breakdown()
        if run.candidates:
            self.candidates(run)
        if run.children:
            o.append('<h2>Call tree</h2><ul class="tree">')
            self.tree(run, set())
            o.append("</ul>")
        if fin:
            o.append("<h2>Answer</h2>")
            self.answer(str(fin.answer))
        o.append("</header>")

    def candidates(self, run: Run) -> None:
        """RLM(candidates=k): the candidates side by side (answer, stop, cost, sub-calls), the
        chosen one marked; each links to its run below."""
        chosen = str(run.finished.answer) if run.finished else None
        rows = []
        for candidate_id in run.candidates:
            cand = self.runs.get(candidate_id) or Run(candidate_id)
            st, fin = cand.started, cand.finished
            stop = str(fin.stop_reason) if fin else "incomplete"
            answer = str(fin.answer) if fin else ""
            mark = " ✓" if fin and answer == chosen else ""
            rows.append(
                f'<tr><td><a href="#run-{_attr(candidate_id)}">'
                f"{as_int(st and st.candidate)}{mark}</a></td>"
                f'<td><span class="badge {stop_state(stop)}">{self.t(stop)}</span></td>'
                f"<td>{self.t(' '.join(answer.split()), 200)}</td>"
                f'<td class="num">${as_float(fin and fin.cost_usd):.4f}</td>'
                f'<td class="num">{cand.subcalls:,}</td></tr>')
        self.out.append(
            '<h2>Candidates</h2><div class="scroll"><table class="grid"><thead><tr>'
            "<th>#</th><th>stop</th><th>answer</th><th class=\"num\">cost</th>"
            '<th class="num">sub-calls</th></tr></thead><tbody>' + "".join(rows)
            + "</tbody></table></div>")

    def breakdown(self) -> None:
        """Cost, tokens and summed latency per model and role, over the whole run tree (on a
        phone: calls, failures and cost; the token and latency columns need the width)."""
        models = self.grouped.models
        if not models:
            return
        rows = []
        for (role, model), tot in sorted(models.items(), key=lambda kv: -kv[1].cost_usd):
            failed = f'<td class="num{" bad" if tot.failed else ""}">{tot.failed:,}</td>'
            rows.append(
                f'<tr>{_td(model)}<td>{"root turns" if role == "root" else "sub-calls"}'
                "</td>"
                f'<td class="num">{tot.calls:,}</td>{failed}'
                f'<td class="num opt">{tot.input_tokens:,}</td>'
                f'<td class="num opt">{tot.output_tokens:,}</td>'
                f'<td class="num">${tot.cost_usd:.4f}</td>'
                f'<td class="num opt">{tot.seconds:.1f}s</td></tr>')
        self.out.append(
            '<h2>Per model</h2><div class="scroll"><table class="grid models"><thead><tr>'
            '<th>model</th><th class="w-role">role</th><th class="num w-n">calls</th>'
            '<th class="num w-n">failed</th><th class="num w-tok opt">tokens in</th>'
            '<th class="num w-tok opt">tokens out</th><th class="num w-cost">cost</th>'
            '<th class="num w-sum opt" title="every call\'s latency added up: calls that ran '
            'at the same time each count, so it can exceed the run\'s duration">summed latency'
            "</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></div>"
            '<p class="note opt">summed latency: every call\'s latency added up (concurrent '
            "calls each count, so it can exceed the run's duration).</p>")

    def tree(self, run: Run, seen: set[str]) -> None:
        """One ``<li>`` per run, its children nested (a run met twice is drawn once)."""
        seen.add(run.run_id)
        st, fin = run.started, run.finished
        stop = str(fin.stop_reason) if fin else self.unfinished
        facts = [f"{run.subcalls:,} sub-call(s)"]
        if fin:
            facts += [f"${as_float(fin.cost_usd):.4f}", f"{as_float(fin.duration_s):.1f}s"]
        question = str(st.question) if st else ""
        self.out.append(
            f'<li><a href="#run-{_attr(run.run_id)}" title="{_attr(run.run_id)}">'
            f"depth {as_int(st and st.depth)}</a> "
            f'<span class="badge {stop_state(stop)}">{self.t(stop)}</span> '
            f'<span class="q" title="{_attr(question[:300])}">'
            f"{self.t(' '.join(question.split()), 120)}</span> "
            f'<span class="stats">{" · ".join(facts)}</span>')
        kids = [self.runs[c] for c in run.children if c in self.runs and c not in seen]
        if kids:
            self.out.append("<ul>")
            for kid in kids:
                self.tree(kid, seen)
            self.out.append("</ul>")
        self.out.append("</li>")

    def _sandbox(self, run: Run) -> str:
        asked = self.t(run.started.sandbox if run.started else "?")
        if run.sandbox is None:
            return f"{asked} (not started)"
        layer = self.t(run.sandbox.layer)
        unsafe = ' <span class="badge bad">UNSAFE: in-process</span>' if run.sandbox.unsafe else ""
        return f"{layer}{unsafe} (asked: {asked}; ready in {as_float(run.sandbox.startup_s):.2f}s)"

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

    # ---- the detail: root turns, their cells, sub-calls, child runs ----

    def iteration(self, it: Iteration) -> None:
        o = self.out
        title = "before the first iteration" if it.number == 0 else f"iteration {it.number}"
        if it.max_iterations:
            title += f"/{it.max_iterations}"
        resp = it.response
        stats = ""
        if resp is not None:
            stats = (f" · {self.t(resp.model)} · {as_int(resp.input_tokens):,} in"
                     f" / {as_int(resp.output_tokens):,} out · "
                     f"${as_float(resp.cost_usd):.4f} · "
                     f"{as_float(resp.latency_s):.1f}s")
        o.append(f'<section class="iter"><h3>{title}<span class="stats">{stats}</span></h3>')
        if it.failure is not None:
            o.append(f'<p class="banner bad">the model call failed after '
                     f"{as_int(it.failure.attempts) or 1} attempt(s): "
                     f"{self.t(it.failure.error)}</p>")
        cells = list(it.cells)
        if resp is not None:
            self.reply(str(resp.text), cells)
        for cell in cells:  # cells whose code the reply's fences did not show
            self.cell(cell)
        self.items(it.tail)
        o.append("</section>")

    def reply(self, text: str, cells: list[Cell]) -> None:
        """Prose as wrapped text; each fence the REPL ran is replaced, in place, by its cell
        (taken from ``cells``), so every code block appears once. Past ``max_chars`` the rest
        of the reply folds, raw (its cells follow the reply)."""
        rest = text[self.max_chars:]
        text = text[: self.max_chars]
        self.out.append('<div class="reply">')
        for is_code, lang, chunk in split_fences(text):
            if is_code:
                cell = take_cell(chunk, lang, cells)
                if cell is not None:
                    self.cell(cell)
                    continue
                label = f'<span class="lang">{self.t(lang)} (not run)</span>' if lang else ""
                self.out.append(f'<pre class="code">{label}{self.t(chunk)}</pre>')
            elif chunk.strip():
                self.out.append(f'<div class="prose">{self.t(chunk.strip())}</div>')
        if rest:  # a reply is bounded by the root's max tokens: its rest folds, as written
            self.out.append(f'<details class="more"><summary>show the other {len(rest):,} '
                            "characters of this reply, as the model wrote them</summary>"
                            f'<pre class="rest">{escape(rest)}</pre></details>')
        self.out.append("</div>")

    def cell(self, cell: Cell) -> None:
        o = self.out
        ev = cell.event
        flags = []
        if ev is None:
            flags.append('<span class="badge warn">running or interrupted</span>')
        elif ev.timed_out:
            flags.append('<span class="badge bad">timed out</span>')
        if ev is not None and ev.restarted:
            flags.append('<span class="badge bad">sandbox restarted</span>')
        if ev is not None and ev.error:
            flags.append('<span class="badge bad">error</span>')
        bad = " bad" if ev is not None and (ev.error or ev.timed_out or ev.restarted) else ""
        ran = f" ran in {as_float(ev.duration_s):.2f}s" if ev is not None else ""
        block = (as_int(ev.block) if ev is not None else 0) or ""
        o.append(f'<div class="block{bad}"><div class="blockhead">cell '
                 f"{block}{ran} {' '.join(flags)}</div>")
        if ev is not None:
            self.cell_text(ev.code, "code")
        self.items(cell.items)
        if ev is not None:
            output = str(ev.output)
            error = str(ev.error or "")
            raw = as_int(ev.output_chars)
            cut = f" (cut from {raw:,} chars)" if raw > len(output) else ""
            if error and error.strip() in output:
                # the traceback is part of what the model saw: shown once, as the error
                o.append(f'<div class="label bad">output the model saw, with the error{cut}'
                         "</div>")
                self.cell_text(output, "error")
            else:
                o.append(f'<div class="label">output the model saw{cut}</div>')
                self.cell_text(output, "output")
                if error:
                    o.append('<div class="label bad">error</div>')
                    self.cell_text(error, "error")
            if ev.restored:
                o.append(f'<p class="note">restored after restart: '
                         f"{self.t(', '.join(map(str, ev.restored)))}</p>")
        o.append("</div>")

    def items(self, items: list[tuple[str, Any]]) -> None:
        o = self.out
        for kind, payload in items:
            if kind == "subcalls":
                self.subcall_summary(payload)
            elif kind == "child":
                self.child(payload)
            elif kind == "tool":
                self.tool(payload)
            elif kind == "restart":
                o.append(f'<p class="banner bad">sandbox restarted: '
                         f"{self.t(payload.reason)}</p>")
            elif kind == "warning":
                o.append(f'<p class="banner warn">budget warning: '
                         f"{self.t(payload.resource)} at "
                         f"{as_float(payload.fraction):.0%}</p>")
            elif kind == "final":
                o.append(f'<p class="banner ok">answer delivered via '
                         f"{self.t(payload.source)} "
                         f"({as_int(payload.answer_chars):,} chars)</p>")

    def subcall_summary(self, s: Subcalls) -> None:
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
            o.append('<div class="label">slowest</div>')
            self.call_table([c for _, _, c in sorted(s.slowest, reverse=True)])
        if s.errors:
            o.append('<div class="label bad">failures</div>')
            self.call_table(s.errors)
        if s.listed:
            more = (f'<p class="note">… {s.done - len(s.listed):,} more not listed here '
                    "(`fastrlm show --subcalls` prints them all)</p>"
                    if s.done > len(s.listed) else "")
            o.append('<p class="note js-only">Every sub-call of the run is in the list at the '
                     "top, with filters.</p><noscript><details><summary>sub-calls (first "
                     f"{len(s.listed):,})</summary>")
            self.call_table(s.listed)
            o.append(f"{more}</details></noscript>")
        o.append("</details>")

    def call_table(self, calls: list[SubcallRow]) -> None:
        """One line per sub-call that opens (click or tap) to its prompt and reply as the
        trace holds them: whole with full tracing, else the preview and a note saying so."""
        o = self.out
        o.append('<div class="calls">')
        for row in calls:
            c = row.finished
            cached = " (cached)" if c.cached else ""
            reply = str(c.error) if c.error else str(c.response or c.response_preview or "")
            o.append(
                f'<details class="call{" bad" if c.error else ""}"><summary>'
                f'<span class="mono">{self.t(c.call_id)}</span>'
                f'<span class="opt">{self.t(str(c.model or "") + cached)}</span>'
                f'<span class="num">{as_float(c.latency_s):.2f}s</span>'
                f'<span class="num opt">{as_int(c.input_tokens):,}/'
                f"{as_int(c.output_tokens):,} tok</span>"
                f'<span class="line">{self.t(" ".join(reply[:300].split()), 300)}</span>'
                "</summary>")
            self.full_text("prompt", row.prompt, row.prompt_chars, "code")
            if c.error:
                o.append('<div class="label bad">error</div>')
                self.pre(c.error, "error")
            else:
                self.full_text("reply", reply, as_int(c.response_chars), "output")
            if max(len(row.prompt), len(reply), len(str(c.error or ""))) > self.max_chars:
                # clipped here to keep the page light; the call's panel shows it whole
                o.append(f'<button type="button" class="open-whole js-only" '
                         f'data-run="{_attr(c.run_id)}" data-call="{_attr(c.call_id)}">'
                         "open the whole prompt and reply</button>")
            o.append("</details>")
        o.append("</div>")

    def full_text(self, what: str, text: str, chars: int | None, cls: str) -> None:
        """A labelled text; when the trace kept only a preview of it, a note says how much
        and how to record it whole."""
        total = chars if chars is not None else len(text)
        o = self.out
        o.append(f'<div class="label">{what} ({total:,} chars)</div>')
        self.pre(text, cls)
        if total > len(text.rstrip("…")):
            o.append(f'<p class="note">the trace holds a preview of this {what}: record whole '
                     "prompts and replies with <code>--trace-full</code> "
                     "(<code>Limits(trace_full_prompts=True)</code>)</p>")

    def tool(self, call: ToolCall) -> None:
        st, fin = call.started, call.finished
        if fin is None:
            state = '<span class="badge warn">running</span>'
        elif fin.error:
            state = '<span class="badge bad">error</span>'
        else:
            state = '<span class="badge ok">ok</span>'
        took = f" in {as_float(fin.duration_s):.2f}s" if fin else ""
        arguments = str(st.arguments or st.arguments_preview) if isinstance(st, ToolStarted) \
            else ""
        self.out.append(
            f'<details class="tool"><summary>tool <code>{self.t(st.tool or "?")}</code>'
            f"{took} {state} <span class=\"note\">{self.t(arguments, 120)}"
            "</span></summary>")
        whole = isinstance(st, ToolStarted) and st.arguments is not None
        self.out.append(f'<div class="label">arguments{"" if whole else " (preview)"}</div>')
        self.pre(arguments, "code")
        if fin is not None:
            if fin.error:
                self.out.append('<div class="label bad">error</div>')
                self.pre(fin.error, "error")
            else:
                self.full_text("result", str(fin.result or fin.result_preview),
                               as_int(fin.result_chars), "output")
        self.out.append("</details>")

    def child(self, child_id: str) -> None:
        child = self.runs.get(child_id) or Run(child_id)
        st, fin = child.started, child.finished
        stop = str(fin.stop_reason) if fin else self.unfinished
        cost = f" · ${as_float(fin.cost_usd):.4f}" if fin else ""
        self.out.append(
            f'<details class="child" id="run-{_attr(child_id)}"><summary>child run '
            f"<code>{self.t(child_id)}</code> (depth {as_int(st and st.depth)}) "
            f'<span class="badge {stop_state(stop)}">{self.t(stop)}</span>'
            f"{cost}: {self.t(st.question if st else '', 200)}</summary>"
        )
        self.run(child)
        if fin:
            self.out.append('<div class="label">child answer</div>')
            self.answer(str(fin.answer))
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
    size = f", {as_int(ctx.get('size_bytes')):,} bytes" if ctx.get("size_bytes") else ""
    sha = str(ctx.get("sha256", "?"))
    return (escape(f"{ctx.get('type', '?')}, {as_int(ctx.get('total_chars')):,} chars in "
                   f"{as_int(ctx.get('n_chunks')) or 1:,} chunk(s){size}, ")
            + f'sha256 <code title="{_attr(sha)}">{escape(sha[:16])}…</code>')


def render_parts(trace: Trace, *, max_chars: int = 20_000, live: bool = False
                 ) -> dict[str, str]:
    """The page's two server-rendered pieces: ``summary`` (header, facts, per-model breakdown,
    call tree, answer) and ``detail`` (every root turn, nested child runs), as HTML. ``live``:
    for a page that follows the trace (a running run is "still running", not a snapshot)."""
    grouped = group(trace.typed_events)
    page = _Page(grouped, max_chars, writing=trace.writing and trace.finished is None,
                 live=live)
    root_id = (trace.root_event.run_id if trace.root_event else "") or (
        grouped.tops[0] if grouped.tops else trace.path.stem)
    root = grouped.runs.get(str(root_id)) or Run(str(root_id))
    page.header(root, trace.finished is not None)
    summary = "".join(page.out)
    page.out = [f'<div id="run-{_attr(root.run_id)}">']
    page.run(root)
    page.out.append("</div>")
    for run_id in grouped.tops:
        if run_id not in page.drawn:
            page.out.append(f"<h2>other run <code>{escape(run_id)}</code></h2>")
            page.run(grouped.runs[run_id])
    if trace.truncated_lines:
        page.out.append(f'<p class="note">{trace.truncated_lines} unreadable trace line(s) '
                        "skipped.</p>")
    page.out.append(f'<p class="note">trace: {escape(str(trace.path))}</p>')
    return {"summary": summary, "detail": "".join(page.out)}


def render_html(trace: Trace, *, max_chars: int = 20_000, live: dict[str, Any] | None = None
                ) -> str:
    """The whole trace as one HTML document (a ``str``), self-contained and safe to open.

    ``max_chars`` clips any single reply, output, error or answer (with a note saying how much
    was left out). An unfinished trace renders, marked "running" while its writer holds it
    (``Trace.writing``), else "incomplete". ``live`` (set by the live
    view: ``{"events": URL, "parts": URL}``) makes the page follow the trace as it grows.
    Never raises on odd events: missing fields render as blanks or zeros; a lone surrogate in
    a recorded text (a pasted question's ``"\\udcff"``) is U+FFFD, so the page encodes.
    """
    return well_formed(_page(trace, max_chars, live))


def _page(trace: Trace, max_chars: int, live: dict[str, Any] | None) -> str:
    parts = render_parts(trace, max_chars=max_chars, live=live is not None)
    root = trace.root_event
    title = escape(str(root.question if root else trace.path.stem)[:120])
    data = page_data(trace.typed_events)
    data["live"] = live
    data["finished"] = trace.finished is not None
    # null before the trace exists (the live view waiting for a run): not known yet
    data["writing"] = trace.writing if trace.events else None
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="color-scheme" content="light dark"><link rel="icon" href="data:,">'
        f"<title>fastrlm · {title}</title><style>{CSS}</style></head><body>"
        '<div class="tools js-only"><span id="live" class="badge" hidden></span> '
        '<button type="button" data-all="1">expand all</button> '
        '<button type="button" data-all="0">collapse all</button></div>'
        "<noscript><p class=\"banner warn\">JavaScript is off: this page is the whole run as "
        "text; the timeline, the full sub-call list and its filters need JavaScript "
        "(<code>fastrlm show RUN --subcalls</code> prints every sub-call).</p></noscript>"
        f'<div id="summary">{parts["summary"]}</div>'
        '<section id="explorer" class="js-only"><h2>Timeline</h2>'
        '<p class="note" id="tl-note"></p><div class="tl"><canvas id="timeline" height="120">'
        "</canvas></div><h2>Sub-calls</h2><div class=\"filters\" role=\"group\">"
        '<button type="button" data-mode="all" aria-pressed="true">all</button>'
        '<button type="button" data-mode="errors" aria-pressed="false">errors only</button>'
        '<button type="button" data-mode="slowest" aria-pressed="false">slowest</button>'
        '<button type="button" data-mode="costliest" aria-pressed="false">most expensive'
        '</button> <span class="note" id="calls-note"></span></div>'
        '<div class="vlist" id="calls"><div class="vhead vrow"><span>call</span>'
        '<span class="c-model">model</span><span class="num">latency</span>'
        '<span class="num c-tok">tokens</span>'
        '<span class="num">cost</span><span class="c-prompt">prompt</span><span>reply</span>'
        '</div><div class="vbody" id="calls-body" tabindex="0"><div id="calls-pad"></div>'
        "</div></div>"
        '<div id="call-open" hidden><div class="head"><b id="co-title"></b>'
        '<span class="note" id="co-facts"></span><button type="button" id="co-close">close'
        '</button></div><div id="co-body"></div></div>'
        '<p class="note">Click or tap a sub-call (in the list or the timeline) to open its '
        "prompt and reply.</p></section>"
        f'<main id="detail">{parts["detail"]}</main>'
        f'<script type="application/json" id="fastrlm-data">{script_json(data)}</script>'
        f"<script>{JS}</script></body></html>\n"
    )
