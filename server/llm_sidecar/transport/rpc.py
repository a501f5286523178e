"""What every RPC goes through: context parsing, a server span, status mapping, timing,
the request id and the access log.

This is the sidecar's own interceptor, written as a wrapper so the hot path
pays for exactly what it uses: with tracing off no span object is created.
It continues a caller's trace from ``traceparent`` metadata. Every call has a
request id (the caller's ``x-request-id``, or one made here) that is logged and
returned in response metadata: trailing metadata of a unary call, initial
metadata of a stream (so the caller has it before the first chunk).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from contextvars import ContextVar
from typing import Any, TypeVar

import grpc
from opentelemetry import propagate
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from llm_sidecar.core.observability import Observability
from llm_sidecar.core.vocabulary.context import REQUEST_ID_KEY, UserExecutionContext, validate_id
from llm_sidecar.core.vocabulary.errors import InvalidContextError, SidecarError
from llm_sidecar.core.vocabulary.models import AskResult, EmbedResult
from llm_sidecar.telemetry.access import OFF, AccessLog, CallRecord
from llm_sidecar.telemetry.logs import bind_request_id, frames_only
from llm_sidecar.transport.errors import internal_status, to_status, with_metadata
from llm_sidecar.transport.handlers import Undecodable
from llm_sidecar.transport.metadata import Incoming, check_token, context_from, split_metadata

log = logging.getLogger("llm_sidecar.rpc")

Resp = TypeVar("Resp")

Item = TypeVar("Item")
UnaryHandler = Callable[[UserExecutionContext, Any, float | None], Awaitable[Resp]]

#: The record of the call this task serves, which its handler completes with the answer.
_CALL: ContextVar[CallRecord | None] = ContextVar("llm_sidecar_call", default=None)

# Request ids made here: a random per-process part and a counter (unique across pods,
# and cheaper than a UUID per call).
_PROCESS_PART = os.urandom(6).hex()
_SERIAL = itertools.count(1)


def new_request_id() -> str:
    """A request id for a call that brought none."""
    return f"sc-{_PROCESS_PART}-{next(_SERIAL):x}"


def answered(result: AskResult) -> None:
    """Note the answer of the call being served, for its access-log line."""
    record = _CALL.get()
    if record is not None:
        record.answered(result)


def answered_embed(result: EmbedResult) -> None:
    """Note the vectors of the call being served, for its access-log line."""
    record = _CALL.get()
    if record is not None:
        record.embedded(result)


class _FullNames(dict[str, str]):
    """ "Service/Method" by method, made once per method."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def __missing__(self, method: str) -> str:
        full = self[method] = f"{self._service}/{method}"
        return full


class RpcRunner:
    """Runs handlers of one gRPC service under the common policy."""

    def __init__(
        self,
        service: str,
        obs: Observability,
        *,
        needs_user: bool = True,
        token: str = "",
        access: AccessLog = OFF,
    ) -> None:
        self.service = service
        self.obs = obs
        self.needs_user = needs_user
        #: Shared bearer token that calls over TCP must present ("" = none needed).
        self.token = token
        self.access = access
        self._clock = time.monotonic
        self._names: dict[str, str] = _FullNames(service)

    def _span(self, method: str, carrier: dict[str, str]) -> AbstractContextManager[Span]:
        return self.obs.span(
            f"{self.service}/{method}",
            SpanKind.SERVER,
            {"rpc.system": "grpc", "rpc.service": self.service, "rpc.method": method},
            propagate.extract(carrier) if carrier else None,
        )

    def _begin(self, method: str, incoming: Incoming) -> CallRecord:
        """The call's record, with its request id: the caller's, or a new one (also
        passed on in the context, so answers carry it). A caller's id that is not a
        valid id is refused with the context; the record, and every line logged for
        the call, carry a new one instead, never what was refused."""
        request_id = incoming.values.get(REQUEST_ID_KEY)
        if request_id is None:
            request_id = incoming.values[REQUEST_ID_KEY] = new_request_id()
        else:
            try:
                validate_id(REQUEST_ID_KEY, request_id, required=True)
            except InvalidContextError:
                request_id = new_request_id()
        bind_request_id(request_id)  # each RPC runs in a task of its own
        return CallRecord(self._names[method], request_id)

    def _enter(
        self,
        request: Any,
        context: grpc.aio.ServicerContext,
        span: Span,
        incoming: Incoming,
        record: CallRecord,
    ) -> tuple[UserExecutionContext | None, float | None]:
        if self.token and not context.peer().startswith("unix:"):
            check_token(incoming.authorization, self.token)
        ctx = None
        if self.needs_user:
            ctx = context_from(incoming.values)
            ref = self.obs.user_ref(ctx.user_id)
            record.user = ref
            if ref and span.is_recording():
                raw = self.obs.user_id_mode == "raw"
                span.set_attribute("enduser.id" if raw else "enduser.pseudo.id", ref)
        if isinstance(request, Undecodable):
            raise request.error
        remaining = context.time_remaining()
        deadline = None if remaining is None else self._clock() + remaining
        return ctx, deadline

    def _failed(
        self, method: str, span: Span, exc: BaseException, record: CallRecord
    ) -> grpc.Status:
        if isinstance(exc, SidecarError):
            status = to_status(exc)
            reason = exc.reason
            log.debug(
                "rpc failed",
                extra={"rpc_method": method, "grpc_code": status.code.name, "reason": reason},
            )
        else:
            # Frames only: an exception's message may quote request data.
            log.error("rpc crashed", extra={"rpc_method": method, "error": frames_only(exc)})
            status = internal_status(record.request_id)
            reason = "INTERNAL"
        record.failed(status.code.name, reason, len(getattr(exc, "attempts", ())))
        if span.is_recording():
            span.set_attribute("rpc.grpc.status_code", status.code.value[0])
            span.set_attribute("error.type", reason)
            span.set_status(Status(StatusCode.ERROR, status.code.name))
        return with_metadata(status, (REQUEST_ID_KEY, record.request_id))

    def _done(self, method: str, start: float, code: grpc.StatusCode, record: CallRecord) -> None:
        elapsed = time.perf_counter() - start
        self.obs.rpc_duration.record(
            elapsed,
            {
                "rpc.system": "grpc",
                "rpc.service": self.service,
                "rpc.method": method,
                "rpc.grpc.status_code": code.value[0],
            },
        )
        self.access.write(record, elapsed)

    @staticmethod
    def _split(context: grpc.aio.ServicerContext) -> tuple[Incoming, InvalidContextError | None]:
        try:
            return split_metadata(context.invocation_metadata()), None
        except InvalidContextError as exc:
            return Incoming(), exc

    async def unary(
        self,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext,
        handler: UnaryHandler[Resp],
    ) -> Resp:
        """Run a unary handler."""
        start = time.perf_counter()
        incoming, bad = self._split(context)
        record = self._begin(method, incoming)
        token = _CALL.set(record)
        code = grpc.StatusCode.OK
        with self._span(method, incoming.carrier) as span:
            try:
                if bad is not None:
                    raise bad
                ctx, deadline = self._enter(request, context, span, incoming, record)
                response = await handler(ctx, request, deadline)  # type: ignore[arg-type]
                context.set_trailing_metadata(((REQUEST_ID_KEY, record.request_id),))
                return response
            except asyncio.CancelledError:  # the caller went away, or its deadline passed
                code = grpc.StatusCode.CANCELLED
                record.failed(code.name, code.name)
                raise
            except Exception as exc:
                status = self._failed(method, span, exc, record)
                code = status.code
            finally:
                self._done(method, start, code, record)
                _CALL.reset(token)
        await context.abort_with_status(status)
        raise AssertionError("unreachable")  # abort_with_status always raises

    def streaming(
        self,
        method: str,
        handler: Callable[[UserExecutionContext, Any, float | None], AsyncIterator[Item]],
        convert: Callable[[Item, int], Resp],
        result_of: Callable[[Item], AskResult | None] = lambda item: None,
    ) -> Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Resp]]:
        """A server-streaming behaviour: ``handler``'s items, each turned into a message
        by ``convert(item, index)``; ``result_of`` finds the answer in the last one.

        The behaviour itself is the one generator between the core's stream and
        gRPC: no layer in between re-yields each chunk.
        """
        runner = self

        async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Resp]:
            start = time.perf_counter()
            incoming, bad = runner._split(context)
            record = runner._begin(method, incoming)
            code = grpc.StatusCode.OK
            status: grpc.Status | None = None
            with runner._span(method, incoming.carrier) as span:
                try:
                    if bad is not None:
                        raise bad
                    ctx, deadline = runner._enter(request, context, span, incoming, record)
                    await context.send_initial_metadata(((REQUEST_ID_KEY, record.request_id),))
                    index = 0
                    async for item in handler(ctx, request, deadline):  # type: ignore[arg-type]
                        yield convert(item, index)
                        index += 1
                    result = result_of(item) if index else None
                    if result is not None:
                        record.answered(result)
                except (asyncio.CancelledError, GeneratorExit):  # the caller went away
                    code = grpc.StatusCode.CANCELLED
                    record.failed(code.name, code.name)
                    raise
                except Exception as exc:
                    status = runner._failed(method, span, exc, record)
                    code = status.code
                finally:
                    runner._done(method, start, code, record)
            if status is not None:
                await context.abort_with_status(status)

        return behaviour
