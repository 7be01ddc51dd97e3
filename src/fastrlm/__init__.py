"""fastrlm: Recursive Language Models. Any chat model over inputs of any size."""

from ._budget import Budget, StopReason
from ._config import Limits
from ._exceptions import (
    AuthenticationError,
    BudgetExceededError,
    ConfigurationError,
    ContextError,
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
from ._pricing import Price, PriceTable
from ._usage import TokenUsage, Usage, UsageSummary

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "Budget",
    "BudgetExceededError",
    "ConfigurationError",
    "ContextError",
    "Limits",
    "MissingExtraError",
    "Price",
    "PriceTable",
    "ProtocolError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderResponseError",
    "ProviderTimeoutError",
    "RLMError",
    "RateLimitError",
    "SandboxError",
    "SandboxUnavailableError",
    "StopReason",
    "TokenUsage",
    "Usage",
    "UsageSummary",
    "WorkerCrashedError",
    "__version__",
]
