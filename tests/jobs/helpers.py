"""A fake provider for batch tests: root turns run real REPL code, sub-calls answer at once."""

from __future__ import annotations

import re
from collections.abc import Callable

import fastrlm
from fastrlm.testing import FakeOpenAIServer
from fastrlm.testing._fake_server import FakeRequest, Reply

#: Each job fans out to four sub-calls, then answers with its question's tag.
FANOUT = """```repl
replies = llm_query_batched(["part %d" % i for i in range(4)])
FINAL("answer:" + TAG + ":" + str(len(replies)))
```"""
#: A job that answers at once, without sub-calls.
AT_ONCE = '```repl\nFINAL("answer:" + TAG)\n```'
#: A job that fans out wide: alone it wants more calls in flight than a limit of 8 allows.
WIDE = """```repl
replies = llm_query_batched(["part %d" % i for i in range(12)])
FINAL("answer:" + TAG + ":" + str(len(replies)))
```"""
MODEL = "openai/fake"
PRICE = "openai/fake=1000,0"  # USD per 1M tokens: a root turn costs about a dollar


def tag_of(request: FakeRequest) -> str:
    """The job's question holds ``Q#TAG#``; the root's first user message carries it."""
    for message in request.messages:
        found = re.search(r"Q#(\w+)#", str(message.get("content", "")))
        if found:
            return found.group(1)
    return "?"


def handler(special: Callable[[FakeRequest, str], Reply | None] | None = None,
            on_sub: Callable[[], None] | None = None) -> Callable[[FakeRequest], Reply]:
    def handle(request: FakeRequest) -> Reply:
        if not request.is_root:
            if on_sub is not None:
                on_sub()
            return "sub ok"
        tag = tag_of(request)
        if special is not None:
            reply = special(request, tag)
            if reply is not None:
                return reply
        return FANOUT.replace("TAG", repr(tag))

    return handle


def jobs(n: int, prefix: str = "j") -> list[dict[str, str]]:
    return [{"id": f"{prefix}{i}", "question": f"what is Q#{prefix}{i}#?", "context": "text " * 10}
            for i in range(n)]


def server(special: Callable[[FakeRequest, str], Reply | None] | None = None,
           on_sub: Callable[[], None] | None = None, **kwargs: object) -> FakeOpenAIServer:
    return FakeOpenAIServer(handler=handler(special, on_sub), **kwargs)  # type: ignore[arg-type]


def worst_case(request: FakeRequest) -> float:
    """What the ledger reserves for this root turn at the tests' price (``PRICE``): its prompt
    bytes as an upper bound on its input tokens, at $1000 per million, output free."""
    sent = sum(len(str(m.get("content", "")).encode()) for m in request.messages)
    return sent * 1000 / 1e6


#: The keywords of ``collect()`` that are the batch RLM's settings (the rest go to batch()).
RLM_KEYS = frozenset({"base_url", "budget", "limits", "prices", "sandbox", "trace", "on_event"})
#: An endpoint for tests that never reach a model.
NOWHERE = "http://127.0.0.1:9/v1"


def rlm(**settings: object) -> fastrlm.RLM:
    """The batch RLM of these tests: the fake model, no sandbox, no traces."""
    return fastrlm.RLM(**{"model": MODEL, "sandbox": "none", "trace": False,  # type: ignore[arg-type]
                          "base_url": NOWHERE, **settings})


async def collect_batch(
    **kwargs: object,
) -> tuple[list[fastrlm.JobResult], fastrlm.jobs.BatchSummary]:
    """Run a batch to the end: the RLM's settings from ``kwargs`` (``RLM_KEYS``), the rest to
    :func:`fastrlm.batch`."""
    batch_rlm = rlm(**{k: kwargs.pop(k) for k in list(kwargs) if k in RLM_KEYS})
    try:
        run = fastrlm.batch(rlm=batch_rlm, **kwargs)  # type: ignore[arg-type]
        results = [result async for result in run]
    finally:
        await batch_rlm.aclose()
    return results, run.summary
