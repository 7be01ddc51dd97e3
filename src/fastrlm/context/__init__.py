"""Context: its metadata for the root model, and loading it from files, directories and stdin."""

from ._info import ContextInfo, canonical_bytes, describe_context
from ._load import LoadedContext, LoadReport, SkippedFile, load_context

__all__ = [
    "ContextInfo",
    "LoadReport",
    "LoadedContext",
    "SkippedFile",
    "canonical_bytes",
    "describe_context",
    "load_context",
]
