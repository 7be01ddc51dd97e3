"""Run one scripted completion of the official ``rlms`` package; print ``RESULT {json}`` last.

Runs inside the benchmark's own virtualenv (see ``official_env.py``); nothing of the official
package is copied. ``concurrency`` other than 16 sets ``LMHandler``'s ``batch_max_concurrent``
default (the package has no public setting for it) and is reported as patched.

    .bench-venv/bin/python drive_official.py '{"base_url": ..., "context_mb": 1, ...}'
"""

from __future__ import annotations

import json
import os
import sys
import time

import common


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run(cfg: dict) -> dict:
    from rlm import RLM
    from rlm.core import lm_handler
    from rlm.logger import RLMLogger

    concurrency = cfg.get("concurrency", 16)
    defaults = lm_handler.LMHandler.__init__.__defaults__
    if concurrency != 16:
        # (host, port, other_backend_client, batch_max_concurrent)
        lm_handler.LMHandler.__init__.__defaults__ = (*defaults[:-1], concurrency)
    context = common.make_context(cfg["context_mb"]) if cfg["context_mb"] else "abcdefghij" * 100
    backend = {"model_name": "fake-root", "base_url": cfg["base_url"], "api_key": "fake"}
    sub = {"model_name": "fake-sub", "base_url": cfg["base_url"], "api_key": "fake"}
    logger = RLMLogger(log_dir=cfg["trace_dir"]) if cfg.get("trace_dir") else None
    rlm = RLM(
        backend="openai",
        backend_kwargs=backend,
        other_backends=["openai"],
        other_backend_kwargs=[sub],
        environment="local",
        max_depth=1,
        max_iterations=cfg.get("iterations", 1) + 5,
        logger=logger,
    )
    rss_before = rss_bytes()
    t_call = time.time()
    result = rlm.completion(context, root_prompt="Follow the script.")
    t_end = time.time()
    return {
        "t_call": t_call,
        "t_end": t_end,
        "wall_s": t_end - t_call,
        "answer": result.response,
        "stop_reason": "",
        "error": None,
        "layer": "local (in-process exec)",
        "rss_before_call": rss_before,
        **common.cpu_times(),
    }


def main() -> None:
    cfg = json.loads(sys.argv[1])
    out = run(cfg)
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
