"""Embeddings through the sidecar (gRPC Embed and HTTP /v1/embeddings) vs straight to
the upstream, for one text and for batches of 64, fresh and cached, in one run.

The upstream answers 1536-dimensional vectors (text-embedding-3-small's size) as JSON
numbers; the sidecar parses them once, and answers gRPC in float32 and HTTP in base64
(what the OpenAI SDKs ask for)."""

from __future__ import annotations

from typing import Any

from bench.harness import HTTP_PORTS, bench_provider, load, sidecar, sidecar_config, table, upstream

ROWS = (
    ("direct", "miss", "direct to upstream"),
    ("sidecar", "miss", "sidecar gRPC Embed, fresh texts"),
    ("sidecar", "hit", "sidecar gRPC Embed, cached texts"),
    ("http", "miss", "sidecar HTTP, fresh texts"),
    ("http", "hit", "sidecar HTTP, cached texts"),
)
CASES = ((1, 1), (1, 64), (16, 1), (16, 64))  # (concurrency, texts per call)


def _measure(duration: float) -> dict[tuple[str, str, int, int], dict[str, Any]]:
    results: dict[tuple[str, str, int, int], dict[str, Any]] = {}
    with upstream() as up_port:
        embedding = {"kind": "embedding", "providers": [bench_provider(up_port)]}
        config = sidecar_config([bench_provider(up_port)], models={"e": embedding})
        config["models"]["m"] = {"providers": [bench_provider(up_port)]}
        with sidecar(config) as sc_port:
            addresses = {
                "direct": f"127.0.0.1:{up_port}",
                "sidecar": f"127.0.0.1:{sc_port}",
                "http": f"127.0.0.1:{HTTP_PORTS[sc_port]}",
            }
            for c, batch in CASES:
                for target, mode, _ in ROWS:
                    extra = ("--kind", "embed", "--batch", str(batch))
                    results[(target, mode, c, batch)] = load(
                        target, addresses[target], c, duration=duration, mode=mode, extra=extra
                    )
    return results


def run(duration: float = 5.0) -> str:
    results = _measure(duration)
    rows: list[list[Any]] = []
    for c, batch in CASES:
        direct = results[("direct", "miss", c, batch)]
        for target, mode, label in ROWS:
            r = results[(target, mode, c, batch)]
            added = r["p50"] - direct["p50"] if mode == "miss" and target != "direct" else ""
            texts = r["rps"] * batch
            rows.append([label, c, batch, texts, r["p50"], r["p99"], added, r["errors"]])
    return table(
        "Embeddings: texts per second and latency (1536 dimensions, loopback upstream)",
        ["path", "conc", "batch", "texts/s", "p50 ms", "p99 ms", "added p50 ms", "errors"],
        rows,
    )
