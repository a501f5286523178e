"""Issue 6: Ask throughput with tracing off vs on (always-on sampling, OTLP to a sink).

Metrics are exported over OTLP in every variant, so the difference is the cost
of tracing alone. Variants alternate over several rounds and the best round of
each is kept, because on a shared 2-core machine neighbours add noise of the
same size as the effect measured.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.harness import (
    bench_provider,
    free_port,
    load,
    process,
    sidecar,
    sidecar_config,
    table,
    upstream,
)

ROUNDS = 2
LOADS = [(1, "miss"), (32, "miss"), (32, "hit")]


@contextmanager
def otlp_sink() -> Iterator[int]:
    port = free_port()
    with process(["-m", "bench.otlp_sink", "--port", str(port)], port):
        yield port


def run(duration: float = 5.0) -> str:
    best: dict[tuple[str, int, str], dict[str, Any]] = {}
    with upstream() as up_port, otlp_sink() as sink_port:
        provider = bench_provider(up_port)
        otlp = {
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
        }
        variants: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
            "off": ({"telemetry": {"tracing": False}}, {**otlp, "OTEL_TRACES_EXPORTER": "none"}),
            "always_on": (
                {},
                {**otlp, "OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "always_on"},
            ),
            "10% sampled": (
                {},
                {
                    **otlp,
                    "OTEL_TRACES_EXPORTER": "otlp",
                    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                    "OTEL_TRACES_SAMPLER_ARG": "0.1",
                },
            ),
        }
        for _ in range(ROUNDS):
            for name, (sections, env) in variants.items():
                with sidecar(sidecar_config([provider], **sections), env=env) as port:
                    for c, mode in LOADS:
                        r = load("sidecar", f"127.0.0.1:{port}", c, duration=duration, mode=mode)
                        key = (name, c, mode)
                        if key not in best or r["rps"] > best[key]["rps"]:
                            best[key] = r
    rows = []
    for c, mode in LOADS:
        off = best[("off", c, mode)]
        for name in variants:
            r = best[(name, c, mode)]
            cost = "" if name == "off" else f"{100 * (1 - r['rps'] / off['rps']):.1f} %"
            rows.append(
                [f"Ask, cache {mode}, tracing {name}", c, r["rps"], cost, r["p50"], r["p99"]]
            )
    return table(
        f"Tracing cost (spans + metrics over OTLP/gRPC to a sink; best of {ROUNDS} rounds)",
        ["call", "conc", "req/s", "throughput cost", "p50 ms", "p99 ms"],
        rows,
    )
