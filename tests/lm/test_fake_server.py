"""FakeOpenAIServer itself: scripts, handlers, records, holds, and the standalone process."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

import openai
import pytest

from fastrlm.testing import FakeOpenAIServer, FakeReply, FakeRequest, Fault


def _post(url: str, body: dict[str, object]) -> tuple[int, Any]:
    request = urllib.request.Request(
        url + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_script_then_default_then_exhausted() -> None:
    with FakeOpenAIServer(["one", "two"]) as server:
        assert (
            _post(server.base_url, {"messages": []})[1]["choices"][0]["message"]["content"] == "one"
        )
        assert _post(server.base_url, {"messages": []})[0] == 200
        status, body = _post(server.base_url, {"messages": []})
    assert status == 400 and "script exhausted" in json.dumps(body)


def test_a_handler_sees_the_request_and_may_return_faults() -> None:
    def handler(request: FakeRequest) -> str | Fault:
        return Fault.http_status(418) if request.prompt == "teapot" else request.prompt.upper()

    with FakeOpenAIServer(handler=handler) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        reply = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "shout"}]
        )
        assert reply.choices[0].message.content == "SHOUT"
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "teapot"}]
            )
        client.close()
    assert info.value.status_code == 418
    recorded = server.completion_requests
    assert [r.prompt for r in recorded] == ["shout", "teapot"]
    assert recorded[0].headers["authorization"] == "Bearer k"
    assert recorded[0].model == "m"


def test_usage_counts_are_exact_when_given_and_estimated_otherwise() -> None:
    with FakeOpenAIServer([FakeReply("x", prompt_tokens=7, completion_tokens=3), "abcdefgh"]) as s:
        given = _post(s.base_url, {"messages": [{"role": "user", "content": "q"}]})[1]["usage"]
        guess = _post(s.base_url, {"messages": [{"role": "user", "content": "12345678"}]})[1][
            "usage"
        ]
    assert (given["prompt_tokens"], given["completion_tokens"]) == (7, 3)
    assert (guess["prompt_tokens"], guess["completion_tokens"]) == (2, 2)


def test_add_replies_extends_the_script() -> None:
    with FakeOpenAIServer() as server:
        server.add_replies("late")
        assert _post(server.base_url, {})[1]["choices"][0]["message"]["content"] == "late"


def test_the_standalone_process_prints_its_url_and_serves() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fastrlm.testing.fake_server",
            "--port",
            "0",
            "--latency-ms",
            "1",
            "--reply",
            "FINAL(42)",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        client = openai.OpenAI(base_url=url, api_key="k", max_retries=0)
        reply = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "q"}]
        )
        client.close()
        assert reply.choices[0].message.content == "FINAL(42)"
        assert reply.usage is not None
    finally:
        process.terminate()
        _, err = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "1 requests" in err
