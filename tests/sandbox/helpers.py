"""Helpers for the sandbox tests: a tiny fake HostBridge and survival checks."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from fastrlm.sandbox import Sandbox
from fastrlm.testing import skip_unless_sandbox

CONTEXT = "The quick brown fox jumps over the lazy dog.\n" * 1000


class FakeBridge:
    """Answers at once: ``answer:<prompt>`` / ``child:<prompt>|<context>``; records calls."""

    def __init__(self) -> None:
        self.llm_calls: list[tuple[list[str], str | None]] = []
        self.rlm_calls: list[tuple[list[str], list[object] | None, str | None]] = []
        self.tool_calls: list[tuple[str, dict[str, object]]] = []

    @property
    def llm_prompts(self) -> int:
        return sum(len(p) for p, _ in self.llm_calls)

    async def llm_query_batched(self, prompts: list[str], model: str | None) -> list[str]:
        self.llm_calls.append((list(prompts), model))
        return [f"answer:{p}" for p in prompts]

    async def rlm_query_batched(
        self, prompts: list[str], contexts: list[object] | None, model: str | None
    ) -> list[str]:
        self.rlm_calls.append((list(prompts), contexts, model))
        ctxs = contexts if contexts is not None else [None] * len(prompts)
        return [f"child:{p}|{c}" for p, c in zip(prompts, ctxs, strict=True)]

    async def call_tool(self, name: str, arguments: dict[str, object]) -> dict[str, object]:
        self.tool_calls.append((name, dict(arguments)))
        return {"ok": True, "json": json.dumps({"tool": name, "arguments": arguments})}


MakeSandbox = Callable[..., Awaitable[Sandbox]]


skip_unless_available = skip_unless_sandbox


async def assert_alive(sandbox: Sandbox, context: object = CONTEXT) -> None:
    """The run survived: the REPL answers and the context is intact."""
    result = await sandbox.execute("len(context)")
    assert result.error is None, result.error
    assert result.stdout.strip() == str(len(context))  # type: ignore[arg-type]
