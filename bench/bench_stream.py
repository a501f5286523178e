"""Streams at scale: N concurrent AskStream calls through the sidecar vs the same streams
read directly from the paced upstream, in one run; and 2,000 slow unary calls.

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

from bench.harness import ROOT, bench_provider, free_port, process, sidecar_config, table

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
def sidecar_process(config: dict[str, Any]) -> Iterator[tuple[int, int]]:
    port = free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
    try:
        args = ["-m", "llm_sidecar", "--config", f.name, "--port", str(port)]
        with process(args, port) as proc:
            yield port, proc.pid
    finally:
        os.unlink(f.name)


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


def run(duration: float = 5.0) -> str:
    """The tables. ``duration`` is unused: every stream runs to its end."""
    del duration
    rows: list[list[Any]] = []
    with stream_upstream() as up, sidecar_process(config(up)) as (port, pid):
        load("sidecar", f"127.0.0.1:{port}", 50)  # warm-up: pools, code paths
        for n in SIZES:
            d = load("direct", f"127.0.0.1:{up}", n)
            s = measured(pid, "sidecar", f"127.0.0.1:{port}", n)
            for label, r in (("direct", d), ("sidecar", s)):
                sidecar_row = label == "sidecar"
                rows.append(
                    [
                        n,
                        label,
                        f"{r['ttfc_p50']:.0f} / {r['ttfc_p99']:.0f}",
                        f"{r['gap_p50']:.0f} / {r['gap_p99']:.0f} / {r['gap_max']:.0f}",
                        r["tokens"] / r["seconds"],
                        r["tokens"] / max(r["messages"], 1),
                        f"{r['cpu']:.2f}" if sidecar_row else "-",
                        r["cpu"] * 1e6 / max(r["tokens"], 1) if sidecar_row else "-",
                        f"{r['rss_per_call'] / 1024:.1f}" if sidecar_row else "-",
                        r["errors"],
                    ]
                )
    streams = table(
        "Streams: 50 deltas at 20 ms each, N at once (sidecar vs direct, one run)",
        [
            "N",
            "path",
            "first chunk p50/p99 ms",
            "gap p50/p99/max ms",
            "tokens/s",
            "tokens/msg",
            "sidecar CPU s",
            "µs/token",
            "KiB/stream",
            "errors",
        ],
        rows,
    )
    with (
        stream_upstream("--delay", "2") as up,
        sidecar_process(config(up, max_connections=SLOW_CALLS + 48)) as (port, pid),
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
