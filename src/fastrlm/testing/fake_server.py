"""Run :class:`FakeOpenAIServer` as a process, for benchmarks and manual tests.

    python -m fastrlm.testing.fake_server --port 0 --latency-ms 100 --reply "FINAL(42)"

Prints the base URL an SDK takes (``http://127.0.0.1:PORT/v1``; with ``--anthropic``, the
Messages API fake, ``http://127.0.0.1:PORT``) as its first line of output, flushed, then serves
until SIGINT or SIGTERM, and on exit writes the request count and the most requests in flight at
once to stderr. Every request gets ``--reply`` (repeatable: the replies rotate), or, with
``--echo``, the last message's text.
"""

from __future__ import annotations

import argparse
import itertools
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from ._fake_anthropic import FakeAnthropicServer
from ._fake_server import FakeOpenAIServer, FakeReply, FakeRequest, Reply


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastrlm.testing.fake_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before each reply")
    parser.add_argument("--reply", action="append", default=[], help="reply text (repeatable)")
    parser.add_argument("--echo", action="store_true", help="reply with the last message")
    parser.add_argument("--completion-tokens", type=int, default=None)
    parser.add_argument("--anthropic", action="store_true", help="speak the Messages API")
    args = parser.parse_args(argv)

    replies = itertools.cycle(args.reply or ["ok"])
    lock = threading.Lock()

    def handler(request: FakeRequest) -> Reply:
        if args.echo:
            text = request.prompt or "ok"
        else:
            with lock:
                text = next(replies)
        return FakeReply(text, completion_tokens=args.completion_tokens)

    cls = FakeAnthropicServer if args.anthropic else FakeOpenAIServer
    server = cls(handler=handler, latency_s=args.latency_ms / 1000, host=args.host, port=args.port)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with server:
        print(server.base_url, flush=True)
        while not stop.wait(0.5):
            pass
        sys.stderr.write(
            f"fake server: {server.request_count} requests, max in flight {server.max_in_flight}\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
