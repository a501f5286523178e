"""Stream load, in its own process: N concurrent streams read directly from the
upstream (aiohttp) or through the sidecar (AskStream), all started at once.

Prints one JSON object: time to first chunk and gaps between chunks (ms),
tokens and messages delivered, wall seconds, errors. ``--unary`` instead runs
N concurrent Ask calls and reports their latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from typing import Any

import grpc
from llm_manager.v1 import llm_manager_pb2 as pb
from llm_manager.v1 import llm_manager_pb2_grpc as pb_grpc

STREAMS_PER_CHANNEL = 100


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Stats:
    def __init__(self) -> None:
        self.ttfc: list[float] = []
        self.gaps: list[float] = []
        self.tokens = 0
        self.messages = 0
        self.errors = 0

    def stream(self, start: float, arrivals: list[tuple[float, int]]) -> None:
        if not arrivals:
            self.errors += 1
            return
        self.ttfc.append((arrivals[0][0] - start) * 1000)
        for (a, _), (b, _) in itertools.pairwise(arrivals):
            self.gaps.append((b - a) * 1000)
        self.tokens += sum(n for _, n in arrivals)
        self.messages += len(arrivals)


def _tokens(line: bytes) -> int:
    """The tokens a chat-completions SSE line delivers (a coalesced delta holds several)."""
    if not line.startswith(b"data: {"):
        return 0
    choices = json.loads(line[6:]).get("choices") or ()
    return sum((c.get("delta") or {}).get("content", "").count("tok") for c in choices)


async def sse(
    address: str, n: int, stats: Stats, model: str = "bench-model", prompt: str = ""
) -> None:
    """N streams of ``POST /v1/chat/completions``: the upstream itself (``direct``), the
    sidecar's HTTP API, or the bare aiohttp relay."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        body = json.dumps(
            {
                "model": model,
                "stream": True,
                "messages": [{"role": "user", "content": prompt or "tell me a story"}],
            }
        )

        async def one(i: int) -> None:
            start = time.perf_counter()
            arrivals: list[tuple[float, int]] = []
            headers = {"Content-Type": "application/json", "x-user-id": f"sse-user-{i}"}
            try:
                async with session.post(
                    f"http://{address}/v1/chat/completions", data=body, headers=headers
                ) as response:
                    async for line in response.content:
                        tokens = _tokens(line)
                        if tokens:
                            arrivals.append((time.perf_counter(), tokens))
            except Exception:
                stats.errors += 1
                return
            stats.stream(start, arrivals)

        await asyncio.gather(*(one(i) for i in range(n)))


async def sidecar(address: str, n: int, stats: Stats, *, raw: bool = False) -> None:
    """N AskStream calls: the sidecar's, or (``raw``) the bare grpc.aio relay's, whose
    deltas are the upstream's reads as they came."""
    channels = [
        grpc.aio.insecure_channel(address) for _ in range((n + STREAMS_PER_CHANNEL - 1) // 100)
    ]
    stubs = [pb_grpc.LLMManagerServiceStub(c) for c in channels]

    async def one(i: int) -> None:
        start = time.perf_counter()
        arrivals: list[tuple[float, int]] = []
        meta = (("x-user-id", f"stream-user-{i}"),)
        request = pb.AskRequest(prompt="tell me a story", skip_cache=True)
        try:
            async for chunk in stubs[i % len(stubs)].AskStream(request, metadata=meta, timeout=120):
                if chunk.delta:
                    marker = '"content":"tok' if raw else "tok"
                    arrivals.append((time.perf_counter(), chunk.delta.count(marker)))
        except grpc.aio.AioRpcError:
            stats.errors += 1
            return
        stats.stream(start, arrivals)

    await asyncio.gather(*(one(i) for i in range(n)))
    for channel in channels:
        await channel.close()


async def unary(address: str, n: int) -> dict[str, Any]:
    channels = [grpc.aio.insecure_channel(address) for _ in range((n + 99) // 100)]
    stubs = [pb_grpc.LLMManagerServiceStub(c) for c in channels]
    latencies: list[float] = []
    errors = 0

    async def one(i: int) -> None:
        nonlocal errors
        start = time.perf_counter()
        try:
            await stubs[i % len(stubs)].Ask(
                pb.AskRequest(prompt=f"slow {i}", skip_cache=True),
                metadata=(("x-user-id", f"slow-user-{i}"),),
                timeout=60,
            )
        except grpc.aio.AioRpcError:
            errors += 1
            return
        latencies.append((time.perf_counter() - start) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    seconds = time.perf_counter() - start
    for channel in channels:
        await channel.close()
    return {
        "seconds": seconds,
        "errors": errors,
        "p50": pct(latencies, 0.5),
        "p99": pct(latencies, 0.99),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.unary:
        return await unary(args.address, args.n)
    stats = Stats()
    start = time.perf_counter()
    if args.target in ("direct", "aiohttp-relay"):
        await sse(args.address, args.n, stats)
    elif args.target == "http":
        await sse(args.address, args.n, stats, model="m", prompt=args.prompt)
    else:
        await sidecar(args.address, args.n, stats, raw=args.target == "grpc-relay")
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "errors": stats.errors,
        "tokens": stats.tokens,
        "messages": stats.messages,
        "ttfc_p50": pct(stats.ttfc, 0.5),
        "ttfc_p99": pct(stats.ttfc, 0.99),
        "gap_p50": pct(stats.gaps, 0.5),
        "gap_p99": pct(stats.gaps, 0.99),
        "gap_max": max(stats.gaps, default=0.0),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--target",
        choices=["direct", "sidecar", "http", "aiohttp-relay", "grpc-relay"],
        default="sidecar",
    )
    parser.add_argument("--address", required=True)
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("--unary", action="store_true")
    parser.add_argument("--prompt", default="", help="http: the prompt of every stream")
    ns = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(main(ns))))
