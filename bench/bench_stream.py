"""Streams at scale: N concurrent streams through the sidecar (gRPC AskStream and HTTP
SSE) vs the same streams read directly from the paced upstream and through the two
floors (bare aiohttp and grpc.aio relays), in one run; and 2,000 slow unary calls.

The upstream paces 50 deltas at 20 ms per stream. Per N: time to first chunk,
gaps between chunks, tokens/s, the sidecar's CPU time (µs per delivered
token) and its RSS per open stream.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.harness import (
    ROOT,
    bench_provider,
    free_port,
    process,
    sidecar_config,
    table,
    wait_port,
)

TICK = os.sysconf("SC_CLK_TCK")
SIZES = (100, 500, 1000)
SLOW_CALLS = 2000


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


@contextmanager
def stream_upstream(*extra: str) -> Iterator[int]:
    port = free_port()
    with process(["-m", "bench.stream_upstream", "--port", str(port), *extra], port):
        yield port


@contextmanager
def sidecar_process(config: dict[str, Any]) -> Iterator[tuple[int, int, int]]:
    """A sidecar: (gRPC port, HTTP port, pid)."""
    port, http_port = free_port(), free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({**config, "http": {"port": http_port}}, f)
    try:
        args = ["-m", "llm_sidecar", "--config", f.name, "--port", str(port)]
        with process(args, port) as proc:
            wait_port(http_port)
            yield port, http_port, proc.pid
    finally:
        os.unlink(f.name)


@contextmanager
def relay(kind: str, upstream: int) -> Iterator[tuple[int, int]]:
    """A bare relay (bench.relays) of the upstream: (port, pid)."""
    port = free_port()
    args = ["-m", "bench.relays", "--kind", kind, "--port", str(port)]
    with process([*args, "--upstream", f"127.0.0.1:{upstream}"], port) as proc:
        yield port, proc.pid


def load(target: str, address: str, n: int, *extra: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.stream_load", "--target", target, "--address"]
    out = subprocess.run(
        [*command, address, "-n", str(n), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def measured(pid: int, target: str, address: str, n: int, *extra: str) -> dict[str, Any]:
    """A load run with the sidecar's CPU time and its peak RSS during the run."""
    peak = [rss_bytes(pid)]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], rss_bytes(pid))

    idle = rss_bytes(pid)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cpu = cpu_seconds(pid)
    result = load(target, address, n, *extra)
    result["cpu"] = cpu_seconds(pid) - cpu
    done.set()
    sampler.join()
    result["rss_per_call"] = (peak[0] - idle) / n
    return result


def config(port: int, **provider: Any) -> dict[str, Any]:
    return sidecar_config(
        [{**bench_provider(port), "timeout_seconds": 60, **provider}],
        cache={"enabled": False},
        managers={"max_managers": 20_000},
    )


PATHS = ("direct", "sidecar gRPC", "sidecar HTTP", "aiohttp floor", "grpc.aio floor")


def _runs(
    n: int, up: int, sc: tuple[int, int, int], relays: dict[str, tuple[int, int]]
) -> dict[str, dict[str, Any]]:
    port, http_port, pid = sc
    aio_port, aio_pid = relays["aiohttp"]
    grpc_port, grpc_pid = relays["grpc"]
    return {
        "direct": load("direct", f"127.0.0.1:{up}", n),
        "sidecar gRPC": measured(pid, "sidecar", f"127.0.0.1:{port}", n),
        "sidecar HTTP": measured(pid, "http", f"127.0.0.1:{http_port}", n),
        "aiohttp floor": measured(aio_pid, "aiohttp-relay", f"127.0.0.1:{aio_port}", n),
        "grpc.aio floor": measured(grpc_pid, "grpc-relay", f"127.0.0.1:{grpc_port}", n),
    }


def _row(n: int, label: str, r: dict[str, Any]) -> list[Any]:
    relayed = label != "direct"
    return [
        n,
        label,
        f"{r['ttfc_p50']:.0f} / {r['ttfc_p99']:.0f}",
        f"{r['gap_p50']:.0f} / {r['gap_p99']:.0f} / {r['gap_max']:.0f}",
        r["tokens"] / r["seconds"],
        r["tokens"] / max(r["messages"], 1),
        f"{r['cpu']:.2f}" if relayed else "-",
        r["cpu"] * 1e6 / max(r["tokens"], 1) if relayed else "-",
        f"{r['rss_per_call'] / 1024:.1f}" if relayed else "-",
        r["errors"],
    ]


def _ratios(n: int, runs: dict[str, dict[str, Any]]) -> list[list[Any]]:
    """Each sidecar path against its floor: CPU per delta, first chunk p99, gap p99."""
    out = []
    for path, floor in (("sidecar gRPC", "grpc.aio floor"), ("sidecar HTTP", "aiohttp floor")):
        mine, base = runs[path], runs[floor]
        cpu = (mine["cpu"] / max(mine["tokens"], 1)) / max(
            base["cpu"] / max(base["tokens"], 1), 1e-9
        )
        out.append(
            [
                n,
                f"{path} / {floor}",
                cpu,
                mine["ttfc_p99"] / max(base["ttfc_p99"], 1e-9),
                mine["gap_p99"] / max(base["gap_p99"], 1e-9),
                mine["ttfc_p99"] - runs["direct"]["ttfc_p99"],
            ]
        )
    return out


def _streams() -> str:
    rows: list[list[Any]] = []
    ratios: list[list[Any]] = []
    with (
        stream_upstream() as up,
        sidecar_process(config(up)) as sc,
        relay("aiohttp", up) as aio,
        relay("grpc", up) as grpc_relay,
    ):
        load("sidecar", f"127.0.0.1:{sc[0]}", 50)  # warm-up: pools, code paths
        load("http", f"127.0.0.1:{sc[1]}", 50)
        for n in SIZES:
            runs = _runs(n, up, sc, {"aiohttp": aio, "grpc": grpc_relay})
            rows += [_row(n, label, runs[label]) for label in PATHS]
            ratios += _ratios(n, runs)
    streams = table(
        "Streams: 50 deltas at 20 ms each, N at once (every path, one run)",
        [
            "N",
            "path",
            "first chunk p50/p99 ms",
            "gap p50/p99/max ms",
            "tokens/s",
            "tokens/msg",
            "CPU s",
            "µs/token",
            "KiB/stream",
            "errors",
        ],
        rows,
    )
    return (
        streams
        + "\n"
        + table(
            "Each sidecar path against its floor (the bare relay of the same upstream, same run)",
            [
                "N",
                "path / floor",
                "CPU/delta ratio",
                "first chunk p99 ratio",
                "gap p99 ratio",
                "first chunk p99 - direct ms",
            ],
            ratios,
        )
    )


def run(duration: float = 5.0) -> str:
    """The tables. ``duration`` is unused: every stream runs to its end."""
    del duration
    streams = _streams()
    with (
        stream_upstream("--delay", "2") as up,
        sidecar_process(config(up, max_connections=SLOW_CALLS + 48)) as (port, _, pid),
    ):
        r = measured(pid, "sidecar", f"127.0.0.1:{port}", SLOW_CALLS, "--unary")
    slow = table(
        f"{SLOW_CALLS} concurrent Ask calls, upstream answers after 2 s",
        ["calls", "all done s", "p50 ms", "p99 ms", "KiB RSS/call", "sidecar CPU s", "errors"],
        [
            [
                SLOW_CALLS,
                r["seconds"],
                r["p50"],
                r["p99"],
                r["rss_per_call"] / 1024,
                r["cpu"],
                r["errors"],
            ]
        ],
    )
    return streams + "\n" + slow
