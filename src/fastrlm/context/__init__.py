"""Context: its metadata for the root model, and loading it from files, directories and stdin."""

from .._foundation.files import LoadLimits
from ._info import (
    ContextInfo,
    canonical_bytes,
    context_digest,
    context_problem,
    describe_context,
    describe_shape,
)
from ._load import LoadedContext, LoadReport, SkippedFile, load_context

__all__ = [
    "ContextInfo",
    "LoadLimits",
    "LoadReport",
    "LoadedContext",
    "SkippedFile",
    "canonical_bytes",
    "context_digest",
    "context_problem",
    "describe_context",
    "describe_shape",
    "load_context",
]
