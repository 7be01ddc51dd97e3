"""Images reach vision sub-models in each provider's format, count in the ledger's input bound
and in the cache key."""

from __future__ import annotations

import base64
import io

import pytest

from fastrlm import RLM, Budget
from fastrlm.lm import ChatMessage, SubcallCache
from fastrlm.lm._base import message_bytes
from fastrlm.testing import FakeAnthropicServer, FakeOpenAIServer, ScriptedLM

from .helpers import fast_retry, openai_lm

PNG_DATA = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30).decode()
WITH_IMAGE: list[ChatMessage] = [
    {"role": "user", "content": "what colour?",
     "images": [{"media_type": "image/png", "data": PNG_DATA}]},
]

ROOT_CODE = (
    "```repl\n"
    "tile = context.crop((0, 0, 8, 8))\n"
    "answer['content'] = llm_query('What colour is this tile?', images=[tile])\n"
    "answer['ready'] = True\n"
    "```"
)


@pytest.mark.sandbox
@pytest.mark.extra("images")
async def test_an_image_context_is_cropped_and_sent_to_an_openai_vision_endpoint() -> None:
    from PIL import Image

    sandbox = "auto" if _available("auto") else "none"
    root = ScriptedLM([ROOT_CODE], model="scripted/root")
    async with FakeOpenAIServer(["red"]) as server:
        sub = openai_lm(server, "openai/gpt-4.1-mini")
        rlm = RLM(root, sub, sandbox=sandbox)
        result = await rlm.acompletion("colour?", context=Image.new("RGB", (64, 64), "red"))
        await sub.aclose()
    assert result.answer == "red"
    (request,) = server.completion_requests
    text, image = request.body["messages"][0]["content"]
    assert text == {"type": "text", "text": "What colour is this tile?"}
    assert image["type"] == "image_url"
    prefix = "data:image/png;base64,"
    assert image["image_url"]["url"].startswith(prefix)
    tile = Image.open(io.BytesIO(base64.b64decode(image["image_url"]["url"][len(prefix):])))
    assert tile.size == (8, 8) and tile.getpixel((3, 3)) == (255, 0, 0)
    first = root.calls[0][1]["content"]
    assert "64x64 pixels" in first and "images=[context]" in first


def _available(kind: str) -> bool:
    from fastrlm import SandboxUnavailableError
    from fastrlm.sandbox import _layers

    try:
        _layers.plans_for(kind)
    except SandboxUnavailableError:
        return False
    return True


@pytest.mark.extra("anthropic")
async def test_anthropic_gets_base64_image_blocks_before_the_text() -> None:
    from fastrlm.lm import AnthropicLM

    async with FakeAnthropicServer(["green"]) as server:
        lm = AnthropicLM("anthropic/claude-haiku-4-5", base_url=server.base_url, api_key="k",
                         retry=fast_retry())
        response = await lm.complete(WITH_IMAGE, max_tokens=50)
        await lm.aclose()
    assert response.text == "green"
    (message,) = server.completion_requests[0].body["messages"]
    assert message["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": PNG_DATA}},
        {"type": "text", "text": "what colour?"},
    ]


async def test_a_message_without_images_is_sent_as_plain_text() -> None:
    async with FakeOpenAIServer(["ok"]) as server:
        lm = openai_lm(server)
        await lm.complete([{"role": "user", "content": "plain"}])
        await lm.aclose()
    assert server.completion_requests[0].body["messages"][0]["content"] == "plain"


def test_image_bytes_count_in_the_input_bound() -> None:
    assert message_bytes(WITH_IMAGE[0]) == len("what colour?") + len(PNG_DATA)


@pytest.mark.extra("images")
async def test_the_input_budget_refuses_a_sub_call_whose_images_do_not_fit() -> None:
    from PIL import Image

    """max_input_tokens admits the text alone but not text + a 40 KB image: the call is refused
    before it is sent, and the model sees the refusal."""
    big = Image.effect_noise((128, 128), 64).convert("RGB")
    root = ScriptedLM([
        "```repl\nprint(llm_query('short', images=[context]))\nprint(llm_query('short'))\n```",
        "```repl\nFINAL('done')\n```",
    ], model="scripted/root")
    sub = ScriptedLM(["text only answer"] * 3, model="scripted/sub")
    rlm = RLM(root, sub, sandbox="none",
              budget=Budget(max_input_tokens=30_000))
    result = await rlm.acompletion("q", context=big)
    output = root.calls[1][-1]["content"]
    assert "[error: budget_tokens" in output and "text only answer" in output
    assert len(sub.calls) == 1 and "images" not in sub.calls[0][0]
    assert result.answer == "done"


def test_images_are_part_of_the_cache_key() -> None:
    lm = ScriptedLM(["x"])
    plain: list[ChatMessage] = [{"role": "user", "content": "what colour?"}]
    other: list[ChatMessage] = [
        {"role": "user", "content": "what colour?",
         "images": [{"media_type": "image/png", "data": PNG_DATA[:-4] + "AAAA"}]},
    ]
    keys = {SubcallCache.key_for(lm, m, 10) for m in (plain, WITH_IMAGE, other)}
    assert len(keys) == 3
    # a message without images keeps the key it had before images existed
    import hashlib
    import json

    legacy = json.dumps({"lm": lm.cache_key(), "messages": [["user", "what colour?"]],
                         "max_tokens": 10}, sort_keys=True, ensure_ascii=False,
                        separators=(",", ":"))
    assert SubcallCache.key_for(lm, plain, 10) == hashlib.sha256(legacy.encode()).hexdigest()
