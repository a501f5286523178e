"""Issue 4: time from a primary failure to a successful answer."""

from __future__ import annotations

import time

import grpc
from llm_manager.v1 import llm_manager_pb2 as pb
from llm_manager.v1 import llm_manager_pb2_grpc as pb_grpc

from bench.harness import free_port, load, sidecar, sidecar_config, table, upstream

ATTEMPT_TIMEOUT = 0.25


def _first_request_ms(port: int) -> tuple[float, str]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.LLMManagerServiceStub(channel)
        start = time.perf_counter()
        reply = stub.AskFull(
            pb.AskRequest(prompt="first"), metadata=(("x-user-id", "bench"),), timeout=10
        )
        return (time.perf_counter() - start) * 1000, reply.metadata.provider


def run(duration: float = 5.0) -> str:
    rows = []
    with upstream() as fb_port, upstream("hang") as hang_port:
        fallback = {
            "name": "fallback",
            "base_url": f"http://127.0.0.1:{fb_port}/v1",
            "no_api_key": True,
            "model": "bench-model",
            "probe": "none",
        }
        with sidecar(sidecar_config([fallback])) as port:
            _first_request_ms(port)
            base = load("sidecar", f"127.0.0.1:{port}", 1, duration=duration)
        rows.append(["fallback only (baseline)", "-", "", base["p50"], base["p99"], ""])
        primaries = {
            "hanging": f"http://127.0.0.1:{hang_port}/v1",
            "refusing connections": f"http://127.0.0.1:{free_port()}/v1",
        }
        for label, url in primaries.items():
            primary = {
                "name": "primary",
                "base_url": url,
                "no_api_key": True,
                "model": "bench-model",
                "probe": "none",
                "timeout_seconds": ATTEMPT_TIMEOUT,
            }
            config = sidecar_config(
                [primary, fallback], failover={"failure_threshold": 1, "cooldown_seconds": 3600}
            )
            with sidecar(config) as port:
                first_ms, answered_by = _first_request_ms(port)
                steady = load("sidecar", f"127.0.0.1:{port}", 1, duration=duration)
            rows.append([f"primary {label}: first request", answered_by, first_ms, "", "", ""])
            rows.append(
                [
                    f"primary {label}: circuit open",
                    "fallback",
                    "",
                    steady["p50"],
                    steady["p99"],
                    steady["p50"] - base["p50"],
                ]
            )
    return table(
        f"Failover timings (per-attempt timeout {ATTEMPT_TIMEOUT * 1000:.0f} ms, budget 5 s)",
        ["scenario", "answered by", "first ms", "p50 ms", "p99 ms", "added p50 ms"],
        rows,
    )
