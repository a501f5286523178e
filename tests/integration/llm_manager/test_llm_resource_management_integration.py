"""Bounded memory, exact token accounting, limits, monitoring and degradation."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import tracemalloc
import uuid
import warnings
from pathlib import Path
from typing import Any

import grpc
import pytest
from llm_manager.v1 import llm_manager_pb2 as pb
from llm_manager.v1 import llm_manager_pb2_grpc as pb_grpc
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from llm_manager_client import AsyncLLMManagerClient, ResourceExhaustedError, UserContext
from llm_sidecar import Sidecar
from llm_sidecar.core.state.cache import ENTRY_OVERHEAD_BYTES
from llm_sidecar.core.turn.supervisor import read_rss
from llm_sidecar.telemetry.setup import setup_telemetry
from tests.support.sidecar import make_settings, provider
from tests.support.upstream import FakeUpstream
from tests.support.waiting import eventually


async def _sampled(sidecar: Sidecar) -> pb.GetResourceStatusResponse:
    """One tick of the monitor (what its background task does every interval), then
    the status as an operator reads it."""
    sidecar.monitor.sample()
    return await _status(sidecar)


async def _status(sidecar: Sidecar) -> pb.GetResourceStatusResponse:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.port}") as channel:
        stub = pb_grpc.LLMAdminServiceStub(channel)
        return await stub.GetResourceStatus(pb.GetResourceStatusRequest(), timeout=5)


def _client(sidecar: Sidecar, user: str, **ctx) -> AsyncLLMManagerClient:
    return AsyncLLMManagerClient(f"127.0.0.1:{sidecar.port}", UserContext(user, **ctx), timeout=10)


async def test_manager_memory_cleanup_on_shutdown(
    upstream: FakeUpstream, caplog: pytest.LogCaptureFixture, store_settings: dict[str, Any]
) -> None:
    from tests.support.sidecar import start_sidecar

    caplog.set_level(logging.WARNING)
    name = f"cleanup-{uuid.uuid4().hex[:8]}"
    redis = {"redis": {**store_settings["redis"], "client_name": name}} if store_settings else {}
    settings = make_settings(
        [provider("primary", upstream.url)],
        managers={"sweep_interval_seconds": 0.05},
        failover={"health_interval_seconds": 0.05},
        resources={"sample_interval_seconds": 0.05},
        **redis,
    )
    gc.collect()  # what earlier tests in this process left is theirs, not this sidecar's
    caplog.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sidecar = await start_sidecar(settings)
        base = _client(sidecar, "seed")
        await asyncio.gather(
            *(
                base.with_context(UserContext(f"u{i}", session_id="s")).ask(f"q{i}")
                for i in range(300)
            )
        )
        await base.close()
        assert len(sidecar.registry) == 300 and sidecar.budget.entries == 300
        start = time.perf_counter()
        await sidecar.stop(grace=0.5)
        elapsed = time.perf_counter() - start
        gc.collect()
    assert elapsed < 1.0
    assert len(sidecar.registry) == 0 and sidecar.budget.entries == 0 and sidecar.budget.bytes == 0
    assert sidecar.pools.closed
    assert sidecar.background_tasks == 0
    unclosed = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == []
    assert not [r for r in caplog.records if "nclosed" in r.getMessage()]
    if store_settings:  # Redis: the server sees none of this sidecar's connections left
        import redis.asyncio as aioredis

        admin = aioredis.from_url(store_settings["redis"]["url"])
        try:
            clients = await admin.client_list()
        finally:
            await admin.aclose()
        assert [c for c in clients if c.get("name") == name] == []


async def test_cache_memory_limits_and_eviction(upstream: FakeUpstream, sidecar_factory) -> None:
    settings = make_settings(
        [provider("primary", upstream.url)],
        cache={"max_entries_per_user": 5, "global_max_bytes": 30 * (ENTRY_OVERHEAD_BYTES + 200)},
    )
    sidecar = await sidecar_factory(settings)
    async with _client(sidecar, "alice") as alice:
        for i in range(8):
            await alice.ask(f"prompt {i}")
        assert [await alice.is_cached(f"prompt {i}") for i in range(8)] == [False] * 3 + [True] * 5
        await alice.ask("prompt 3")  # touch: now most recently used
        await alice.ask("prompt 8")
        assert await alice.is_cached("prompt 3") and not await alice.is_cached("prompt 4")
    # The global budget holds however many users arrive, evicting the least recently used first.
    for u in range(12):
        async with _client(sidecar, f"user-{u}") as client:
            for i in range(5):
                await client.ask(f"u{u} p{i}")
        assert sidecar.budget.bytes <= sidecar.budget.max_bytes
    assert sidecar.budget.evictions > 0
    alice_manager = sidecar.registry.get("alice")
    assert alice_manager is not None and len(alice_manager.cache) == 0  # oldest user went first
    newest = sidecar.registry.get("user-11")
    assert newest is not None and len(newest.cache) == 5
    total = sum(m.cache.bytes for m in sidecar.registry)
    assert total == sidecar.budget.bytes
    # One entry bigger than a user's byte limit is simply not cached.
    small = await sidecar_factory(
        make_settings(
            [provider("primary", upstream.url)],
            cache={"max_bytes_per_user": ENTRY_OVERHEAD_BYTES + 300},
        )
    )
    async with _client(small, "bob") as bob:
        await bob.ask("x" * 2000)
        assert not await bob.is_cached("x" * 2000)


async def test_concurrent_resource_usage_safety(upstream: FakeUpstream, sidecar_factory) -> None:
    upstream.latency = 0.2
    settings = make_settings(
        [provider("primary", upstream.url)], limits={"max_concurrent_per_user": 2}
    )
    sidecar = await sidecar_factory(settings)
    greedy = _client(sidecar, "greedy")
    others = [_client(sidecar, f"calm-{i}") for i in range(20)]
    results = await asyncio.gather(
        *(greedy.ask(f"greedy {i}", skip_cache=True) for i in range(10)),
        *(c.ask("calm question") for c in others),
        return_exceptions=True,
    )
    greedy_results, calm_results = results[:10], results[10:]
    refused = [r for r in greedy_results if isinstance(r, ResourceExhaustedError)]
    assert len(refused) == 8 and all(r.retry_after is not None for r in refused)
    assert all(isinstance(r, str) for r in calm_results)  # other users were unaffected
    assert sidecar.registry.in_flight == 0
    assert all(m.limiter.in_flight == 0 for m in sidecar.registry)
    for client in [greedy, *others]:
        await client.close()


async def test_token_usage_tracking_accuracy(
    upstream_factory, sidecar_factory, store_settings
) -> None:
    primary = await upstream_factory("primary")
    fallback = await upstream_factory("fallback")
    settings = make_settings(
        [provider("primary", primary.url), provider("fallback", fallback.url)],
        failover={"failure_threshold": 1000},
        **store_settings,
    )
    sidecar = await sidecar_factory(settings)
    primary.mode, primary.fail_when = "error", "FAILOVER"

    async def user_session(user: str, session: str) -> None:
        async with _client(sidecar, user, session_id=session) as c:
            await c.ask(f"{user} {session} one")
            await c.ask(f"{user} {session} FAILOVER two")
            await c.ask(f"{user} {session} cached", skip_history=True)
            await c.ask(f"{user} {session} cached", skip_history=True)  # a hit: zero tokens
            _ = [x async for x in c.ask_stream(f"{user} {session} streamed")]

    users = [f"user-{i}" for i in range(8)]
    await asyncio.gather(*(user_session(u, s) for u in users for s in ("s1", "s2")))

    for user in users:
        async with _client(sidecar, user) as c:
            report = await c.get_usage()
            s1 = await c.get_usage(session_id="s1")
        reported = [
            (up.name, up.usage(r.body, up.answer_text(r.body)))
            for up in (primary, fallback)
            for r in up.chat_requests
            if r.last_user.startswith(f"{user} ")
            and not (up is primary and "FAILOVER" in r.last_user)
        ]
        assert report.total.prompt_tokens == sum(u["prompt_tokens"] for _, u in reported)
        assert report.total.completion_tokens == sum(u["completion_tokens"] for _, u in reported)
        assert report.total.total_tokens == sum(u["total_tokens"] for _, u in reported)
        assert report.total.requests == 10 and report.total.cache_hits == 2
        assert report.total.estimated_requests == 0
        by_provider = {}
        for row in report.rows:
            by_provider[row.provider] = by_provider.get(row.provider, 0) + row.requests
        assert by_provider == {"primary": 8, "fallback": 2}
        assert {r.session_id for r in s1.rows} == {"s1"} and s1.total.requests == 5
    # A provider that reports no usage is estimated, and marked as such.
    primary.mode, primary.report_usage = "healthy", False
    async with _client(sidecar, "estimator") as c:
        meta = (await c.ask_full("please estimate me")).metadata
        report = await c.get_usage()
    assert meta.usage.estimated and meta.usage.total_tokens > 0
    assert (
        report.total.estimated_requests == 1
        and report.total.total_tokens == meta.usage.total_tokens
    )


async def test_cache_ttl_and_expiration_cleanup(upstream: FakeUpstream, sidecar_factory) -> None:
    settings = make_settings(
        [provider("primary", upstream.url)],
        cache={"ttl_seconds": 0.3},
        managers={"sweep_interval_seconds": 0.05},
    )
    sidecar = await sidecar_factory(settings)
    async with _client(sidecar, "alice") as alice:
        await alice.ask("short-lived")
        assert await alice.is_cached("short-lived")
        assert (await alice.ask_full("short-lived")).metadata.cached
        # Swept in the background: gone from the accounting without any access.
        await eventually(lambda: sidecar.budget.entries == 0, what="the entry swept")
        assert sidecar.budget.bytes == 0
        assert not await alice.is_cached("short-lived")
        assert not (await alice.ask_full("short-lived")).metadata.cached
    assert len(upstream.chat_requests) == 2
    # Idle managers go too.
    idle = await sidecar_factory(
        make_settings(
            [provider("primary", upstream.url)],
            managers={"idle_ttl_seconds": 0.2, "sweep_interval_seconds": 0.05},
        )
    )
    async with _client(idle, "sleepy") as sleepy:
        await sleepy.ask("hi")
        assert idle.registry.get("sleepy") is not None
        await eventually(lambda: idle.registry.get("sleepy") is None, what="idle eviction")
        assert idle.registry.evicted == 1


def _budget_settings(upstream: FakeUpstream, **extra):
    entry = ENTRY_OVERHEAD_BYTES + 160
    return make_settings(
        [provider("primary", upstream.url)],
        cache={"global_max_bytes": 100 * entry},
        resources={
            "cache_warning_ratio": 0.3,
            "cache_critical_ratio": 0.8,
            "rss_warning_bytes": 0,
            "rss_critical_bytes": 0,
            "degraded_keep_fraction": 0.25,
            "degraded_keep_turns": 1,
        },
        **extra,
    )


async def test_resource_monitoring_and_alerting(
    upstream: FakeUpstream, sidecar_factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = _budget_settings(upstream)
    reader = InMemoryMetricReader()
    sidecar = await sidecar_factory(
        settings, telemetry=setup_telemetry(settings.telemetry, metric_readers=[reader])
    )
    status = await _status(sidecar)
    assert status.mode == "normal" and status.rss_bytes > 0 and list(status.alerts) == []
    async with _client(sidecar, "alice") as alice:
        for i in range(40):
            await alice.ask(f"fill {i:03d}")
    # Reading the status changes nothing: fresh figures, but no alert and no new mode
    # until the monitor samples.
    status = await _status(sidecar)
    assert status.cache_entries == 40 and status.mode == "normal" and list(status.alerts) == []
    assert not [r for r in caplog.records if r.getMessage() == "resource alert"]
    status = await _sampled(sidecar)
    assert status.mode == "warning"
    assert status.managers == 1 and status.cache_entries == 40
    assert status.cache_bytes == sidecar.budget.bytes
    assert any(a.startswith("cache_bytes") and "warning" in a for a in status.alerts)
    assert any(
        r.getMessage() == "resource alert" and getattr(r, "level", "") == "warning"
        for r in caplog.records
    )
    points = [
        (dict(p.attributes), p.value)
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "llm_sidecar.resource.alerts"
        for p in m.data.data_points
    ]
    assert points == [({"level": "warning", "resource": "cache_bytes"}, 1)]
    managers_gauge = [
        p.value
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "llm_sidecar.managers.active"
        for p in m.data.data_points
    ]
    assert managers_gauge == [1]
    status_lines = Path("/proc/self/status").read_text().splitlines()
    vm_rss = next(int(line.split()[1]) * 1024 for line in status_lines if line[:6] == "VmRSS:")
    assert abs(read_rss() - vm_rss) < 8 * 1024 * 1024


async def test_graceful_degradation_under_resource_pressure(
    upstream: FakeUpstream, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(_budget_settings(upstream))
    alice = _client(sidecar, "alice", session_id="s")
    bob = _client(sidecar, "bob")
    for i in range(4):
        await alice.ask(f"alice turn {i}")
    # Fill until the byte budget crosses its critical ratio (80 % of about 100
    # entries); answers vary a little in size, so count rather than assume.
    fills = 0
    while (await _sampled(sidecar)).mode != "degraded" and fills < 120:
        await bob.ask(f"bob fill {fills:03d}")
        fills += 1
    assert 70 <= fills < 120
    # Caches and histories were trimmed.
    bob_manager = sidecar.registry.get("bob")
    assert bob_manager is not None and len(bob_manager.cache) <= fills // 4 + 1
    assert len((await alice.get_conversation()).messages) == 2
    # New users are refused before anything is refused to existing ones.
    newcomer = _client(sidecar, "newcomer")
    with pytest.raises(ResourceExhaustedError) as info:
        await newcomer.ask("let me in")
    assert info.value.retry_after is not None
    answer = await alice.ask_full("still served")
    assert not answer.metadata.cached
    assert not await alice.is_cached("still served", skip_history=True)  # no new cache entries
    # Pressure falls: the sidecar recovers by itself.
    await bob.release_manager()
    assert (await _sampled(sidecar)).mode == "normal"
    assert await newcomer.ask("now?")
    await alice.ask("cache me again", skip_history=True)
    assert await alice.is_cached("cache me again", skip_history=True)
    for client in (alice, bob, newcomer):
        await client.close()


async def test_memory_is_returned_across_user_cycles(
    upstream: FakeUpstream, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(make_settings([provider("primary", upstream.url)]))
    base = _client(sidecar, "seed")

    async def cycle(n: int) -> None:
        sem = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with sem:
                c = base.with_context(UserContext(f"cycle-user-{i}", session_id="s"))
                await c.ask(f"question {i} " * 20)
                await c.release_manager()

        await asyncio.gather(*(one(i) for i in range(n)))
        upstream.requests.clear()

    await cycle(500)  # warm-up: pools, interned strings, allocator arenas
    gc.collect()
    tracemalloc.start()
    rss_before = read_rss()
    before = tracemalloc.take_snapshot()
    await cycle(1000)
    gc.collect()
    after = tracemalloc.take_snapshot()
    rss_after = read_rss()
    tracemalloc.stop()
    growth = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert len(sidecar.registry) == 0 and sidecar.budget.bytes == 0
    assert growth < 50 * 1024 * 1024, growth
    assert rss_after - rss_before < 50 * 1024 * 1024
    await base.close()
