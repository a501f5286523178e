"""SSE parsing in batches: what adaptive coalescing rests on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import StreamReader
from aiohttp.base_protocol import BaseProtocol

from llm_sidecar.providers._http import sse_batches


class _Response:
    """The one attribute sse_batches reads: a real aiohttp StreamReader as ``content``."""

    def __init__(self, content: StreamReader) -> None:
        self.content = content


async def _batches(*reads: bytes) -> list[list[tuple[str, str]]]:
    loop = asyncio.get_running_loop()
    protocol = BaseProtocol(loop)
    protocol.connection_made(asyncio.Transport())  # a reader needs a live connection
    reader = StreamReader(protocol, 2**16, loop=loop)
    out: list[list[tuple[str, str]]] = []

    async def consume(batches: AsyncIterator[list[tuple[str, str]]]) -> None:
        async for batch in batches:
            out.append(batch)

    task = asyncio.ensure_future(consume(sse_batches(_Response(reader))))  # type: ignore[arg-type]
    for data in reads:
        reader.feed_data(data)
        await asyncio.sleep(0)  # let the reader take what has arrived
        await asyncio.sleep(0)
    reader.feed_eof()
    await task
    return out


async def test_events_that_arrive_together_come_as_one_batch() -> None:
    assert await _batches(b"data: a\n\ndata: b\n\ndata: c\n\n") == [
        [("", "a"), ("", "b"), ("", "c")]
    ]


async def test_events_that_arrive_apart_come_alone() -> None:
    assert await _batches(b"data: a\n\n", b"data: b\n\n") == [[("", "a")], [("", "b")]]


async def test_an_event_split_across_reads_waits_for_its_end() -> None:
    assert await _batches(b"event: delta\nda", b"ta: x", b"y\n", b"\n") == [[("delta", "xy")]]


async def test_crlf_comments_multiline_data_and_a_missing_final_blank_line() -> None:
    reads = (b": keep-alive\r\n\r\ndata: one\r\ndata: two\r", b"\n\r\n", b"data: last")
    assert await _batches(*reads) == [[("", "one\ntwo")], [("", "last")]]


async def test_invalid_utf8_is_replaced_not_raised() -> None:
    assert await _batches(b"data: \xff\n\n") == [[("", "\ufffd")]]
