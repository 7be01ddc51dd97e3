"""An image as it travels with a prompt: from the sandbox to the host, into a chat message."""

from __future__ import annotations

from typing import TypedDict


class ImagePart(TypedDict):
    """One image: its MIME type (``image/png``, ``image/jpeg``, ``image/gif`` or
    ``image/webp``) and its bytes in base64."""

    media_type: str
    data: str
