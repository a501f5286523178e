"""The one exception hierarchy of the sidecar.

Every failure the core reports is a :class:`SidecarError`. The transport maps
each class to one gRPC status; messages are written for the caller and never
carry prompt text, API keys or upstream URLs.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from llm_sidecar.core.vocabulary.models import AttemptRecord, Usage


class SidecarError(Exception):
    """Base of every error the sidecar reports to a caller."""

    #: Machine-readable reason (google.rpc.ErrorInfo.reason).
    reason: str = "SIDECAR_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidContextError(SidecarError):
    """The user context in the call's metadata is missing or malformed."""

    reason = "INVALID_USER_CONTEXT"

    def __init__(self, key: str, problem: str, *, missing: bool = False) -> None:
        super().__init__(f"metadata '{key}' {problem}")
        self.key = key
        self.problem = problem
        self.missing = missing


class InvalidRequestError(SidecarError):
    """A request field is invalid; ``field`` names it."""

    reason = "INVALID_REQUEST"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class RequestTooLargeError(InvalidRequestError):
    """A request or one of its fields is over a configured limit."""

    reason = "REQUEST_TOO_LARGE"

    def __init__(
        self, field: str, size: int, limit: int, unit: str = "bytes", *, setting: str = ""
    ) -> None:
        where = f" ({setting})" if setting else ""
        super().__init__(field, f"is {size} {unit}, over the limit of {limit} {unit}{where}")
        self.size = size
        self.limit = limit
        #: The configuration setting that holds the limit.
        self.setting = setting


class UnknownModelError(InvalidRequestError):
    """The requested model route is not configured."""

    reason = "UNKNOWN_MODEL"


class SchemaError(InvalidRequestError):
    """The JSON Schema sent with a structured request is not a valid schema."""

    reason = "INVALID_JSON_SCHEMA"


class NotFoundError(SidecarError):
    """A handle names nothing the caller owns: it never existed, it is gone, or it is
    another user's (which reads the same, so a caller learns nothing of other users)."""

    reason = "NOT_FOUND"

    def __init__(self, field: str, what: str) -> None:
        super().__init__(f"{field}: no such {what}")
        self.field = field


class ErrorKind(enum.Enum):
    """Why one provider attempt failed. Decides failover and breaker effects."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    BAD_RESPONSE = "bad_response"
    AUTH = "auth"
    REQUEST_REJECTED = "request_rejected"
    INVALID_OUTPUT = "invalid_output"
    #: Every connection to the provider was busy for too long (our saturation).
    POOL_EXHAUSTED = "pool_exhausted"

    @property
    def fails_over(self) -> bool:
        """Whether another provider may answer where this one failed.

        A request the upstream rejected as malformed would be rejected by every
        provider, so it goes back to the caller instead.
        """
        return self is not ErrorKind.REQUEST_REJECTED

    @property
    def counts_against_provider(self) -> bool:
        """Whether the failure says the provider is unhealthy (feeds the breaker)."""
        return self not in (
            ErrorKind.REQUEST_REJECTED,
            ErrorKind.INVALID_OUTPUT,
            ErrorKind.POOL_EXHAUSTED,
        )


class ProviderError(SidecarError):
    """One provider attempt failed. Raised by providers, consumed by the router."""

    reason = "PROVIDER_ERROR"

    def __init__(
        self,
        kind: ErrorKind,
        detail: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{kind.value}: {detail}")
        self.kind = kind
        self.status = status
        self.retry_after = retry_after
        #: What the provider billed for the answer this error refuses (a whole
        #: answer that failed a check), when it said; None otherwise.
        self.billed: Usage | None = None

    def billing(self, usage: Usage | None) -> ProviderError:
        """This error, noting the usage the provider billed for the refused answer."""
        self.billed = usage
        return self


class ProviderRejectedError(SidecarError):
    """The upstream rejected the request itself (HTTP 400-class)."""

    reason = "PROVIDER_REJECTED_REQUEST"

    def __init__(self, message: str, attempts: Sequence[AttemptRecord] = ()) -> None:
        super().__init__(message)
        self.attempts = tuple(attempts)


class ProviderUnavailableError(SidecarError):
    """No provider of the model's chain could answer in time."""

    reason = "PROVIDERS_UNAVAILABLE"

    def __init__(
        self,
        message: str,
        attempts: Sequence[AttemptRecord] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.attempts = tuple(attempts)
        self.retry_after = retry_after


class StructuredOutputError(SidecarError):
    """Every provider answered, but no answer was JSON valid against the schema."""

    reason = "STRUCTURED_OUTPUT_INVALID"

    def __init__(self, message: str, attempts: Sequence[AttemptRecord] = ()) -> None:
        super().__init__(message)
        self.attempts = tuple(attempts)


class StreamInterruptedError(SidecarError):
    """A stream failed after chunks had already reached the caller."""

    reason = "STREAM_INTERRUPTED"


class DeadlineExceededError(SidecarError):
    """The caller's deadline passed before an answer was ready."""

    reason = "DEADLINE_EXCEEDED"

    def __init__(self, message: str, attempts: Sequence[AttemptRecord] = ()) -> None:
        super().__init__(message)
        self.attempts = tuple(attempts)


class ResourceExhaustedError(SidecarError):
    """A per-user limit or a process-wide resource limit refused the call."""

    reason = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, retry_after: float | None = None, limit: str = "") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.limit = limit


class QuotaExceededError(ResourceExhaustedError):
    """A per-user quota (budget or rate) has no room for the call's worst case."""

    reason = "QUOTA_EXCEEDED"

    def __init__(
        self, message: str, *, quota: str, limit_value: int, retry_after: float | None
    ) -> None:
        super().__init__(message, retry_after=retry_after, limit=f"quotas.{quota}")
        #: The quota's name ("usd_per_day", ...) and its limit in its unit.
        self.quota = quota
        self.limit_value = limit_value


class StoreUnavailableError(SidecarError):
    """A durable store the configuration requires could not be reached."""

    reason = "STORE_UNAVAILABLE"


class IsolationViolationError(SidecarError):
    """A component was handed another user's context. Always a bug."""

    reason = "ISOLATION_VIOLATION"
