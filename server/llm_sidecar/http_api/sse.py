"""Relaying an answer as server-sent events, whatever the API's event shapes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import Protocol

from aiohttp import web

from llm_sidecar.core.vocabulary.errors import SidecarError
from llm_sidecar.core.vocabulary.models import AskResult
from llm_sidecar.core.vocabulary.tools import ToolCall
from llm_sidecar.http_api.edge import HttpCall
from llm_sidecar.http_api.errors import Refusal, refusal_for

Item = str | ToolCall | AskResult
Stream = AsyncGenerator[Item, None]


class StreamShape(Protocol):
    """How one API writes a streamed answer."""

    def delta(self, text: str) -> bytes: ...

    def tool(self, call: ToolCall) -> bytes: ...

    def failed(self, refusal: Refusal) -> bytes:
        """The event that ends a stream with an error."""
        ...


async def relay(
    call: HttpCall,
    stream: Stream,
    shape: StreamShape,
    opening: bytes,
    closing: Callable[[AskResult], bytes],
) -> web.StreamResponse:
    """Relay a stream as server-sent events. A failure before the first item is an
    ordinary error response (the status tells the SDK to retry or not); after it, the
    API's error event ends the stream. A caller that goes away cancels the call: the
    upstream is abandoned and the reservation settled."""
    async with contextlib.aclosing(stream):
        first = await anext(stream)  # errors here become a plain error response
        response = web.StreamResponse(
            headers={
                **call.headers,
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
            }
        )
        await response.prepare(call.request)
        await response.write(opening)
        try:
            item: Item = first
            while True:
                if isinstance(item, str):
                    await response.write(shape.delta(item))
                elif isinstance(item, ToolCall):
                    await response.write(shape.tool(item))
                else:
                    call.answered(item)
                    await response.write(closing(item))
                    break
                item = await anext(stream)
        except SidecarError as exc:
            refusal = refusal_for(exc)
            call.failed_mid_stream(exc, refusal)
            await response.write(shape.failed(refusal))
        except ConnectionResetError:  # the caller went away between two writes
            call.scope.cancelled()
            return response
        await response.write_eof()
        return response


async def replayed(result: AskResult) -> Stream:
    """A finished answer as a stream: its text in one delta, its tool calls, itself. A
    streamed call that must be checked whole first (JSON against a schema) is answered
    this way, so the caller still gets the API's events, and only checked JSON."""
    if result.text:
        yield result.text
    for tool_call in result.tool_calls:
        yield tool_call
    yield result
