"""An in-memory tracer provider, and a scripted run with sub-calls and an rlm_query child."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastrlm import RLM, Budget
from fastrlm.telemetry import Telemetry
from fastrlm.testing import ScriptedLM

SECRET_QUESTION = "what is the launch code"
CHILD_ANSWER = "child answer"


if TYPE_CHECKING:  # the otel extra: imported where used, so the settings tests run without it
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def memory_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def root_reply(messages: list[Any]) -> str:
    if "child question" in messages[1]["content"]:  # the child run: one sub-call, then FINAL
        return f"```repl\nx = llm_query('from the child')\nFINAL('{CHILD_ANSWER}')\n```"
    if len(messages) == 2:  # first root turn: two sub-calls and a child
        return ("```repl\nparts = llm_query_batched(['alpha', 'beta'])\n"
                "kid = rlm_query('child question')\nprint(len(parts), kid)\n```")
    return "```repl\nFINAL('done: ' + kid)\n```"


def scripted_rlm(**kwargs: Any) -> RLM:
    root = ScriptedLM(root_reply, model="scripted/root")
    sub = ScriptedLM(lambda m: "sub reply", model="scripted/sub")
    return RLM(root, sub, sandbox="none", budget=Budget(max_depth=2), **kwargs)


def traced_rlm(provider: TracerProvider, capture: bool | None = None) -> RLM:
    return scripted_rlm(telemetry=Telemetry(tracer_provider=provider, capture_content=capture))


def by_name(spans: tuple[ReadableSpan, ...] | list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]
