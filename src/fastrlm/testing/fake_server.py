"""Run :class:`FakeOpenAIServer` as a process, for trying the CLI offline, benchmarks and tests.

    python -m fastrlm.testing.fake_server --port 0 --latency-ms 100 --reply "FINAL(42)"

Prints the base URL an SDK takes (``http://127.0.0.1:PORT/v1``; with ``--anthropic``, the
Messages API fake, ``http://127.0.0.1:PORT``) as its first line of output, flushed, then serves
until SIGINT or SIGTERM, and on exit writes the request count and the most requests in flight at
once to stderr.

Replies. Root turns and sub-calls can be scripted apart, so one fake drives a whole RLM run. A
request is a *root turn* when it carries a system message (fastrlm sends its system prompt with
every root turn; an ``llm_query`` sub-call is one user message: see
:attr:`FakeRequest.is_root`).

- ``--root-reply TEXT`` (repeatable): the Nth root turn of a run gets the Nth text; past the
  last, the last repeats. N counts the model's replies since the run's question: from the start
  of the conversation, or from the last "New question" message of a session (``fastrlm chat``,
  ``rlm.session()``, a served session), so concurrent, repeated and session runs each start
  from the first text.
- ``--sub-reply TEXT`` (repeatable): sub-calls get these in rotation.
- Requests with no reply of their own kind get ``--reply`` (repeatable: the replies rotate;
  default ``ok``), or, with ``--echo``, the last message's text.
- ``--api-key KEY``: requests without ``Authorization: Bearer KEY`` get 401, as a real provider
  answers a wrong key.
"""

from __future__ import annotations

import argparse
import hmac
import itertools
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from types import FrameType

from .._core.prompts import SESSION_QUESTION
from ._fake_anthropic import FakeAnthropicServer
from ._fake_server import FakeOpenAIServer, FakeReply, FakeRequest, Fault


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastrlm.testing.fake_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before each reply")
    parser.add_argument("--reply", action="append", default=[],
                        help="reply text for any request (repeatable: they rotate)")
    parser.add_argument("--root-reply", action="append", default=[],
                        help="reply to the Nth root turn of a run (repeatable, in turn order)")
    parser.add_argument("--sub-reply", action="append", default=[],
                        help="reply to sub-calls (repeatable: they rotate)")
    parser.add_argument("--echo", action="store_true", help="reply with the last message")
    parser.add_argument("--completion-tokens", type=int, default=None)
    parser.add_argument("--api-key", default=None,
                        help="answer 401 unless the request sends this bearer token")
    parser.add_argument("--anthropic", action="store_true", help="speak the Messages API")
    args = parser.parse_args(argv)

    handler = Replies(args.reply, args.root_reply, args.sub_reply, echo=args.echo,
                      completion_tokens=args.completion_tokens, api_key=args.api_key)
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


class Replies:
    """The process's handler: root turns, sub-calls and the rest scripted apart (see above)."""

    def __init__(
        self,
        common: Sequence[str],
        root: Sequence[str] = (),
        sub: Sequence[str] = (),
        *,
        echo: bool = False,
        completion_tokens: int | None = None,
        api_key: str | None = None,
    ) -> None:
        self._common: Iterator[str] = itertools.cycle(common or ["ok"])
        self._root = list(root)
        self._sub: Iterator[str] | None = itertools.cycle(sub) if sub else None
        self._echo = echo
        self._tokens = completion_tokens
        self._key = api_key
        self._lock = threading.Lock()

    def __call__(self, request: FakeRequest) -> FakeReply | Fault:
        if self._key is not None and not self._authorized(request):
            return Fault.http_status(401, "Incorrect API key provided")
        return FakeReply(self._text(request), completion_tokens=self._tokens)

    def _authorized(self, request: FakeRequest) -> bool:
        assert self._key is not None
        sent = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        sent = sent or request.headers.get("x-api-key", "")  # the Messages API's header
        return hmac.compare_digest(sent.encode(), self._key.encode())

    def _text(self, request: FakeRequest) -> str:
        if request.is_root and self._root:
            return self._root[min(run_turn(request), len(self._root)) - 1]
        with self._lock:
            if not request.is_root and self._sub is not None:
                return next(self._sub)
            if self._echo:
                return request.prompt or "ok"
            return next(self._common)


#: How fastrlm opens each later question of a session (the default prompts' wording).
_SESSION_QUESTION = SESSION_QUESTION.split("{", 1)[0]


def run_turn(request: FakeRequest) -> int:
    """1 for a run's first root turn, then one more per model reply since its question: the
    conversation's start, or a session's last "New question" message."""
    turn = 1
    for message in request.messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if message.get("role") == "assistant":
            turn += 1
        elif (message.get("role") == "user" and isinstance(content, str)
              and content.startswith(_SESSION_QUESTION)):
            turn = 1
    return turn


if __name__ == "__main__":
    raise SystemExit(main())
