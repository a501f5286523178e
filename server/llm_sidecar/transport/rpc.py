"""What every RPC goes through: context parsing, a server span, status mapping, timing.

This is the sidecar's own interceptor, written as a wrapper so the hot path
pays for exactly what it uses: with tracing off no span object is created.
It continues a caller's trace from ``traceparent`` metadata.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import grpc
from opentelemetry import propagate
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from llm_sidecar.core.context import UserExecutionContext
from llm_sidecar.core.errors import InvalidContextError, SidecarError
from llm_sidecar.core.observability import Observability
from llm_sidecar.telemetry.logs import frames_only
from llm_sidecar.transport.errors import internal_status, to_status
from llm_sidecar.transport.handlers import Undecodable
from llm_sidecar.transport.metadata import Incoming, check_token, context_from, split_metadata

log = logging.getLogger("llm_sidecar.rpc")

Resp = TypeVar("Resp")

Item = TypeVar("Item")
UnaryHandler = Callable[[UserExecutionContext, Any, float | None], Awaitable[Resp]]


class RpcRunner:
    """Runs handlers of one gRPC service under the common policy."""

    def __init__(
        self, service: str, obs: Observability, *, needs_user: bool = True, token: str = ""
    ) -> None:
        self.service = service
        self.obs = obs
        self.needs_user = needs_user
        #: Shared bearer token that calls over TCP must present ("" = none needed).
        self.token = token
        self._clock = time.monotonic

    def _span(self, method: str, carrier: dict[str, str]) -> AbstractContextManager[Span]:
        return self.obs.span(
            f"{self.service}/{method}",
            SpanKind.SERVER,
            {"rpc.system": "grpc", "rpc.service": self.service, "rpc.method": method},
            propagate.extract(carrier) if carrier else None,
        )

    def _enter(
        self, request: Any, context: grpc.aio.ServicerContext, span: Span, incoming: Incoming
    ) -> tuple[UserExecutionContext | None, float | None]:
        if self.token and not context.peer().startswith("unix:"):
            check_token(incoming.authorization, self.token)
        ctx = None
        if self.needs_user:
            ctx = context_from(incoming.values)
            if span.is_recording():
                ref = self.obs.user_ref(ctx.user_id)
                if ref:
                    raw = self.obs.user_id_mode == "raw"
                    span.set_attribute("enduser.id" if raw else "enduser.pseudo.id", ref)
        if isinstance(request, Undecodable):
            raise request.error
        remaining = context.time_remaining()
        deadline = None if remaining is None else self._clock() + remaining
        return ctx, deadline

    def _failed(self, method: str, span: Span, exc: BaseException) -> grpc.Status:
        if isinstance(exc, SidecarError):
            status = to_status(exc)
            log.info(
                "rpc failed",
                extra={"rpc_method": method, "grpc_code": status.code.name, "reason": exc.reason},
            )
            reason = exc.reason
        else:
            # Frames only: an exception's message may quote request data.
            log.error("rpc crashed", extra={"rpc_method": method, "error": frames_only(exc)})
            status = internal_status()
            reason = "INTERNAL"
        if span.is_recording():
            span.set_attribute("rpc.grpc.status_code", status.code.value[0])
            span.set_attribute("error.type", reason)
            span.set_status(Status(StatusCode.ERROR, status.code.name))
        return status

    def _done(self, method: str, start: float, code: grpc.StatusCode) -> None:
        self.obs.rpc_duration.record(
            time.perf_counter() - start,
            {
                "rpc.system": "grpc",
                "rpc.service": self.service,
                "rpc.method": method,
                "rpc.grpc.status_code": code.value[0],
            },
        )

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
        code = grpc.StatusCode.OK
        with self._span(method, incoming.carrier) as span:
            try:
                if bad is not None:
                    raise bad
                ctx, deadline = self._enter(request, context, span, incoming)
                return await handler(ctx, request, deadline)  # type: ignore[arg-type]
            except Exception as exc:
                status = self._failed(method, span, exc)
                code = status.code
            finally:
                self._done(method, start, code)
        await context.abort_with_status(status)
        raise AssertionError("unreachable")  # abort_with_status always raises

    def streaming(
        self,
        method: str,
        handler: Callable[[UserExecutionContext, Any, float | None], AsyncIterator[Item]],
        convert: Callable[[Item, int], Resp],
    ) -> Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Resp]]:
        """A server-streaming behaviour: ``handler``'s items, each turned into a message
        by ``convert(item, index)``.

        The behaviour itself is the one generator between the core's stream and
        gRPC: no layer in between re-yields each chunk.
        """
        runner = self

        async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Resp]:
            start = time.perf_counter()
            incoming, bad = runner._split(context)
            code = grpc.StatusCode.OK
            status: grpc.Status | None = None
            with runner._span(method, incoming.carrier) as span:
                try:
                    if bad is not None:
                        raise bad
                    ctx, deadline = runner._enter(request, context, span, incoming)
                    index = 0
                    async for item in handler(ctx, request, deadline):  # type: ignore[arg-type]
                        yield convert(item, index)
                        index += 1
                except Exception as exc:
                    status = runner._failed(method, span, exc)
                    code = status.code
                finally:
                    runner._done(method, start, code)
            if status is not None:
                await context.abort_with_status(status)

        return behaviour
