"""Text that must leave as UTF-8 (a provider request, a trace line, an HTTP body) while a Python
str may hold lone surrogates: JSON's ``"\\ud83d"`` escapes decode to one, and a str cut between
the two halves of a pair written as two code points leaves one. The one owner of what is done
with them: a prompt gets U+FFFD in their place, a JSON document escapes them (exact when read)."""

from __future__ import annotations

import json
from typing import Any


def well_formed(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (a pair written as two code points
    joined into its character); ``text`` itself (the same object) when it encodes as UTF-8."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def json_text(value: object, **options: Any) -> str:
    """``json.dumps(value, ensure_ascii=False, **options)``, or with ``ensure_ascii=True`` when
    that holds a lone surrogate: always encodable as UTF-8, and read back to the same value."""
    text = (_ENCODER.encode(value) if not options
            else json.dumps(value, ensure_ascii=False, **options))
    return text if well_formed(text) is text else json.dumps(value, ensure_ascii=True, **options)


# json.dumps builds a new encoder for every call that is not all defaults; the trace writer
# encodes one record per event of a fan-out
_ENCODER = json.JSONEncoder(ensure_ascii=False)


def well_formed_value(value: Any) -> Any:
    """``value`` (JSON-like: dicts, lists, str) with :func:`well_formed` applied to every str
    in it, keys included; for a serializer that refuses lone surrogates (the MCP SDK's)."""
    if isinstance(value, str):
        return well_formed(value)
    if isinstance(value, dict):
        return {well_formed_value(k): well_formed_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [well_formed_value(v) for v in value]
    return value
