"""The gRPC side of the entrance: what grpc.aio hands over (metadata, the peer, the
deadline) goes to :class:`~llm_sidecar.entrance.Entrance`, which decides who the
caller is and writes the call's record; here are only gRPC's own parts: the server
span's RPC attributes, the status with its details, and where the request id
travels back (trailing metadata of a unary call, initial metadata of a stream, so
the caller has it before the first chunk).

Written as a wrapper, not an interceptor, so the hot path pays for exactly what it
uses: with tracing off no span object is created.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from contextvars import ContextVar
from typing import Any, TypeVar

import grpc
from opentelemetry.trace import Span, SpanKind

from llm_sidecar.core.observability import Observability
from llm_sidecar.core.vocabulary.context import REQUEST_ID_KEY, UserExecutionContext
from llm_sidecar.core.vocabulary.errors import Category, SidecarError
from llm_sidecar.core.vocabulary.models import AskResult, EmbedResult
from llm_sidecar.entrance import CallScope, Entrance, read_incoming
from llm_sidecar.telemetry.access import OFF, AccessLog
from llm_sidecar.transport.errors import internal_status, to_status, with_metadata
from llm_sidecar.transport.handlers import Undecodable

Resp = TypeVar("Resp")

Item = TypeVar("Item")
UnaryHandler = Callable[[UserExecutionContext, Any, float | None], Awaitable[Resp]]

#: The call this task serves, which its handler completes with the answer.
_CALL: ContextVar[CallScope | None] = ContextVar("llm_sidecar_call", default=None)


def answered(result: AskResult) -> None:
    """Note the answer of the call being served, for its access-log line."""
    scope = _CALL.get()
    if scope is not None:
        scope.answered(result)


def answered_embed(result: EmbedResult) -> None:
    """Note the vectors of the call being served, for its access-log line."""
    scope = _CALL.get()
    if scope is not None:
        scope.embedded(result)


class _FullNames(dict[str, str]):
    """ "Service/Method" by method, made once per method."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def __missing__(self, method: str) -> str:
        full = self[method] = f"{self._service}/{method}"
        return full


class RpcRunner:
    """Runs handlers of one gRPC service through the entrance."""

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
        self.entrance = Entrance(obs, access, token=token)
        self._names: dict[str, str] = _FullNames(service)

    def _open(self, method: str, context: grpc.aio.ServicerContext) -> CallScope:
        return self.entrance.open(self._names[method], read_incoming(context.invocation_metadata()))

    def _span(self, method: str, scope: CallScope) -> AbstractContextManager[Span]:
        return self.obs.span(
            scope.record.method,
            SpanKind.SERVER,
            {"rpc.system": "grpc", "rpc.service": self.service, "rpc.method": method},
            scope.parent(),
        )

    def _enter(
        self, request: Any, context: grpc.aio.ServicerContext, span: Span, scope: CallScope
    ) -> tuple[UserExecutionContext | None, float | None]:
        local = context.peer().startswith("unix:")
        ctx = scope.admit(span, local=local, needs_user=self.needs_user)
        if isinstance(request, Undecodable):
            raise request.error
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining
        return ctx, deadline

    def _failed(self, scope: CallScope, exc: BaseException) -> grpc.Status:
        if isinstance(exc, SidecarError) and exc.category is not Category.INTERNAL:
            status, reason = to_status(exc), exc.reason
        else:  # a bug: the caller is told nothing of it
            status, reason = internal_status(scope.request_id), "INTERNAL"
        attributes = {"rpc.grpc.status_code": status.code.value[0]}
        scope.refused(exc, status.code.name, reason, attributes)
        return with_metadata(status, (REQUEST_ID_KEY, scope.request_id))

    def _done(self, method: str, scope: CallScope, code: grpc.StatusCode) -> None:
        attributes = {
            "rpc.system": "grpc",
            "rpc.service": self.service,
            "rpc.method": method,
            "rpc.grpc.status_code": code.value[0],
        }
        scope.done(self.obs.rpc_duration, attributes)

    async def unary(
        self,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext,
        handler: UnaryHandler[Resp],
    ) -> Resp:
        """Run a unary handler."""
        scope = self._open(method, context)
        token = _CALL.set(scope)
        code = grpc.StatusCode.OK
        with self._span(method, scope) as span:
            try:
                ctx, deadline = self._enter(request, context, span, scope)
                response = await handler(ctx, request, deadline)  # type: ignore[arg-type]
                context.set_trailing_metadata(((REQUEST_ID_KEY, scope.request_id),))
                return response
            except asyncio.CancelledError:  # the caller went away, or its deadline passed
                code = grpc.StatusCode.CANCELLED
                scope.cancelled()
                raise
            except Exception as exc:
                status = self._failed(scope, exc)
                code = status.code
            finally:
                self._done(method, scope, code)
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
            scope = runner._open(method, context)
            code = grpc.StatusCode.OK
            status: grpc.Status | None = None
            with runner._span(method, scope) as span:
                try:
                    ctx, deadline = runner._enter(request, context, span, scope)
                    await context.send_initial_metadata(((REQUEST_ID_KEY, scope.request_id),))
                    index = 0
                    async for item in handler(ctx, request, deadline):  # type: ignore[arg-type]
                        yield convert(item, index)
                        index += 1
                    result = result_of(item) if index else None
                    if result is not None:
                        scope.answered(result)
                except (asyncio.CancelledError, GeneratorExit):  # the caller went away
                    code = grpc.StatusCode.CANCELLED
                    scope.cancelled()
                    raise
                except Exception as exc:
                    status = runner._failed(scope, exc)
                    code = status.code
                finally:
                    runner._done(method, scope, code)
            if status is not None:
                await context.abort_with_status(status)

        return behaviour
