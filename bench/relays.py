"""The floors of the stream benchmark: the leanest relays of the paced upstream, with
nothing of the sidecar in them, each in its own process.

``--kind aiohttp``: aiohttp.web answers ``POST /v1/chat/completions`` by opening the
same request upstream with aiohttp's client and writing each read through as it
comes (server-sent events in, server-sent events out). ``--kind grpc``: a grpc.aio
server answers ``AskStream`` by writing each upstream read as one message. What
either costs per delta is what the sidecar's HTTP or gRPC path cannot go below.
``--kind aiohttp-json``: the same for a unary call: the caller's JSON body passed
upstream as it is, the upstream's JSON answer passed back (the floor of the HTTP
cache-miss path in ``bench gateway``).

    python -m bench.relays --kind aiohttp --port 6001 --upstream 127.0.0.1:6000
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
from aiohttp import web
from llm_manager.v1 import llm_manager_pb2 as pb

_BODY = json.dumps(
    {
        "model": "bench-model",
        "stream": True,
        "messages": [{"role": "user", "content": "tell me a story"}],
    }
)
_HEADERS = {"Content-Type": "application/json"}


async def aiohttp_relay(port: int, upstream: str) -> None:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    url = f"http://{upstream}/v1/chat/completions"

    async def relay(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        async with session.post(url, data=_BODY, headers=_HEADERS) as upstream_reply:
            while data := await upstream_reply.content.readany():
                await response.write(data)
        await response.write_eof()
        return response

    await _serve(relay, port)


async def aiohttp_json_relay(port: int, upstream: str) -> None:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    url = f"http://{upstream}/v1/chat/completions"

    async def relay(request: web.Request) -> web.Response:
        body = await request.read()
        async with session.post(url, data=body, headers=_HEADERS) as upstream_reply:
            answer = await upstream_reply.read()
        return web.Response(body=answer, content_type="application/json")

    await _serve(relay, port)


async def _serve(handler: Any, port: int) -> None:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    await asyncio.Event().wait()


async def grpc_relay(port: int, upstream: str) -> None:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    url = f"http://{upstream}/v1/chat/completions"

    async def ask_stream(
        request: pb.AskRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.AskStreamChunk]:
        async with session.post(url, data=_BODY, headers=_HEADERS) as upstream_reply:
            index = 0
            while data := await upstream_reply.content.readany():
                yield pb.AskStreamChunk(delta=data.decode(), index=index)
                index += 1

    handler = grpc.method_handlers_generic_handler(
        "llm_manager.v1.LLMManagerService",
        {
            "AskStream": grpc.unary_stream_rpc_method_handler(
                ask_stream,
                request_deserializer=pb.AskRequest.FromString,
                response_serializer=pb.AskStreamChunk.SerializeToString,
            )
        },
    )
    server = grpc.aio.server(
        options=[
            ("grpc.server.max_pending_requests", 32_768),
            ("grpc.server.max_pending_requests_hard_limit", 32_768),
        ]
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


RELAYS = {"aiohttp": aiohttp_relay, "aiohttp-json": aiohttp_json_relay, "grpc": grpc_relay}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kind", choices=sorted(RELAYS), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="host:port of the paced upstream")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(RELAYS[args.kind](args.port, args.upstream))


if __name__ == "__main__":
    main()
