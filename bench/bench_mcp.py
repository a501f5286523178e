"""MCP tools/call on a trivial tool: straight to the MCP server (one written with the
official SDK, as most are) against through the sidecar's gateway, at c=1 and c=32, in
one run, with each answering process's CPU per call."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from bench.harness import HTTP_PORTS, PIDS, ROOT, free_port, server, sidecar, sidecar_config, table


def _load(url: str, pid: int, concurrency: int, duration: float, tool: str, tag: str) -> Any:
    args = ["--url", url, "--tool", tool, "--concurrency", str(concurrency)]
    args += ["--duration", str(duration), "--cpu-pid", str(pid), "--tag", tag]
    out = subprocess.run(
        [sys.executable, "-m", "bench.mcp_load", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _measure(duration: float) -> dict[tuple[str, int], dict[str, Any]]:
    results: dict[tuple[str, int], dict[str, Any]] = {}
    port = free_port()
    with server(["-m", "tests.support.mcp_upstream", "--port", str(port)], port) as up:
        direct = f"http://127.0.0.1:{up}/mcp"
        entry = {"name": "bench", "url": direct, "timeout_seconds": 30}
        config = sidecar_config([{"name": "sim", "kind": "simulated"}], mcp={"servers": [entry]})
        with sidecar(config) as sc:
            gateway = f"http://127.0.0.1:{HTTP_PORTS[sc]}/mcp"
            for c in (1, 32):
                results[("direct", c)] = _load(direct, PIDS[up], c, duration, "echo", f"d{c}")
                results[("gateway", c)] = _load(
                    gateway, PIDS[sc], c, duration, "bench__echo", f"g{c}"
                )
                results[("upstream", c)] = {"cpu_us": None}
    return results


def run(duration: float = 5.0) -> str:
    results = _measure(duration)
    rows: list[list[Any]] = []
    for c in (1, 32):
        direct, gateway = results[("direct", c)], results[("gateway", c)]
        for label, r in (("direct to the MCP server", direct), ("through the gateway", gateway)):
            added = r["p50"] - direct["p50"] if r is gateway else ""
            rows.append([label, c, r["rps"], r["p50"], r["p99"], added, r["cpu_us"], r["errors"]])
        rows.append(
            [f"  gateway / direct throughput (c={c})", c, gateway["rps"] / direct["rps"]] + [""] * 5
        )
    return table(
        "MCP tools/call of a trivial tool (echo), each worker one user with its own session; "
        "CPU is the answering process's: the MCP server's on the direct rows, the sidecar's "
        "(gateway alone, the MCP server behind it not counted) on the gateway rows",
        ["path", "conc", "calls/s", "p50 ms", "p99 ms", "added p50 ms", "CPU us/call", "errors"],
        rows,
    )
