"""A served RLM on 127.0.0.1 with scripted models, and an openai SDK client pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import openai

from fastrlm import Budget
from fastrlm.server import RLMServer
from fastrlm.testing import ScriptedLM

#: The root writes a REPL block that reads the context, then delivers an answer about it.
ECHO_SHAPE = '```repl\nshape = type(context).__name__ + ":" + str(len(context))\nFINAL(shape)\n```'
ECHO_CONTEXT = "```repl\nFINAL(context)\n```"
NEVER_FINAL = "```repl\nprint('still looking')\n```"


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
    server = RLMServer(root_lm, sub_lm or ScriptedLM(lambda m: "sub", model="scripted/sub"),
                       sandbox="none", server_key=key, **kwargs)
    async with server:
        await server.start("127.0.0.1", 0)
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key=client_key, max_retries=0)
        try:
            yield server, client
        finally:
            await client.close()
