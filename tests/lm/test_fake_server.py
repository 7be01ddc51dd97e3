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


def _request(messages: list[dict[str, Any]], headers: dict[str, str] | None = None,
             **body: Any) -> FakeRequest:
    return FakeRequest(0, "POST", "/v1/chat/completions", headers or {},
                       {"messages": messages, **body}, 0.0)


SYSTEM = {"role": "system", "content": "You answer a question about a context..."}
USER = {"role": "user", "content": "the question"}
ASSISTANT = {"role": "assistant", "content": "```repl\nx = 1\n```"}


def test_a_request_with_a_system_message_is_a_root_turn_and_counts_its_turns() -> None:
    assert _request([SYSTEM, USER]).is_root and _request([SYSTEM, USER]).turn == 1
    assert _request([SYSTEM, USER, ASSISTANT, USER]).turn == 2
    assert _request([USER], system="an Anthropic system prompt").is_root
    assert not _request([USER]).is_root  # an llm_query sub-call


def test_the_process_handler_scripts_root_turns_and_sub_calls_apart() -> None:
    from fastrlm.testing.fake_server import Replies

    replies = Replies(["other"], root=["first turn", "second turn"], sub=["s1", "s2"])
    text = lambda request: replies(request).text  # noqa: E731 - a local shorthand
    # Root turns are picked by turn number: two runs in a row both start at the first text.
    assert text(_request([SYSTEM, USER])) == "first turn"
    assert text(_request([SYSTEM, USER, ASSISTANT, USER])) == "second turn"
    assert text(_request([SYSTEM, USER, ASSISTANT, USER, ASSISTANT, USER])) == "second turn"
    assert text(_request([SYSTEM, USER])) == "first turn"
    assert [text(_request([USER])) for _ in range(3)] == ["s1", "s2", "s1"]
    fallback = Replies(["a", "b"], root=["root only"])
    assert [fallback(_request([USER])).text for _ in range(3)] == ["a", "b", "a"]
    echo = Replies([], sub=[], echo=True)
    assert echo(_request([USER])).text == "the question"


def test_root_replies_are_numbered_per_run_also_in_a_session() -> None:
    """The README's promise: the Nth root turn of a *run*. A session's second question goes on
    in the same conversation; it was given the reply after the last one, not the first."""
    from fastrlm._core.prompts import SESSION_QUESTION
    from fastrlm.testing.fake_server import Replies

    replies = Replies([], root=["first turn", "second turn", "third turn"])
    second_question = {"role": "user", "content": SESSION_QUESTION.format(
        number=2, question="and now?", new_context="", contexts="`context_0`")}
    earlier = [SYSTEM, USER, ASSISTANT, USER, ASSISTANT]
    assert replies(_request([*earlier, second_question])).text == "first turn"
    assert replies(_request([*earlier, second_question, ASSISTANT, USER])).text == "second turn"


def test_the_process_handler_answers_401_to_a_wrong_key() -> None:
    from fastrlm.testing.fake_server import Replies

    replies = Replies(["ok"], api_key="sk-right")
    wrong = replies(_request([USER], {"authorization": "Bearer sk-wrong"}))
    assert isinstance(wrong, Fault) and wrong.status == 401
    assert isinstance(replies(_request([USER])), Fault)  # no key at all
    right = replies(_request([USER], {"authorization": "Bearer sk-right"}))
    assert isinstance(right, FakeReply) and right.text == "ok"
    assert isinstance(replies(_request([USER], {"x-api-key": "sk-right"})), FakeReply)


def test_one_fake_process_drives_a_whole_rlm_run_root_and_sub_calls(tmp_path: Any) -> None:
    from fastrlm import RLM

    code = "```repl\nsummary = llm_query('Summarise: ' + context)\nprint(summary)\n```"
    process = subprocess.Popen(
        [sys.executable, "-m", "fastrlm.testing.fake_server", "--port", "0",
         "--root-reply", code, "--root-reply", "FINAL_VAR(summary)",
         "--sub-reply", "from the sub-model"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        rlm = RLM("openai/fake", base_url=url, api_key="k", sandbox="none")
        result = rlm.completion("What is it?", context="a long document")
    finally:
        process.terminate()
        _, err = process.communicate(timeout=10)
    assert result.answer == "from the sub-model" and result.subcalls == 1
    assert result.iterations == 2
    assert "3 requests" in err


def test_a_handler_that_blocks_holds_only_its_own_request() -> None:
    import threading

    entered, release = threading.Event(), threading.Event()

    def handler(request: FakeRequest) -> str:
        if request.prompt == "hold":
            entered.set()
            release.wait(60)  # a scripted handler may block (the MCP tests' upstream does)
        return request.prompt

    with FakeOpenAIServer(handler=handler) as server:
        held: list[tuple[int, Any]] = []
        first = threading.Thread(target=lambda: held.append(
            _post(server.base_url, {"messages": [{"role": "user", "content": "hold"}]})))
        first.start()
        try:
            assert entered.wait(60)
            status, body = _post(server.base_url,
                                 {"messages": [{"role": "user", "content": "free"}]})
        finally:
            release.set()
            first.join()
    assert status == 200 and body["choices"][0]["message"]["content"] == "free"
    assert held[0][1]["choices"][0]["message"]["content"] == "hold"
