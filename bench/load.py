"""Load generator, run in its own process: N concurrent callers for D seconds.

Targets: ``sidecar`` (Ask over gRPC; modes ``miss``, ``hit`` and ``conversation``,
where each worker is one user holding 20-turn threads), ``http`` (the sidecar's
``/v1/chat/completions`` with aiohttp; modes ``miss`` and ``hit``), ``direct`` (the
same chat request straight to the upstream with aiohttp), ``echo`` (a bare grpc.aio
servicer). ``--kind embed`` makes each call an embedding of ``--batch`` texts instead
(gRPC Embed, ``/v1/embeddings`` in base64 as the OpenAI SDKs ask, or the upstream's
``/v1/embeddings`` in floats as the sidecar asks). Prints one JSON object: requests,
errors, seconds, latencies (ms) percentiles, and with ``--cpu-pid`` that server
process's CPU per call over the same window (``cpu_us``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import time
from typing import Any

import grpc
import orjson
from llm_manager.v1 import llm_manager_pb2 as pb
from llm_manager.v1 import llm_manager_pb2_grpc as pb_grpc

from bench.prompts import with_values


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    stop_at = 0.0
    warm = args.warmup

    if args.target in ("direct", "http"):
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        url = f"http://{args.address}/v1/chat/completions"

    if args.target == "http":
        # The sidecar's OpenAI-compatible API, as an SDK would call it.
        hit = args.mode == "hit"

        async def call(worker: int, i: int) -> None:
            prompt = "the same question" if hit else f"question {worker}-{i}"
            if args.prompt_bytes:
                prompt = with_values(args.prompt_bytes, "" if hit else f"{worker}-{i}")
            body = json.dumps({"model": "m", "messages": [{"role": "user", "content": prompt}]})
            headers = {
                "Content-Type": "application/json",
                "x-user-id": f"bench-user-{worker % args.users}",
                "x-request-id": f"r{worker}",
            }
            async with session.post(url, data=body, headers=headers) as r:
                payload = json.loads(await r.read())
                assert payload["choices"][0]["message"]["content"]

    elif args.target == "direct":

        async def call(worker: int, i: int) -> None:
            prompt = f"p{worker}-{i}"
            if args.prompt_bytes:
                prompt = with_values(args.prompt_bytes, prompt)
            body = json.dumps(
                {"model": "bench-model", "messages": [{"role": "user", "content": prompt}]}
            )
            async with session.post(
                url, data=body, headers={"Content-Type": "application/json"}
            ) as r:
                payload = json.loads(await r.read())
                assert payload["choices"][0]["message"]["content"]

    else:
        channel = grpc.aio.insecure_channel(args.address)
        stub = pb_grpc.LLMManagerServiceStub(channel)
        metas = [
            (("x-user-id", f"bench-user-{w % args.users}"), ("x-request-id", f"r{w}"))
            for w in range(args.concurrency)
        ]
        hit = args.mode == "hit"
        turns = args.turns

        tool = pb.Tool(
            name="get_weather",
            description="The weather in a city",
            parameters='{"type":"object","properties":{"city":{"type":"string"}}}',
        )

        async def call(worker: int, i: int) -> None:
            if args.mode == "tools":
                # One tool-call round trip: the call, then the tool's result back.
                meta = metas[worker]
                asked = await stub.AskFull(
                    pb.AskRequest(prompt=f"weather {worker}-{i}", tools=[tool], skip_cache=True),
                    metadata=meta,
                    timeout=10,
                )
                (made,) = asked.tool_calls
                result = pb.Message(role="tool", content="sunny", tool_call_id=made.id)
                loop_turns = [
                    pb.Message(role="user", content=f"weather {worker}-{i}"),
                    pb.Message(role="assistant", tool_calls=[made]),
                    result,
                ]
                answer = await stub.AskFull(
                    pb.AskRequest(messages=loop_turns, tools=[tool], skip_cache=True),
                    metadata=meta,
                    timeout=10,
                )
                assert answer.text and not answer.tool_calls
                return
            if args.mode == "conversation":
                # Worker w is one user; every `turns` calls it starts a new thread.
                meta: tuple[tuple[str, str], ...] = (
                    ("x-user-id", f"conv-{args.tag}-{worker}"),
                    ("x-session-id", "s"),
                    ("x-thread-id", f"t{i // turns}"),
                )
                prompt = f"turn {i % turns}: and what about the weather tomorrow, {worker}?"
            else:
                meta = metas[worker]
                prompt = "the same question" if hit else f"question {worker}-{i}"
            reply = await stub.Ask(pb.AskRequest(prompt=prompt), metadata=meta, timeout=10)
            assert reply.text

    if args.kind == "embed":
        call = embed_call(args, stub if args.target == "sidecar" else session)

    async def worker(w: int) -> None:
        nonlocal errors
        for i in itertools.count():
            t0 = time.perf_counter()
            if t0 >= stop_at or (args.calls and i >= args.calls):
                return
            try:
                await call(w, i)
            except Exception:
                errors += 1
                continue
            t1 = time.perf_counter()
            if t0 >= warm_until or args.calls:
                latencies.append((t1 - t0) * 1000)

    start = time.perf_counter()
    warm_until = start + warm
    stop_at = warm_until + args.duration
    cpu_before: list[float] = []

    async def cpu_at_warm_end() -> None:
        # The server's CPU over the measured window only, as its latencies are.
        await asyncio.sleep(0 if args.calls else warm)
        cpu_before.append(cpu_seconds(args.cpu_pid))

    sampler = asyncio.ensure_future(cpu_at_warm_end()) if args.cpu_pid else None
    await asyncio.gather(*(worker(w) for w in range(args.concurrency)))
    seconds = time.perf_counter() - (start if args.calls else warm_until)
    cpu = None
    if sampler is not None:
        await sampler
        cpu = cpu_seconds(args.cpu_pid) - cpu_before[0]
    if args.target in ("direct", "http"):
        await session.close()
    else:
        await channel.close()
    return summary(latencies, errors, seconds, cpu)


def summary(
    latencies: list[float], errors: int, seconds: float, cpu: float | None
) -> dict[str, Any]:
    """One run's figures: counts, rate, latency percentiles (ms), the server's CPU."""
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": seconds,
        "rps": len(latencies) / seconds,
        "p50": percentile(latencies, 0.50),
        "p90": percentile(latencies, 0.90),
        "p99": percentile(latencies, 0.99),
        # The server's CPU (user + system) per answered call, in microseconds.
        "cpu_us": cpu * 1e6 / len(latencies) if cpu is not None and latencies else None,
    }


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def embed_call(args: argparse.Namespace, client: Any) -> Any:
    """One embedding call of ``args.batch`` texts (the same texts each time for hits)."""

    def texts(worker: int, i: int) -> list[str]:
        if args.mode == "hit":
            return [f"the same text {j}, embedded again" for j in range(args.batch)]
        return [f"text {worker}-{i}-{j} of the benchmark" for j in range(args.batch)]

    if args.target == "sidecar":

        async def embed(worker: int, i: int) -> None:
            meta = (("x-user-id", f"bench-user-{worker % args.users}"),)
            request = pb.EmbedRequest(model="e", inputs=texts(worker, i))
            reply = await client.Embed(request, metadata=meta, timeout=10)
            assert len(reply.embeddings) == args.batch

        return embed
    direct = args.target == "direct"
    url = f"http://{args.address}/v1/embeddings"

    async def post(worker: int, i: int) -> None:
        body = {
            "model": "bench-embedding" if direct else "e",
            "input": texts(worker, i),
            "encoding_format": "float" if direct else "base64",
        }
        headers = {
            "Content-Type": "application/json",
            "x-user-id": f"bench-user-{worker % args.users}",
        }
        async with client.post(url, data=json.dumps(body), headers=headers) as r:
            # orjson, the fastest parser there is: the direct row is the floor.
            payload = orjson.loads(await r.read())
            assert len(payload["data"]) == args.batch

    return post


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", choices=["sidecar", "http", "direct", "echo"], required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--mode", choices=["miss", "hit", "conversation", "tools"], default="miss")
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--turns", type=int, default=20, help="conversation: turns per thread")
    parser.add_argument("--calls", type=int, default=0, help="stop each worker after N calls")
    parser.add_argument("--tag", default="run", help="conversation: user id namespace")
    parser.add_argument("--kind", choices=["ask", "embed"], default="ask")
    parser.add_argument("--batch", type=int, default=1, help="embed: texts per call")
    parser.add_argument("--cpu-pid", type=int, default=0, help="a server whose CPU to count")
    parser.add_argument(
        "--prompt-bytes", type=int, default=0, help="http, direct: prose of this size with values"
    )
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
