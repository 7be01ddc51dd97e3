"""Runs as an inspect_ai evaluation log (``fastrlm export --format inspect``), written by this
module's own code: fastrlm does not depend on inspect_ai.

The file is one JSON document in inspect_ai's ``.json`` log format, version
:data:`INSPECT_LOG_VERSION` (the ``EvalLog`` model's ``version`` field; checked against
inspect_ai 0.3.285, whose ``read_eval_log`` and ``inspect view`` read it by the ``.json``
suffix). What fastrlm fills in:

- ``version`` (2), ``status`` (``success``: the export itself finished; each run's own outcome
  is in its sample).
- ``eval``: ``eval_id`` (derived from the run ids, so the same runs give the same id),
  ``created`` (when exported, ISO 8601 UTC), ``task`` ``fastrlm``, ``dataset`` (``name``
  ``fastrlm-runs``, ``samples``, ``sample_ids``), ``model`` (the most common root model),
  ``config`` ``{}``, ``packages`` (``fastrlm``'s version), ``metadata.exporter``.
- ``plan``: one step, solver ``fastrlm.rlm``.
- ``results``: ``total_samples``, ``completed_samples`` (runs that ended with FINAL) and, when
  some runs have a score, one scorer ``score`` with metrics ``mean`` and ``count``.
- ``stats``: ``started_at`` / ``completed_at`` (the first run's start, the last run's end) and
  ``model_usage`` summed over the runs per model (``input_tokens``, ``output_tokens``,
  ``total_tokens``, ``input_tokens_cache_read``, ``reasoning_tokens``, ``total_cost``).
- ``samples``, one per run: ``id`` (the run id), ``epoch`` 1, ``input`` (the question),
  ``target`` (``""``: runs carry no expected answer), ``messages`` (the last root turn's
  messages as sent, then its reply, when the run has a replay record; else the question and
  the answer), ``output`` (``model``, one choice with the answer, ``stop_reason`` ``stop``
  for a FINAL answer else ``unknown``, ``completion``), ``scores`` (``score``, when given),
  ``metadata`` (``run_id``, ``stop_reason``, ``partial``, ``sub_model``, ``iterations``,
  ``subcalls``, ``cost_usd``, ``trace_path``), ``model_usage`` (per model, as above),
  ``total_time``, ``started_at``, ``completed_at``, ``error`` (``message``, empty
  ``traceback``) for a run that failed, and ``limit`` (``type``: ``turn``, ``cost``,
  ``token``, ``time`` or ``custom``) for one a budget stopped.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from .._foundation.text import json_text

#: The inspect_ai log format version written (``EvalLog.version``).
INSPECT_LOG_VERSION = 2

#: Which inspect_ai limit a budget stop is (``EvalSampleLimit.type``), and the budget field.
_LIMITS = {
    "max_iterations": ("turn", "max_iterations"),
    "budget_usd": ("cost", "max_usd"),
    "budget_tokens": ("token", "max_input_tokens"),
    "timeout": ("time", "max_seconds"),
    "budget_subcalls": ("custom", "max_subcalls"),
    "budget_requests": ("custom", "max_requests"),
}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _text(content: object) -> str:
    return content if isinstance(content, str) else json_text(content)


def _usage(by_model: object) -> dict[str, dict[str, Any]]:
    """A trace's ``usage.by_model`` as inspect_ai's ``model_usage``."""
    out: dict[str, dict[str, Any]] = {}
    for model, used in (by_model.items() if isinstance(by_model, dict) else ()):
        if not isinstance(used, dict):
            continue
        given, taken = int(used.get("input_tokens") or 0), int(used.get("output_tokens") or 0)
        out[str(model)] = {
            "input_tokens": given, "output_tokens": taken, "total_tokens": given + taken,
            "input_tokens_cache_read": int(used.get("cached_input_tokens") or 0),
            "reasoning_tokens": int(used.get("reasoning_tokens") or 0),
            "total_cost": float(used.get("cost_usd") or 0.0),
        }
    return out


def inspect_sample(*, run_id: str, question: str, model: str, sub_model: str,
                   started: float, finished: dict[str, Any], budget: dict[str, Any],
                   score: float | None, messages: Sequence[dict[str, Any]] | None,
                   reply: str | None, trace_path: str) -> dict[str, Any]:
    """One run as an ``EvalSample``. ``messages``/``reply``: its last root turn as sent and
    answered (None without a replay record); ``finished``: its ``run.finished`` event ({} for
    a run whose process died)."""
    stop = str(finished.get("stop_reason", "unfinished"))
    answer = str(finished.get("answer") or "")
    shown = ([{"role": m["role"], "content": _text(m["content"])} for m in messages]
             + [{"role": "assistant", "content": reply, "model": model}]
             if messages is not None and reply is not None else
             [{"role": "user", "content": question},
              {"role": "assistant", "content": answer, "model": model}])
    duration = finished.get("duration_s")
    sample: dict[str, Any] = {
        "id": run_id,
        "epoch": 1,
        "input": question,
        "target": "",
        "messages": shown,
        "output": {
            "model": model,
            "choices": [{"message": {"role": "assistant", "content": answer,
                                     "source": "generate", "model": model},
                         "stop_reason": "stop" if stop == "final" else "unknown"}],
            "completion": answer,
        },
        "metadata": {
            "run_id": run_id, "stop_reason": stop,
            "partial": stop != "final" or bool(finished.get("limited_by")),
            "sub_model": sub_model, "iterations": finished.get("iterations"),
            "subcalls": finished.get("subcalls"), "cost_usd": finished.get("cost_usd"),
            "trace_path": trace_path,
        },
        "model_usage": _usage((finished.get("usage") or {}).get("by_model")),
        "started_at": _iso(started),
    }
    if isinstance(duration, int | float):
        sample["total_time"] = float(duration)
        sample["completed_at"] = _iso(started + float(duration))
    if score is not None:
        sample["scores"] = {"score": {"value": score, "answer": answer}}
    if finished.get("error"):
        sample["error"] = {"message": str(finished["error"]), "traceback": "",
                           "traceback_ansi": ""}
    if stop in _LIMITS:
        kind, field = _LIMITS[stop]
        limit = budget.get(field)
        sample["limit"] = {"type": kind, "limit": float(limit) if isinstance(
            limit, int | float) else 0.0, "reason": stop}
    return sample


def inspect_log(samples: Sequence[dict[str, Any]], *, created: float) -> dict[str, Any]:
    """The ``EvalLog`` document holding ``samples`` (from :func:`inspect_sample`)."""
    ids = [str(s["id"]) for s in samples]
    models = Counter(str(s["output"]["model"]) for s in samples)
    usage: dict[str, dict[str, Any]] = {}
    for sample in samples:
        for model, used in sample["model_usage"].items():
            total = usage.setdefault(model, dict.fromkeys(used, 0))
            for key, value in used.items():
                total[key] += value
    scored = [s["scores"]["score"]["value"] for s in samples if "scores" in s]
    results: dict[str, Any] = {
        "total_samples": len(samples),
        "completed_samples": sum(s["metadata"]["stop_reason"] == "final" for s in samples),
        "scores": [] if not scored else [{
            "name": "score", "scorer": "score", "params": {},
            "metrics": {"mean": {"name": "mean", "value": sum(scored) / len(scored),
                                 "params": {}},
                        "count": {"name": "count", "value": len(scored), "params": {}}}}],
    }
    starts = [s["started_at"] for s in samples]
    ends = [s.get("completed_at", s["started_at"]) for s in samples]
    return {
        "version": INSPECT_LOG_VERSION,
        "status": "success",
        "eval": {
            "eval_id": hashlib.sha256("\n".join(ids).encode()).hexdigest()[:22],
            "run_id": "",
            "created": _iso(created),
            "task": "fastrlm",
            "dataset": {"name": "fastrlm-runs", "samples": len(samples), "sample_ids": ids},
            "model": models.most_common(1)[0][0] if models else "none",
            "config": {},
            "packages": {"fastrlm": _version()},
            "metadata": {"exporter": "fastrlm export --format inspect"},
        },
        "plan": {"name": "plan", "steps": [{"solver": "fastrlm.rlm", "params": {}}],
                 "config": {}},
        "results": results,
        "stats": {"started_at": min(starts, default=""), "completed_at": max(ends, default=""),
                  "model_usage": usage},
        "samples": list(samples),
    }


def _version() -> str:
    try:
        return metadata.version("fastrlm")
    except metadata.PackageNotFoundError:
        return "unknown"
