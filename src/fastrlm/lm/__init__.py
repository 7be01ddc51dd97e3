"""Model backends: the :class:`LM` protocol, providers and the registry that resolves strings."""

from ._base import LM, ChatMessage, LMResponse, estimate_tokens

__all__ = ["LM", "ChatMessage", "LMResponse", "estimate_tokens"]
