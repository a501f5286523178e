"""MCP load generator, run in its own process: N concurrent MCP sessions calling a
trivial tool (``echo``) for D seconds over Streamable HTTP.

Each worker is one user with its own session: it initialises (the handshake revision,
as most clients do today), then sends ``tools/call`` after ``tools/call`` with a bare
aiohttp client, so the client's own cost is as small as it gets and the same on both
paths (straight to the MCP server, or through the gateway). Prints one JSON object as
``bench/load.py`` does, with the server's CPU per call (``--cpu-pid``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from typing import Any

import aiohttp
import orjson

from bench.load import cpu_seconds, summary

ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
VERSION = "2025-11-25"


async def _open(http: aiohttp.ClientSession, url: str, user: str) -> dict[str, str]:
    """Initialise one session; the headers each of its requests carries."""
    headers = {**ACCEPT, "x-user-id": user}
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": VERSION,
            "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"},
        },
    }
    async with http.post(url, data=orjson.dumps(init), headers=headers) as reply:
        reply.raise_for_status()
        session = reply.headers.get("mcp-session-id")
        await reply.read()
    headers["mcp-protocol-version"] = VERSION
    if session:
        headers["mcp-session-id"] = session
    note = orjson.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})
    async with http.post(url, data=note, headers=headers) as reply:
        await reply.read()
    return headers


async def run(args: argparse.Namespace) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512))
    tool = args.tool
    sessions = [
        await _open(http, args.url, f"bench-{args.tag}-{w}") for w in range(args.concurrency)
    ]

    async def worker(w: int) -> None:
        nonlocal errors
        headers = sessions[w]
        for i in itertools.count():
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            body = {
                "jsonrpc": "2.0",
                "id": i + 1,
                "method": "tools/call",
                "params": {"name": tool, "arguments": {"text": f"hello {w}-{i}"}},
            }
            try:
                async with http.post(args.url, data=orjson.dumps(body), headers=headers) as r:
                    answer = orjson.loads(await r.read())
                assert answer["result"]["content"][0]["text"] == f"hello {w}-{i}"
            except Exception:
                errors += 1
                continue
            if t0 >= warm_until:
                latencies.append((time.perf_counter() - t0) * 1000)

    start = time.perf_counter()
    warm_until = start + args.warmup
    stop_at = warm_until + args.duration
    cpu_before: list[float] = []

    async def cpu_at_warm_end() -> None:
        await asyncio.sleep(args.warmup)
        cpu_before.append(cpu_seconds(args.cpu_pid))

    sampler = asyncio.ensure_future(cpu_at_warm_end()) if args.cpu_pid else None
    await asyncio.gather(*(worker(w) for w in range(args.concurrency)))
    seconds = time.perf_counter() - warm_until
    cpu = None
    if sampler is not None:
        await sampler
        cpu = cpu_seconds(args.cpu_pid) - cpu_before[0]
    await http.close()
    return summary(latencies, errors, seconds, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--tool", default="echo")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--cpu-pid", type=int, default=0)
    parser.add_argument("--tag", default="t")
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
