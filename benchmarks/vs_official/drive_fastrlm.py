"""Run one scripted fastrlm completion against the fake model; print ``RESULT {json}`` last.

    python drive_fastrlm.py '{"base_url": ..., "context_mb": 1, "iterations": 10, ...}'
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import common

from fastrlm import RLM, Budget, Limits


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def run(cfg: dict) -> dict:
    context = common.make_context(cfg["context_mb"]) if cfg["context_mb"] else "abcdefghij" * 100
    trace = cfg.get("trace_dir") or False
    rlm = RLM(
        model="openai/fake-root",
        sub_model="openai/fake-sub",
        base_url=cfg["base_url"],
        api_key="fake",
        sandbox=cfg.get("sandbox", "auto"),
        limits=Limits(max_concurrency=cfg.get("concurrency", 64),
                      **({"full_history": True} if cfg.get("full_history") else {}),
                      **cfg.get("limits", {})),
        budget=Budget(max_iterations=cfg.get("iterations", 1) + 5),
        trace=trace,
    )
    rss_before = rss_bytes()
    t_call = time.time()
    result = await rlm.acompletion("Follow the script.", context=context)
    t_end = time.time()
    await rlm.aclose()
    return {
        "t_call": t_call,
        "t_end": t_end,
        "wall_s": t_end - t_call,
        "answer": result.answer,
        "stop_reason": str(result.stop_reason.value),
        "error": result.error,
        "layer": result.sandbox,
        "iterations": result.iterations,
        "rss_before_call": rss_before,
        **common.cpu_times(),
    }


def main() -> None:
    cfg = json.loads(sys.argv[1])
    out = asyncio.run(run(cfg))
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
