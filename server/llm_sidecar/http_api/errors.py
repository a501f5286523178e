"""Core errors -> HTTP statuses and each API's own error body.

The statuses are the ones the OpenAI and Anthropic SDKs act on correctly: they
retry 429, 500-class and 504 (with ``Retry-After`` when given) and raise at
once on 400, 401, 404 and 413. A core error's status comes from its category
(``TABLE``); this module shapes only the bodies. Messages are the core's, written
for the caller: never prompt text, metadata values, keys or upstream URLs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from llm_sidecar.core.vocabulary.errors import (
    Category,
    NotFoundError,
    QuotaExceededError,
    SidecarError,
)

Dialect = Literal["openai", "anthropic", "mcp"]


class HttpError(Exception):
    """An HTTP-level refusal that is not a core error (an unknown path, a body that is
    not JSON, a method not allowed)."""

    def __init__(self, status: int, message: str, *, reason: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        #: Machine-readable, as a core error's (the access line's and span's reason).
        self.reason = reason
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
        if dialect == "mcp":
            # Refused before any MCP message was read: a JSON-RPC error with no id.
            return {
                "jsonrpc": "2.0",
                "id": None,
                "error": {
                    "code": -32600 if self.status < 500 else -32603,
                    "message": self.message,
                    "data": {"status": self.status, "reason": self.code, "param": self.param},
                },
            }
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


#: Each category's status and error types (OpenAI's, Anthropic's): the whole mapping.
#: The statuses are the ones the SDKs act on as the category means.
TABLE: dict[Category, tuple[int, str, str]] = {
    Category.INVALID: (400, "invalid_request_error", "invalid_request_error"),
    Category.TOO_LARGE: (413, "invalid_request_error", "request_too_large"),
    Category.UNAUTHENTICATED: (401, "authentication_error", "authentication_error"),
    Category.NOT_FOUND: (404, "invalid_request_error", "not_found_error"),
    Category.DENIED: (403, "invalid_request_error", "permission_error"),
    Category.EXHAUSTED: (429, "rate_limit_error", "rate_limit_error"),
    Category.DEADLINE: (504, "timeout", "timeout_error"),
    Category.UNAVAILABLE: (503, "server_error", "overloaded_error"),
    Category.BAD_OUTPUT: (502, "server_error", "api_error"),
    Category.INTERNAL: (500, "server_error", "api_error"),
}
#: Categories whose body names the field at fault in ``param``.
_NAMES_FIELD = frozenset({Category.INVALID, Category.TOO_LARGE, Category.NOT_FOUND})
#: A bug or an isolation violation: a 500 that says nothing of what went wrong.
_INTERNAL = Refusal(500, "internal error", "server_error", "api_error", "internal_error")


def _retry_after(seconds: float | None) -> dict[str, str]:
    return {} if seconds is None else {"Retry-After": str(max(1, math.ceil(seconds)))}


def refusal_for(exc: BaseException) -> Refusal:
    """The refusal an exception maps to (an unexpected one: 500, saying nothing of it)."""
    if isinstance(exc, HttpError):
        kind = "not_found_error" if exc.status == 404 else "invalid_request_error"
        return Refusal(exc.status, exc.message, kind, kind, "invalid_request", exc.param)
    if not isinstance(exc, SidecarError) or exc.category is Category.INTERNAL:
        return _INTERNAL
    status, openai_type, anthropic_type = TABLE[exc.category]
    code = exc.reason.lower()
    if isinstance(exc, QuotaExceededError):
        openai_type, code = "insufficient_quota", exc.quota
    elif isinstance(exc, NotFoundError) and exc.field == "previous_response_id":
        code = "previous_response_not_found"
    param = exc.field if exc.category in _NAMES_FIELD else None
    return Refusal(
        status, exc.message, openai_type, anthropic_type, code, param, _retry_after(exc.retry_after)
    )
