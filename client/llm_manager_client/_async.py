"""The asyncio client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from llm_manager.v1 import llm_manager_pb2 as pb
from llm_manager.v1 import llm_manager_pb2_grpc as pb_grpc

from llm_manager_client import _convert as convert
from llm_manager_client._context import UserContext
from llm_manager_client._exceptions import from_rpc_error
from llm_manager_client._models import (
    AskResult,
    Conversation,
    EmbedResult,
    Released,
    SessionEnded,
    StreamChunk,
    StructuredResult,
    UsageReport,
)
from llm_manager_client._tracing import outgoing

DEFAULT_TIMEOUT = 30.0


class AsyncLLMManagerClient:
    """Calls the sidecar for one user context; the context rides on every call.

    ``target`` is ``host:port`` or ``unix:/path``. Every call has a deadline
    (``timeout`` seconds, default 30) unless ``timeout=None`` is passed.
    """

    def __init__(
        self,
        target: str | grpc.aio.Channel,
        context: UserContext,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        if isinstance(target, str):
            self._channel = grpc.aio.insecure_channel(target, options=list(options))
            self._owns_channel = True
        else:
            self._channel = target
            self._owns_channel = False
        self._stub = pb_grpc.LLMManagerServiceStub(self._channel)
        self.context = context
        self.timeout = timeout
        self._metadata = context.to_metadata()

    def with_context(self, context: UserContext) -> AsyncLLMManagerClient:
        """A client for another context, sharing this one's channel."""
        return AsyncLLMManagerClient(self._channel, context, timeout=self.timeout)

    async def close(self) -> None:
        if self._owns_channel:
            await self._channel.close()

    async def __aenter__(self) -> AsyncLLMManagerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        try:
            return await method(request, metadata=outgoing(self._metadata), timeout=timeout)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    async def ask(self, prompt: str = "", *, timeout: float | None = None, **kwargs: Any) -> str:
        """The answer text."""
        reply = await self._call(
            self._stub.Ask, convert.ask_request(prompt, **kwargs), timeout or self.timeout
        )
        return str(reply.text)

    async def ask_full(
        self, prompt: str = "", *, timeout: float | None = None, **kwargs: Any
    ) -> AskResult:
        """The answer with its metadata."""
        reply = await self._call(
            self._stub.AskFull, convert.ask_request(prompt, **kwargs), timeout or self.timeout
        )
        return convert.ask_result(reply)

    async def ask_structured(
        self,
        prompt: str,
        schema: dict[str, Any] | str,
        *,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> StructuredResult:
        """A JSON document valid against ``schema``."""
        reply = await self._call(
            self._stub.AskStructured,
            convert.structured_request(prompt, schema, **kwargs),
            timeout or self.timeout,
        )
        return convert.structured_result(reply)

    async def ask_stream(
        self, prompt: str = "", *, timeout: float | None = None, **kwargs: Any
    ) -> AsyncIterator[StreamChunk]:
        """Chunks as they arrive; the last carries the metadata."""
        call = self._stub.AskStream(
            convert.ask_request(prompt, **kwargs),
            metadata=outgoing(self._metadata),
            timeout=timeout or self.timeout,
        )
        try:
            async for chunk in call:
                yield convert.stream_chunk(chunk)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()

    async def embed(
        self, inputs: str | Sequence[str], *, timeout: float | None = None, **kwargs: Any
    ) -> EmbedResult:
        """One vector per input, in order (``model``, ``dimensions``, ``skip_cache``)."""
        reply = await self._call(
            self._stub.Embed, convert.embed_request(inputs, **kwargs), timeout or self.timeout
        )
        return convert.embed_result(reply)

    async def is_cached(self, prompt: str, **kwargs: Any) -> bool:
        """Whether the same Ask would be answered from this user's cache."""
        reply = await self._call(
            self._stub.IsCached, convert.ask_request(prompt, **kwargs), self.timeout
        )
        return bool(reply.cached)

    async def get_conversation(self, session_id: str = "", thread_id: str = "") -> Conversation:
        """This user's history (default: the context's session and thread)."""
        reply = await self._call(
            self._stub.GetConversation,
            pb.GetConversationRequest(session_id=session_id, thread_id=thread_id),
            self.timeout,
        )
        return convert.conversation(reply)

    async def end_session(self, session_id: str = "") -> SessionEnded:
        """Clear one session's history and cache (default: the context's session)."""
        reply = await self._call(
            self._stub.EndSession, pb.EndSessionRequest(session_id=session_id), self.timeout
        )
        return SessionEnded(reply.threads_cleared, reply.cache_entries_cleared)

    async def release_manager(self) -> Released:
        """Free this user's manager on the sidecar."""
        reply = await self._call(
            self._stub.ReleaseManager, pb.ReleaseManagerRequest(), self.timeout
        )
        return Released(reply.released, reply.cache_entries_freed)

    async def get_usage(self, session_id: str = "") -> UsageReport:
        """This user's token usage."""
        reply = await self._call(
            self._stub.GetUsage, pb.GetUsageRequest(session_id=session_id), self.timeout
        )
        return convert.usage_report(reply)
