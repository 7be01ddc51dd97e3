"""The real `fastrlm serve` process against a fake upstream: flags, auth env, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from fastrlm.testing import FakeOpenAIServer, Fault
from fastrlm.testing._fake_server import FakeRequest, Reply

ANSWER = '```repl\nFINAL(llm_query("summarise " + context[:20]) + " / " + str(len(context)))\n```'


class Upstream:
    """Root turns answer with ANSWER (or stall when the question says HANG); sub-calls echo."""

    def __init__(self) -> None:
        self.hanging = threading.Event()

    def __call__(self, request: FakeRequest) -> Reply:
        if request.model != "root-model":
            return "sub:" + request.prompt[:9]
        if "HANG" in json.dumps(request.body):
            self.hanging.set()
            return Fault.stall(30)
        return ANSWER


@pytest.fixture
def served() -> Iterator[tuple[subprocess.Popen[str], str, Upstream]]:
    upstream = Upstream()
    with FakeOpenAIServer(handler=upstream) as fake:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fastrlm.cli", "serve", "--port", "0", "--model",
             "openai/root-model", "--sub-model", "openai/sub-model", "--base-url",
             fake.base_url, "--sandbox", "none", "--max-subcalls", "5"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "FASTRLM_SERVER_KEY": "k3y", "OPENAI_API_KEY": "upstream"},
        )
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                if "listening on " in line:
                    url = line.split("listening on ", 1)[1].split(" ", 1)[0]
                    break
            else:
                pytest.fail(f"the server never listened (exit {proc.wait()})")
            yield proc, url, upstream
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def test_serve_answers_through_the_upstream_and_exits_zero_on_sigterm(
    served: tuple[subprocess.Popen[str], str, Upstream],
) -> None:
    proc, url, _ = served
    assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
    with openai.OpenAI(base_url=url, api_key="k3y", max_retries=0) as client:
        reply = client.chat.completions.create(
            model="rlm/openai/root-model", messages=[{"role": "user", "content": "Gist?"}],
            extra_body={"context": "The festival is held in Lisbon every June."})
        with pytest.raises(openai.AuthenticationError):
            client.with_options(api_key="nope").models.list()
    assert reply.choices[0].message.content == "sub:summarise / 42"
    extra = reply.model_extra["fastrlm"]  # type: ignore[index]
    assert extra["subcalls"] == 1 and extra["budget"]["max_subcalls"] == 5
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_sigterm_cancels_a_run_in_flight_and_its_client_gets_503(
    served: tuple[subprocess.Popen[str], str, Upstream],
) -> None:
    proc, url, upstream = served
    outcome: dict[str, Any] = {}

    def call() -> None:
        with openai.OpenAI(base_url=url, api_key="k3y", max_retries=0) as client:
            try:
                client.chat.completions.create(
                    model="rlm", messages=[{"role": "user", "content": "HANG please"}])
            except openai.APIStatusError as exc:
                outcome["status"] = exc.status_code

    thread = threading.Thread(target=call)
    thread.start()
    assert upstream.hanging.wait(timeout=30)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    thread.join(timeout=30)
    assert outcome == {"status": 503}
    assert proc.stderr is not None and "stopping" in proc.stderr.read()


def test_the_session_flags_reach_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from fastrlm.cli import _serve, cli

    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(_serve, "_serve", lambda *args: seen.append(args[-1]))
    result = CliRunner().invoke(cli, ["serve", "--max-sessions", "6",
                                      "--max-sessions-per-key", "2", "--session-idle-s", "30"])
    assert result.exit_code == 0, result.output
    assert seen == [{"max_sessions": 6, "max_sessions_per_key": 2, "session_idle_s": 30.0,
                     "keep_sessions": None, "reasoning": False, "warm_workers": True}]
    seen.clear()
    result = CliRunner().invoke(cli, ["serve", "--cold-workers"])
    assert result.exit_code == 0, result.output
    assert seen[0]["warm_workers"] is False


def test_keep_sessions_without_traces_is_refused_saying_why(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from fastrlm.cli import ExitCode, cli

    monkeypatch.setenv("OPENAI_API_KEY", "upstream")
    result = CliRunner().invoke(cli, [
        "serve", "--model", "openai/root-model", "--base-url", "http://127.0.0.1:9/v1",
        "--sandbox", "none", "--no-trace", "--keep-sessions", str(tmp_path / "kept")])
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert "--no-trace" in result.stderr and "records" in result.stderr


def test_a_busy_port_says_how_to_pick_another() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "fastrlm.cli", "serve", "--port", str(port), "--model",
             "openai/root-model", "--base-url", "http://127.0.0.1:9/v1", "--sandbox", "none"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        )
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in proc.stderr
    assert "--port 0 for a free one" in proc.stderr


def test_the_default_port_is_none_of_the_local_model_servers() -> None:
    """serve is put in front of a local model server: its default must not be theirs (it
    was 8000, vLLM's)."""
    from urllib.parse import urlsplit

    from fastrlm.cli._serve import DEFAULT_PORT
    from fastrlm.lm import PRESETS

    local = {urlsplit(p.base_url).port for p in PRESETS.values() if p.base_url}
    assert {8000, 8080, 11434, 1234} <= local
    assert DEFAULT_PORT not in local


def test_the_reasoning_flag_reaches_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from fastrlm.cli import _serve, cli

    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(_serve, "_serve", lambda *args: seen.append(args[-1]))
    result = CliRunner().invoke(cli, ["serve", "--reasoning"])
    assert result.exit_code == 0, result.output
    assert seen[0]["reasoning"] is True
