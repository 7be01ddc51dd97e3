"""The core runs without the ``openai`` SDK (an extra's dependency, not the core's): models
resolve, the core provider completes against an OpenAI-compatible server over ``aiohttp``, and
HTTPS clients still verify servers without the SDKs' HTTP library."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from fastrlm import MissingExtraError

# ``sys.modules[name] = None`` makes ``import name`` raise ImportError, as if not installed
_WITHOUT_SDKS = """
import sys
for name in ("openai", "anthropic", "litellm", "httpx2", "httpx", "httpcore2", "httpcore"):
    sys.modules[name] = None
"""


def _run(code: str) -> None:
    done = subprocess.run([sys.executable, "-c", _WITHOUT_SDKS + code], capture_output=True,
                          text=True, timeout=100)
    assert done.returncode == 0, done.stderr[-3000:]


def test_an_openai_compatible_model_resolves_and_completes_without_the_sdk() -> None:
    _run("""
import asyncio
import fastrlm, fastrlm.lm
from fastrlm.lm import OpenAIChatLM, resolve
from fastrlm.testing import FakeOpenAIServer

async def main():
    async with FakeOpenAIServer(["an answer"]) as server:
        lm = resolve("openai/gpt-4.1-mini", base_url=server.base_url, api_key="k")
        assert isinstance(lm, OpenAIChatLM), lm
        try:
            response = await lm.complete([{"role": "user", "content": "hi"}], max_tokens=5)
        finally:
            await lm.aclose()
    assert response.text == "an answer", response
    assert response.usage.input_tokens > 0

asyncio.run(main())
assert sys.modules["openai"] is None
""")


def test_https_clients_verify_servers_without_the_sdks_http_library() -> None:
    _run("""
import asyncio, ssl
from fastrlm.lm import OpenAIChatLM
from fastrlm.lm._provider import shared_ssl_context

context = shared_ssl_context()
assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
assert context.get_ca_certs() or ssl.get_default_verify_paths().capath, "no trust store"

async def main():
    lm = OpenAIChatLM("openai/x", base_url="https://127.0.0.1:9/v1", api_key="k")
    session = lm._new_client()
    try:
        assert session.connector._ssl is context
    finally:
        await session.close()

asyncio.run(main())
""")


def test_litellm_without_the_openai_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """``openai`` is part of the litellm extra now (its errors are what the bridge
    translates): missing, it is the extra's clear message, not a bare ImportError."""
    monkeypatch.setitem(sys.modules, "litellm", types.ModuleType("litellm"))
    monkeypatch.setitem(sys.modules, "openai", None)
    monkeypatch.delitem(sys.modules, "fastrlm.lm._litellm", raising=False)
    import fastrlm.lm

    with pytest.raises(MissingExtraError, match=r"pip install 'fastrlm\[litellm\]'") as caught:
        fastrlm.lm.LiteLLMLM  # noqa: B018
    assert caught.value.package == "openai"
