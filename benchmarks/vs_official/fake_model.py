"""The scripted model both implementations talk to: a FakeOpenAIServer in its own process.

    python fake_model.py --scenario fanout --sub-latency-ms 100 --stats-out stats.json

Prints its base URL, serves until SIGTERM/SIGINT, then writes what it saw to ``--stats-out``:
the arrival time (``time.time()``) of every root request and every sub-call, and the most
requests in flight at once. Root requests get the scripted code of ``common.root_reply`` for the
step their history asks for (after ``--root-latency-ms``); sub-calls get ``ok`` after
``--sub-latency-ms``.

With ``--count-tokens`` every root request is counted as a provider would bill it (o200k_base,
``fastrlm.bench._tokens``): its input tokens (message contents plus 4 a message), the tokens of
its longest prefix shared with an earlier root request (what automatic prompt caching such as
OpenAI's serves from the cache: in 128-token steps, from 1,024 tokens on), the tokens it shares
with the previous root request alone, its output tokens and its bytes on the wire. The reply's
``usage`` reports the same counts, so the client's own accounting sees them too.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import common

from fastrlm.testing import FakeOpenAIServer, FakeReply, FakeRequest

MESSAGE_OVERHEAD = 4  # tokens a chat message costs beyond its content (role, separators)


def _common_prefix(x: str, y: str) -> int:
    lo, hi = 0, min(len(x), len(y))
    while lo < hi:  # slices compare in C: O(n log n), not a Python loop per character
        mid = (lo + hi + 1) // 2
        if x[:mid] == y[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


class RequestCounter:
    """Token counts of successive root requests, as a caching provider sees them."""

    def __init__(self) -> None:
        from fastrlm.bench._tokens import count_tokens, tokenizer

        self._tok = tokenizer()
        self._count = lambda text: count_tokens(text, self._tok)
        self._known: dict[str, int] = {}
        self._earlier: list[list[str]] = []
        self.rows: list[dict[str, Any]] = []

    @property
    def name(self) -> str:
        return self._tok.name

    def tokens(self, text: str) -> int:
        if text not in self._known:
            self._known[text] = self._count(text)
        return self._known[text]

    def _shared(self, a: list[str], b: list[str]) -> int:
        """Tokens of the longest common prefix of two requests (their serialised messages)."""
        total = 0
        for x, y in zip(a, b, strict=False):
            if x == y:
                total += self.tokens(x) + MESSAGE_OVERHEAD
                continue
            n = _common_prefix(x, y)
            return total + (self._count(x[:n]) if n else 0)
        return total

    def count(self, request: FakeRequest, reply: str) -> tuple[int, int, int]:
        parts = [f"{m.get('role')}\n{m.get('content', '')}" for m in request.messages]
        total = sum(self.tokens(p) + MESSAGE_OVERHEAD for p in parts)
        previous = self._shared(parts, self._earlier[-1]) if self._earlier else 0
        best = max((self._shared(parts, e) for e in self._earlier), default=0)
        cached = (best // 128) * 128 if best >= 1024 else 0
        out = self._count(reply)
        self._earlier.append(parts)
        self.rows.append({"input_tokens": total, "cached_tokens": cached,
                          "match_previous_tokens": previous, "output_tokens": out,
                          "bytes": int(request.headers.get("content-length", 0)),
                          "messages": len(parts)})
        return total, cached, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", required=True,
                        choices=["fanout", "findall", "noop", "tokens", "tokens-heavy"])
    parser.add_argument("--count-tokens", action="store_true")
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--sub-latency-ms", type=float, default=0.0)
    parser.add_argument("--root-latency-ms", type=float, default=0.0)
    parser.add_argument("--stats-out", required=True)
    parser.add_argument("--dialect", default="rlm", choices=["rlm", "minrlm"],
                        help="write the scripted root turns in this implementation's names")
    args = parser.parse_args()

    lock = threading.Lock()
    root_times: list[float] = []
    root_steps: list[int] = []
    root_messages: list[int] = []
    sub_times: list[float] = []
    sub_latency = args.sub_latency_ms / 1000
    root_latency = args.root_latency_ms / 1000
    counter = RequestCounter() if args.count_tokens else None
    cpu_at_first: list[float] = []  # the server's CPU from its first request on (not start-up)

    def handler(request: FakeRequest) -> FakeReply:
        if not cpu_at_first:
            cpu_at_first.append(time.process_time())
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
        text = common.root_reply(args.scenario, step, args.iterations, args.dialect)
        if counter is None:
            return FakeReply(text, latency_s=root_latency)
        with lock:
            prompt, cached, out = counter.count(request, text)
        return FakeReply(text, prompt_tokens=prompt, completion_tokens=out, cached_tokens=cached,
                         latency_s=root_latency)

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
                "cpu_s": time.process_time() - (cpu_at_first or [0.0])[0],
            }
            if counter is not None:
                stats["root_requests"] = counter.rows
                stats["tokenizer"] = counter.name
    Path(args.stats_out).write_text(json.dumps(stats))


if __name__ == "__main__":
    main()
