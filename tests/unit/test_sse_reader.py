"""SSE parsing in batches: what adaptive coalescing rests on."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import StreamReader
from aiohttp.base_protocol import BaseProtocol
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_sidecar.core.vocabulary.errors import ProviderError
from llm_sidecar.providers._sse import SSEReader, event_object, is_done


class _Response:
    """The one attribute SSEReader reads: a real aiohttp StreamReader as ``content``."""

    def __init__(self, content: StreamReader) -> None:
        self.content = content


async def _batches(*reads: bytes) -> list[list[tuple[str, bytes]]]:
    loop = asyncio.get_running_loop()
    protocol = BaseProtocol(loop)
    protocol.connection_made(asyncio.Transport())  # a reader needs a live connection
    reader = StreamReader(protocol, 2**16, loop=loop)
    out: list[list[tuple[str, bytes]]] = []

    async def consume(events: SSEReader) -> None:
        while (batch := await events.read()) is not None:
            out.append(batch)

    task = asyncio.ensure_future(consume(SSEReader(_Response(reader))))  # type: ignore[arg-type]
    for data in reads:
        reader.feed_data(data)
        await asyncio.sleep(0)  # let the reader take what has arrived
        await asyncio.sleep(0)
    reader.feed_eof()
    await task
    return out


async def test_events_that_arrive_together_come_as_one_batch() -> None:
    assert await _batches(b"data: a\n\ndata: b\n\ndata: c\n\n") == [
        [("", b"a"), ("", b"b"), ("", b"c")]
    ]


async def test_events_that_arrive_apart_come_alone() -> None:
    assert await _batches(b"data: a\n\n", b"data: b\n\n") == [[("", b"a")], [("", b"b")]]


async def test_an_event_split_across_reads_waits_for_its_end() -> None:
    assert await _batches(b"event: delta\nda", b"ta: x", b"y\n", b"\n") == [[("delta", b"xy")]]


async def test_crlf_comments_multiline_data_and_a_missing_final_blank_line() -> None:
    reads = (b": keep-alive\r\n\r\ndata: one\r\ndata: two\r", b"\n\r\n", b"data: last")
    assert await _batches(*reads) == [[("", b"one\ntwo")], [("", b"last")]]


async def test_a_data_line_without_a_space_and_an_empty_body() -> None:
    assert await _batches(b"data:x\n\n") == [[("", b"x")]]
    assert await _batches() == []


def test_invalid_utf8_is_replaced_not_raised() -> None:
    assert event_object(b'{"text": "\xff"}') == {"text": "\ufffd"}


def test_an_event_that_is_not_a_json_object_is_a_bad_response() -> None:
    for data in (b"{not json", b"[1, 2]", b'{"a": NaN}'):
        with pytest.raises(ProviderError) as info:
            event_object(data)
        assert info.value.kind.value == "bad_response"


def test_the_done_marker() -> None:
    assert is_done(b"[DONE]") and is_done(b" [DONE] ")
    assert not is_done(b'{"done": true}')


_STREAM = (
    b': hello\r\n\r\nevent: delta\ndata: {"a": 1}\n\n'
    b"data: one\r\ndata: two\r\n\r\nevent: big\ndata: " + b"x" * 70_000 + b"\n\ndata: [DONE]\n\n"
)


def _fed() -> SSEReader:
    """A reader fed by hand (``feed``), its connection never read."""
    return SSEReader(_Response(None))  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(_STREAM)), max_size=12))
def test_any_split_of_a_stream_gives_the_same_events(cuts: list[int]) -> None:
    """However the connection cuts the bytes (a large event over many reads, a CRLF
    split in two), the events are the same as from one read."""
    expected = _fed().feed(_STREAM)
    pieces = sorted(set(cuts))
    reader = _fed()
    events: list[tuple[str, bytes]] = []
    for start, end in zip([0, *pieces], [*pieces, len(_STREAM)], strict=True):
        events += reader.feed(_STREAM[start:end])
    assert events == expected
    assert [name for name, _ in expected] == ["delta", "", "big", ""]
