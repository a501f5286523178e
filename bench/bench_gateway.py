"""Issue 2: Ask through the sidecar vs straight to the upstream, and cache hits vs a bare echo."""

from __future__ import annotations

from bench.harness import (
    bench_provider,
    echo_server,
    load,
    sidecar,
    sidecar_config,
    table,
    upstream,
)


def run(duration: float = 5.0) -> str:
    rows = []
    with upstream() as up_port:
        provider = bench_provider(up_port)
        with sidecar(sidecar_config([provider])) as sc_port:
            results = {}
            for c in (1, 32):
                results[("direct", c)] = load(
                    "direct", f"127.0.0.1:{up_port}", c, duration=duration
                )
                results[("miss", c)] = load("sidecar", f"127.0.0.1:{sc_port}", c, duration=duration)
                results[("hit", c)] = load(
                    "sidecar", f"127.0.0.1:{sc_port}", c, duration=duration, mode="hit"
                )
                results[("tools", c)] = load(
                    "sidecar", f"127.0.0.1:{sc_port}", c, duration=duration, mode="tools"
                )
        with echo_server() as echo_port:
            for c in (1, 32):
                results[("echo", c)] = load(
                    "sidecar", f"127.0.0.1:{echo_port}", c, duration=duration, mode="hit"
                )
    for c in (1, 32):
        direct = results[("direct", c)]
        for kind, label in (
            ("direct", "direct to upstream"),
            ("miss", "sidecar, cache miss"),
            ("hit", "sidecar, cache hit"),
            ("tools", "sidecar, tool-call round trip (2 calls)"),
            ("echo", "bare grpc.aio echo"),
        ):
            r = results[(kind, c)]
            added = r["p50"] - direct["p50"] if kind == "miss" else float("nan")
            rows.append(
                [
                    label,
                    c,
                    r["rps"],
                    r["p50"],
                    r["p99"],
                    added if kind == "miss" else "",
                    r["errors"],
                ]
            )
        hit, echo = results[("hit", c)], results[("echo", c)]
        rows.append([f"  hit/echo p50 ratio (c={c})", c, "", hit["p50"] / echo["p50"], "", "", ""])
    return table(
        "Ask latency and throughput (loopback upstream)",
        ["path", "conc", "req/s", "p50 ms", "p99 ms", "added p50 ms", "errors"],
        rows,
    )
