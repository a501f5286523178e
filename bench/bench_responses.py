"""Continuing a stored response (Responses API, previous_response_id) vs sending the
whole conversation each time (Chat Completions), at chain depths 1, 10 and 50, with
the chain in memory and in Redis, in one run.

Each row is one caller making continuations from the tip of a chain of that depth,
so every call reads the whole chain; the chat row sends the same turns itself.
Latency is what the caller sees (loopback upstream, c = 1)."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from typing import Any

import aiohttp

from bench.harness import HTTP_PORTS, bench_provider, sidecar, sidecar_config, table, upstream

DEPTHS = (1, 10, 50)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> Any:
    async with session.post(url, json=body, headers={"x-user-id": "bench"}) as reply:
        assert reply.status == 200, await reply.text()
        return await reply.json()


async def _measure(base: str, depth: int, seconds: float) -> dict[str, float]:
    async with aiohttp.ClientSession() as session:
        tip = None
        turns: list[dict[str, str]] = []
        for i in range(depth):
            body = {"model": "m", "input": f"turn {i}: and then?", "store": True}
            if tip is not None:
                body["previous_response_id"] = tip
            made = await _post(session, f"{base}/v1/responses", body)
            tip = made["id"]
            turns += [
                {"role": "user", "content": f"turn {i}: and then?"},
                {"role": "assistant", "content": "The answer is forty-two. " * 4},
            ]
        figures = {}
        for kind in ("responses", "chat"):
            latencies: list[float] = []
            stop = time.perf_counter() + seconds
            n = 0
            while time.perf_counter() < stop:
                n += 1
                text = f"a new question {n} {uuid.uuid4().hex}"  # never a cache hit
                start = time.perf_counter()
                if kind == "responses":
                    body = {"model": "m", "input": text, "previous_response_id": tip}
                    await _post(session, f"{base}/v1/responses", body)
                else:
                    messages = [*turns, {"role": "user", "content": text}]
                    await _post(
                        session, f"{base}/v1/chat/completions", {"model": "m", "messages": messages}
                    )
                latencies.append((time.perf_counter() - start) * 1000)
            figures[kind] = statistics.median(latencies)
            figures[f"{kind}_p99"] = sorted(latencies)[int(0.99 * (len(latencies) - 1))]
    return figures


def run(duration: float = 5.0) -> str:
    rows: list[list[Any]] = []
    per_depth = max(1.0, duration / 2)
    with upstream() as up_port:
        for store in ("memory", "redis"):
            extra: dict[str, Any] = {}
            if store == "redis":
                extra["redis"] = {"url": REDIS_URL, "key_prefix": f"bench-{uuid.uuid4().hex[:8]}"}
            config = sidecar_config([bench_provider(up_port)], **extra)
            with sidecar(config) as port:
                base = f"http://127.0.0.1:{HTTP_PORTS[port]}"
                for depth in DEPTHS:
                    f = asyncio.run(_measure(base, depth, per_depth))
                    rows.append(
                        [
                            store,
                            depth,
                            f["chat"],
                            f["responses"],
                            f["responses"] - f["chat"],
                            f["responses_p99"],
                        ]
                    )
    return table(
        "Responses: continuing a stored chain vs sending it (p50 ms, c = 1)",
        ["store", "depth", "chat p50", "responses p50", "added", "responses p99"],
        rows,
    )
