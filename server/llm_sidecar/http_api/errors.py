"""Core errors -> HTTP statuses and each API's own error body.

The statuses are the ones the OpenAI and Anthropic SDKs act on correctly: they
retry 429, 500-class and 504 (with ``Retry-After`` when given) and raise at
once on 400, 401, 404 and 413. Messages are the core's, written for the caller:
never prompt text, metadata values, keys or upstream URLs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from llm_sidecar.core.vocabulary.errors import (
    DeadlineExceededError,
    InvalidContextError,
    InvalidRequestError,
    NotFoundError,
    ProviderRejectedError,
    ProviderUnavailableError,
    QuotaExceededError,
    RequestTooLargeError,
    ResourceExhaustedError,
    SidecarError,
    StoreUnavailableError,
    StreamInterruptedError,
    StructuredOutputError,
)

Dialect = Literal["openai", "anthropic"]


class HttpError(Exception):
    """An HTTP-level refusal that is not a core error (an unknown path, a body that is
    not JSON, a method not allowed)."""

    def __init__(self, status: int, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


@dataclass(frozen=True, slots=True)
class Refusal:
    """What the caller gets: a status, a message, the field at fault, and headers."""

    status: int
    message: str
    #: OpenAI's error ``type`` and ``code``, Anthropic's error ``type``.
    openai_type: str
    anthropic_type: str
    code: str
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def body(self, dialect: Dialect) -> dict[str, Any]:
        """The API's error body."""
        if dialect == "anthropic":
            return {
                "type": "error",
                "error": {"type": self.anthropic_type, "message": self.message},
            }
        return {
            "error": {
                "message": self.message,
                "type": self.openai_type,
                "param": self.param,
                "code": self.code,
            }
        }


#: A bug or an isolation violation: a 500 that says nothing of what went wrong.
_INTERNAL = Refusal(500, "internal error", "server_error", "api_error", "internal_error")


def _retry_after(seconds: float | None) -> dict[str, str]:
    return {} if seconds is None else {"Retry-After": str(max(1, math.ceil(seconds)))}


def refusal_for(exc: BaseException) -> Refusal:
    """The refusal an exception maps to (an unexpected one: 500, saying nothing of it)."""
    if isinstance(exc, HttpError):
        kind = "not_found_error" if exc.status == 404 else "invalid_request_error"
        return Refusal(exc.status, exc.message, kind, kind, "invalid_request", exc.param)
    if isinstance(exc, SidecarError):
        return _core_refusal(exc)
    return _INTERNAL


def _core_refusal(exc: SidecarError) -> Refusal:
    reason = exc.reason.lower()
    message = exc.message
    if isinstance(exc, InvalidContextError):
        if exc.missing:
            return Refusal(401, message, "authentication_error", "authentication_error", reason)
        return Refusal(
            400, message, "invalid_request_error", "invalid_request_error", reason, exc.key
        )
    if isinstance(exc, RequestTooLargeError):
        return Refusal(
            413, message, "invalid_request_error", "request_too_large", reason, exc.field
        )
    if isinstance(exc, InvalidRequestError):
        return Refusal(
            400, message, "invalid_request_error", "invalid_request_error", reason, exc.field
        )
    if isinstance(exc, NotFoundError):
        code = "previous_response_not_found" if exc.field == "previous_response_id" else "not_found"
        return Refusal(404, message, "invalid_request_error", "not_found_error", code, exc.field)
    if isinstance(exc, ProviderRejectedError):
        return Refusal(400, message, "invalid_request_error", "invalid_request_error", reason)
    if isinstance(exc, QuotaExceededError):
        return Refusal(
            429,
            message,
            "insufficient_quota",
            "rate_limit_error",
            exc.quota,
            headers=_retry_after(exc.retry_after),
        )
    if isinstance(exc, ResourceExhaustedError):
        return Refusal(
            429,
            message,
            "rate_limit_error",
            "rate_limit_error",
            reason,
            headers=_retry_after(exc.retry_after),
        )
    if isinstance(exc, DeadlineExceededError):
        return Refusal(504, message, "timeout", "timeout_error", reason)
    if isinstance(exc, ProviderUnavailableError):
        return Refusal(
            503,
            message,
            "server_error",
            "overloaded_error",
            reason,
            headers=_retry_after(exc.retry_after),
        )
    if isinstance(exc, StoreUnavailableError | StreamInterruptedError):
        return Refusal(503, message, "server_error", "overloaded_error", reason)
    if isinstance(exc, StructuredOutputError):
        return Refusal(502, message, "server_error", "api_error", reason)
    return _INTERNAL  # IsolationViolationError among them
