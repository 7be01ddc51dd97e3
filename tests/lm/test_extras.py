"""Optional providers: lazy imports, one clear message when missing, the litellm adapter."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
import types
from typing import Any

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletion

from fastrlm import MissingExtraError, RateLimitError
from fastrlm.lm import ChatMessage

from .helpers import fast_retry

USER: list[ChatMessage] = [{"role": "user", "content": "hi"}]

LITELLM_INSTALLED = importlib.util.find_spec("litellm") is not None


@pytest.mark.skipif(LITELLM_INSTALLED, reason="litellm is installed here")
def test_litellm_missing_names_the_extra() -> None:
    import fastrlm.lm

    with pytest.raises(MissingExtraError) as info:
        fastrlm.lm.LiteLLMLM  # noqa: B018 - the attribute access is the behaviour under test
    assert "pip install 'fastrlm[litellm]'" in str(info.value)
    assert info.value.extra == "litellm"


def test_anthropic_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "anthropic", None)  # import anthropic -> ImportError
    monkeypatch.delitem(sys.modules, "fastrlm.lm._anthropic", raising=False)
    import fastrlm.lm

    with pytest.raises(MissingExtraError, match=r"pip install 'fastrlm\[anthropic\]'"):
        fastrlm.lm.AnthropicLM  # noqa: B018
    from fastrlm.lm import resolve

    with pytest.raises(MissingExtraError, match="anthropic"):
        resolve("anthropic/claude-haiku-4-5", api_key="k")


def test_importing_fastrlm_lm_imports_no_sdk_until_a_provider_is_used() -> None:
    code = (
        "import sys, fastrlm, fastrlm.lm, fastrlm.testing\n"
        "sdks = ('openai', 'anthropic', 'litellm', 'httpx2', 'aiohttp')\n"
        "assert not [m for m in sdks if m in sys.modules], sys.modules.keys()\n"
        "fastrlm.lm.resolve('ollama/m')\n"
        "assert 'aiohttp' in sys.modules, 'the OpenAI-compatible path is aiohttp'\n"
        "assert not [m for m in ('openai', 'anthropic', 'litellm') if m in sys.modules]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_unknown_attribute_is_an_attribute_error() -> None:
    import fastrlm.lm

    with pytest.raises(AttributeError):
        fastrlm.lm.NoSuchThing  # noqa: B018


def _completion(text: str) -> ChatCompletion:
    return ChatCompletion.model_validate(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": text},
                }
            ],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        }
    )


@pytest.fixture
def fake_litellm(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A stand-in ``litellm`` module: records calls, plays a script of replies/exceptions."""
    module: Any = types.ModuleType("litellm")
    module.calls = []
    module.script = []

    async def acompletion(**kw: Any) -> Any:
        module.calls.append(kw)
        item = module.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    module.acompletion = acompletion
    monkeypatch.setitem(sys.modules, "litellm", module)
    monkeypatch.delitem(sys.modules, "fastrlm.lm._litellm", raising=False)
    yield module
    sys.modules.pop("fastrlm.lm._litellm", None)


async def test_litellm_adapter_sends_one_try_and_reads_the_reply(fake_litellm: Any) -> None:
    from fastrlm.lm import resolve

    fake_litellm.script = [_completion("from litellm")]
    lm = resolve("litellm/bedrock/anthropic.claude-3-5-sonnet", temperature=0.1)
    response = await lm.complete(USER, max_tokens=32)
    await lm.aclose()
    assert response.text == "from litellm"
    assert response.model == "litellm/bedrock/anthropic.claude-3-5-sonnet"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (11, 7)
    call = fake_litellm.calls[0]
    assert call["model"] == "bedrock/anthropic.claude-3-5-sonnet"
    assert call["num_retries"] == 0 and call["max_tokens"] == 32 and call["temperature"] == 0.1


async def test_litellm_errors_are_translated_and_retried(fake_litellm: Any) -> None:
    module = importlib.import_module("fastrlm.lm._litellm")
    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    limited = httpx2.Response(429, request=request, headers={"retry-after": "0"})
    error = openai.RateLimitError("slow down", response=limited, body=None)
    fake_litellm.script = [error, _completion("second")]
    lm = module.LiteLLMLM("litellm/groq/llama", retry=fast_retry())
    assert (await lm.complete(USER)).text == "second"
    fake_litellm.script = [error] * 3
    lm = module.LiteLLMLM("litellm/groq/llama", retry=fast_retry(max_retries=2))
    with pytest.raises(RateLimitError):
        await lm.complete(USER)
