"""``llm_query(prompt, images=[...])``: what the sandbox sends, what the host accepts, and the
refusals on both sides (model code sees TypeError/ValueError; a forged frame is refused)."""

from __future__ import annotations

import base64
import io

import pytest

from fastrlm.sandbox import _hostcalls
from fastrlm.sandbox._hostcalls import (
    MAX_IMAGES_PER_PROMPT,
    model_request,
    wire_request,
)
from fastrlm.sandbox._hostops import dispatch

from .helpers import MakeSandbox

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
)
GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16
WEBP = b"RIFF\x00\x00\x00\x00WEBPVP8 "


class VisionBridge:
    def __init__(self) -> None:
        self.images: list[object] = []

    async def llm_query_batched(
        self, prompts: list[str], model: str | None, images: object = None
    ) -> list[str]:
        self.images.append(images)
        return [f"saw {len(i or [])}" for i in (images or [[]] * len(prompts))]

    async def rlm_query_batched(
        self, prompts: list[str], contexts: object, model: str | None
    ) -> list[str]:
        return ["child"] * len(prompts)


class TextOnlyBridge:
    """A bridge written before images existed: no ``images`` parameter."""

    async def llm_query_batched(self, prompts: list[str], model: str | None) -> list[str]:
        return ["text"] * len(prompts)

    async def rlm_query_batched(
        self, prompts: list[str], contexts: object, model: str | None
    ) -> list[str]:
        return ["child"] * len(prompts)


@pytest.mark.parametrize(
    ("data", "mime"),
    [(PNG, "image/png"), (GIF, "image/gif"), (JPEG, "image/jpeg"), (WEBP, "image/webp")],
)
def test_image_bytes_are_sniffed_and_sent_as_base64(data: bytes, mime: str) -> None:
    request = model_request("llm_query", "what is it?", images=[data])
    assert request.images == [[{"media_type": mime, "data": base64.b64encode(data).decode()}]]
    assert request.payload()["images"] == request.images


def test_one_image_need_not_be_in_a_list_and_a_pil_image_becomes_png() -> None:
    image_module = pytest.importorskip("PIL.Image")
    image = image_module.new("RGB", (3, 2))
    request = model_request("llm_query", "q", images=image)
    assert request.images is not None
    (part,) = request.images[0]
    decoded = base64.b64decode(part["data"])
    assert part["media_type"] == "image/png" and decoded.startswith(b"\x89PNG")
    assert image_module.open(io.BytesIO(decoded)).size == (3, 2)


def test_a_batch_takes_one_entry_per_prompt() -> None:
    request = model_request("llm_query_batched", ["a", "b", "c"], images=[PNG, None, [GIF, PNG]])
    assert request.images is not None
    assert [len(i) for i in request.images] == [1, 0, 2]


def test_without_images_the_frame_is_as_before() -> None:
    assert "images" not in model_request("llm_query", "q").payload()


@pytest.mark.parametrize(
    ("name", "prompts", "images", "error", "match"),
    [
        ("llm_query", "q", [b"plain text bytes"], ValueError, "not a PNG, JPEG, GIF or WebP"),
        ("llm_query", "q", ["a path.png"], TypeError, "must be bytes .* or a PIL image"),
        ("llm_query", "q", 42, TypeError, "images must be a list"),
        ("llm_query", "q", [PNG] * (MAX_IMAGES_PER_PROMPT + 1), ValueError, "more than 20"),
        ("llm_query_batched", ["a", "b"], [PNG], ValueError, "2 prompts but 1 image entries"),
        ("llm_query_batched", ["a"], PNG, TypeError, "one entry per prompt"),
        ("rlm_query", "q", [PNG], TypeError, "takes no images"),
    ],
)
def test_images_the_host_would_refuse_raise_in_the_cell(
    name: str, prompts: object, images: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        model_request(name, prompts, images=images)


def test_an_image_over_the_size_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_hostcalls, "MAX_IMAGE_BYTES", 100)
    with pytest.raises(ValueError, match="scale it down or crop it"):
        model_request("llm_query", "q", images=[PNG + b"\x00" * 200])


@pytest.mark.parametrize(
    "images",
    [
        [[{"media_type": "text/html", "data": "AAAA"}]],
        [[{"media_type": "image/png", "data": "not base64!"}]],
        [[{"media_type": "image/png", "data": "AAAA"}]],  # base64, but of no PNG
        [[{"media_type": "image/png", "data": base64.b64encode(GIF).decode()}]],  # of a GIF
        [[{"media_type": "image/png", "data": base64.b64encode(PNG).decode()[:-1]}]],  # cut
        [[{"media_type": "image/png", "data": "AAAA", "url": "file:///etc/passwd"}]],
        [[{"media_type": "image/png", "data": 5}]],
        [["AAAA"]],
        [{"media_type": "image/png", "data": "AAAA"}],
        [[], []],
    ],
)
def test_forged_image_fields_are_refused_on_the_host(images: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        wire_request("llm_query", {"prompts": ["q"], "model": None, "images": images})


def test_images_on_rlm_query_frames_are_refused_on_the_host() -> None:
    with pytest.raises(TypeError, match="llm_query only"):
        wire_request("rlm_query", {"prompts": ["q"], "contexts": None, "model": None,
                                   "images": [[]]})


async def test_dispatch_passes_images_only_when_there_are_some() -> None:
    vision = VisionBridge()
    request = model_request("llm_query", "q", images=[PNG, PNG])
    assert await dispatch(vision, "llm_query", request.payload()) == ["saw 2"]
    assert await dispatch(TextOnlyBridge(), "llm_query", {"prompts": ["q"], "model": None}) == [
        "text"]


@pytest.mark.sandbox
@pytest.mark.parametrize("layer", ["bwrap", "landlock", "none"])
async def test_a_cell_sends_a_crop_of_its_image_context(
    make_sandbox: MakeSandbox, layer: str
) -> None:
    image_module = pytest.importorskip("PIL.Image")
    bridge = VisionBridge()
    sb = await make_sandbox(layer, context=image_module.new("RGB", (32, 32), (0, 255, 0)),
                            fake=bridge)  # type: ignore[arg-type]
    result = await sb.execute("print(llm_query('colour?', images=[context.crop((0, 0, 4, 4))]))\n"
                              "llm_query('x', images=[b'not an image'])")
    assert result.stdout.strip() == "saw 1"
    assert result.error is not None and "not a PNG, JPEG, GIF or WebP" in result.error
    (sent,) = bridge.images
    assert isinstance(sent, list)
    (part,) = sent[0]
    crop = image_module.open(io.BytesIO(base64.b64decode(part["data"])))
    assert crop.size == (4, 4) and crop.getpixel((0, 0))[:3] == (0, 255, 0)
