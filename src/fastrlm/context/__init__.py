"""Context: its metadata for the root model, and loading it from files, directories and stdin."""

from .._foundation.files import LoadLimits
from ._info import (
    ContextInfo,
    canonical_bytes,
    context_digest,
    context_problem,
    describe_context,
    describe_shape,
    wait_whole,
)
from ._load import load_context
from ._loaded import LoadedContext, LoadReport, SkippedFile, as_context

__all__ = [
    "ContextInfo",
    "LoadLimits",
    "LoadReport",
    "LoadedContext",
    "SkippedFile",
    "as_context",
    "canonical_bytes",
    "context_digest",
    "context_problem",
    "describe_context",
    "describe_shape",
    "load_context",
    "wait_whole",
]
