"""A minimal OpenAI-compatible upstream for benchmarks: raw asyncio HTTP/1.1 keep-alive.

It costs a few microseconds a request so that what a benchmark measures is the
sidecar, not the fake. Modes (``--mode``): ok, hang, refuse (closes at once).
``POST /v1/embeddings`` answers a vector of ``DIMENSIONS`` floats per input (the
size of text-embedding-3-small's), as JSON numbers, as the sidecar asks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal


def _reply(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: keep-alive\r\n\r\n"
        + body
    )


ANSWER = _reply(
    json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "model": "bench-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "The answer is forty-two. " * 4},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 24, "completion_tokens": 20, "total_tokens": 44},
        }
    ).encode()
)
MODELS = _reply(b'{"object":"list","data":[{"id":"bench-model"}]}')
# A tool call, for requests that declare tools and do not carry tool results yet.
TOOL_CALL = _reply(
    json.dumps(
        {
            "id": "chatcmpl-bench-tools",
            "object": "chat.completion",
            "model": "bench-model",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "call_bench_1",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                            }
                        ],
                    },
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52},
        }
    ).encode()
)


DIMENSIONS = 1536
_VECTOR = json.dumps([round(((i * 7919) % 2000 - 1000) / 1000.3, 9) for i in range(DIMENSIONS)])


def _embeddings(body: bytes) -> bytes:
    """A vector per input, in order; every input billed as 8 tokens."""
    given = json.loads(body)["input"]
    count = 1 if isinstance(given, str) else len(given)
    items = ",".join(
        f'{{"object":"embedding","index":{i},"embedding":{_VECTOR}}}' for i in range(count)
    )
    usage = f'{{"prompt_tokens":{8 * count},"total_tokens":{8 * count}}}'
    return _reply(
        f'{{"object":"list","data":[{items}],"model":"bench-embedding","usage":{usage}}}'.encode()
    )


class Http(asyncio.Protocol):
    mode = "ok"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buf = b""
        if self.mode == "refuse":
            transport.close()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buf[:head_end].lower()
            length = 0
            idx = head.find(b"content-length:")
            if idx >= 0:
                length = int(
                    head[
                        idx + 15 : head.find(b"\r\n", idx) if head.find(b"\r\n", idx) > 0 else None
                    ]
                )
            total = head_end + 4 + length
            if len(self.buf) < total:
                return
            body, self.buf = self.buf[head_end + 4 : total], self.buf[total:]
            if self.mode == "hang":
                continue
            if head.startswith(b"get"):
                reply = MODELS
            elif head.startswith(b"post /v1/embeddings"):
                reply = _embeddings(body)
            elif b'"tools"' in body and not _carries_tool_result(body):
                reply = TOOL_CALL
            else:
                reply = ANSWER
            self.transport.write(reply)  # type: ignore[attr-defined]


def _carries_tool_result(body: bytes) -> bool:
    """Whether a request body holds a tool turn, however its JSON is spaced."""
    return b'"role":"tool"' in body or b'"role": "tool"' in body


async def main(port: int, mode: str) -> None:
    Http.mode = mode
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Http, "127.0.0.1", port, reuse_address=True, backlog=1024)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", default="ok")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(args.port, args.mode))
