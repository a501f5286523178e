"""The blocking client, for code without an event loop."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import grpc
from llm_manager.v1 import llm_manager_pb2 as pb
from llm_manager.v1 import llm_manager_pb2_grpc as pb_grpc

from llm_manager_client import _convert as convert
from llm_manager_client._async import DEFAULT_TIMEOUT
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


class LLMManagerClient:
    """Blocking twin of :class:`AsyncLLMManagerClient`."""

    def __init__(
        self,
        target: str | grpc.Channel,
        context: UserContext,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        if isinstance(target, str):
            self._channel = grpc.insecure_channel(target, options=list(options))
            self._owns_channel = True
        else:
            self._channel = target
            self._owns_channel = False
        self._stub = pb_grpc.LLMManagerServiceStub(self._channel)
        self.context = context
        self.timeout = timeout
        self._metadata = context.to_metadata()

    def with_context(self, context: UserContext) -> LLMManagerClient:
        """A client for another context, sharing this one's channel."""
        return LLMManagerClient(self._channel, context, timeout=self.timeout)

    def close(self) -> None:
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> LLMManagerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        try:
            return method(
                request, metadata=outgoing(self._metadata), timeout=timeout or self.timeout
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    def ask(self, prompt: str = "", *, timeout: float | None = None, **kwargs: Any) -> str:
        return str(self._call(self._stub.Ask, convert.ask_request(prompt, **kwargs), timeout).text)

    def ask_full(
        self, prompt: str = "", *, timeout: float | None = None, **kwargs: Any
    ) -> AskResult:
        return convert.ask_result(
            self._call(self._stub.AskFull, convert.ask_request(prompt, **kwargs), timeout)
        )

    def ask_structured(
        self,
        prompt: str,
        schema: dict[str, Any] | str,
        *,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> StructuredResult:
        reply = self._call(
            self._stub.AskStructured, convert.structured_request(prompt, schema, **kwargs), timeout
        )
        return convert.structured_result(reply)

    def ask_stream(
        self, prompt: str = "", *, timeout: float | None = None, **kwargs: Any
    ) -> Iterator[StreamChunk]:
        call = self._stub.AskStream(
            convert.ask_request(prompt, **kwargs),
            metadata=outgoing(self._metadata),
            timeout=timeout or self.timeout,
        )
        try:
            for chunk in call:
                yield convert.stream_chunk(chunk)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()

    def embed(
        self, inputs: str | Sequence[str], *, timeout: float | None = None, **kwargs: Any
    ) -> EmbedResult:
        return convert.embed_result(
            self._call(self._stub.Embed, convert.embed_request(inputs, **kwargs), timeout)
        )

    def is_cached(self, prompt: str, **kwargs: Any) -> bool:
        return bool(
            self._call(self._stub.IsCached, convert.ask_request(prompt, **kwargs), None).cached
        )

    def get_conversation(self, session_id: str = "", thread_id: str = "") -> Conversation:
        reply = self._call(
            self._stub.GetConversation,
            pb.GetConversationRequest(session_id=session_id, thread_id=thread_id),
            None,
        )
        return convert.conversation(reply)

    def end_session(self, session_id: str = "") -> SessionEnded:
        reply = self._call(self._stub.EndSession, pb.EndSessionRequest(session_id=session_id), None)
        return SessionEnded(reply.threads_cleared, reply.cache_entries_cleared)

    def release_manager(self) -> Released:
        reply = self._call(self._stub.ReleaseManager, pb.ReleaseManagerRequest(), None)
        return Released(reply.released, reply.cache_entries_freed)

    def get_usage(self, session_id: str = "") -> UsageReport:
        return convert.usage_report(
            self._call(self._stub.GetUsage, pb.GetUsageRequest(session_id=session_id), None)
        )
