"""A bare grpc.aio servicer answering Ask with a constant: the floor for a gRPC round trip."""

from __future__ import annotations

import argparse
import asyncio
import signal

import grpc
from llm_manager.v1 import llm_manager_pb2 as pb
from llm_manager.v1 import llm_manager_pb2_grpc as pb_grpc

REPLY = pb.AskResponse(text="The answer is forty-two. " * 4)


class Echo(pb_grpc.LLMManagerServiceServicer):
    async def Ask(
        self, request: pb.AskRequest, context: grpc.aio.ServicerContext
    ) -> pb.AskResponse:
        return REPLY


async def main(port: int) -> None:
    server = grpc.aio.server()
    pb_grpc.add_LLMManagerServiceServicer_to_server(Echo(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await server.stop(0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(args.port))
