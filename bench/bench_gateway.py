"""Ask through the sidecar (gRPC and HTTP) vs straight to the upstream and vs the floor
of each path (a bare aiohttp.web relay passing the same JSON through; a bare grpc.aio
echo for cache hits), in one run, with each server's CPU per call; then Embed rows
(bench_embeddings) the same way."""

from __future__ import annotations

from typing import Any

from bench import bench_embeddings
from bench.harness import (
    HTTP_PORTS,
    bench_provider,
    echo_server,
    load,
    relay,
    sidecar,
    sidecar_config,
    table,
    upstream,
)

ROWS = (
    ("direct", "direct to upstream"),
    ("miss", "sidecar gRPC, cache miss"),
    ("hit", "sidecar gRPC, cache hit"),
    ("http-miss", "sidecar HTTP, cache miss"),
    ("http-hit", "sidecar HTTP, cache hit"),
    ("tools", "sidecar gRPC, tool-call round trip (2 calls)"),
    ("relay", "floor: bare aiohttp relay, JSON through"),
    ("echo", "floor: bare grpc.aio echo"),
)


def _measure(duration: float) -> dict[tuple[str, int], dict[str, Any]]:
    results: dict[tuple[str, int], dict[str, Any]] = {}
    with upstream() as up_port:
        with sidecar(sidecar_config([bench_provider(up_port)])) as sc_port:
            grpc_address = f"127.0.0.1:{sc_port}"
            http_address = f"127.0.0.1:{HTTP_PORTS[sc_port]}"
            for c in (1, 32):
                results[("direct", c)] = load(
                    "direct", f"127.0.0.1:{up_port}", c, duration=duration
                )
                for mode in ("miss", "hit"):
                    results[(mode, c)] = load(
                        "sidecar", grpc_address, c, duration=duration, mode=mode
                    )
                    results[(f"http-{mode}", c)] = load(
                        "http", http_address, c, duration=duration, mode=mode
                    )
                results[("tools", c)] = load(
                    "sidecar", grpc_address, c, duration=duration, mode="tools"
                )
        with relay("aiohttp-json", up_port) as relay_port:
            for c in (1, 32):
                results[("relay", c)] = load(
                    "http", f"127.0.0.1:{relay_port}", c, duration=duration, mode="miss"
                )
        with echo_server() as echo_port:
            for c in (1, 32):
                results[("echo", c)] = load(
                    "sidecar", f"127.0.0.1:{echo_port}", c, duration=duration, mode="hit"
                )
    return results


def run(duration: float = 5.0) -> str:
    results = _measure(duration)
    rows: list[list[Any]] = []
    for c in (1, 32):
        direct = results[("direct", c)]
        for kind, label in ROWS:
            r = results[(kind, c)]
            added = r["p50"] - direct["p50"] if kind in ("miss", "http-miss") else ""
            cpu = r["cpu_us"] if r["cpu_us"] is not None else ""
            rows.append([label, c, r["rps"], r["p50"], r["p99"], added, cpu, r["errors"]])
        rows += _ratios(results, c)
    ask = table(
        "Ask latency, throughput and server CPU per call (loopback upstream; HTTP is "
        "/v1/chat/completions; CPU is the answering process's: the upstream's on the direct "
        "row, the sidecar's, or the floor's)",
        ["path", "conc", "req/s", "p50 ms", "p99 ms", "added p50 ms", "CPU us/call", "errors"],
        rows,
    )
    # The other kind of call through the same gateway: Embed rows beside their direct path.
    return ask + "\n" + bench_embeddings.run(duration)


def _ratios(results: dict[tuple[str, int], dict[str, Any]], c: int) -> list[list[Any]]:
    hit, echo = results[("hit", c)], results[("echo", c)]
    http, grpc, floor = results[("http-miss", c)], results[("miss", c)], results[("relay", c)]
    cpu = http["cpu_us"] / floor["cpu_us"] if http["cpu_us"] and floor["cpu_us"] else ""
    return [
        [f"  gRPC hit/echo p50 ratio (c={c})", c, "", hit["p50"] / echo["p50"], "", "", "", ""],
        [f"  HTTP/gRPC miss throughput (c={c})", c, http["rps"] / grpc["rps"], "", "", "", "", ""],
        [f"  HTTP miss / floor, CPU per call (c={c})", c, "", "", "", "", cpu, ""],
    ]
