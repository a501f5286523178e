"""One exception hierarchy for the client, mapped from gRPC status codes."""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2


class LLMManagerError(Exception):
    """A call failed. ``code`` is the gRPC status; the rest comes from rich details."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        field: str = "",
        retry_after: float | None = None,
        metadata: dict[str, str] | None = None,
        quota: str = "",
        quota_limit: int | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.reason = reason
        self.field = field
        self.retry_after = retry_after
        self.metadata = metadata or {}
        #: The quota that refused the call ("usd_per_day", ...) and its limit in its
        #: unit (google.rpc.QuotaFailure), when a quota did.
        self.quota = quota
        self.quota_limit = quota_limit


class InvalidArgumentError(LLMManagerError):
    """The request or its metadata was malformed (see ``field``)."""


class UnauthenticatedError(LLMManagerError):
    """No user id was sent."""


class PermissionDeniedError(LLMManagerError):
    """The caller lacks a needed permission."""


class ResourceExhaustedError(LLMManagerError):
    """A limit refused the call; retry after ``retry_after`` seconds (None: waiting does
    not help). ``quota`` names the per-user quota when one refused it."""


class UnavailableError(LLMManagerError):
    """No provider (or a required store) could serve; retry after ``retry_after``."""


class DeadlineExceededError(LLMManagerError):
    """The deadline passed."""


class CancelledError(LLMManagerError):
    """The call was cancelled."""


class StructuredOutputError(LLMManagerError):
    """No provider produced JSON valid against the schema."""


class InternalError(LLMManagerError):
    """The sidecar failed unexpectedly."""


_BY_CODE: dict[grpc.StatusCode, type[LLMManagerError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.CANCELLED: CancelledError,
    grpc.StatusCode.ABORTED: StructuredOutputError,
    grpc.StatusCode.INTERNAL: InternalError,
}


def from_rpc_error(error: grpc.RpcError) -> LLMManagerError:
    """Translate a grpc error (sync or aio) into the client's hierarchy."""
    code: grpc.StatusCode = error.code()
    message: str = error.details() or ""
    kwargs: dict[str, Any] = {}
    trailing = error.trailing_metadata() or ()
    for key, value in trailing:
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                kwargs["reason"] = info.reason
                kwargs["metadata"] = dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                if bad.field_violations:
                    kwargs["field"] = bad.field_violations[0].field
            elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
                failure = error_details_pb2.QuotaFailure()
                detail.Unpack(failure)
                if failure.violations:
                    kwargs["quota"] = failure.violations[0].quota_id
                    kwargs["quota_limit"] = failure.violations[0].quota_value
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                kwargs["retry_after"] = retry.retry_delay.ToNanoseconds() / 1e9
    cls = _BY_CODE.get(code, LLMManagerError)
    return cls(code, message, **kwargs)
