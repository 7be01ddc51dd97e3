"""fastrlm: Recursive Language Models. Any chat model over inputs of any size."""

from ._budget import Budget, StopReason
from ._config import Limits
from ._engine import RLM
from ._events import Event
from ._exceptions import (
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
from ._pricing import Price, PriceTable
from ._prompts import Prompts
from ._result import RLMResult
from ._usage import TokenUsage, Usage, UsageSummary

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "Budget",
    "BudgetExceededError",
    "ConfigurationError",
    "ContextError",
    "Event",
    "InvalidSettingError",
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
    "StopReason",
    "TokenUsage",
    "Usage",
    "UsageSummary",
    "WorkerCrashedError",
    "__version__",
]
