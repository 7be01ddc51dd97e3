"""Reading a provider's reply with one tolerance, whatever fetched it.

A reply is read in its JSON form (:func:`reply_json`: a decoded body as it is, an SDK's reply
object through ``model_dump()``), and a value of the wrong type counts as absent
(:func:`count`), so a server's odd reply can never crash the reading or smuggle a wrong type
into an :class:`~fastrlm.lm.LMResponse`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def reply_json(reply: object) -> Mapping[str, Any]:
    """A reply as a JSON object: a decoded body as it is; an SDK object (a pydantic model, as
    the ``openai`` and ``anthropic`` SDKs and LiteLLM return) through ``model_dump()``, extra and
    declared fields alike (``usage.cost``). Serialisation warnings are off: a server's odd types
    are the reader's to tolerate, not pydantic's to warn about. Anything else reads as ``{}``."""
    dump = getattr(reply, "model_dump", None)
    data = dump(warnings=False) if callable(dump) else reply
    return data if isinstance(data, Mapping) else {}


def mapping(value: object) -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else ``{}``."""
    return value if isinstance(value, Mapping) else {}


def text_or_none(value: object) -> str | None:
    """``value`` if it is a string, else ``None``."""
    return value if isinstance(value, str) else None


def count(obj: object, name: str) -> int | None:
    """``obj[name]`` if it is a non-negative int (a token count), else ``None``: a server that
    sends ``"12"`` or ``null`` for a count must not crash the reading of its reply."""
    value = obj.get(name) if isinstance(obj, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value
