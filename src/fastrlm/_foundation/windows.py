"""Context windows of known models, and the sub-call window the engine derives from them.

One owner for both facts: the root model is told the sub-call window (``_core.prompts``) and the
call tree refuses a sub-call prompt over it (``_core.call_tree``), from the same number.

The window of a model is looked up by name substring (first match wins; provider prefixes such
as ``openai/`` do not matter). An unknown model gets :data:`DEFAULT_WINDOW_TOKENS`. The sub-call
window in characters is ``(window - reserve) x 3``: 3 characters per token is a cautious figure
for mixed prose, code and numbers (o200k_base gives about 3.3 on OOLONG's records and 4 on
English prose), and the reserve is the sub-call's output cap.
"""

from __future__ import annotations

#: Input windows in tokens, by model-name substring (first match wins).
WINDOWS: tuple[tuple[str, int], ...] = (
    ("gpt-5", 272_000),  # GPT-5, -mini and -nano: 272K input (400K with output)
    ("gpt-4.1", 1_000_000),
    ("o3", 200_000),
    ("o4", 200_000),
    ("qwen3-coder", 262_144),
    ("qwen3-8b", 32_768),
    ("qwen3", 131_072),
    ("claude", 200_000),
    ("gemini", 1_000_000),
    ("gpt-4o", 128_000),
)
DEFAULT_WINDOW_TOKENS = 128_000
#: Characters per token assumed when turning a token window into a prompt size.
SAFE_CHARS_PER_TOKEN = 3
#: The smallest sub-call window ever derived (a tiny or mis-sized model still gets a usable one).
MIN_SUBCALL_WINDOW_CHARS = 8_000


def context_window(model: str) -> int | None:
    """The input window of ``model`` in tokens, or None when the table does not know it."""
    name = model.lower()
    for key, size in WINDOWS:
        if key in name:
            return size
    return None


def window_tokens(model: str) -> int:
    """The input window of ``model`` in tokens (:data:`DEFAULT_WINDOW_TOKENS` when unknown)."""
    return context_window(model) or DEFAULT_WINDOW_TOKENS


def subcall_window_chars(model: str, reserve_tokens: int, override: int | None = None) -> int:
    """The largest sub-call prompt, in characters, for sub-model ``model`` whose answer may take
    ``reserve_tokens``. ``override`` (``Limits.subcall_window_chars``) wins when set."""
    if override is not None:
        return override
    usable = max(window_tokens(model) - reserve_tokens, 0) * SAFE_CHARS_PER_TOKEN
    return max(usable, MIN_SUBCALL_WINDOW_CHARS)
