"""Shared state in a real Redis: two sidecar processes, hostile ids, outages, Redis 6 and 7.

The conversation-isolation and token-accounting tests also run against Redis
(``store_settings`` is parametrized); these cover what only a shared store has.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2
from redis.crc import key_slot

from llm_manager_client import UnavailableError
from llm_sidecar import Sidecar
from llm_sidecar.config import RedisSettings
from llm_sidecar.core.state.conversation import HistoryBounds
from llm_sidecar.core.state.store import MemoryStateStore
from llm_sidecar.core.state.usage import answer_row
from llm_sidecar.core.vocabulary.models import ChatMessage, Usage
from llm_sidecar.stores.redis import RedisBackend, RedisStateStore
from tests.support.redis_helpers import (
    SHARED_STATE,
    health_of,
    redis_client,
    reported_usage,
    resource_status,
)
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

# -- two processes, one Redis --------------------------------------------------------------


def _write_config(tmp_path: Path, name: str, upstream: FakeUpstream, redis: dict[str, Any]) -> Path:
    path = tmp_path / f"{name}.json"
    return write_process_config(path, [provider("primary", upstream.url)], redis=redis)


@pytest.fixture(params=["standalone", "cluster"])
async def two_processes(
    request: pytest.FixtureRequest, tmp_path: Path, upstream_factory, redis_prefix: str
) -> AsyncIterator[tuple[tuple[int, FakeUpstream], tuple[int, FakeUpstream]]]:
    mode = request.param
    url = request.getfixturevalue("redis_cluster_url" if mode == "cluster" else "redis_url")
    redis = {"url": url, "key_prefix": redis_prefix, "mode": mode}
    pods = []
    for name in ("pod-a", "pod-b"):
        up = await upstream_factory(name)
        path = _write_config(tmp_path, name, up, redis)
        pods.append((SidecarProcess(path, free_port()), up))
    try:
        await asyncio.gather(*(proc.wait_ready() for proc, _ in pods))
        (a, up_a), (b, up_b) = pods
        yield (a.port, up_a), (b.port, up_b)
    finally:
        for proc, _ in pods:
            proc.stop()


async def test_two_sidecar_processes_share_conversations_and_usage(two_processes) -> None:
    (port_a, up_a), (port_b, up_b) = two_processes
    async with redis_client(port_a, "alice", session_id="s1") as alice_a:
        await alice_a.ask("my name is Alice")
        await alice_a.ask("I live in Lisbon")
    async with redis_client(port_b, "alice", session_id="s1") as alice_b:
        await alice_b.ask("where do I live?")
        # Pod B sent the turns pod A had recorded.
        sent = [m["content"] for m in up_b.chat_requests[-1].body["messages"]]
        assert sent[:4] == [
            "my name is Alice",
            "pod-a says: my name is Alice (turn 1)",
            "I live in Lisbon",
            "pod-a says: I live in Lisbon (turn 3)",
        ]
        assert sent[4] == "where do I live?"
        conversation = await alice_b.get_conversation()
        assert len(conversation.messages) == 6
        usage_b = await alice_b.get_usage()
    async with redis_client(port_a, "alice", session_id="s1") as alice_a:
        usage_a = await alice_a.get_usage()
        assert len((await alice_a.get_conversation()).messages) == 6
    # Both pods see the same bill: everything either upstream reported.
    prompt, completion = reported_usage(up_a, up_b)
    for usage in (usage_a, usage_b):
        assert usage.total.requests == 3
        assert usage.total.prompt_tokens == prompt
        assert usage.total.completion_tokens == completion
    # Another user, on either pod, sees none of it.
    async with redis_client(port_b, "bob", session_id="s1") as bob:
        assert len((await bob.get_conversation()).messages) == 0
        assert (await bob.get_usage()).total.requests == 0
        await bob.ask("hello")
        sent = [m["content"] for m in up_b.chat_requests[-1].body["messages"]]
        assert sent == ["hello"]


# -- hostile ids -----------------------------------------------------------------------------

HOSTILE_IDS = [
    "alice",
    "alice:",
    "alice:*",
    "*",
    "alice:c:s1:t1",
    "{alice}",
    "alice usage",
    "ålice-ünïcødé-🙂",
    "alice\x00",
    "a" * 10_000,
    "",
    "llmsc:{alice}:usage",
]


@pytest.mark.parametrize("mode", ["standalone", "cluster"])
async def test_hostile_ids_never_reach_another_users_keys(
    mode: str, request: pytest.FixtureRequest, redis_prefix: str
) -> None:
    url = request.getfixturevalue("redis_cluster_url" if mode == "cluster" else "redis_url")
    backend = RedisBackend(RedisSettings(url=url, key_prefix=redis_prefix, mode=mode))
    bounds = HistoryBounds(max_turns=10, max_bytes=100_000, ttl_seconds=60)
    store = RedisStateStore(backend, bounds, MemoryStateStore(bounds))
    try:
        for i, user in enumerate(HOSTILE_IDS):
            for session in HOSTILE_IDS[:4]:
                convo = store.for_user(user).conversations
                await convo.append(
                    session, "t", [ChatMessage("user", f"q{i}"), ChatMessage("assistant", f"a{i}")]
                )
            await store.for_user(user).usage.record(
                [answer_row("s", "m", "p", Usage(i + 1, 0, i + 1), cached=False, cost=None)]
            )
        for i, user in enumerate(HOSTILE_IDS):
            for session in HOSTILE_IDS[:4]:
                history = await store.for_user(user).conversations.load(session, "t")
                assert [m.content for m in history] == [f"q{i}", f"a{i}"], (user[:20], session)
            (row,) = await store.for_user(user).usage.rows()
            assert row.prompt_tokens == i + 1 and row.requests == 1
        # Every key is prefix:{32 hex}:..., with no trace of any raw id in it.
        keys = [k.decode() async for k in backend.client.scan_iter(match=f"{redis_prefix}:*")]
        assert keys
        shape = re.compile(
            rf"{re.escape(redis_prefix)}:\{{[0-9a-f]{{32}}\}}:(usage|c:[0-9a-f]{{32}}:[0-9a-f]{{32}}"
            r"|s:[0-9a-f]{32}|r:[0-9a-f]{32})"
        )
        assert all(shape.fullmatch(k) for k in keys), [k for k in keys if not shape.fullmatch(k)]
        users = {k.split(":")[1] for k in keys}
        assert len(users) == len(HOSTILE_IDS)
        # One user's keys share a hash slot: the scripts touch them together, and on a
        # cluster they ran (a cross-slot script is refused there).
        slots: dict[str, set[int]] = {}
        for key in keys:
            slots.setdefault(key.split(":")[1], set()).add(key_slot(key.encode()))
        assert all(len(user_slots) == 1 for user_slots in slots.values())
        assert len({slot for user_slots in slots.values() for slot in user_slots}) > 1
        # Ending a hostile session touches that one session only.
        await store.for_user("alice:*").conversations.end_session("*")
        assert await store.for_user("alice:*").conversations.load("*", "t") == []
        assert await store.for_user("alice").conversations.load("*", "t") != []
        assert await store.for_user("alice:*").conversations.load("alice", "t") != []
    finally:
        await backend.client.delete(
            *[k async for k in backend.client.scan_iter(f"{redis_prefix}:*")]
        )
        await backend.aclose()


async def test_hostile_ids_over_grpc(
    upstream: FakeUpstream, sidecar_factory, redis_url: str, redis_prefix: str
) -> None:
    sidecar = await sidecar_factory(
        make_settings(
            [provider("primary", upstream.url)],
            redis={"url": redis_url, "key_prefix": redis_prefix},
        )
    )
    # Ids the metadata charset admits but that look like key syntax.
    users = ["alice", "alice:c", "alice:usage", "alice/..", "a=b+c", "x" * 128]
    for user in users:
        async with redis_client(sidecar.port, user, session_id=f"{user[:100]}:s") as client:
            await client.ask(f"secret of {user}")
    for user in users:
        async with redis_client(sidecar.port, user, session_id=f"{user[:100]}:s") as client:
            messages = (await client.get_conversation()).messages
            assert [m.content for m in messages if m.role == "user"] == [f"secret of {user}"]
            assert (await client.get_usage()).total.requests == 1


# -- outages ---------------------------------------------------------------------------------


async def test_redis_restart_best_effort_keeps_serving_and_replays(
    upstream: FakeUpstream, sidecar_factory, private_redis: RedisServer, redis_prefix: str
) -> None:
    redis = {"url": private_redis.url, "key_prefix": redis_prefix, "watch_interval_seconds": 0.1}
    sidecar: Sidecar = await sidecar_factory(
        make_settings([provider("primary", upstream.url)], redis=redis)
    )
    port = sidecar.port
    assert await health_of(port, SHARED_STATE) == health_pb2.HealthCheckResponse.SERVING
    async with redis_client(port, "alice", session_id="s") as alice:
        await alice.ask("turn one")
        await alice.ask("turn two")
        private_redis.stop()
        # Redis is gone: calls still succeed, with the history from memory.
        answer = await alice.ask("turn three")
        assert answer == "primary says: turn three (turn 5)"
        await alice.ask("turn four")
        sent = [m["content"] for m in upstream.chat_requests[-1].body["messages"]]
        assert sent[0] == "turn one" and sent[-1] == "turn four" and len(sent) == 7

        async def degraded() -> bool:
            return (await resource_status(port)).shared_state.state == "degraded"

        await eventually(degraded)
        status = (await resource_status(port)).shared_state
        assert status.pending_writes >= 2  # two turns (usage and exchange, one write each)

        async def reported_down() -> bool:
            return await health_of(port, SHARED_STATE) == health_pb2.HealthCheckResponse.NOT_SERVING

        await eventually(reported_down)
        assert await health_of(port, "") == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(UnavailableError):
            await alice.get_usage()  # a bill is never guessed from a partial copy

        private_redis.start()

        async def replayed() -> bool:
            s = (await resource_status(port)).shared_state
            return s.state == "up" and s.pending_writes == 0

        await eventually(replayed)
        status = (await resource_status(port)).shared_state
        assert status.replayed_writes >= 2 and status.dropped_writes == 0

        async def reported_up() -> bool:
            return await health_of(port, SHARED_STATE) == health_pb2.HealthCheckResponse.SERVING

        await eventually(reported_up)
        usage = await alice.get_usage()

    # Nothing the policy keeps was lost, and nothing counted twice: a fresh
    # sidecar (no local copy) reads all four turns and the exact bill.
    fresh = await sidecar_factory(make_settings([provider("primary", upstream.url)], redis=redis))
    async with redis_client(fresh.port, "alice", session_id="s") as again:
        contents = [m.content for m in (await again.get_conversation()).messages]
        assert contents[::2] == ["turn one", "turn two", "turn three", "turn four"]
        fresh_usage = await again.get_usage()
    prompt, completion = reported_usage(upstream)
    for report in (usage, fresh_usage):
        assert report.total.requests == 4
        assert report.total.prompt_tokens == prompt
        assert report.total.completion_tokens == completion


async def test_redis_outage_with_durability_required_fails_unavailable(
    upstream: FakeUpstream, sidecar_factory, private_redis: RedisServer, redis_prefix: str
) -> None:
    redis = {
        "url": private_redis.url,
        "key_prefix": redis_prefix,
        "durability": "required",
        "watch_interval_seconds": 0.1,
    }
    sidecar = await sidecar_factory(make_settings([provider("primary", upstream.url)], redis=redis))
    async with redis_client(sidecar.port, "alice", session_id="s") as alice:
        await alice.ask("before")
        private_redis.stop()
        started = time.monotonic()
        with pytest.raises(UnavailableError) as info:
            await alice.ask("during")
        assert time.monotonic() - started < 3
        assert "Redis" in str(info.value) and private_redis.url not in str(info.value)
        assert (await resource_status(sidecar.port)).shared_state.state == "down"
        private_redis.start()

        async def back() -> bool:
            return (await resource_status(sidecar.port)).shared_state.state == "up"

        await eventually(back)
        await alice.ask("after")  # reconnected by itself, no restart
        contents = [m.content for m in (await alice.get_conversation()).messages]
        assert contents[::2] == ["before", "after"]
        assert (await alice.get_usage()).total.requests == 2


async def test_redis_down_at_start_best_effort(
    upstream: FakeUpstream, sidecar_factory, redis_prefix: str
) -> None:
    server = RedisServer(persistent=True)  # not started yet
    redis = {"url": server.url, "key_prefix": redis_prefix, "watch_interval_seconds": 0.1}
    sidecar = await sidecar_factory(make_settings([provider("primary", upstream.url)], redis=redis))
    try:
        assert (await resource_status(sidecar.port)).shared_state.state == "degraded"
        assert (
            await health_of(sidecar.port, SHARED_STATE)
            == health_pb2.HealthCheckResponse.NOT_SERVING
        )
        async with redis_client(sidecar.port, "alice", session_id="s") as alice:
            await alice.ask("while redis was never there")
            server.start()

            async def up() -> bool:
                s = (await resource_status(sidecar.port)).shared_state
                return s.state == "up" and s.pending_writes == 0

            await eventually(up)
            assert (await alice.get_usage()).total.requests == 1
        client = aioredis.from_url(server.url)
        try:
            keys = [k async for k in client.scan_iter(f"{redis_prefix}:*")]
            assert any(b":c:" in k for k in keys) and any(k.endswith(b":usage") for k in keys)
        finally:
            await client.aclose()
    finally:
        server.stop()
