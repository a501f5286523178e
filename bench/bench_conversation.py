"""Issue 3: 20-turn conversations for 100 concurrent users; throughput, p99, memory per thread."""

from __future__ import annotations

from typing import Any

from bench.harness import (
    bench_provider,
    load,
    sidecar,
    sidecar_config,
    sidecar_status,
    table,
    upstream,
)

USERS = 100
TURNS = 20
# Threads measured for memory: enough that allocator noise is small beside them,
# made by the same 100 concurrent callers (5 threads each) so that transport
# buffers sized by concurrency are already counted in the "before" figure.
MEMORY_THREADS = 500


def conversation_rows(
    config_sections: dict[str, Any],
    label: str,
    duration: float,
    concurrency: int = USERS,
    *,
    memory: bool = True,
    tag: str = "",
) -> tuple[list[Any], dict[str, Any]]:
    """Throughput row plus memory figures for one sidecar configuration."""
    with upstream() as up_port:
        provider = bench_provider(up_port)
        config = sidecar_config([provider], **config_sections)
        with sidecar(config) as port:
            address = f"127.0.0.1:{port}"
            turns = ["--turns", str(TURNS)]
            r = load(
                "sidecar",
                address,
                concurrency,
                duration=duration,
                mode="conversation",
                extra=[*turns, "--tag", f"tput{tag}"],
            )
            if not memory:
                return [label, concurrency, r["rps"], r["p50"], r["p99"], r["errors"]], {}
            before = sidecar_status(port)
            load(
                "sidecar",
                address,
                concurrency,
                duration=600,
                mode="conversation",
                extra=[
                    *turns,
                    "--tag",
                    "mem",
                    "--calls",
                    str(TURNS * MEMORY_THREADS // concurrency),
                    "--warmup",
                    "0",
                ],
            )
            after = sidecar_status(port)
    row = [label, concurrency, r["rps"], r["p50"], r["p99"], r["errors"]]
    memory = {
        "rss_per_thread": (after.rss_bytes - before.rss_bytes) / MEMORY_THREADS,
        "cache_per_thread": (after.cache_bytes - before.cache_bytes) / MEMORY_THREADS,
    }
    return row, memory


def run(duration: float = 5.0) -> str:
    row, memory = conversation_rows({}, "in-memory store", duration)
    throughput = table(
        f"Conversations: {USERS} users, {TURNS}-turn threads (each turn sends the history)",
        ["store", "conc", "turns/s", "p50 ms", "p99 ms", "errors"],
        [row],
    )
    per_thread = table(
        f"Server memory per active {TURNS}-turn thread ({MEMORY_THREADS} threads measured)",
        ["figure", "KiB per thread"],
        [
            ["RSS growth (history + cached turns + manager)", memory["rss_per_thread"] / 1024],
            [
                "  of which cached answers, as the cache budget counts",
                memory["cache_per_thread"] / 1024,
            ],
        ],
    )
    return throughput + "\n" + per_thread
