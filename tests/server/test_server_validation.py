"""The server's per-request overrides (``extra_body={"fastrlm": {...}}``) are checked by the
rules ``Budget`` uses: 400 ``invalid_fastrlm`` naming the field and its accepted range."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from fastrlm._foundation.validate import BUDGET_RULES

from .helpers import ECHO_SHAPE, QUESTION, raw_request, root, serving

BAD: list[tuple[str, Any]] = [
    ("max_usd", -1), ("max_usd", 0), ("max_usd", "1"), ("max_usd", True),
    ("max_seconds", 0), ("max_seconds", -0.5), ("max_seconds", [1]),
    ("max_subcalls", -1), ("max_subcalls", 2.5), ("max_subcalls", 3.0), ("max_subcalls", False),
    ("max_iterations", 0), ("max_iterations", 1.5), ("max_iterations", None),
    ("max_depth", 0), ("max_depth", "2"),
    ("max_requests", 0), ("max_requests", 2.5), ("max_requests", True),
    ("max_iterations", 10**9), ("max_seconds", 1e12), ("max_depth", 10**6),  # past the bounds
]


@pytest.mark.parametrize(("field", "value"), BAD)
async def test_the_sdk_gets_400_naming_the_override_and_its_range(field: str, value: Any) -> None:
    async with serving(root(ECHO_SHAPE)) as (_, client):
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="rlm", messages=QUESTION,
                extra_body={"context": "c", "fastrlm": {field: value}})
    assert caught.value.code == "invalid_fastrlm"
    message = str(caught.value)
    assert f"fastrlm.{field} must be {BUDGET_RULES[field].describe()}" in message


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
@pytest.mark.parametrize("field", ["max_usd", "max_seconds", "max_subcalls", "max_iterations"])
async def test_nan_and_infinity_in_the_body_are_refused(field: str, token: bytes) -> None:
    # Python's json module reads NaN/Infinity tokens; a raw client can send them.
    body = (b'{"model": "rlm", "messages": [{"role": "user", "content": "q"}], '
            b'"context": "c", "fastrlm": {"' + field.encode() + b'": ' + token + b"}}")
    async with serving(root(ECHO_SHAPE)) as (server, _):
        status, _, reply = await raw_request(server.port, "POST", "/v1/chat/completions", body,
                                             {"Content-Type": "application/json"})
    assert status == 400
    assert reply["error"]["code"] == "invalid_fastrlm"
    assert f"fastrlm.{field} must be" in reply["error"]["message"]


@pytest.mark.parametrize("where", [b'"fastrlm": {"max_subcalls": %s}', b'"max_tokens": %s',
                                   b'"context": [%s]'])
async def test_a_number_past_pythons_digit_limit_is_a_400_not_a_500(where: bytes) -> None:
    # json.loads raises a plain ValueError for an integer of more than 4,300 digits: the server
    # answered 500 "Server got itself in trouble"
    body = (b'{"model": "rlm", "messages": [{"role": "user", "content": "q"}], '
            + where % (b"9" * 5000) + b"}")
    async with serving(root(ECHO_SHAPE)) as (server, _):
        status, _, reply = await raw_request(server.port, "POST", "/v1/chat/completions", body,
                                             {"Content-Type": "application/json"})
    assert status == 400
    assert reply["error"]["code"] == "invalid_json"
    assert "digits" in reply["error"]["message"]


async def test_a_null_optional_override_keeps_the_server_s_limit() -> None:
    async with serving(root(ECHO_SHAPE)) as (_, client):
        reply = await client.chat.completions.create(
            model="rlm", messages=QUESTION,
            extra_body={"context": "abc", "fastrlm": {"max_usd": None, "max_subcalls": 5}})
    extra: dict[str, Any] = reply.model_extra["fastrlm"]  # type: ignore[index]
    assert extra["budget"]["max_usd"] is None and extra["budget"]["max_subcalls"] == 5
    assert json.dumps(extra["budget"])  # plain JSON, no NaN


def test_a_request_cannot_raise_the_request_cap_derived_from_the_servers_subcalls() -> None:
    from fastrlm import Budget
    from fastrlm.server._protocol import effective_budget

    server = Budget(max_subcalls=10)  # max_requests unset: 3 per allowed call
    assert server.max_requests is None and server.request_cap is not None
    lowered = effective_budget(server, {"max_requests": 5})
    assert lowered.request_cap == 5
    raised = effective_budget(server, {"max_requests": 10_000_000})
    assert raised.request_cap == server.request_cap


@pytest.mark.parametrize(("argument", "value"), [
    ("max_concurrent_runs", 10**9), ("max_queued_runs", 10**9), ("max_sessions", 10**9),
    ("session_idle_s", 1e12), ("max_session_chars", 1 << 60),
])
def test_the_servers_own_settings_have_upper_bounds(argument: str, value: Any) -> None:
    from fastrlm import RLM, InvalidSettingError
    from fastrlm._foundation.validate import SERVER_RULES
    from fastrlm.server import RLMServer

    with pytest.raises(InvalidSettingError, match=rf"^{argument} must be .* and <= "):
        RLMServer(RLM(root(ECHO_SHAPE), sandbox="none"), **{argument: value})
    assert SERVER_RULES[argument].maximum is not None
