"""The fake upstream's Anthropic Messages API side: answers, event streams and usage,
in the API's own format (replies and events built through the SDK's models)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from aiohttp import web

from tests.support.agent_upstream import anthropic_tool_events, anthropic_tool_reply, planned_calls
from tests.support.fault_mode import MODE
from tests.support.wire_formats import anthropic_event, anthropic_reply


class AnthropicFormat:
    """Mixed into FakeUpstream, whose fields and helpers it uses."""

    name: str
    cached_tokens: int
    cache_write_tokens: int
    stream_chunk_delay: float
    stream_piece_chars: int
    streams_aborted: int
    streams_completed: int
    tool_arguments: str | None
    requests: list[Any]

    # Provided by FakeUpstream.
    def usage(self, body: dict[str, Any], text: str) -> dict[str, Any]: ...
    def answer_text(self, body: dict[str, Any]) -> str: ...
    async def _record(self, request: web.Request) -> dict[str, Any]: ...
    async def _fault(
        self, request: web.Request, body: dict[str, Any] | None = None
    ) -> web.StreamResponse | None: ...
    async def _sse(
        self, request: web.Request, events: list[tuple[str, dict[str, Any]]], *, done: bool
    ) -> web.StreamResponse: ...

    def anthropic_usage(self, body: dict[str, Any], text: str) -> dict[str, int]:
        """The Messages API's usage: input_tokens there excludes cache reads and writes."""
        usage = self.usage(body, text)
        reported = {
            "input_tokens": usage["prompt_tokens"] - self.cached_tokens - self.cache_write_tokens,
            "output_tokens": usage["completion_tokens"],
        }
        if self.cached_tokens:
            reported["cache_read_input_tokens"] = self.cached_tokens
        if self.cache_write_tokens:
            reported["cache_creation_input_tokens"] = self.cache_write_tokens
        return reported

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        fault = await self._fault(request, body)
        if fault is not None:
            return fault
        calls = planned_calls("anthropic", body, self.tool_arguments)
        if calls:
            rid = f"msg_{self.name}_{len(self.requests)}"
            usage = self.anthropic_usage(body, "")
            if body.get("stream"):
                events = anthropic_tool_events(body, rid, calls, usage)
                return await self._sse(request, events, done=False)
            return web.json_response(anthropic_tool_reply(body, rid, calls, usage))
        text = self.answer_text(body)
        usage = self.anthropic_usage(body, text)
        if body.get("stream"):
            return await self._stream_anthropic(request, body, text, usage)
        reply = {
            "id": f"msg_{self.name}_{len(self.requests)}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
        return web.json_response(anthropic_reply(reply))

    async def _stream_anthropic(
        self, request: web.Request, body: dict[str, Any], text: str, usage: dict[str, int]
    ) -> web.StreamResponse:
        """The Messages API event stream, as the API documents it; a caller that goes
        away mid-stream is counted (``streams_aborted``)."""
        try:
            return await self._events(request, body, text, usage)
        except (ConnectionResetError, asyncio.CancelledError):
            self.streams_aborted += 1
            raise

    async def _events(
        self, request: web.Request, body: dict[str, Any], text: str, usage: dict[str, int]
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(event: str, data: Any) -> None:
            await response.write(
                f"event: {event}\ndata: {json.dumps(anthropic_event(data))}\n\n".encode()
            )

        if request.get(MODE) == "bad_event":
            await response.write(b"event: message_start\ndata: [1, 2]\n\n")
            return response
        message_id = f"msg_{self.name}_{len(self.requests)}"
        await send(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": body.get("model"),
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {**usage, "output_tokens": 1},
                },
            },
        )
        await send(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
        for piece in stream_pieces(text, self.stream_piece_chars):
            await send(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
            if self.stream_chunk_delay:
                await asyncio.sleep(self.stream_chunk_delay)
        await send("content_block_stop", {"type": "content_block_stop", "index": 0})
        await send(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
        await send("message_stop", {"type": "message_stop"})
        self.streams_completed += 1
        return response


def stream_pieces(text: str, size: int = 0) -> list[str]:
    """A streamed answer's deltas: a word each, or ``size`` characters each (cutting
    through words, and through anything the sidecar put in the text)."""
    if size > 0:
        return [text[i : i + size] for i in range(0, len(text), size)]
    return re.findall(r"\S+\s*", text)
