"""The LLMManagerService and LLMAdminService servicers: proto in, core call, proto out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc
from llm_manager.v1 import llm_manager_pb2 as pb

from llm_sidecar.core.observability import Observability
from llm_sidecar.core.turn.structured import parse_schema
from llm_sidecar.core.vocabulary.context import UserExecutionContext
from llm_sidecar.core.vocabulary.models import AskResult
from llm_sidecar.core.vocabulary.tools import ToolCall
from llm_sidecar.service import LLMService
from llm_sidecar.telemetry.access import AccessLog
from llm_sidecar.transport.convert import (
    ask_input,
    embed_input,
    embed_response,
    message_msg,
    metadata_msg,
    quota_status_msg,
    quota_totals_msg,
    tool_call_msg,
    usage_row_msg,
)
from llm_sidecar.transport.rpc import RpcRunner, answered, answered_embed

SERVICE_NAME = "llm_manager.v1.LLMManagerService"
ADMIN_SERVICE_NAME = "llm_manager.v1.LLMAdminService"
#: Admin requests carry no fields worth more than this.
ADMIN_MAX_REQUEST_BYTES = 4096

Ctx: TypeAlias = grpc.aio.ServicerContext


def stream_result(item: str | ToolCall | AskResult) -> AskResult | None:
    """The answer a stream's last item is."""
    return item if isinstance(item, AskResult) else None


def stream_chunk(item: str | ToolCall | AskResult, index: int) -> pb.AskStreamChunk:
    """One AskStream message: a delta, a whole tool call, or the last one with the metadata."""
    if isinstance(item, str):
        return pb.AskStreamChunk(delta=item, index=index)
    if isinstance(item, ToolCall):
        return pb.AskStreamChunk(index=index, tool_call=tool_call_msg(item))
    return pb.AskStreamChunk(index=index, metadata=metadata_msg(item))


class LLMManagerServicer:
    """Maps each RPC onto :class:`LLMService` (registered by ``handlers.add_service``)."""

    def __init__(
        self, service: LLMService, obs: Observability, access: AccessLog, *, token: str = ""
    ) -> None:
        self._service = service
        self._rpc = RpcRunner(SERVICE_NAME, obs, token=token, access=access)
        # grpc.aio serves a stream from an async generator function: this one is the
        # whole path from the core's stream to the wire.
        self.AskStream = self._rpc.streaming(
            "AskStream", self._ask_stream, stream_chunk, stream_result
        )

    # -- handlers (context already validated) --------------------------------------

    async def _ask(
        self, ctx: UserExecutionContext, req: pb.AskRequest, deadline: float | None
    ) -> pb.AskResponse:
        result = await self._service.ask(ctx, ask_input(req), deadline)
        answered(result)
        return pb.AskResponse(text=result.text)

    async def _ask_full(
        self, ctx: UserExecutionContext, req: pb.AskRequest, deadline: float | None
    ) -> pb.AskFullResponse:
        result = await self._service.ask(ctx, ask_input(req), deadline)
        answered(result)
        return pb.AskFullResponse(
            text=result.text,
            metadata=metadata_msg(result),
            tool_calls=[tool_call_msg(c) for c in result.tool_calls],
        )

    async def _ask_structured(
        self, ctx: UserExecutionContext, req: pb.AskStructuredRequest, deadline: float | None
    ) -> pb.AskStructuredResponse:
        schema = parse_schema(req.json_schema)
        result = await self._service.ask(ctx, ask_input(req, schema), deadline)
        answered(result)
        return pb.AskStructuredResponse(
            json=result.text,
            metadata=metadata_msg(result),
            tool_calls=[tool_call_msg(c) for c in result.tool_calls],
        )

    def _ask_stream(
        self, ctx: UserExecutionContext, req: pb.AskRequest, deadline: float | None
    ) -> AsyncIterator[str | ToolCall | AskResult]:
        return self._service.ask_stream(ctx, ask_input(req), deadline)

    async def _is_cached(
        self, ctx: UserExecutionContext, req: pb.AskRequest, deadline: float | None
    ) -> pb.IsCachedResponse:
        return pb.IsCachedResponse(cached=await self._service.is_cached(ctx, ask_input(req)))

    async def _get_conversation(
        self, ctx: UserExecutionContext, req: pb.GetConversationRequest, deadline: float | None
    ) -> pb.GetConversationResponse:
        session, thread, messages = await self._service.conversation(
            ctx, req.session_id, req.thread_id
        )
        return pb.GetConversationResponse(
            session_id=session, thread_id=thread, messages=[message_msg(m) for m in messages]
        )

    async def _end_session(
        self, ctx: UserExecutionContext, req: pb.EndSessionRequest, deadline: float | None
    ) -> pb.EndSessionResponse:
        threads, entries = await self._service.end_session(ctx, req.session_id)
        return pb.EndSessionResponse(threads_cleared=threads, cache_entries_cleared=entries)

    async def _release(
        self, ctx: UserExecutionContext, req: pb.ReleaseManagerRequest, deadline: float | None
    ) -> pb.ReleaseManagerResponse:
        released, freed = await self._service.release(ctx)
        return pb.ReleaseManagerResponse(released=released, cache_entries_freed=freed)

    async def _embed(
        self, ctx: UserExecutionContext, req: pb.EmbedRequest, deadline: float | None
    ) -> pb.EmbedResponse:
        result = await self._service.embed(ctx, embed_input(req), deadline)
        answered_embed(result)
        return embed_response(result)

    async def _get_usage(
        self, ctx: UserExecutionContext, req: pb.GetUsageRequest, deadline: float | None
    ) -> pb.GetUsageResponse:
        total, rows, quotas = await self._service.usage(ctx, req.session_id)
        return pb.GetUsageResponse(
            total=usage_row_msg(total),
            rows=[usage_row_msg(r) for r in rows],
            quotas=[quota_status_msg(q) for q in quotas],
        )

    # -- RPCs --------------------------------------------------------------------

    async def Ask(self, request: pb.AskRequest, context: Ctx) -> pb.AskResponse:
        return await self._rpc.unary("Ask", request, context, self._ask)

    async def AskFull(self, request: pb.AskRequest, context: Ctx) -> pb.AskFullResponse:
        return await self._rpc.unary("AskFull", request, context, self._ask_full)

    async def AskStructured(
        self, request: pb.AskStructuredRequest, context: Ctx
    ) -> pb.AskStructuredResponse:
        return await self._rpc.unary("AskStructured", request, context, self._ask_structured)

    async def IsCached(self, request: pb.AskRequest, context: Ctx) -> pb.IsCachedResponse:
        return await self._rpc.unary("IsCached", request, context, self._is_cached)

    async def GetConversation(
        self, request: pb.GetConversationRequest, context: Ctx
    ) -> pb.GetConversationResponse:
        return await self._rpc.unary("GetConversation", request, context, self._get_conversation)

    async def EndSession(
        self, request: pb.EndSessionRequest, context: Ctx
    ) -> pb.EndSessionResponse:
        return await self._rpc.unary("EndSession", request, context, self._end_session)

    async def ReleaseManager(
        self, request: pb.ReleaseManagerRequest, context: Ctx
    ) -> pb.ReleaseManagerResponse:
        return await self._rpc.unary("ReleaseManager", request, context, self._release)

    async def GetUsage(self, request: pb.GetUsageRequest, context: Ctx) -> pb.GetUsageResponse:
        return await self._rpc.unary("GetUsage", request, context, self._get_usage)

    async def Embed(self, request: pb.EmbedRequest, context: Ctx) -> pb.EmbedResponse:
        return await self._rpc.unary("Embed", request, context, self._embed)


class LLMAdminServicer:
    """Operator views: aggregates only, no user identity or content."""

    def __init__(
        self, service: LLMService, obs: Observability, access: AccessLog, *, token: str = ""
    ) -> None:
        self._service = service
        self._rpc = RpcRunner(ADMIN_SERVICE_NAME, obs, needs_user=False, token=token, access=access)

    async def _providers(
        self, caller: object, req: pb.ListProvidersRequest, deadline: float | None
    ) -> pb.ListProvidersResponse:
        return pb.ListProvidersResponse(
            providers=[
                pb.ProviderStatus(
                    name=v.name,
                    model_route=v.route,
                    circuit_state=v.circuit_state,
                    healthy=v.healthy,
                    error_rate=v.error_rate,
                    latency_p50_ms=v.latency_p50_ms,
                    latency_p99_ms=v.latency_p99_ms,
                    requests=v.requests,
                    failures=v.failures,
                    last_error_type=v.last_error_type,
                    connections_in_use=v.connections.in_use,
                    connections_waiting=v.connections.waiting,
                    max_connections=v.connections.limit,
                )
                for v in self._service.providers()
            ]
        )

    async def _resources(
        self, caller: object, req: pb.GetResourceStatusRequest, deadline: float | None
    ) -> pb.GetResourceStatusResponse:
        store = self._service.store_status()
        shared = pb.SharedStateStatus(
            state=store.state,
            pending_writes=store.pending_writes,
            dropped_writes=store.dropped_writes,
            replayed_writes=store.replayed_writes,
        )
        snap = self._service.resources()
        quotas = [quota_totals_msg(t) for t in self._service.quota_totals()]
        if snap is None:
            return pb.GetResourceStatusResponse(mode="normal", shared_state=shared, quotas=quotas)
        return pb.GetResourceStatusResponse(
            shared_state=shared,
            quotas=quotas,
            mode=snap.mode.value,
            rss_bytes=snap.rss_bytes,
            managers=snap.managers,
            cache_entries=snap.cache_entries,
            cache_bytes=snap.cache_bytes,
            in_flight=snap.in_flight,
            alerts=list(snap.alerts),
        )

    async def ListProviders(
        self, request: pb.ListProvidersRequest, context: Ctx
    ) -> pb.ListProvidersResponse:
        return await self._rpc.unary("ListProviders", request, context, self._providers)

    async def GetResourceStatus(
        self, request: pb.GetResourceStatusRequest, context: Ctx
    ) -> pb.GetResourceStatusResponse:
        return await self._rpc.unary("GetResourceStatus", request, context, self._resources)
