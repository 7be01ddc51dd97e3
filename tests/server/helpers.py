"""A served RLM on 127.0.0.1 with scripted models, and an openai SDK client pointed at it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import openai

from fastrlm import RLM, Budget
from fastrlm.server import RLMServer
from fastrlm.testing import ScriptedLM

#: The root writes a REPL block that reads the context, then delivers an answer about it.
ECHO_SHAPE = '```repl\nshape = type(context).__name__ + ":" + str(len(context))\nFINAL(shape)\n```'
ECHO_CONTEXT = "```repl\nFINAL(context)\n```"
NEVER_FINAL = "```repl\nprint('still looking')\n```"
QUESTION: list[Any] = [{"role": "user", "content": "How long is it?"}]


#: RLMServer's own options; every other keyword of serving() is the RLM's.
SERVER_OPTIONS = ("max_concurrent_runs", "max_queued_runs", "http_limits", "max_sessions",
                  "max_sessions_per_key", "session_idle_s", "max_session_chars", "keep_sessions",
                  "reasoning", "warm_workers")


def root(*replies: Any) -> ScriptedLM:
    """A root model: a fixed reply (repeated for every call), or a reply function."""
    if len(replies) == 1 and callable(replies[0]):
        return ScriptedLM(replies[0], model="scripted/root")
    return ScriptedLM(lambda _messages: replies[0], model="scripted/root")


@asynccontextmanager
async def serving(
    root_lm: ScriptedLM, sub_lm: ScriptedLM | None = None, *, key: str | None = None,
    client_key: str = "unused", **kwargs: Any,
) -> AsyncIterator[tuple[RLMServer, openai.AsyncOpenAI]]:
    """Start an RLMServer on a free port (in-process sandbox) and a client with no retries."""
    kwargs.setdefault("budget", Budget(max_iterations=4))
    kwargs.setdefault("trace", True)
    served = {k: kwargs.pop(k) for k in SERVER_OPTIONS if k in kwargs}
    rlm = RLM(root_lm, sub_lm or ScriptedLM(lambda m: "sub", model="scripted/sub"),
              sandbox=kwargs.pop("sandbox", "none"), **kwargs)
    server = RLMServer(rlm, server_key=key, **served)
    async with server:
        await server.start("127.0.0.1", 0)
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key=client_key, max_retries=0)
        try:
            yield server, client
        finally:
            await client.close()


async def raw_request(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One request on a fresh connection (``Connection: close``): (status, headers, JSON body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = {"Host": "test", "Connection": "close", **(headers or {})}
    if body or method == "POST":
        head["Content-Length"] = str(len(body))
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
    writer.write(f"{method} {path} HTTP/1.1\r\n{lines}\r\n".encode() + body)
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    top, _, payload = data.partition(b"\r\n\r\n")
    status_line, *header_lines = top.decode("latin-1").split("\r\n")
    fields = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split(" ")[1]), fields, json.loads(payload) if payload else None
