"""Table 1 of arXiv 2512.24601v3 in its own shape: methods down, tasks across, each cell the score
with its bootstrap 95% interval, n and the mean cost per task; and a cost-vs-score plot (SVG
written by this module, no plotting library needed).

Cells come from :func:`fastrlm.bench.summarize` rows over all lengths, so they carry what the
summary carries (median and p95 cost, root and sub tokens, wall time) in ``table1.json``.
A method that was over its window on every instance is ``0.00* (N/A)`` as the paper prints it;
a control that cannot run on the data is ``N/A``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ._report import summarize

#: Table 1's rows in v3's order (depth 0 = no sub-calls), then the controls; others follow.
ROW_ORDER = (
    "base",
    "summary",
    "codeact",
    "codeact-bm25",
    "codeact-subcalls",
    "coding-agent",
    "rlm-no-subcalls",
    "rlm",
    "rlm-depth-2",
    "rlm-depth-3",
    "base-sc",
    "base-truncated",
    "simple-rlm",
    "shortcut",
    "oracle",
)
#: How the grid names a method (the paper's words).
ROW_NAMES = {
    "base": "Base model",
    "summary": "Compaction (summary agent)",
    "codeact": "CodeAct (+BM25)",
    "codeact-bm25": "CodeAct (+BM25 everywhere)",
    "codeact-subcalls": "CodeAct (+sub-calls)",
    "coding-agent": "Coding agent + context offloading",
    "rlm-no-subcalls": "RLM depth 0 (no sub-calls)",
    "rlm": "RLM depth 1",
    "rlm-depth-2": "RLM depth 2",
    "rlm-depth-3": "RLM depth 3",
    "base-sc": "Base + self-consistency (cost-matched)",
    "base-truncated": "Base model (truncated)",
    "simple-rlm": "Simple chunk-and-aggregate",
    "shortcut": "shortcut (control)",
    "oracle": "oracle (control)",
}
#: Table 1's columns in order; other tasks follow.
COLUMN_ORDER = ("codeqa", "browsecomp", "oolong", "oolong-pairs", "sniah", "oolong-labelled")
COLUMN_NAMES = {"codeqa": "CodeQA", "browsecomp": "BrowseComp+ (1K)", "oolong": "OOLONG",
                "oolong-pairs": "OOLONG-Pairs (F1)", "sniah": "S-NIAH",
                "oolong-labelled": "OOLONG (labelled)"}


def _order(name: str, order: Sequence[str]) -> tuple[int, str]:
    base = name.split(" (", 1)[0]
    return (order.index(base) if base in order else len(order), name)


def grid_cells(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """``(method label, task) -> summary row`` over all lengths."""
    by_task: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_task.setdefault(str(r["task"]), []).append(r)
    cells = {}
    for task, recs in by_task.items():
        for row in summarize(recs):
            if row["length"] == "all":
                cells[(str(row["method"]), task)] = row
    return cells


def cell_text(row: dict[str, Any] | None) -> str:
    """One cell: ``score [lo, hi] ($mean, n=N)``, the paper's N/A forms, or ``-`` (not run)."""
    if row is None:
        return "-"
    if row["score"] is None:
        return "N/A"
    if row["exceeded"] and row["exceeded"] == row["n"]:
        return f"{row['score']:.2f}* (N/A)"
    star = "*" if row["truncated"] or row["exceeded"] else ""
    lo, hi = row["score_ci"]
    errors = int(row.get("error_answers") or 0)
    flag = f"; {errors} error answer(s)!" if errors else ""
    return (f"{row['score']:.2f}{star} [{lo:.2f}, {hi:.2f}] "
            f"(${row['cost_mean']:.3f}, n={row['n']}{flag})")


def _tokens(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def cell_details(cells: dict[tuple[str, str], dict[str, Any]]) -> str:
    """Every scored cell's full report, one line each: n, score and interval, mean / median /
    p95 cost per task, root and sub tokens per task, mean wall time, error answers."""
    keys = sorted(cells, key=lambda k: (_order(k[1], COLUMN_ORDER), _order(k[0], ROW_ORDER)))
    lines = ["| task | method | n | score [95% CI] | cost mean / median / p95 (USD) "
             "| root / sub tok | time (s) | error answers |",
             "|---|---|---|---|---|---|---|---|"]
    for method, task in keys:
        row = cells[(method, task)]
        if row["score"] is None:
            continue
        lo, hi = row["score_ci"]
        lines.append(
            f"| {COLUMN_NAMES.get(task, task)} | {method} | {row['n']} | "
            f"{row['score']:.2f} [{lo:.2f}, {hi:.2f}] | ${row['cost_mean']:.4f} / "
            f"${row['cost_median']:.4f} / ${row['cost_p95']:.4f} | "
            f"{_tokens(row.get('root_tokens'))} / {_tokens(row.get('sub_tokens'))} | "
            f"{row['time_s']} | {int(row.get('error_answers') or 0)} |"
        )
    return "\n".join(lines) + "\n"


def format_grid(records: Iterable[dict[str, Any]]) -> str:
    """The Markdown grid (see the module docstring)."""
    cells = grid_cells(records)
    methods = sorted({m for m, _ in cells}, key=lambda m: _order(m, ROW_ORDER))
    tasks = sorted({t for _, t in cells}, key=lambda t: _order(t, COLUMN_ORDER))
    head = "| method | " + " | ".join(COLUMN_NAMES.get(t, t) for t in tasks) + " |\n"
    head += "|---|" + "---|" * len(tasks) + "\n"
    lines = []
    for m in methods:
        base, _, model = m.partition(" (")
        label = ROW_NAMES.get(base, base) + (f" ({model}" if model else "")
        lines.append(f"| {label} | " + " | ".join(cell_text(cells.get((m, t))) for t in tasks)
                     + " |")
    foot = ("\nScore x 100 [bootstrap 95% CI] (mean cost per task in USD, n); * = input "
            "truncated or over the window (N/A: not run, scored 0); N/A alone = the method "
            "cannot run on this data; 'error answer(s)!' = final answers holding a failed "
            "call's [error: ...] text. Each cell in full (also in table1.json):\n\n")
    return head + "\n".join(lines) + "\n" + foot + cell_details(cells)


_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


def cost_score_svg(records: Iterable[dict[str, Any]], path: Path, title: str) -> Path:
    """Mean cost per task (x, log10 scale) against score (y, 0-100): one point per (method,
    task) cell, coloured by task and labelled with the method. Cells without a score or a cost
    (N/A, free controls) are left out and listed under the plot."""
    cells = grid_cells(records)
    tasks = sorted({t for _, t in cells}, key=lambda t: _order(t, COLUMN_ORDER))
    points = [(m, t, float(r["cost_mean"]), float(r["score"])) for (m, t), r in cells.items()
              if r["score"] is not None and float(r["cost_mean"]) > 0]
    left_out = sorted(f"{m} ({t})" for (m, t), r in cells.items()
                      if r["score"] is None or float(r["cost_mean"]) <= 0)
    width, height, pad = 720, 460, 60
    lo = math.log10(min((p[2] for p in points), default=0.01))
    hi = math.log10(max((p[2] for p in points), default=1.0))
    lo, hi = math.floor(lo), max(math.ceil(hi), math.floor(lo) + 1)

    def x(cost: float) -> float:
        return pad + (math.log10(cost) - lo) / (hi - lo) * (width - 2 * pad)

    def y(score: float) -> float:
        return height - pad - score / 100 * (height - 2 * pad)

    total_height = height + 20 * len(tasks) + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_height}" '
           'font-family="sans-serif" font-size="11">',
           f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">'
           f'{html.escape(title)}</text>',
           f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
           'stroke="black"/>',
           f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>',
           f'<text x="{width / 2}" y="{height - 20}" text-anchor="middle">mean cost per task '
           '(USD, log scale)</text>',
           f'<text x="16" y="{height / 2}" transform="rotate(-90 16 {height / 2})" '
           'text-anchor="middle">score</text>']
    for e in range(lo, hi + 1):
        out.append(f'<text x="{x(10.0 ** e):.1f}" y="{height - pad + 16}" '
                   f'text-anchor="middle">{10.0 ** e:g}</text>')
    for s in range(0, 101, 20):
        out.append(f'<text x="{pad - 8}" y="{y(s) + 4:.1f}" text-anchor="end">{s}</text>')
        out.append(f'<line x1="{pad}" y1="{y(s):.1f}" x2="{width - pad}" y2="{y(s):.1f}" '
                   'stroke="#ddd"/>')
    colour = {t: _COLOURS[i % len(_COLOURS)] for i, t in enumerate(tasks)}
    for m, t, cost, score in sorted(points):
        px, py = x(cost), y(score)
        out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="4" fill="{colour[t]}"/>')
        out.append(f'<text x="{px + 6:.1f}" y="{py - 4:.1f}">{html.escape(m)}</text>')
    for i, t in enumerate(tasks):
        ty = height + 10 + 20 * i
        out.append(f'<circle cx="{pad}" cy="{ty}" r="4" fill="{colour[t]}"/>')
        out.append(f'<text x="{pad + 10}" y="{ty + 4}">{html.escape(COLUMN_NAMES.get(t, t))}'
                   '</text>')
    if left_out:
        note = "not plotted (no score or no cost): " + ", ".join(left_out)
        out.append(f'<text x="{pad}" y="{height + 20 * len(tasks) + 30}">'
                   f'{html.escape(note[:300])}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path
