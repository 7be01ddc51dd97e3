"""fastrlm's one exception tree.

Every error that fastrlm raises on purpose derives from :class:`RLMError`. Errors from SDKs
(``openai``, ``anthropic``, ``httpx``) are translated at the provider boundary, so callers never
need to import a provider's exception types. The tree (``docs/architecture.md`` shows the same
drawing; a test keeps the two and the classes in step)::

    RLMError                            .result: the partial RLMResult when it ended a run
    ├── ConfigurationError
    │   ├── InvalidSettingError         also a ValueError; .setting, .value, .accepted
    │   ├── MissingExtraError           names the pip install that fixes it
    │   ├── JobError                    jobs/_jobs.py: a job line that is not a valid job
    │   ├── NoModelConfigured           cli/_config.py: no flag, variable or config names a model
    │   ├── IndexUnusableError          trace/_index.py: the run index cannot be read
    │   └── RLMCompatValueError         compat/rlms.py: also a ValueError, as the official package
    ├── ContextError
    ├── ProviderError                   .provider, .model, .status, .retryable
    │   ├── AuthenticationError
    │   ├── RateLimitError              .retry_after_s
    │   ├── ProviderTimeoutError
    │   ├── ProviderConnectionError     names the base URL it could not reach
    │   └── ProviderResponseError
    ├── BudgetExceededError             .reason (a StopReason): a call the budget refused
    ├── TraceNotFoundError              trace/_reader.py: no run matches an id, prefix, N or path
    ├── ReplayError                     a run cannot be resumed or forked as asked (fastrlm.trace)
    └── SandboxError
        ├── SandboxUnavailableError
        ├── WorkerCrashedError
        └── ProtocolError

    Exception (not an RLMError: the server's refusals, never raised to library callers)
    └── server.HTTPError                server/_http.py: a refused request (status, OpenAI-shaped
                                        {"error": ...} body)

    BaseException
    └── CellTimeout                     sandbox/_runtime.py: the soft timeout, inside the worker

``RLM.completion()`` raises the error that ended a failed run (a ``ProviderError`` from the root
model's calls, a ``SandboxError``, a ``ContextError``) with the run's partial
:class:`~fastrlm.RLMResult` on its ``result`` attribute; limit stops return a result instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .result import RLMResult
    from .stop import StopReason


class RLMError(Exception):
    """Base class of every error fastrlm raises on purpose.

    ``result`` is set when the error ended a run that :meth:`RLM.completion` had started: the
    partial :class:`~fastrlm.RLMResult` (``stop_reason="error"``, usage and cost so far, the
    trace path, any partial answer). It is ``None`` for errors raised before a run began.
    """

    result: RLMResult | None = None


class ConfigurationError(RLMError):
    """The configuration cannot work: unknown provider, bad model string, no model at all."""


class InvalidSettingError(ConfigurationError, ValueError):
    """A setting has a value it cannot take. ``setting`` is its name as the caller wrote it,
    ``value`` what was given, ``accepted`` the range in words (``"an integer >= 1"``).

    It is a :class:`~fastrlm.ConfigurationError` and, for code that expects it, a ``ValueError``.
    """

    def __init__(self, setting: str, value: object, accepted: str, hint: str = "") -> None:
        message = f"{setting} must be {accepted}, not {value!r}"
        super().__init__(message + (f" ({hint})" if hint else ""))
        self.setting = setting
        self.value = value
        self.accepted = accepted


class MissingExtraError(ConfigurationError):
    """An optional dependency is missing; the message names the ``pip install`` that fixes it."""

    def __init__(self, extra: str, package: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the optional package {package!r}: "
            f"pip install 'fastrlm[{extra}]'"
        )
        self.extra = extra
        self.package = package


class ContextError(RLMError):
    """The context cannot be used: unsupported type, not JSON-serialisable, unreadable."""


class ProviderError(RLMError):
    """An LM call failed. ``retryable`` says whether a retry could have helped."""

    retryable: bool = False

    def __init__(
        self, message: str, *, provider: str = "", model: str = "", status: int | None = None
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.model = model
        self.status = status


class AuthenticationError(ProviderError):
    """The provider rejected the credentials (401/403)."""


class RateLimitError(ProviderError):
    """The provider kept answering 429; ``retry_after_s`` is what it last asked for."""

    retryable = True

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after_s = retry_after_s


class ProviderTimeoutError(ProviderError):
    """The call did not finish within its per-call timeout."""

    retryable = True


class ProviderConnectionError(ProviderError):
    """The endpoint could not be reached (refused, reset, DNS)."""

    retryable = True


class ProviderResponseError(ProviderError):
    """The provider answered, but with something unusable (bad JSON, no choices, no text)."""

    retryable = True


class BudgetExceededError(RLMError):
    """A budget gate refused a call before it was sent. ``reason`` is the typed stop reason."""

    def __init__(self, reason: StopReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class SandboxError(RLMError):
    """The REPL worker could not do what was asked."""


class SandboxUnavailableError(SandboxError):
    """The requested isolation layer cannot start on this machine; the message says why."""


class WorkerCrashedError(SandboxError):
    """The worker process died (killed, crashed, out of memory)."""


class ProtocolError(SandboxError):
    """A frame from the worker was malformed, truncated or too large."""


class ReplayError(RLMError):
    """A run cannot be resumed or forked as asked: its record is missing or corrupt, a cell
    printed something else on replay than when it was recorded, the context or model differs
    from the run's, or the budget given is already spent. The message says which and what to
    do. (Defined here, beside the tree, so the engine raises it without loading the trace
    package; ``fastrlm.trace`` exports it.)"""
