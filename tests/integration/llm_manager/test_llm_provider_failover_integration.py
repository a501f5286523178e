"""Failover across real HTTP upstreams that tests switch between healthy and broken."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from llm_manager_client import (
    DeadlineExceededError,
    InvalidArgumentError,
    UnavailableError,
)
from tests.support.failover import chain_settings, client_for, provider_states
from tests.support.sidecar import make_settings, provider
from tests.support.upstream import FakeUpstream
from tests.support.waiting import eventually

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


@pytest.mark.parametrize("mode", ["error", "reset", "bad_json", "rate_limited"])
async def test_primary_provider_failure_failover(pair, sidecar_factory, mode: str) -> None:
    primary, fallback = pair
    sidecar = await sidecar_factory(chain_settings(primary, fallback))
    primary.mode = mode
    primary.error_status = 502
    async with await client_for(sidecar) as client:
        result = await client.ask_full("are you there")
    assert result.text == "fallback says: are you there (turn 1)"
    assert result.metadata.provider == "fallback"
    outcomes = [(a.provider, a.outcome) for a in result.metadata.attempts]
    assert outcomes == [("primary", "error"), ("fallback", "ok")]
    expected = {
        "error": "server_error",
        "reset": "connection",
        "bad_json": "bad_response",
        "rate_limited": "rate_limited",
    }[mode]
    assert result.metadata.attempts[0].error_type == expected
    assert len(primary.chat_requests) == 1 and len(fallback.chat_requests) == 1


async def test_primary_refusing_connections_fails_over(pair, sidecar_factory) -> None:
    primary, fallback = pair
    sidecar = await sidecar_factory(chain_settings(primary, fallback))
    await primary.stop()  # nothing listens on its port any more
    async with await client_for(sidecar) as client:
        result = await client.ask_full("knock knock")
    assert result.metadata.provider == "fallback"
    assert result.metadata.attempts[0].error_type == "connection"


async def test_provider_timeout_handling(pair, sidecar_factory) -> None:
    primary, fallback = pair
    sidecar = await sidecar_factory(chain_settings(primary, fallback, timeout=0.3))
    primary.mode = "hang"
    async with await client_for(sidecar) as client:
        start = time.perf_counter()
        result = await client.ask_full("hello")
        elapsed = time.perf_counter() - start
        assert result.metadata.provider == "fallback"
        assert result.metadata.attempts[0].outcome == "timeout"
        assert 0.3 <= elapsed < 1.0
        # Everything hangs: the caller's deadline wins, well before the per-attempt timeouts add up.
        fallback.mode = "hang"
        start = time.perf_counter()
        with pytest.raises(DeadlineExceededError):
            await client.ask("again", timeout=0.45)
        assert time.perf_counter() - start < 1.0
    # A deadline cut short by the caller does not count against the provider: the
    # primary's two timeouts are failures, the fallback's cut attempt is none.
    state = await provider_states(sidecar)
    assert (state["primary"].failures, state["fallback"].failures) == (2, 0)


async def test_concurrent_user_failover_isolation(pair, sidecar_factory) -> None:
    primary, fallback = pair
    sidecar = await sidecar_factory(chain_settings(primary, fallback))
    primary.mode = "error"
    primary.fail_when = "FAIL"  # only these users' requests break on the primary
    users = [f"user-{i}" for i in range(60)]

    async def one(i: int, user: str) -> None:
        async with await client_for(sidecar, user, session_id="s") as client:
            prompt = f"{user} {'FAIL' if i % 2 else 'ok'}"
            result = await client.ask_full(prompt)
            provider_name = "fallback" if i % 2 else "primary"
            assert result.text == f"{provider_name} says: {prompt} (turn 1)"
            assert result.metadata.provider == provider_name
            conv = await client.get_conversation()
            assert [m.content for m in conv.messages] == [prompt, result.text]

    await asyncio.gather(*(one(i, u) for i, u in enumerate(users)))
    assert len(fallback.chat_requests) == 30
    assert all("FAIL" in r.last_user for r in fallback.chat_requests)


async def test_provider_circuit_breaker_functionality(pair, sidecar_factory) -> None:
    primary, fallback = pair
    settings = chain_settings(
        primary, fallback, failover={"failure_threshold": 3, "cooldown_seconds": 0.5}
    )
    sidecar = await sidecar_factory(settings)
    primary.mode = "error"
    async with await client_for(sidecar) as client:
        for i in range(3):
            assert (await client.ask_full(f"q{i}")).metadata.provider == "fallback"
        assert len(primary.chat_requests) == 3
        assert (await provider_states(sidecar))["primary"].circuit_state == "open"
        # Open: the primary is skipped without a single request reaching it.
        for i in range(5):
            result = await client.ask_full(f"open {i}")
            assert result.metadata.attempts[0].outcome == "skipped_circuit_open"
            assert result.metadata.attempts[0].latency_ms == 0
        assert len(primary.chat_requests) == 3
        # Cool-down over: one trial goes through; success closes the circuit.
        primary.mode = "healthy"

        async def half_open() -> bool:
            return (await provider_states(sidecar))["primary"].circuit_state == "half_open"

        await eventually(half_open, what="the cool-down ended")
        result = await client.ask_full("trial")
        assert result.metadata.provider == "primary"
        assert (await provider_states(sidecar))["primary"].circuit_state == "closed"
        # A failed trial opens it again.
        primary.mode = "error"
        for i in range(3):
            await client.ask(f"break again {i}")
        await eventually(half_open, what="the second cool-down ended")
        await client.ask("failing trial")
        assert (await provider_states(sidecar))["primary"].circuit_state == "open"


async def test_structured_response_failover(pair, sidecar_factory) -> None:
    primary, fallback = pair
    sidecar = await sidecar_factory(chain_settings(primary, fallback))
    primary.json_answer = "this is not json"
    async with await client_for(sidecar) as client:
        result = await client.ask_structured("make one", SCHEMA)
        assert result.data == {"name": "make one"} and result.metadata.provider == "fallback"
        assert result.metadata.attempts[0].error_type == "invalid_output"
        # Invalid output is the model's fault, not the provider's health.
        assert (await provider_states(sidecar))["primary"].circuit_state == "closed"
        primary.json_answer = None
        primary.mode = "bad_json"
        result = await client.ask_structured("make two", SCHEMA)
        assert result.metadata.provider == "fallback"
        assert result.metadata.attempts[0].error_type == "bad_response"


async def test_cache_consistency_during_failover(pair, sidecar_factory) -> None:
    primary, fallback = pair
    sidecar = await sidecar_factory(chain_settings(primary, fallback))
    async with await client_for(sidecar, "alice") as alice, await client_for(sidecar, "bob") as bob:
        primary.mode = "error"
        first = await alice.ask_full("cache me")
        assert first.metadata.provider == "fallback"
        primary.mode = "healthy"
        again = await alice.ask_full("cache me")
        assert (
            again.metadata.cached
            and again.text == first.text
            and again.metadata.provider == "fallback"
        )
        assert len(fallback.chat_requests) == 1
        theirs = await bob.ask_full("cache me")
        assert not theirs.metadata.cached and theirs.metadata.provider == "primary"
        # A failed request leaves nothing in the cache.
        primary.mode = fallback.mode = "error"
        with pytest.raises(UnavailableError):
            await alice.ask("never answered")
        assert not await alice.is_cached("never answered")


async def test_multi_provider_health_monitoring(pair, sidecar_factory) -> None:
    primary, fallback = pair
    settings = chain_settings(
        primary,
        fallback,
        failover={
            "health_interval_seconds": 0.05,
            "probe_timeout_seconds": 0.5,
            "failure_threshold": 2,
            "cooldown_seconds": 60,
        },
    )
    sidecar = await sidecar_factory(settings)

    async def health() -> int:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="llm_manager.v1.Providers"), timeout=5
            )
            return reply.status

    async def until(predicate, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not await predicate():
            assert time.monotonic() < deadline, "condition not reached"
            await asyncio.sleep(0.05)

    await until(lambda: _probed(primary, fallback))
    primary.mode = "error"

    async def primary_open() -> bool:
        p = (await provider_states(sidecar))["primary"]
        return p.circuit_state == "open" and not p.healthy

    await until(primary_open)
    assert primary.chat_requests == []  # opened by probes alone, no user paid for it
    assert await health() == health_pb2.HealthCheckResponse.SERVING  # the fallback still serves
    fallback.mode = "error"

    async def not_serving() -> bool:
        return await health() == health_pb2.HealthCheckResponse.NOT_SERVING

    await until(not_serving)
    primary.mode = fallback.mode = "healthy"

    async def serving() -> bool:
        return await health() == health_pb2.HealthCheckResponse.SERVING

    await until(serving)


async def _probed(*ups: FakeUpstream) -> bool:
    return all(u.probes > 0 for u in ups)


async def test_provider_recovery_after_failure(pair, sidecar_factory) -> None:
    primary, fallback = pair
    settings = chain_settings(
        primary,
        fallback,
        failover={"health_interval_seconds": 0.05, "failure_threshold": 2, "cooldown_seconds": 60},
    )
    sidecar = await sidecar_factory(settings)
    async with await client_for(sidecar) as client:
        primary.mode = "error"
        for i in range(2):
            assert (await client.ask_full(f"down {i}")).metadata.provider == "fallback"
        assert (await provider_states(sidecar))["primary"].circuit_state == "open"
        primary.mode = "healthy"
        # The cool-down is a minute, but a passing probe notices recovery at once.
        deadline = time.monotonic() + 5
        while (await provider_states(sidecar))["primary"].circuit_state == "open":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        result = await client.ask_full("back?")
        assert result.metadata.provider == "primary"
        status = (await provider_states(sidecar))["primary"]
        assert status.circuit_state == "closed" and status.healthy


async def test_failover_preserves_user_session_state(pair, sidecar_factory) -> None:
    primary, fallback = pair
    sidecar = await sidecar_factory(chain_settings(primary, fallback))
    async with await client_for(sidecar, "alice", session_id="s") as client:
        await client.ask("turn one")
        await client.ask("turn two")
        primary.mode = "reset"
        third = await client.ask_full("turn three")
        assert third.metadata.provider == "fallback"
        sent = fallback.chat_requests[-1]
        assert [m["content"] for m in sent.messages] == [
            "turn one",
            "primary says: turn one (turn 1)",
            "turn two",
            "primary says: turn two (turn 3)",
            "turn three",
        ]
        primary.mode = "healthy"
        await client.ask("turn four")
        assert [m["content"] for m in primary.chat_requests[-1].messages][4:6] == [
            "turn three",
            "fallback says: turn three (turn 5)",
        ]
        assert await client.is_cached("turn one", skip_history=True)
        usage = await client.get_usage()
        by_provider = {r.provider: r.requests for r in usage.rows}
        assert by_provider == {"primary": 3, "fallback": 1}


# -- more policy ---------------------------------------------------------------------


async def test_anthropic_fallback(upstream_factory, sidecar_factory) -> None:
    primary = await upstream_factory("primary")
    claude = await upstream_factory("claude")
    settings = make_settings(
        [
            provider("primary", primary.url),
            provider(
                "claude", claude.anthropic_url, kind="anthropic", api_key_env="TEST_ANTHROPIC_KEY"
            ),
        ]
    )
    sidecar = await sidecar_factory(settings)
    primary.mode = "error"
    async with await client_for(sidecar, session_id="s") as client:
        result = await client.ask_full("hi claude", system_prompt="be brief")
    assert result.metadata.provider == "claude" and result.text == "claude says: hi claude (turn 1)"
    sent = claude.chat_requests[0]
    assert sent.path == "/v1/messages"
    # Prompt caching (on by default): the stable system prompt is a cache breakpoint.
    assert sent.body["system"] == [
        {"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}
    ]
    assert sent.headers["anthropic-version"] and sent.body["max_tokens"] >= 1
    assert (
        result.metadata.usage.prompt_tokens == claude.usage(sent.body, result.text)["prompt_tokens"]
    )


async def test_request_rejection_does_not_fail_over(pair, sidecar_factory) -> None:
    primary, fallback = pair
    sidecar = await sidecar_factory(chain_settings(primary, fallback))
    primary.mode = "bad_request"
    async with await client_for(sidecar) as client:
        with pytest.raises(InvalidArgumentError):
            await client.ask("malformed for every provider")
    assert fallback.chat_requests == []


async def test_all_providers_down_is_unavailable_quickly(pair, sidecar_factory) -> None:
    primary, fallback = pair
    settings = chain_settings(
        primary, fallback, failover={"failure_threshold": 1, "cooldown_seconds": 30}
    )
    sidecar = await sidecar_factory(settings)
    primary.mode = fallback.mode = "error"
    async with await client_for(sidecar) as client:
        with pytest.raises(UnavailableError) as info:
            await client.ask("first")
        assert info.value.retry_after is not None and info.value.retry_after > 0
        # Both circuits are open now: the next failure costs no network call and no timeout.
        start = time.perf_counter()
        with pytest.raises(UnavailableError) as info:
            await client.ask("second")
        assert time.perf_counter() - start < 0.1
        assert 20 < info.value.retry_after <= 30
    assert len(primary.chat_requests) == 1 and len(fallback.chat_requests) == 1


async def test_retry_round_honours_retry_after(upstream_factory, sidecar_factory) -> None:
    only = await upstream_factory("only")
    settings = make_settings(
        [provider("only", only.url)], failover={"retry_rounds": 2, "failure_threshold": 100}
    )
    sidecar = await sidecar_factory(settings)
    only.mode, only.retry_after, only.fault_budget = "rate_limited", "0.3", 1
    async with await client_for(sidecar) as client:
        start = time.perf_counter()
        result = await client.ask_full("patience")
        assert time.perf_counter() - start >= 0.3
    assert [a.outcome for a in result.metadata.attempts] == ["error", "ok"]
    assert len(only.chat_requests) == 2


async def test_stream_fails_over_before_first_chunk(pair, sidecar_factory) -> None:
    primary, fallback = pair
    sidecar = await sidecar_factory(chain_settings(primary, fallback))
    primary.mode = "error"
    async with await client_for(sidecar, session_id="s") as client:
        chunks = [c async for c in client.ask_stream("stream please")]
    assert "".join(c.delta for c in chunks) == "fallback says: stream please (turn 1)"
    assert chunks[-1].metadata.provider == "fallback"


async def test_stream_failure_after_first_chunk_ends_with_status(pair, sidecar_factory) -> None:
    primary, fallback = pair
    sidecar = await sidecar_factory(chain_settings(primary, fallback))
    primary.mode = "stream_break"
    received = []
    async with await client_for(sidecar, session_id="s") as client:
        with pytest.raises(UnavailableError) as info:
            async for chunk in client.ask_stream("a long answer " * 5):
                received.append(chunk)
        assert info.value.reason == "STREAM_INTERRUPTED"
        assert fallback.chat_requests == []
        assert (await client.get_conversation()).messages == ()
    # The two deltas the primary sent before its connection dropped, and nothing else
    # (sent back to back, they may reach the caller as one coalesced chunk).
    assert "".join(c.delta for c in received) == "primary says: "
