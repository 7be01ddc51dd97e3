"""Scripted replies for the fake server: the root writes real REPL code, sub-calls echo."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastrlm.testing import FakeOpenAIServer
from fastrlm.testing._fake_server import FakeRequest, Reply

ROOT = "root-model"
SUB = "sub-model"

FANOUT = """```repl
parts = [context[i:i + 50] for i in range(0, min(len(context), 150), 50)]
replies = llm_query_batched(["Summarise: " + p for p in parts])
print(len(replies), "replies")
FINAL("answer: " + " | ".join(replies))
```"""

SIMPLE_FINAL = '```repl\nFINAL("forty-two")\n```'
NEVER_FINAL = "```repl\nprint('still looking')\n```"


def scripted(
    root: Sequence[Reply], sub: Callable[[FakeRequest], Reply] | None = None
) -> Callable[[FakeRequest], Reply]:
    """A handler: requests for ROOT get ``root`` in order (the last one repeats); any other
    model is a sub-call answered by ``sub`` (default: a short echo)."""
    replies = list(root)
    served = [0]

    def handle(request: FakeRequest) -> Reply:
        if request.model == ROOT:
            reply = replies[min(served[0], len(replies) - 1)]
            served[0] += 1
            return reply
        if sub is not None:
            return sub(request)
        return "sub saw " + str(len(request.prompt)) + " chars"

    return handle


def server(root: Sequence[Reply], sub: Callable[[FakeRequest], Reply] | None = None,
           **kwargs: object) -> FakeOpenAIServer:
    return FakeOpenAIServer(handler=scripted(root, sub), **kwargs)  # type: ignore[arg-type]


def model_args(srv: FakeOpenAIServer, sub: bool = True) -> list[str]:
    args = ["--model", f"openai/{ROOT}", "--base-url", srv.base_url]
    if sub:
        args += ["--sub-model", f"openai/{SUB}"]
    return args
