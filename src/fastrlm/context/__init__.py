"""Context: its metadata for the root model, and loading it from files, directories and stdin."""

from ._info import ContextInfo, canonical_bytes, describe_context

__all__ = ["ContextInfo", "canonical_bytes", "describe_context"]
