"""fastrlm: Recursive Language Models. Any chat model over inputs of any size."""

from ._core.facade import RLM
from ._core.prompts import Prompts
from ._core.session import Session
from ._core.tools import Tool
from ._foundation.budget import Budget
from ._foundation.errors import (
    AuthenticationError,
    BudgetExceededError,
    ConfigurationError,
    ContextError,
    InvalidSettingError,
    MissingExtraError,
    ProtocolError,
    ProviderConnectionError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
    RateLimitError,
    RLMError,
    SandboxError,
    SandboxUnavailableError,
    WorkerCrashedError,
)
from ._foundation.events import Event
from ._foundation.limits import Limits
from ._foundation.pricing import Price, PriceTable
from ._foundation.result import CandidateResult, RLMResult
from ._foundation.stop import StopReason
from ._foundation.usage import TokenUsage, Usage, UsageSummary
from .jobs import Job, JobResult, batch

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "Budget",
    "BudgetExceededError",
    "CandidateResult",
    "ConfigurationError",
    "ContextError",
    "Event",
    "InvalidSettingError",
    "Job",
    "JobResult",
    "Limits",
    "MissingExtraError",
    "Price",
    "PriceTable",
    "Prompts",
    "ProtocolError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderResponseError",
    "ProviderTimeoutError",
    "RLM",
    "RLMError",
    "RLMResult",
    "RateLimitError",
    "SandboxError",
    "SandboxUnavailableError",
    "Session",
    "StopReason",
    "TokenUsage",
    "Tool",
    "Usage",
    "UsageSummary",
    "WorkerCrashedError",
    "__version__",
    "batch",
]
