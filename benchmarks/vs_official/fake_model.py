"""The scripted model both implementations talk to: a FakeOpenAIServer in its own process.

    python fake_model.py --scenario fanout --sub-latency-ms 100 --stats-out stats.json

Prints its base URL, serves until SIGTERM/SIGINT, then writes what it saw to ``--stats-out``:
the arrival time (``time.time()``) of every root request and every sub-call, and the most
requests in flight at once. Root requests get the scripted code of ``common.root_reply`` for the
step their history asks for (after ``--root-latency-ms``); sub-calls get ``ok`` after
``--sub-latency-ms``.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path
from types import FrameType

import common

from fastrlm.testing import FakeOpenAIServer, FakeReply, FakeRequest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", required=True, choices=["fanout", "findall", "noop"])
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--sub-latency-ms", type=float, default=0.0)
    parser.add_argument("--root-latency-ms", type=float, default=0.0)
    parser.add_argument("--stats-out", required=True)
    args = parser.parse_args()

    lock = threading.Lock()
    root_times: list[float] = []
    root_steps: list[int] = []
    root_messages: list[int] = []
    sub_times: list[float] = []
    sub_latency = args.sub_latency_ms / 1000
    root_latency = args.root_latency_ms / 1000

    def handler(request: FakeRequest) -> FakeReply:
        if request.prompt.startswith(common.SUB_PREFIX):
            with lock:
                sub_times.append(request.received_at)
            return FakeReply("ok", latency_s=sub_latency)
        texts = [str(m.get("content", "")) for m in request.messages[-3:]]
        step = common.next_step(texts)
        with lock:
            root_times.append(request.received_at)
            root_steps.append(step)
            root_messages.append(len(request.messages))
        text = common.root_reply(args.scenario, step, args.iterations)
        return FakeReply(text, latency_s=root_latency)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with FakeOpenAIServer(handler=handler) as server:
        print(server.base_url, flush=True)
        while not stop.wait(0.2):
            pass
        with lock:
            stats = {
                "root_times": root_times,
                "root_steps": root_steps,
                "root_messages": root_messages,
                "sub_times": sub_times,
                "max_in_flight": server.max_in_flight,
                "requests": server.request_count,
            }
    Path(args.stats_out).write_text(json.dumps(stats))


if __name__ == "__main__":
    main()
