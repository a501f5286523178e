"""Cost, budgets and quotas, checked through the wire against real upstreams, in memory,
on one Redis and on a three-master Redis Cluster (the store-parametrized tests), and
across three sidecar processes sharing one Redis (the race)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from llm_manager_client import (
    AsyncLLMManagerClient,
    LLMManagerError,
    ResourceExhaustedError,
    Tool,
    UnavailableError,
    UserContext,
)
from llm_sidecar.config import RedisSettings
from llm_sidecar.core.state.quota_store import Claim, MemoryQuotaLedger
from llm_sidecar.stores.redis import RedisBackend
from llm_sidecar.stores.redis.keys import UserKeys
from llm_sidecar.stores.redis.quotas import RedisUserQuota
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_helpers import SHARED_STATE, health_of, resource_status
from tests.support.redis_server import RedisServer
from tests.support.sidecar import (
    SidecarProcess,
    free_port,
    make_settings,
    provider,
    write_process_config,
)
from tests.support.upstream import FakeUpstream
from tests.support.waiting import eventually

# USD per million tokens, with fractions, so rounding and every class show.
PRICE = {
    "input": "2.5",
    "cached_input": "1.25",
    "cache_write_input": "3.75",
    "output": "10",
    "reasoning": "12.5",
}


def expected_cost(usage: Any, price: dict[str, str] = PRICE) -> int:
    """Price times usage, class by class, rounded half up once (the README's rule)."""
    p = {k: Decimal(v) for k, v in price.items()}
    plain_in = usage.prompt_tokens - usage.cached_input_tokens - usage.cache_write_input_tokens
    plain_out = usage.completion_tokens - usage.reasoning_tokens
    exact = (
        plain_in * p["input"]
        + usage.cached_input_tokens * p["cached_input"]
        + usage.cache_write_input_tokens * p["cache_write_input"]
        + plain_out * p["output"]
        + usage.reasoning_tokens * p["reasoning"]
    )
    return int(exact.to_integral_value(ROUND_HALF_UP))


def client(port: int, user: str, **ctx: Any) -> AsyncLLMManagerClient:
    return AsyncLLMManagerClient(f"127.0.0.1:{port}", UserContext(user, **ctx), timeout=10)


async def wait_for_window_start(length: float, room: float) -> None:
    """Sleep until a fixed window of ``length`` seconds has at least ``room`` left."""
    into = time.time() % length
    if length - into < room:
        await asyncio.sleep(length - into + 0.01)


# -- cost -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_cost_is_price_times_usage_in_every_token_class(
    kind: str, store_settings: dict[str, Any], upstream_factory, sidecar_factory
) -> None:
    up = await upstream_factory("up")
    free = await upstream_factory("free")
    up.cached_tokens = 7
    up.cache_write_tokens = 3 if kind == "anthropic" else 0
    up.reasoning_tokens = 5 if kind == "openai" else 0
    url = up.url if kind == "openai" else up.anthropic_url
    models = {
        "priced": {"providers": [provider("up", url, kind=kind, price=PRICE)]},
        "unpriced": {"providers": [provider("free", free.url)]},
    }
    sidecar = await sidecar_factory(make_settings(models=models, **store_settings))
    costs = []
    async with client(sidecar.port, "alice", session_id="s1") as alice:
        for i in range(3):
            if i == 2:
                chunks = [c async for c in alice.ask_stream(f"question {i} is longer")]
                metadata = chunks[-1].metadata
            else:
                metadata = (await alice.ask_full(f"question {i}")).metadata
            assert metadata is not None
            assert metadata.usage.cost_micro_usd == expected_cost(metadata.usage)
            assert metadata.usage.cost_micro_usd > 0
            costs.append(metadata.usage.cost_micro_usd)
        # A cache hit costs nothing, and says so (0, not unknown).
        first = await alice.ask_full("again", skip_history=True)
        costs.append(first.metadata.usage.cost_micro_usd)
        hit = await alice.ask_full("again", skip_history=True)
        assert hit.metadata.cached and hit.metadata.usage.cost_micro_usd == 0
        # A provider without a price: the cost is unknown, never 0.
        unpriced = await alice.ask_full("free?", model="unpriced")
        assert unpriced.metadata.usage.cost_micro_usd is None
        assert unpriced.metadata.usage.total_tokens > 0
        report = await alice.get_usage()
    rows = {row.model: row for row in report.rows}
    assert rows["priced"].requests == 5 and rows["priced"].cache_hits == 1
    # The ledger sums the per-answer costs exactly; the unpriced route adds nothing to
    # the cost and is counted as unknown instead.
    assert rows["priced"].cost_micro_usd == report.total.cost_micro_usd == sum(costs)
    assert rows["priced"].unpriced_answers == 0
    assert rows["unpriced"].cost_micro_usd == 0 and rows["unpriced"].unpriced_answers == 1
    assert report.total.unpriced_answers == 1


async def test_ledger_cost_is_the_sum_of_answer_costs(
    store_settings: dict[str, Any], upstream_factory, sidecar_factory
) -> None:
    up = await upstream_factory("up")
    up.cached_tokens = 2
    up.reasoning_tokens = 1
    settings = make_settings([provider("up", up.url, price=PRICE)], **store_settings)
    sidecar = await sidecar_factory(settings)
    async with client(sidecar.port, "alice", session_id="s1") as alice:
        costs = [(await alice.ask_full(f"q {i}")).metadata.usage.cost_micro_usd for i in range(4)]
        report = await alice.get_usage()
    (row,) = report.rows
    assert all(isinstance(c, int) and c > 0 for c in costs)
    assert row.cost_micro_usd == report.total.cost_micro_usd == sum(c or 0 for c in costs)


# -- refused-output spend ----------------------------------------------------------------


async def test_refused_output_spend_is_its_own_column(
    store_settings: dict[str, Any], upstream_factory, sidecar_factory
) -> None:
    bad = await upstream_factory("bad")
    good = await upstream_factory("good")
    bad.json_answer = '{"answer": 42}'  # valid JSON, wrong type: the schema refuses it
    good.json_answer = '{"answer": "yes"}'
    settings = make_settings(
        [provider("bad", bad.url, price=PRICE), provider("good", good.url, price=PRICE)],
        **store_settings,
    )
    sidecar = await sidecar_factory(settings)
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
    }
    async with client(sidecar.port, "alice", session_id="s1") as alice:
        result = await alice.ask_structured("say yes", schema)
        assert result.data == {"answer": "yes"} and result.metadata.provider == "good"
        # Bad tool-call arguments: billed by the provider, refused by the sidecar.
        bad.json_answer = None
        bad.tool_arguments = "not an object"
        answered = await alice.ask_full(
            "look it up", tools=[Tool("lookup", "finds things", {"type": "object"})]
        )
        assert answered.metadata.provider == "good"
        report = await alice.get_usage()
    refused_bodies = [r.body for r in bad.chat_requests]
    assert len(refused_bodies) == 2
    billed = [
        bad.usage(b, bad.structured_text(b) if i == 0 else "") for i, b in enumerate(refused_bodies)
    ]
    rows = {row.provider: row for row in report.rows}
    assert rows["bad"].requests == 0 and rows["bad"].refused_answers == 2
    assert rows["bad"].refused_prompt_tokens == sum(u["prompt_tokens"] for u in billed)
    assert rows["bad"].refused_completion_tokens > 0
    assert rows["bad"].refused_cost_micro_usd > 0
    # The accepted answers are billed apart, on the provider that gave them.
    assert rows["good"].requests == 2 and rows["good"].refused_answers == 0
    assert report.total.refused_answers == 2
    assert report.total.refused_cost_micro_usd == rows["bad"].refused_cost_micro_usd


async def test_refused_spend_of_a_failed_call_is_billed(upstream_factory, sidecar_factory) -> None:
    up = await upstream_factory("up")
    up.json_answer = "not json"
    settings = make_settings([provider("up", up.url, price=PRICE)])
    sidecar = await sidecar_factory(settings)
    async with client(sidecar.port, "alice") as alice:
        with pytest.raises(LLMManagerError) as refused:
            await alice.ask_structured("x", {"type": "object"})
        assert refused.value.code is grpc.StatusCode.ABORTED
        report = await alice.get_usage()
    (row,) = report.rows
    body = up.chat_requests[0].body
    usage = up.usage(body, "not json")
    assert (row.requests, row.refused_answers) == (0, 1)
    assert row.refused_prompt_tokens == usage["prompt_tokens"]
    assert row.refused_completion_tokens == usage["completion_tokens"]
    plain_in = usage["prompt_tokens"]
    exact = plain_in * Decimal("2.5") + usage["completion_tokens"] * Decimal("10")
    assert row.refused_cost_micro_usd == int(exact.to_integral_value(ROUND_HALF_UP))


async def test_a_streamed_answer_refused_at_its_end_is_billed_as_refused(
    store_settings: dict[str, Any], upstream_factory, sidecar_factory
) -> None:
    bad = await upstream_factory("bad")
    good = await upstream_factory("good")
    bad.tool_arguments = "[1, 2]"  # JSON, but not an object: refused once the call is whole
    settings = make_settings(
        [provider("bad", bad.url, price=PRICE), provider("good", good.url, price=PRICE)],
        **store_settings,
    )
    sidecar = await sidecar_factory(settings)
    tools = [Tool("lookup", "finds things", {"type": "object"})]
    async with client(sidecar.port, "alice") as alice:
        chunks = [c async for c in alice.ask_stream("look it up", tools=tools)]
        report = await alice.get_usage()
    final = chunks[-1].metadata
    assert final is not None and final.provider == "good"
    rows = {row.provider: row for row in report.rows}
    (body,) = [r.body for r in bad.chat_requests]
    billed = bad.usage(body, "")
    assert (rows["bad"].requests, rows["bad"].refused_answers) == (0, 1)
    assert rows["bad"].refused_prompt_tokens == billed["prompt_tokens"]
    assert rows["bad"].refused_cost_micro_usd > 0
    assert rows["good"].requests == 1 and rows["good"].refused_answers == 0


# -- quotas -----------------------------------------------------------------------------


async def test_requests_per_minute_refuses_with_quota_failure_and_rolls_over(
    store_settings: dict[str, Any], upstream, sidecar_factory
) -> None:
    window = 2.0
    settings = make_settings(
        [provider("primary", upstream.url)],
        quotas={"requests_per_minute": 3, "minute_seconds": window},
        **store_settings,
    )
    sidecar = await sidecar_factory(settings)
    async with client(sidecar.port, "alice") as alice, client(sidecar.port, "bob") as bob:
        await wait_for_window_start(window, 1.5)
        for i in range(3):
            await alice.ask(f"q{i}", skip_cache=True)
        with pytest.raises(ResourceExhaustedError) as refused:
            await alice.ask("one too many", skip_cache=True)
        error = refused.value
        assert error.reason == "QUOTA_EXCEEDED"
        assert (error.quota, error.quota_limit) == ("requests_per_minute", 3)
        assert error.retry_after is not None and 0 < error.retry_after <= window
        assert "one too many" not in error.message
        # Another user's quota is their own: bob is admitted, and counted apart.
        await bob.ask("bob is not alice", skip_cache=True)
        (bob_view,) = (await bob.get_usage()).quotas
        assert (bob_view.used, bob_view.remaining) == (1, 2)
        report = await alice.get_usage()
        (view,) = report.quotas
        assert (view.name, view.unit, view.limit, view.used, view.reserved) == (
            "requests_per_minute",
            "requests",
            3,
            3,
            0,
        )
        assert view.remaining == 0 and 0 < view.resets_in_seconds <= window
        # The next window starts from zero.
        await asyncio.sleep(error.retry_after + 0.05)
        await alice.ask("a new window", skip_cache=True)
        (view,) = (await alice.get_usage()).quotas
        assert view.used == 1
        (bob_view,) = (await bob.get_usage()).quotas
        assert bob_view.used == 0  # bob's call was in the window that ended
    # Only the call that reached no room was refused; the upstream never saw it.
    assert sum("one too many" in str(r.body) for r in upstream.chat_requests) == 0
    (totals,) = (await resource_status(sidecar.port)).quotas
    assert (totals.name, totals.limit, totals.refused) == ("requests_per_minute", 3, 1)
    assert totals.admitted == 5 and totals.reservations_in_flight == 0


async def test_tokens_per_minute_counts_exact_usage_and_caps_output(
    store_settings: dict[str, Any], upstream, sidecar_factory
) -> None:
    settings = make_settings(
        [provider("primary", upstream.url)],
        quotas={"tokens_per_minute": 100_000, "default_max_tokens": 64, "minute_seconds": 30},
        **store_settings,
    )
    sidecar = await sidecar_factory(settings)
    await wait_for_window_start(30, 5)
    async with client(sidecar.port, "alice") as alice:
        first = await alice.ask_full("count these tokens")
        second = await alice.ask_full("and these", max_tokens=5)
        (view,) = (await alice.get_usage()).quotas
    assert view.name == "tokens_per_minute" and view.reserved == 0
    assert view.used == first.metadata.usage.total_tokens + second.metadata.usage.total_tokens
    # A call without max_tokens is sent with the default cap, so its worst case holds.
    assert [r.body.get("max_tokens") for r in upstream.chat_requests] == [64, 5]


async def test_a_call_larger_than_the_limit_is_refused_without_retry_info(
    upstream, sidecar_factory
) -> None:
    settings = make_settings([provider("primary", upstream.url)], quotas={"tokens_per_minute": 50})
    sidecar = await sidecar_factory(settings)
    async with client(sidecar.port, "alice") as alice:
        with pytest.raises(ResourceExhaustedError) as refused:
            await alice.ask("hello", max_tokens=100)
        assert refused.value.retry_after is None
        assert "max_tokens" in refused.value.message
        await alice.ask("hello", max_tokens=10)
    assert len(upstream.chat_requests) == 1


async def test_reservations_are_released_on_failure_and_on_cancellation(
    store_settings: dict[str, Any], upstream, sidecar_factory
) -> None:
    # Room for one call's worst case at a time (prompt bound + 100 output tokens).
    settings = make_settings(
        [provider("primary", upstream.url)],
        quotas={"tokens_per_minute": 190, "minute_seconds": 600},
        **store_settings,
    )
    sidecar = await sidecar_factory(settings)
    async with client(sidecar.port, "alice") as alice:
        upstream.mode = "error"
        for _ in range(3):
            with pytest.raises(UnavailableError):
                await alice.ask("fail", max_tokens=100, skip_cache=True)
        (view,) = (await alice.get_usage()).quotas
        assert (view.used, view.reserved) == (0, 0)
        # A cancelled call frees its reservation too, while the upstream still hangs.
        upstream.mode = "hang"
        call = asyncio.create_task(alice.ask("hang", max_tokens=100, skip_cache=True))

        async def holding() -> bool:
            (view,) = (await alice.get_usage()).quotas
            return view.reserved > 0

        await eventually(holding)
        with pytest.raises(ResourceExhaustedError):
            await alice.ask("no room while the other call holds it", max_tokens=100)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

        async def released() -> bool:
            (view,) = (await alice.get_usage()).quotas
            return view.reserved == 0

        await eventually(released)
        # A deadline ends a call the same way.
        with pytest.raises(LLMManagerError):
            await alice.ask("hang", max_tokens=100, skip_cache=True, timeout=0.3)
        await eventually(released)
        upstream.mode = "healthy"
        answer = await alice.ask_full("works again", max_tokens=100)
        (view,) = (await alice.get_usage()).quotas
        assert view.used == answer.metadata.usage.total_tokens and view.reserved == 0


async def test_usd_quota_needs_every_provider_priced() -> None:
    with pytest.raises(ValueError, match="has no price"):
        make_settings([provider("p", "http://127.0.0.1:9/v1")], quotas={"usd_per_day": "1"})


async def test_usd_per_day_budget_is_exact(
    store_settings: dict[str, Any], upstream, sidecar_factory
) -> None:
    # Output at 1 USD per million: 1 micro-USD a token; the model spends all 10 it may,
    # so each call costs exactly its worst case and the budget fits exactly 7 calls.
    upstream.completion_tokens = 10
    price = {"input": "0", "output": "1"}
    settings = make_settings(
        [provider("primary", upstream.url, price=price)],
        quotas={"usd_per_day": "0.00007", "usd_per_month": "1"},
        **store_settings,
    )
    sidecar = await sidecar_factory(settings)
    async with client(sidecar.port, "alice") as alice:
        results = await asyncio.gather(
            *(alice.ask(f"q{i}", max_tokens=10, skip_cache=True) for i in range(12)),
            return_exceptions=True,
        )
        report = await alice.get_usage()
    refused = [r for r in results if isinstance(r, ResourceExhaustedError)]
    assert len(refused) == 5 and len(results) - len(refused) == 7
    assert {e.quota for e in refused} == {"usd_per_day"}
    assert report.total.cost_micro_usd == 70
    views = {v.name: v for v in report.quotas}
    assert (views["usd_per_day"].used, views["usd_per_day"].remaining) == (70, 0)
    assert views["usd_per_month"].used == 70 and views["usd_per_month"].unit == "micro_usd"


# -- the shared store going down ----------------------------------------------------------


@pytest.fixture(params=["redis", "redis-cluster"])
def killable_store(request: pytest.FixtureRequest) -> Iterator[tuple[dict[str, Any], Any]]:
    """(redis settings, the store) for a test that kills the store and starts it again:
    one Redis server, or a whole three-master cluster (both keep their data on disk)."""
    if request.param == "redis":
        server = RedisServer(persistent=True).start()
        try:
            yield {"url": server.url}, server
        finally:
            server.stop()
        return
    cluster = RedisCluster(persistent=True).start()
    try:
        yield {"url": cluster.url, "mode": "cluster"}, _Restartable(cluster)
    finally:
        cluster.stop()


class _Restartable:
    """A cluster with the server's stop/start interface."""

    def __init__(self, cluster: RedisCluster) -> None:
        self._cluster = cluster

    def stop(self) -> None:
        self._cluster.stop()

    def start(self) -> None:
        self._cluster.restart()


@pytest.mark.parametrize("mode", ["fail_closed", "fail_open"])
async def test_quota_store_down_mid_run(
    mode: str,
    upstream,
    sidecar_factory,
    killable_store: tuple[dict[str, Any], Any],
    redis_prefix: str,
) -> None:
    redis, store = killable_store
    settings = make_settings(
        [provider("primary", upstream.url)],
        redis={
            **redis,
            "key_prefix": redis_prefix,
            "watch_interval_seconds": 0.1,
            "socket_timeout_seconds": 0.3,
        },
        quotas={"requests_per_minute": 4, "minute_seconds": 600, "on_store_down": mode},
    )
    sidecar = await sidecar_factory(settings)
    async with client(sidecar.port, "alice") as alice:
        await alice.ask("before", skip_cache=True)
        store.stop()
        if mode == "fail_closed":
            with pytest.raises(UnavailableError) as down:
                await alice.ask("during", skip_cache=True)
            assert "quota store" in down.value.message
        else:
            # Enforced by this sidecar alone: the per-pod window starts empty, so 4 more
            # fit and the fifth is refused; never silent.
            for i in range(4):
                await alice.ask(f"during {i}", skip_cache=True)
            with pytest.raises(ResourceExhaustedError):
                await alice.ask("during, one too many", skip_cache=True)
            (totals,) = (await resource_status(sidecar.port)).quotas
            assert totals.admitted_locally == 4

            async def not_serving() -> bool:
                return await health_of(sidecar.port, SHARED_STATE) == (
                    health_pb2.HealthCheckResponse.NOT_SERVING
                )

            await eventually(not_serving)
        await asyncio.to_thread(store.start)

        async def shared_again() -> bool:
            state = (await resource_status(sidecar.port)).shared_state.state
            serving = await health_of(sidecar.port, SHARED_STATE)
            return state == "up" and serving == health_pb2.HealthCheckResponse.SERVING

        await eventually(shared_again)
        (view,) = (await alice.get_usage()).quotas
    # What was admitted while Redis was down was committed there once it came back.
    assert view.used == (1 if mode == "fail_closed" else 5)


# -- the race: three replicas, one Redis, one user ------------------------------------------


def _race_config(tmp_path: Path, name: str, upstream: FakeUpstream, redis: dict[str, Any]) -> Path:
    price = {"input": "0", "output": "1"}
    return write_process_config(
        tmp_path / f"{name}.json",
        [provider("primary", upstream.url, price=price)],
        failover={"retry_rounds": 0},
        managers={"max_managers": 100},
        limits={"max_concurrent_per_user": 0},
        quotas={"usd_per_day": "0.001"},
        redis=redis,
    )


@pytest.mark.parametrize("backend", ["redis", "redis-cluster"])
async def test_the_race_three_replicas_never_exceed_the_budget(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, redis_prefix: str
) -> None:
    # Admission under contention is under test, not Redis's speed: a slow reply on a
    # busy machine must not count as an outage here.
    patient = {
        "key_prefix": redis_prefix,
        "socket_timeout_seconds": 5,
        "connect_timeout_seconds": 5,
    }
    if backend == "redis":
        redis = {"url": request.getfixturevalue("redis_url"), **patient}
    else:
        redis = {"url": request.getfixturevalue("redis_cluster_url"), "mode": "cluster", **patient}
    # Each call costs exactly 10 micro-USD (10 output tokens at 1 USD per million) and
    # reserves exactly that: the budget of 1000 micro-USD fits 100 calls.
    up = await FakeUpstream(name="primary", latency=0.02, completion_tokens=10).start()
    procs = [
        SidecarProcess(_race_config(tmp_path, f"pod{i}", up, redis), free_port()) for i in range(3)
    ]
    try:
        await asyncio.gather(*(p.wait_ready() for p in procs))
        clients = [client(p.port, "alice", session_id="race") for p in procs]
        try:
            results = await asyncio.gather(
                *(
                    clients[i % 3].ask(
                        f"question {i}", max_tokens=10, skip_cache=True, skip_history=True
                    )
                    for i in range(600)
                ),
                return_exceptions=True,
            )
            outcomes = Counter("ok" if isinstance(r, str) else type(r).__name__ for r in results)
            report = await clients[0].get_usage()
        finally:
            for c in clients:
                await c.close()
    finally:
        for p in procs:
            p.stop()
        await up.stop()
    assert set(outcomes) <= {"ok", "ResourceExhaustedError"}, outcomes
    refusals = [r for r in results if isinstance(r, ResourceExhaustedError)]
    assert {r.quota for r in refusals} == {"usd_per_day"}
    committed = report.total.cost_micro_usd
    print(f"\nrace ({backend}): {dict(outcomes)}, committed {committed} of 1000 micro-USD")
    assert committed <= 1000
    # Nothing refused while the budget had room for it (one call's worst case: 10).
    assert 1000 - committed < 10
    assert outcomes["ok"] == 100 and outcomes["ResourceExhaustedError"] == 500
    assert len(up.chat_requests) == 100
    (view,) = report.quotas
    assert (view.used, view.reserved, view.remaining) == (1000, 0, 0)


# -- metrics -------------------------------------------------------------------------------


async def test_cost_and_refusal_metrics_carry_no_user(upstream, traced_factory) -> None:
    settings = make_settings(
        [provider("primary", upstream.url, price=PRICE)],
        quotas={"requests_per_minute": 1, "minute_seconds": 600},
    )
    traced = await traced_factory(settings)
    async with traced.client("alice-metrics-user") as alice:
        answer = await alice.ask_full("priced")
        with pytest.raises(ResourceExhaustedError):
            await alice.ask("refused", skip_cache=True)
    ((attributes, point),) = traced.metric_points("llm_sidecar.cost")
    assert attributes == {"llm_sidecar.route": "m", "llm_sidecar.provider": "primary"}
    assert point.value == answer.metadata.usage.cost_micro_usd
    ((attributes, point),) = traced.metric_points("llm_sidecar.quota.refusals")
    assert attributes == {"llm_sidecar.quota": "requests_per_minute"} and point.value == 1


# -- a replica that died holding reservations ---------------------------------------------


@pytest.mark.parametrize("store", ["memory", "standalone", "cluster"])
async def test_an_expired_reservation_stops_holding_room(
    store: str, request: pytest.FixtureRequest, redis_prefix: str
) -> None:
    """A call that never settles (its process died) holds room only until its expiry,
    and a late settle of it still commits exactly once."""
    backend = None
    if store == "memory":
        quota: Any = MemoryQuotaLedger(keep_seconds=60).for_user("alice")
    else:
        url = request.getfixturevalue("redis_cluster_url" if store == "cluster" else "redis_url")
        backend = RedisBackend(RedisSettings(url=url, key_prefix=redis_prefix, mode=store))
        quota = RedisUserQuota(backend, UserKeys(redis_prefix, "alice"), keep_seconds=60)
    try:
        now = time.time()
        claim = Claim("requests_per_minute", "w", 1, 2, now + 600)
        assert await quota.reserve("dead-1", [claim], now + 0.5, now) is None
        assert await quota.reserve("dead-2", [claim], now + 0.5, now) is None
        refusal = await quota.reserve("live", [claim], now + 60, now + 0.1)
        assert refusal is not None and (refusal.used, refusal.reserved) == (0, 2)
        later = now + 1.0  # both dead reservations have expired
        assert await quota.figures([claim], later) == [(0, 0)]
        assert await quota.reserve("live", [claim], later + 60, later) is None
        await quota.settle("live", [claim], [1])
        await quota.settle("dead-1", [claim], [1])  # late: commits, releases nothing
        await quota.settle("dead-1", [claim], [1])  # again: nothing
        assert await quota.figures([claim], later) == [(2, 0)]
    finally:
        if backend is not None:
            await backend.aclose()
