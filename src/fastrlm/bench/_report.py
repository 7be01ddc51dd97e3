"""Summaries of results: per method and length, the paper's columns; and the Figure 1 plot.

Score is the mean x 100 with a 95% bootstrap confidence interval (percentile method, 2,000
resamples, seeded from the scores themselves, so equal scores give equal intervals in any row)
and ``n``; instances a control cannot run on (the oracle on real data, ``not_applicable``) are
counted apart and left out, and a row with none left shows N/A; final answers holding a failed
call's ``[error: ...]`` text are counted (``error_answers``) and flagged in the table; cost is
mean +- population std in USD per task run (instances over the window, not run, are left out);
tokens, sub-calls and time are means; ``context_tokens`` is the mean prompt length, counted by
the tokenizer the records name (o200k_base, or the chars/4 proxy); ``evidence_recall``
(BrowseComp) is the mean share of evidence documents that reached a model, x 100; ``*`` marks
rows where the method truncated its input or, for inputs over its window, was not run
(``exceeded``, scored 0: the paper's N/A); stop reasons are counted.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _std(xs: Sequence[float]) -> float:
    if len(xs) < 2:
        return 0.0
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))


def _quantile(xs: Sequence[float], q: float) -> float:
    """The ``q`` quantile by linear interpolation between order statistics (0 for none)."""
    if not xs:
        return 0.0
    v = sorted(xs)
    pos = q * (len(v) - 1)
    low = int(pos)
    high = min(low + 1, len(v) - 1)
    return v[low] + (v[high] - v[low]) * (pos - low)


def _mean_or_none(rs: Sequence[dict[str, Any]], key: str) -> int | None:
    """The mean of ``key`` over records that have it (None when none has it)."""
    xs = [float(r[key]) for r in rs if r.get(key) is not None]
    return round(_mean(xs)) if xs else None


BOOTSTRAP_RESAMPLES = 2000


def bootstrap_ci(
    xs: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95
) -> tuple[float, float]:
    """A percentile bootstrap interval for the mean of ``xs``. Its random draws are seeded from
    the values themselves (sorted), so equal scores give equal intervals whatever row, method
    or run they belong to. One value (or none) gives a zero-width interval at the mean."""
    if len(xs) < 2:
        m = _mean(xs)
        return m, m
    values = sorted(float(x) for x in xs)
    digest = hashlib.sha256(repr(values).encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    lo = means[int((1 - level) / 2 * resamples)]
    hi = means[min(int((1 + level) / 2 * resamples), resamples - 1)]
    return lo, hi


def _label(r: dict[str, Any], mixed: bool) -> str:
    """The method's name, with the root model when results of several models are ``mixed``."""
    return f"{r['method']} ({r['model']})" if mixed else str(r["method"])


def _mixed(records: Sequence[dict[str, Any]]) -> bool:
    return len({r["model"] for r in records}) > 1


def _x(r: dict[str, Any]) -> int:
    """The plotted length: the requested one, or (real data sets, length 0) the instance's own
    length rounded to a power of two."""
    if int(r["length"]) > 0:
        return int(r["length"])
    return int(2 ** round(math.log2(max(int(r.get("context_tokens") or 1), 1))))


def summarize(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (method, length) and one per method over all lengths (``length = "all"``);
    methods are labelled with their model when the records mix models."""
    records = list(records)
    mixed = _mixed(records)
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(_label(r, mixed), r["length"])].append(r)
        groups[(_label(r, mixed), "all")].append(r)
    rows = []
    for (method, length), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        # a control that cannot run on an instance (the oracle on real data) is N/A there:
        # neither a score nor a cost
        not_applicable = sum(1 for r in rs if r.get("not_applicable"))
        rs = [r for r in rs if not r.get("not_applicable")]
        # an instance the method did not run (over its window) has no cost, not a cost of 0
        costs = [float(r["cost_usd"]) for r in rs if not r.get("exceeded")]
        scores = [float(r["score"]) for r in rs]
        lo, hi = bootstrap_ci(scores)
        tokenizers = sorted({str(r.get("tokenizer") or "chars/4 proxy") for r in rs})
        rows.append(
            {
                "method": method,
                "length": length,
                "n": len(rs),
                "not_applicable": not_applicable,
                "score": round(100 * _mean(scores), 2) if rs else None,
                "score_ci": [round(100 * lo, 2), round(100 * hi, 2)] if rs else None,
                "error_answers": sum(1 for r in rs if r.get("error_answer")),
                "cost_mean": round(_mean(costs), 4),
                "cost_std": round(_std(costs), 4),
                "cost_median": round(_quantile(costs, 0.5), 4),
                "cost_p95": round(_quantile(costs, 0.95), 4),
                "root_tokens": _mean_or_none(rs, "root_tokens"),
                "sub_tokens": _mean_or_none(rs, "sub_tokens"),
                "input_tokens": round(_mean([float(r["input_tokens"]) for r in rs])),
                "output_tokens": round(_mean([float(r["output_tokens"]) for r in rs])),
                "subcalls": round(_mean([float(r["subcalls"]) for r in rs]), 1),
                "time_s": round(_mean([float(r["duration_s"]) for r in rs]), 2),
                "truncated": sum(1 for r in rs if r.get("truncated")),
                "exceeded": sum(1 for r in rs if r.get("exceeded")),
                "context_tokens": round(_mean([float(r.get("context_tokens") or 0) for r in rs])),
                "tokenizer": ", ".join(tokenizers),
                "evidence_recall": (
                    round(100 * _mean([float(r["evidence_recall"]) for r in rs]), 2)
                    if rs and all("evidence_recall" in r for r in rs)
                    else None
                ),
                "stop_reasons": dict(sorted(Counter(str(r["stop_reason"]) for r in rs).items())),
            }
        )
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of :func:`summarize` rows (a recall column when any row has one),
    followed by a line naming the tokenizer that measured the context lengths."""
    recall = any(r.get("evidence_recall") is not None for r in rows)
    head = (
        "| method | length | n | score [95% CI] | cost (USD) | cost median / p95 | context tok "
        "| in tok | out tok | root / sub tok | sub-calls | time (s) "
        + ("| evidence recall " if recall else "")
        + "| stop reasons |\n|"
        + "---|" * (14 if recall else 13)
        + "\n"
    )
    lines = []
    for r in rows:
        exceeded = int(r.get("exceeded") or 0)
        star = "*" if r["truncated"] or exceeded else ""
        stops = ", ".join(f"{k} {v}" for k, v in r["stop_reasons"].items())
        held = r.get("evidence_recall")
        rec = ("- | " if held is None else f"{held:.1f} | ") if recall else ""
        if r["score"] is None:
            lines.append(
                f"| {r['method']} | {r['length']} | 0 | N/A | N/A | - | "
                f"{int(r.get('context_tokens') or 0):,} | - | - | - | - | - | "
                f"{'- | ' if recall else ''}not applicable {r.get('not_applicable', 0)} |"
            )
            continue
        lo, hi = r.get("score_ci") or (r["score"], r["score"])
        errors = int(r.get("error_answers") or 0)
        if errors:
            stops += f"; {errors} error answer(s)!"
        if exceeded == r["n"]:
            cost = "N/A (over window)"
        else:
            cost = f"${r['cost_mean']:.4f} ± {r['cost_std']:.4f}"
            cost += f" ({exceeded} N/A)" if exceeded else ""
        spread = (f"${r.get('cost_median', 0):.4f} / ${r.get('cost_p95', 0):.4f}"
                  if exceeded != r["n"] else "-")
        root, sub = r.get("root_tokens"), r.get("sub_tokens")
        split = f"{root:,} / {sub:,}" if root is not None and sub is not None else "-"
        lines.append(
            f"| {r['method']} | {r['length']} | {r['n']} | {r['score']:.2f}{star} "
            f"[{lo:.2f}, {hi:.2f}] | {cost} | {spread} | {int(r.get('context_tokens') or 0):,} | "
            f"{r['input_tokens']:,} | {r['output_tokens']:,} | {split} | {r['subcalls']} | "
            f"{r['time_s']} | {rec}{stops} |"
        )
    names = sorted({str(r.get("tokenizer") or "chars/4 proxy") for r in rows})
    foot = (
        f"\nContext tokens counted with: {', '.join(names) or 'chars/4 proxy'}. Score: mean x 100 "
        "with a 95% bootstrap CI; * = input truncated, or over the window and not run (N/A, "
        "scored 0); N/A = the method cannot run on this data (the oracle on a real data set); "
        "'error answer(s)!' = final answers that held a failed call's [error: ...] text (an "
        "answer that is only that scores 0). Cost is per task run; root / sub tok: the root "
        "model's tokens and the sub-work's (sub-calls, child runs, compaction; by model, or by "
        "role when root and sub are one model; - where a method counted none).\n"
    )
    return head + "\n".join(lines) + "\n" + foot


def plot(records: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """Score (0-100) against context length (log2 axis), one line per method: Figure 1's shape.
    Needs matplotlib (the bench extra); uses the Agg backend, so no display is needed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    mixed = _mixed(records)
    for r in records:
        if not r.get("not_applicable"):
            by[_label(r, mixed)][_x(r)].append(float(r["score"]))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method in sorted(by):
        xs = sorted(by[method])
        ax.plot(xs, [100 * _mean(by[method][x]) for x in xs], marker="o", label=method)
    ax.set_xscale("log", base=2)
    ax.set_ylim(-2, 102)
    ax.set_xlabel("context length (tokens, proxy)")
    ax.set_ylabel("score")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
