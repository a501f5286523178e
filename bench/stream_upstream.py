"""A paced OpenAI-compatible SSE upstream for the stream benchmark, on raw asyncio.

Every stream gets ``--chunks`` deltas, one every ``--interval`` seconds, from
one shared ticker (no timer per stream), over HTTP/1.1 keep-alive with chunked
encoding. ``--delay`` instead answers non-streaming requests after that many
seconds (the slow unary row).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _event(payload: dict[str, object]) -> bytes:
    return _chunk(b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n")


DELTAS = [
    _event(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "model": "bench-model",
            "choices": [{"index": 0, "delta": {"content": f"tok{i} "}, "finish_reason": None}],
        }
    )
    for i in range(1000)
]
TAIL = (
    _event(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "model": "bench-model",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 50, "total_tokens": 62},
        }
    )
    + _chunk(b"data: [DONE]\n\n")
    + b"0\r\n\r\n"
)
SLOW = json.dumps(
    {
        "id": "chatcmpl-slow",
        "object": "chat.completion",
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "late"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }
).encode()


class Streams:
    """The active streams and the ticker that paces them."""

    def __init__(self, chunks: int, interval: float) -> None:
        self.chunks = chunks
        self.interval = interval
        self.active: dict[asyncio.Transport, list[float]] = {}  # transport -> [next due, sent]

    async def tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.002)
            now = loop.time()
            for transport, state in list(self.active.items()):
                if state[0] > now:
                    continue
                if transport.is_closing():
                    del self.active[transport]
                    continue
                sent = int(state[1])
                transport.write(DELTAS[sent % len(DELTAS)])
                state[1] = sent + 1
                state[0] += self.interval
                if state[1] >= self.chunks:
                    transport.write(TAIL)
                    del self.active[transport]


def _content_length(head: bytes) -> int:
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line[15:])
    return 0


class Http(asyncio.Protocol):
    streams: Streams
    delay = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            length = _content_length(self.buf[:head_end])
            total = head_end + 4 + length
            if len(self.buf) < total:
                return
            body, self.buf = self.buf[head_end + 4 : total], self.buf[total:]
            if b'"stream":true' in body.replace(b" ", b""):
                self.transport.write(HEAD)
                loop = asyncio.get_running_loop()
                self.streams.active[self.transport] = [loop.time(), 0.0]
            else:
                asyncio.get_running_loop().call_later(self.delay, self._answer)

    def _answer(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                b"Connection: keep-alive\r\n\r\n%s" % (len(SLOW), SLOW)
            )


async def main(port: int, chunks: int, interval: float, delay: float) -> None:
    Http.streams = Streams(chunks, interval)
    Http.delay = delay
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Http, "127.0.0.1", port, reuse_address=True, backlog=4096)
    ticker = loop.create_task(Http.streams.tick())
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()
    ticker.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--delay", type=float, default=2.0)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(args.port, args.chunks, args.interval, args.delay))
