"""Core errors -> gRPC status: a category's code from one table, and the details
(google.rpc.ErrorInfo, BadRequest, QuotaFailure, RetryInfo) from the error's own."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from llm_sidecar.core.vocabulary.errors import (
    Category,
    InvalidContextError,
    ProviderUnavailableError,
    QuotaExceededError,
    RequestTooLargeError,
    ResourceExhaustedError,
    SidecarError,
)

DOMAIN = "llm-sidecar"


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def _retry_info(seconds: float) -> any_pb2.Any:
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(max(seconds, 0.0) * 1e9))
    return _pack(error_details_pb2.RetryInfo(retry_delay=delay))


def _quota_failure(exc: QuotaExceededError) -> any_pb2.Any:
    # The subject is the caller's own quota; no id goes into it (the caller knows who it is).
    violation = error_details_pb2.QuotaFailure.Violation(
        subject="user",
        description=exc.message,
        quota_id=exc.quota,
        quota_metric=exc.quota,
        quota_value=exc.limit_value,
    )
    return _pack(error_details_pb2.QuotaFailure(violations=[violation]))


#: Each category's status code: the whole mapping.
CODES: dict[Category, grpc.StatusCode] = {
    Category.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Category.TOO_LARGE: grpc.StatusCode.INVALID_ARGUMENT,
    Category.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Category.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Category.DENIED: grpc.StatusCode.PERMISSION_DENIED,
    Category.EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Category.DEADLINE: grpc.StatusCode.DEADLINE_EXCEEDED,
    Category.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Category.BAD_OUTPUT: grpc.StatusCode.ABORTED,
    Category.INTERNAL: grpc.StatusCode.INTERNAL,
}


def to_status(exc: SidecarError) -> grpc.Status:
    """A grpc.Status carrying the error's message and machine-readable details."""
    code = CODES[exc.category]
    info = error_details_pb2.ErrorInfo(reason=exc.reason, domain=DOMAIN)
    details: list[any_pb2.Any] = []
    if exc.field is not None and isinstance(exc, InvalidContextError):
        info.metadata["key"] = exc.field
    elif exc.field is not None and exc.category in (Category.INVALID, Category.TOO_LARGE):
        info.metadata["field"] = exc.field
    if isinstance(exc, RequestTooLargeError) and exc.setting:
        info.metadata["limit"] = exc.setting
    problem = getattr(exc, "problem", None)
    if exc.field is not None and problem is not None:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=exc.field, description=problem
        )
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[violation])))
    if isinstance(exc, ResourceExhaustedError) and exc.limit:
        info.metadata["limit"] = exc.limit
    if isinstance(exc, QuotaExceededError):
        info.metadata["quota"] = exc.quota
        details.append(_quota_failure(exc))
    if isinstance(exc, ProviderUnavailableError):
        info.metadata["attempts"] = str(len(exc.attempts))
    if exc.retry_after is not None and exc.category in (Category.EXHAUSTED, Category.UNAVAILABLE):
        details.append(_retry_info(exc.retry_after))
    # ErrorInfo first, packed last: Pack copies, so its metadata must be complete.
    details.insert(0, _pack(info))
    proto = status_pb2.Status(
        code=getattr(code_pb2, code.name), message=exc.message, details=details
    )
    return rpc_status.to_status(proto)


class _Status(grpc.Status):  # type: ignore[misc]  # grpc.Status is an untyped ABC
    """A status with its trailing metadata (grpc.Status is an interface, not a value)."""

    def __init__(
        self, code: grpc.StatusCode, details: str, trailing_metadata: tuple[tuple[str, Any], ...]
    ) -> None:
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


def with_metadata(status: grpc.Status, *pairs: tuple[str, str]) -> grpc.Status:
    """``status`` with ``pairs`` added to its trailing metadata."""
    return _Status(status.code, status.details, (*(status.trailing_metadata or ()), *pairs))


def internal_status(request_id: str = "") -> grpc.Status:
    """Status for an unexpected failure; says nothing of its cause."""
    message = "internal error" + (f" (request id {request_id})" if request_id else "")
    info = error_details_pb2.ErrorInfo(reason="INTERNAL", domain=DOMAIN)
    proto = status_pb2.Status(code=code_pb2.INTERNAL, message=message, details=[_pack(info)])
    return rpc_status.to_status(proto)
