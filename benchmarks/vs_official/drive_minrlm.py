"""Run one scripted minRLM completion against the fake model; print ``RESULT {json}`` last.
Runs inside the benchmark's own virtualenv (``official_env.ensure_minrlm``); nothing of minRLM
is copied. The fake model writes its turns in minRLM's names (``common.root_reply`` with
``dialect="minrlm"``): the same trajectory, the same prints and sub-calls.

    .bench-venv/bin/python drive_minrlm.py '{"base_url": ..., "context_mb": 2, ...}'
"""

from __future__ import annotations

import json
import sys
import time

import common


def run(cfg: dict) -> dict:
    from minrlm import RLM

    context = common.make_context(cfg["context_mb"]) if cfg["context_mb"] else "abcdefghij" * 100
    rlm = RLM(model="fake-root", base_url=cfg["base_url"], api_key="fake",
              max_iterations=cfg.get("iterations", 1) + 5, max_sub_llm_calls=10_000,
              max_time_seconds=600)
    t_call = time.time()
    result = rlm.completion("Follow the script.", context)
    t_end = time.time()
    return {"t_call": t_call, "t_end": t_end, "wall_s": t_end - t_call,
            "answer": result.response, "stop_reason": "", "error": None,
            "layer": "in-process exec", **common.cpu_times()}


def main() -> None:
    out = run(json.loads(sys.argv[1]))
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
