"""The pasted-document rule at the server's other doors: a huge system, tool or multi-part
message, a pasted message that is not the last, a stream, and text that is not well-formed
Unicode (a lone surrogate, valid as a JSON escape) at the head or tail the root is shown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fastrlm.lm import OpenAIChatLM, RetryPolicy
from fastrlm.testing import FakeOpenAIServer, ScriptedLM

from .helpers import raw_request, serving

DOC = "log line\n" * 40_000  # 360,000 characters
LENGTH = "```repl\nFINAL(str(len(context)))\n```"


def _recording_root() -> tuple[ScriptedLM, list[list[dict[str, Any]]]]:
    seen: list[list[dict[str, Any]]] = []

    def reply(messages: list[dict[str, Any]]) -> str:
        seen.append(messages)
        return LENGTH
    return ScriptedLM(reply, model="scripted/root"), seen


async def _post(server: Any, body: dict[str, Any]) -> tuple[int, bytes]:
    port = int(server.base_url.rstrip("/").rsplit(":", 1)[1].split("/")[0])
    payload = json.dumps(body).encode()
    status, _, data = await raw_request(port, "POST", "/v1/chat/completions", payload,
                                        {"Content-Type": "application/json"})
    return status, data


@pytest.mark.parametrize("messages", [
    pytest.param([{"role": "system", "content": DOC}, {"role": "user", "content": "how long?"}],
                 id="huge-system-message"),
    pytest.param([{"role": "user", "content": [{"type": "text", "text": DOC},
                                               {"type": "text", "text": "how long?"}]}],
                 id="huge-part-of-a-content-list"),
    pytest.param([{"role": "user", "content": "hi"}, {"role": "tool", "content": DOC},
                  {"role": "user", "content": "how long?"}], id="huge-tool-message"),
    pytest.param([{"role": "user", "content": DOC + "how long?"},
                  {"role": "assistant", "content": "reading"}], id="pasted-message-not-last"),
    pytest.param([{"role": "user" if i % 2 == 0 else "assistant", "content": "m" * 3_999}
                  for i in range(91)], id="many-medium-messages"),
])
async def test_no_door_of_the_conversation_puts_the_document_in_a_root_prompt(
        messages: list[dict[str, Any]]) -> None:
    root, seen = _recording_root()
    async with serving(root) as (server, client):
        reply = await client.chat.completions.create(model="rlm", messages=messages)  # type: ignore[arg-type]
    assert int(str(reply.choices[0].message.content)) > 300_000  # the REPL holds it all
    assert seen and all(len(m["content"]) < 12_000 for call in seen for m in call)


async def test_a_streamed_pasted_document_stays_in_the_repl() -> None:
    root, seen = _recording_root()
    async with serving(root) as (server, client):
        stream = await client.chat.completions.create(
            model="rlm", stream=True, messages=[{"role": "user", "content": DOC + "how long?"}])
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == str(len("user: " + DOC + "how long?"))
    assert seen and all(len(m["content"]) < 12_000 for call in seen for m in call)


@pytest.mark.parametrize("pasted", [
    pytest.param("\ud83d" + "x" * 5_000 + "\ude00", id="lone-halves-at-head-and-tail"),
    pytest.param("x" * 299 + "\U0001f600" * 5_000, id="astral-at-the-head-cut"),
    pytest.param("short \udfff question", id="lone-surrogate-shown-whole"),
])
async def test_text_that_is_not_well_formed_unicode_reaches_the_provider_and_the_trace(
        pasted: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTRLM_HOME", str(tmp_path))
    echo = "```repl\nFINAL(context[-3:])\n```"
    async with FakeOpenAIServer(default=echo) as provider:
        root = OpenAIChatLM("openai/gpt-4.1-mini", base_url=provider.base_url, api_key="k",
                            retry=RetryPolicy(max_retries=0))
        async with serving(root, trace=True) as (server, _client):  # type: ignore[arg-type]
            status, data = await _post(server, {
                "model": "rlm", "messages": [{"role": "user", "content": pasted}]})
        sent = [m["content"] for r in provider.completion_requests for m in r.messages]
    assert status == 200, data
    # the answer is the document's own last characters, lone surrogate and all (JSON-escaped)
    assert data["choices"][0]["message"]["content"] == pasted[-3:]
    assert sent and all(isinstance(text, str) for text in sent)
    traces = list((tmp_path / "traces").glob("*.jsonl"))
    assert len(traces) == 1
    events = [json.loads(line) for line in traces[0].read_text("utf-8").splitlines()]
    assert events[0]["type"] == "run.started" and events[-1]["type"] == "run.finished"
    assert events[-1]["answer"] == pasted[-3:]
