"""Failover policy over the wire: Retry-After holds, deadline cuts and rounds for streams,
a provider adapter that breaks mid-stream, and a full connection pool."""

from __future__ import annotations

import asyncio
import time

import pytest

from llm_manager_client import (
    DeadlineExceededError,
    UnavailableError,
)
from tests.support.failover import chain_settings, client_for, provider_states
from tests.support.sidecar import make_settings, provider
from tests.support.waiting import eventually


async def test_retry_after_holds_a_provider_for_every_user(pair, sidecar_factory) -> None:
    primary, fallback = pair
    settings = chain_settings(primary, fallback, failover={"failure_threshold": 1})
    sidecar = await sidecar_factory(settings)
    primary.mode, primary.retry_after = "rate_limited", "0.5"
    async with await client_for(sidecar, "alice") as alice, await client_for(sidecar, "bob") as bob:
        assert (await alice.ask_full("first")).metadata.provider == "fallback"
        primary.mode = "healthy"  # it would answer now, but it asked for half a second
        theirs = await bob.ask_full("second")
        assert theirs.metadata.provider == "fallback"
        assert [(a.provider, a.outcome) for a in theirs.metadata.attempts] == [
            ("primary", "skipped_retry_after"),
            ("fallback", "ok"),
        ]
        assert len(primary.chat_requests) == 1
        assert (await provider_states(sidecar))["primary"].circuit_state == "closed"
        await asyncio.sleep(0.5)
        assert (await bob.ask_full("third")).metadata.provider == "primary"


async def circuit_is(sidecar, name: str, state: str) -> bool:
    """Whether provider ``name``'s circuit reads ``state`` (reading moves an open circuit
    whose cool-down ended to half-open)."""
    return (await provider_states(sidecar))[name].circuit_state == state


async def test_stream_deadline_cut_spares_the_breaker(pair, sidecar_factory) -> None:
    primary, fallback = pair
    settings = chain_settings(primary, fallback, timeout=5.0, failover={"failure_threshold": 1})
    sidecar = await sidecar_factory(settings)
    primary.mode = "hang"
    async with await client_for(sidecar) as client:
        # On a busy machine a short deadline can pass before the attempt is sent: call
        # again until one reached the hanging upstream (each is cut by its deadline).
        for _ in range(5):
            with pytest.raises(DeadlineExceededError):
                async for _ in client.ask_stream("never", timeout=0.3):
                    pass
            if primary.chat_requests:
                break
    reached = len(primary.chat_requests)
    assert reached >= 1, "no attempt reached the upstream within five deadlines"
    state = (await provider_states(sidecar))["primary"]
    assert state.circuit_state == "closed" and state.failures == 0
    await eventually(lambda: primary.hangs_abandoned == reached, what="the cut attempts hung up")


async def test_anthropic_non_object_stream_event_fails_over_and_frees_the_trial(
    upstream_factory, sidecar_factory
) -> None:
    claude = await upstream_factory("claude")
    fallback = await upstream_factory("fallback")
    settings = make_settings(
        [
            provider("claude", claude.anthropic_url, kind="anthropic"),
            provider("fallback", fallback.url),
        ],
        failover={"failure_threshold": 1, "cooldown_seconds": 0.2},
    )
    sidecar = await sidecar_factory(settings)
    async with await client_for(sidecar) as client:
        chunks = [c async for c in client.ask_stream("healthy first")]
        assert chunks[-1].metadata.provider == "claude"
        assert "".join(c.delta for c in chunks) == "claude says: healthy first (turn 1)"
        claude.mode = "error"
        await client.ask("open it")  # the claude circuit opens
        await eventually(lambda: circuit_is(sidecar, "claude", "half_open"))
        claude.mode, claude.fault_budget = "bad_event", 1
        chunks = [c async for c in client.ask_stream("half-open trial")]
        meta = chunks[-1].metadata
        assert meta.provider == "fallback"
        assert (meta.attempts[0].provider, meta.attempts[0].error_type) == (
            "claude",
            "bad_response",
        )
        assert (await provider_states(sidecar))["claude"].circuit_state == "open"
        await eventually(lambda: circuit_is(sidecar, "claude", "half_open"))
        # The failed trial gave its slot back: a new trial goes through and closes it.
        chunks = [c async for c in client.ask_stream("recovered")]
        assert chunks[-1].metadata.provider == "claude"
        assert (await provider_states(sidecar))["claude"].circuit_state == "closed"


async def test_stream_has_retry_rounds_and_records_timeouts(pair, sidecar_factory) -> None:
    primary, fallback = pair
    settings = chain_settings(primary, fallback, timeout=0.3, failover={"retry_rounds": 1})
    sidecar = await sidecar_factory(settings)
    primary.mode, fallback.mode = "hang", "error"
    fallback.fault_budget = 1  # the fallback heals after one failure: round two finds it well
    async with await client_for(sidecar) as client:
        chunks = [c async for c in client.ask_stream("rounds")]
    meta = chunks[-1].metadata
    assert meta.provider == "fallback"
    assert [(a.provider, a.outcome) for a in meta.attempts] == [
        ("primary", "timeout"),
        ("fallback", "error"),
        ("primary", "timeout"),
        ("fallback", "ok"),
    ]


async def test_full_connection_pool_is_visible_and_fails_fast(pair, sidecar_factory) -> None:
    primary, fallback = pair
    primary.latency = 1.0  # healthy, but slow: the one connection stays busy
    pooled = {"max_connections": 1, "max_connection_wait_seconds": 0.2}
    settings = make_settings(
        [provider("primary", primary.url, **pooled)],
        models={
            "m": {"providers": [provider("primary", primary.url, **pooled)]},
            "with-fallback": {
                "providers": [
                    provider("primary2", primary.url, **pooled),
                    provider("fallback", fallback.url),
                ]
            },
        },
    )
    sidecar = await sidecar_factory(settings)
    async with await client_for(sidecar) as client:
        first = asyncio.ensure_future(client.ask("occupy the connection"))
        await eventually(lambda: primary.chat_requests, what="the first call holds it")
        second = asyncio.ensure_future(client.ask("queued"))

        async def queued() -> bool:
            return (await provider_states(sidecar))["primary"].connections_waiting == 1

        await eventually(queued, what="the second call queued")
        status = (await provider_states(sidecar))["primary"]
        assert (status.connections_in_use, status.connections_waiting) == (1, 1)
        assert status.max_connections == 1
        start = time.perf_counter()
        with pytest.raises(UnavailableError) as info:
            await second
        assert time.perf_counter() - start < 0.5  # the wait was bounded, not the upstream's 1 s
        assert "pool_exhausted" in info.value.message
        assert await first == "primary says: occupy the connection (turn 1)"
        state = (await provider_states(sidecar))["primary"]
        assert state.circuit_state == "closed" and state.connections_waiting == 0
        # With another provider in the chain, a full pool fails over instead.
        held = asyncio.ensure_future(client.ask("busy again", model="with-fallback"))
        await eventually(lambda: len(primary.chat_requests) == 2, what="held again")
        routed = await client.ask_full("go elsewhere", model="with-fallback")
        assert routed.metadata.provider == "fallback"
        assert [(a.provider, a.error_type) for a in routed.metadata.attempts] == [
            ("primary2", "pool_exhausted"),
            ("fallback", ""),
        ]
        await held
