"""The access log: one line per request whatever its end, and nothing secret in any line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from fastrlm.server._access import access_log, formatter

from .helpers import ECHO_SHAPE, raw_request, root, serving
from .test_server_runs import HeldRoot

SERVER_KEY = "sk-server-Zq8vT3s9XbB1"
UPSTREAM_KEY = "sk-upstream-Kf02LmWq77aa"
PROMPT = "the secret plan is to sell at dawn"
CONTEXT = "the confidential context of the run"


class Lines(logging.Handler):
    """Every fastrlm log record of the test, and a way to wait for the n-th access line."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.grew = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.grew.set()

    @property
    def access(self) -> list[dict[str, object]]:
        return [r.access for r in self.records if hasattr(r, "access")]  # type: ignore[attr-defined]

    async def wait_for(self, count: int) -> None:
        while len(self.access) < count:
            self.grew.clear()
            await asyncio.wait_for(self.grew.wait(), timeout=60)

    def rendered(self) -> str:
        return "\n".join(formatter(kind).format(r) for r in self.records
                         for kind in ("text", "json"))


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("fastrlm")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _chat_body(**extra: object) -> bytes:
    return json.dumps({"model": "rlm", "messages": [{"role": "user", "content": PROMPT}],
                       "context": CONTEXT, **extra}).encode()


async def test_each_request_is_one_line_whatever_its_status(lines: Lines) -> None:
    async with serving(root(ECHO_SHAPE), key=SERVER_KEY) as (server, _):
        port = server.port
        auth = {"Authorization": f"Bearer {SERVER_KEY}", "Content-Type": "application/json"}
        assert (await raw_request(port, "GET", "/health"))[0] == 200
        assert (await raw_request(port, "GET", "/v1/models",
                                  headers={"Authorization": "Bearer sk-wrong-123"}))[0] == 401
        assert (await raw_request(port, "GET", "/nowhere"))[0] == 404
        status, _, body = await raw_request(port, "POST", "/v1/chat/completions", _chat_body(),
                                            headers=auth)
        assert status == 200
        await lines.wait_for(4)
    health, unauthorized, missing, chat = lines.access
    assert (health["method"], health["path"], health["status"]) == ("GET", "/health", 200)
    assert (unauthorized["status"], unauthorized["error"]) == (401, "invalid_api_key")
    assert (missing["status"], missing["path"], missing["error"]) == (404, "/nowhere",
                                                                       "not_found")
    assert chat["status"] == 200 and chat["path"] == "/v1/chat/completions"
    assert chat["run_id"] == body["fastrlm"]["trace_id"]
    assert chat["stop_reason"] == "final"
    assert chat["cost_usd"] == pytest.approx(body["fastrlm"]["cost_usd"])
    assert all(str(line["client"]).startswith("127.0.0.1:") for line in lines.access)
    assert all(float(str(line["duration_s"])) >= 0 for line in lines.access)


async def test_no_key_header_or_prompt_text_reaches_any_log_line(lines: Lines) -> None:
    """Keys in the Authorization header, in another header and in the body, and the prompt and
    context, on a request that succeeds, one that is refused and one whose body is bad."""
    secret_headers = {"Authorization": f"Bearer {SERVER_KEY}", "X-Api-Key": UPSTREAM_KEY,
                      "Content-Type": "application/json"}
    async with serving(root(ECHO_SHAPE), key=SERVER_KEY) as (server, _):
        port = server.port
        ok = await raw_request(port, "POST", "/v1/chat/completions",
                               _chat_body(user=UPSTREAM_KEY), headers=secret_headers)
        bad = await raw_request(port, "POST", "/v1/chat/completions",
                                _chat_body(model=UPSTREAM_KEY), headers=secret_headers)
        refused = await raw_request(port, "POST", "/v1/chat/completions", _chat_body(),
                                    headers={"Authorization": f"Bearer {UPSTREAM_KEY}"})
        await lines.wait_for(3)
    assert (ok[0], refused[0]) == (200, 401)
    assert bad[0] in (400, 404) and UPSTREAM_KEY in json.dumps(bad[2])  # the reply may say it
    assert len(lines.access) == 3
    logged = lines.rendered()
    for secret in (SERVER_KEY, UPSTREAM_KEY, PROMPT, CONTEXT, "Bearer"):
        assert secret not in logged


async def test_a_client_that_leaves_mid_stream_is_one_line_with_status_499(
    lines: Lines,
) -> None:
    held = HeldRoot()
    async with serving(root(held)) as (server, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        body = _chat_body(stream=True)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n"
                     b"Content-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        await reader.readuntil(b"data: ")  # the stream began (200 and the role chunk)
        await held.entered.wait()
        writer.close()
        await writer.wait_closed()
        await held.cancelled.wait()
        await lines.wait_for(1)
        await server.wait_until(lambda s: s.active_runs == 0)
    [line] = lines.access
    assert line["status"] == 499
    assert line["stop_reason"] == "cancelled" and str(line["run_id"])


def test_a_path_cannot_forge_a_second_text_line() -> None:
    record = logging.LogRecord(access_log.name, logging.INFO, __file__, 0, "x", None, None)
    record.access = {"time": "t", "client": "c", "method": "GET", "path": "/a\n/b c",
                     "status": 404, "duration_s": 0.0}
    line = formatter("text").format(record)
    assert "\n" not in line and line.split(" ")[3] == "/a\\n/b%20c"
    assert json.loads(formatter("json").format(record))["path"] == "/a\n/b c"


@pytest.mark.slow  # a real `fastrlm serve` process per format
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_fastrlm_serve_writes_one_access_line_per_request_on_stderr(log_format: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastrlm.cli", "serve", "--port", "0", "--model", "openai/m",
         "--base-url", "http://127.0.0.1:9/v1", "--sandbox", "none", "--no-trace",
         "--log-format", log_format],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OPENAI_API_KEY": UPSTREAM_KEY, "FASTRLM_SERVER_KEY": SERVER_KEY},
    )
    try:
        assert proc.stderr is not None
        first = ""
        for line in proc.stderr:
            first += line
            if "listening on " in line:
                url = line.split("listening on ", 1)[1].split(" ", 1)[0]
                break
        else:
            pytest.fail(f"the server never listened: {first}")
        for path, key in (("/health", None), ("/v1/models", "sk-wrong")):
            request = urllib.request.Request(url.removesuffix("/v1") + path)
            if key:
                request.add_header("Authorization", f"Bearer {key}")
            try:
                urllib.request.urlopen(request, timeout=60).close()
            except urllib.error.HTTPError as refused:
                assert refused.code == 401
        proc.send_signal(signal.SIGTERM)
        rest = proc.stderr.read()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    lines = [line for line in (first + rest).splitlines() if line.strip()]
    access = [line for line in lines if " GET " in line or '"method"' in line]
    assert len(access) == 2, lines
    if log_format == "json":
        parsed = [json.loads(line) for line in lines]  # every line is a JSON object
        assert [(p["path"], p["status"]) for p in parsed if "status" in p] == [
            ("/health", 200), ("/v1/models", 401)]
    else:
        assert " GET /health 200 " in access[0] and " GET /v1/models 401 " in access[1]
    assert SERVER_KEY not in rest and UPSTREAM_KEY not in rest and "sk-wrong" not in rest


async def test_a_request_the_parser_refuses_is_one_line_with_its_status(lines: Lines) -> None:
    async with serving(root(ECHO_SHAPE)) as (server, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GARBAGE\r\n\r\n")
        await writer.drain()
        reply = await reader.read()
        writer.close()
        await writer.wait_closed()
        await lines.wait_for(1)
    assert reply.split(b" ")[1] == b"400"
    [line] = lines.access
    assert line["status"] == 400 and line["method"] == "-" and line["client"] != "-"
