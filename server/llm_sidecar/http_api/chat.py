"""The chat endpoints: OpenAI's ``/v1/chat/completions``, Anthropic's ``/v1/messages``,
and ``/v1/models`` (the configured routes, in the asking SDK's shape).

Each parses its API's body, calls the service (the same calls gRPC makes, so the
same pipeline, isolation, quotas and bill), and answers in its API's shape: JSON,
or server-sent events as the answer streams.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from llm_sidecar.http_api import anthropic_messages, openai_chat
from llm_sidecar.http_api.edge import HttpCall
from llm_sidecar.http_api.endpoints import Endpoints
from llm_sidecar.http_api.sse import Stream, relay, replayed


class ChatEndpoints(Endpoints):
    """The chat handlers."""

    async def chat_completions(self, call: HttpCall) -> web.StreamResponse:
        assert call.body is not None and call.ctx is not None
        spec = openai_chat.parse(call.body)
        call.same_user(call.body.raw("user"), "user")
        deadline = self._deadline(call, spec.model)
        completion_id = "chatcmpl-" + call.request_id
        if not spec.stream:
            result = await self._service.ask(call.ctx, spec.inp, deadline)
            call.answered(result)
            return call.json(openai_chat.completion(result, spec, completion_id))
        chunks = openai_chat.Chunks(spec, completion_id)
        stream: Stream
        if spec.inp.json_schema is not None:  # checked whole, then streamed
            stream = replayed(await self._service.ask(call.ctx, spec.inp, deadline))
        else:
            stream = self._service.ask_stream(call.ctx, spec.inp, deadline)
        return await relay(
            call, stream, chunks, b"", lambda r: chunks.finish(r, spec.include_usage)
        )

    async def messages(self, call: HttpCall) -> web.StreamResponse:
        assert call.body is not None and call.ctx is not None
        spec = anthropic_messages.parse(call.body)
        metadata = call.body.obj("metadata")
        if metadata is not None:
            call.same_user(metadata.raw("user_id"), "metadata.user_id")
        deadline = self._deadline(call, spec.model)
        message_id = "msg_" + call.request_id.replace("-", "")
        if not spec.stream:
            result = await self._service.ask(call.ctx, spec.inp, deadline)
            call.answered(result)
            return call.json(anthropic_messages.message(result, spec, message_id))
        events = anthropic_messages.Events()
        stream = self._service.ask_stream(call.ctx, spec.inp, deadline)
        return await relay(call, stream, events, events.start(spec, message_id), events.finish)

    async def models(self, call: HttpCall) -> web.StreamResponse:
        """The configured routes: Anthropic's list shape when the caller is its SDK
        (it sends ``anthropic-version``), OpenAI's otherwise."""
        routes = sorted(self._service.router.routes)
        if "anthropic-version" in call.request.headers:
            data: list[dict[str, Any]] = [
                {"type": "model", "id": r, "display_name": r, "created_at": "1970-01-01T00:00:00Z"}
                for r in routes
            ]
            first, last = (routes[0], routes[-1]) if routes else (None, None)
            body = {"data": data, "has_more": False, "first_id": first, "last_id": last}
        else:
            data = [
                {"id": r, "object": "model", "created": 0, "owned_by": "llm-sidecar"}
                for r in routes
            ]
            body = {"object": "list", "data": data}
        return call.json(body)
