"""The one exception hierarchy of the sidecar, and its one error table.

Every failure the core reports is a :class:`SidecarError` with a neutral
:class:`Category` and its details (the field at fault, when to come back, the
attempts, the quota). Each wire maps a category to its own status with a small
table and shapes only its body (``transport/errors.py``, ``http_api/errors.py``).
Messages are written for the caller and never carry prompt text, API keys or
upstream URLs.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from llm_sidecar.core.vocabulary.models import AttemptRecord, Usage


class Category(enum.Enum):
    """What kind of refusal an error is, whatever the wire: each wire's status table
    is keyed by these."""

    #: The request, or its user context, is malformed (the field is named).
    INVALID = "invalid"
    #: The request, or one of its fields, is over a configured limit.
    TOO_LARGE = "too_large"
    #: No user context, or no valid token.
    UNAUTHENTICATED = "unauthenticated"
    #: A handle names nothing the caller owns.
    NOT_FOUND = "not_found"
    #: An access policy does not let this caller use what it named (a tool).
    DENIED = "denied"
    #: A limit, quota or resource has no room now (maybe with when to come back).
    EXHAUSTED = "exhausted"
    #: The caller's deadline passed.
    DEADLINE = "deadline"
    #: Providers or a required store cannot answer now (maybe with when to come back).
    UNAVAILABLE = "unavailable"
    #: Every provider answered, and no answer was usable.
    BAD_OUTPUT = "bad_output"
    #: A bug: the caller is told nothing of it.
    INTERNAL = "internal"


class SidecarError(Exception):
    """Base of every error the sidecar reports to a caller."""

    #: Machine-readable reason (google.rpc.ErrorInfo.reason, the access line's reason).
    reason: str = "SIDECAR_ERROR"
    category: Category = Category.INTERNAL
    #: The request field or context key at fault, if one is.
    field: str | None = None
    #: Seconds until a retry may succeed, when known.
    retry_after: float | None = None
    #: The provider attempts the call made.
    attempts: tuple[AttemptRecord, ...] = ()

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidContextError(SidecarError):
    """The user context in the call's metadata is missing or malformed."""

    reason = "INVALID_USER_CONTEXT"
    category = Category.INVALID

    def __init__(self, key: str, problem: str, *, missing: bool = False) -> None:
        super().__init__(f"metadata '{key}' {problem}")
        self.key = self.field = key
        self.problem = problem
        self.missing = missing
        if missing:
            self.category = Category.UNAUTHENTICATED


class InvalidRequestError(SidecarError):
    """A request field is invalid; ``field`` names it."""

    reason = "INVALID_REQUEST"
    category = Category.INVALID
    field: str

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class RequestTooLargeError(InvalidRequestError):
    """A request or one of its fields is over a configured limit."""

    reason = "REQUEST_TOO_LARGE"
    category = Category.TOO_LARGE

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
    category = Category.NOT_FOUND

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
    category = Category.INVALID

    def __init__(self, message: str, attempts: Sequence[AttemptRecord] = ()) -> None:
        super().__init__(message)
        self.attempts = tuple(attempts)


class ProviderUnavailableError(SidecarError):
    """No provider of the model's chain could answer in time."""

    reason = "PROVIDERS_UNAVAILABLE"
    category = Category.UNAVAILABLE

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
    category = Category.BAD_OUTPUT

    def __init__(self, message: str, attempts: Sequence[AttemptRecord] = ()) -> None:
        super().__init__(message)
        self.attempts = tuple(attempts)


class StreamInterruptedError(SidecarError):
    """A stream failed after chunks had already reached the caller."""

    reason = "STREAM_INTERRUPTED"
    category = Category.UNAVAILABLE


class DeadlineExceededError(SidecarError):
    """The caller's deadline passed before an answer was ready."""

    reason = "DEADLINE_EXCEEDED"
    category = Category.DEADLINE

    def __init__(self, message: str, attempts: Sequence[AttemptRecord] = ()) -> None:
        super().__init__(message)
        self.attempts = tuple(attempts)


class ResourceExhaustedError(SidecarError):
    """A per-user limit or a process-wide resource limit refused the call."""

    reason = "RESOURCE_EXHAUSTED"
    category = Category.EXHAUSTED

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
    category = Category.UNAVAILABLE


class IsolationViolationError(SidecarError):
    """A component was handed another user's context. Always a bug."""

    reason = "ISOLATION_VIOLATION"


class ToolDeniedError(SidecarError):
    """The access policy does not let the caller's groups use this tool."""

    reason = "TOOL_DENIED"
    category = Category.DENIED

    def __init__(self, tool: str) -> None:
        super().__init__(
            f"tool {tool!r} is not allowed for this user: no mcp.rules entry allows it "
            "for the groups in x-permissions"
        )
        self.field = "name"
        self.tool = tool


class ToolServerError(SidecarError):
    """An upstream MCP server could not answer a tool request (down, hung, reset, or
    it answered something that is not MCP); ``server`` names it, never its URL."""

    reason = "MCP_SERVER_UNAVAILABLE"
    category = Category.UNAVAILABLE

    def __init__(self, server: str, problem: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"MCP server {server!r}: {problem}")
        self.server = server
        self.retry_after = retry_after


class ToolResultTooLargeError(SidecarError):
    """A tool's result is over ``mcp.max_result_bytes``: refused whole, never cut."""

    reason = "TOOL_RESULT_TOO_LARGE"
    category = Category.BAD_OUTPUT

    def __init__(self, tool: str, size: int, limit: int) -> None:
        super().__init__(
            f"tool {tool!r} returned {size} bytes, over the limit of {limit} bytes "
            "(mcp.max_result_bytes)"
        )


class GuardrailBlockedError(SidecarError):
    """A text held a value of a category the guardrails block. Names the category and
    the place, never the value; nothing was sent upstream."""

    reason = "GUARDRAIL_BLOCKED"
    category = Category.INVALID

    def __init__(self, kind: str, place: str, *, output: bool = False) -> None:
        whence = "came back with" if output else "holds"
        super().__init__(
            f"{place}: {whence} a value of category {kind!r}, which the guardrails block "
            f'(guardrails.{kind} = "block")'
        )
        self.field = place
        #: The guard category (``credit_card``, ``secret``, ...).
        self.kind = kind
        if output:
            # An upstream's answer (a tool's result), not the caller's request.
            self.category = Category.BAD_OUTPUT


class GuardrailFailedError(SidecarError):
    """A guardrail detector raised, and ``guardrails.on_error`` is ``fail_closed``: the
    call is refused rather than sent unchecked. The next call is checked afresh."""

    reason = "GUARDRAIL_FAILED"
    category = Category.UNAVAILABLE

    def __init__(self, kind: str) -> None:
        super().__init__(
            f"the {kind!r} guardrail failed, and the call was refused unchecked "
            '(guardrails.on_error = "fail_closed")'
        )
        self.kind = kind
