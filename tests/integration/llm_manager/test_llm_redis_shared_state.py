"""Shared state in a real Redis: two sidecar processes, hostile ids, outages, Redis 6 and 7.

The conversation-isolation and token-accounting tests also run against Redis
(``store_settings`` is parametrized); these cover what only a shared store has.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from llm_manager.v1 import llm_manager_pb2 as pb
from llm_manager.v1 import llm_manager_pb2_grpc as pb_grpc

from llm_manager_client import AsyncLLMManagerClient, UnavailableError, UserContext
from llm_sidecar import Sidecar
from llm_sidecar.config import RedisSettings
from llm_sidecar.core.models import ChatMessage, Usage
from llm_sidecar.core.state.conversation import HistoryBounds
from llm_sidecar.core.state.store import MemoryStateStore
from llm_sidecar.stores.redis import RedisBackend, RedisStateStore
from tests.support.redis_server import RedisServer, redis_server_binary
from tests.support.sidecar import SidecarProcess, free_port, make_settings, provider
from tests.support.upstream import FakeUpstream

SHARED_STATE = "llm_manager.v1.SharedState"


def _client(sidecar_port: int, user: str, **ctx: Any) -> AsyncLLMManagerClient:
    return AsyncLLMManagerClient(f"127.0.0.1:{sidecar_port}", UserContext(user, **ctx), timeout=10)


async def _status(port: int) -> pb.GetResourceStatusResponse:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        return await pb_grpc.LLMAdminServiceStub(channel).GetResourceStatus(
            pb.GetResourceStatusRequest(), timeout=5
        )


async def _health(port: int, service: str) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    return int(reply.status)


async def _eventually(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def _reported_usage(*upstreams: FakeUpstream) -> tuple[int, int]:
    prompt = completion = 0
    for up in upstreams:
        for rec in up.chat_requests:
            usage = up.usage(rec.body, up.answer_text(rec.body))
            prompt += usage["prompt_tokens"]
            completion += usage["completion_tokens"]
    return prompt, completion


# -- two processes, one Redis --------------------------------------------------------------


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, which it may kill and restart (persistent: AOF, fsync)."""
    server = RedisServer(persistent=True).start()
    yield server
    server.stop()


def _write_config(tmp_path: Path, name: str, upstream: FakeUpstream, redis: dict[str, Any]) -> Path:
    config = {
        "default_model": "m",
        "models": {"m": {"providers": [provider("primary", upstream.url)]}},
        "failover": {"health_interval_seconds": 0},
        "resources": {"sample_interval_seconds": 0},
        "telemetry": {"log_level": "WARNING"},
        "redis": redis,
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
async def two_processes(
    tmp_path: Path, upstream_factory, redis_url: str, redis_prefix: str
) -> AsyncIterator[tuple[tuple[int, FakeUpstream], tuple[int, FakeUpstream]]]:
    pods = []
    for name in ("pod-a", "pod-b"):
        up = await upstream_factory(name)
        path = _write_config(tmp_path, name, up, {"url": redis_url, "key_prefix": redis_prefix})
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
    async with _client(port_a, "alice", session_id="s1") as alice_a:
        await alice_a.ask("my name is Alice")
        await alice_a.ask("I live in Lisbon")
    async with _client(port_b, "alice", session_id="s1") as alice_b:
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
    async with _client(port_a, "alice", session_id="s1") as alice_a:
        usage_a = await alice_a.get_usage()
        assert len((await alice_a.get_conversation()).messages) == 6
    # Both pods see the same bill: everything either upstream reported.
    prompt, completion = _reported_usage(up_a, up_b)
    for usage in (usage_a, usage_b):
        assert usage.total.requests == 3
        assert usage.total.prompt_tokens == prompt
        assert usage.total.completion_tokens == completion
    # Another user, on either pod, sees none of it.
    async with _client(port_b, "bob", session_id="s1") as bob:
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


async def test_hostile_ids_never_reach_another_users_keys(
    redis_url: str, redis_prefix: str
) -> None:
    backend = RedisBackend(RedisSettings(url=redis_url, key_prefix=redis_prefix))
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
                "s", "m", "p", Usage(i + 1, 0, i + 1), cached=False
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
        async with _client(sidecar.port, user, session_id=f"{user[:100]}:s") as client:
            await client.ask(f"secret of {user}")
    for user in users:
        async with _client(sidecar.port, user, session_id=f"{user[:100]}:s") as client:
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
    assert await _health(port, SHARED_STATE) == health_pb2.HealthCheckResponse.SERVING
    async with _client(port, "alice", session_id="s") as alice:
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
            return (await _status(port)).shared_state.state == "degraded"

        await _eventually(degraded)
        status = (await _status(port)).shared_state
        assert status.pending_writes >= 2  # two turns (usage and exchange, one write each)

        async def reported_down() -> bool:
            return await _health(port, SHARED_STATE) == health_pb2.HealthCheckResponse.NOT_SERVING

        await _eventually(reported_down)
        assert await _health(port, "") == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(UnavailableError):
            await alice.get_usage()  # a bill is never guessed from a partial copy

        private_redis.start()

        async def replayed() -> bool:
            s = (await _status(port)).shared_state
            return s.state == "up" and s.pending_writes == 0

        await _eventually(replayed)
        status = (await _status(port)).shared_state
        assert status.replayed_writes >= 2 and status.dropped_writes == 0

        async def reported_up() -> bool:
            return await _health(port, SHARED_STATE) == health_pb2.HealthCheckResponse.SERVING

        await _eventually(reported_up)
        usage = await alice.get_usage()

    # Nothing the policy keeps was lost, and nothing counted twice: a fresh
    # sidecar (no local copy) reads all four turns and the exact bill.
    fresh = await sidecar_factory(make_settings([provider("primary", upstream.url)], redis=redis))
    async with _client(fresh.port, "alice", session_id="s") as again:
        contents = [m.content for m in (await again.get_conversation()).messages]
        assert contents[::2] == ["turn one", "turn two", "turn three", "turn four"]
        fresh_usage = await again.get_usage()
    prompt, completion = _reported_usage(upstream)
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
    async with _client(sidecar.port, "alice", session_id="s") as alice:
        await alice.ask("before")
        private_redis.stop()
        started = time.monotonic()
        with pytest.raises(UnavailableError) as info:
            await alice.ask("during")
        assert time.monotonic() - started < 3
        assert "Redis" in str(info.value) and private_redis.url not in str(info.value)
        assert (await _status(sidecar.port)).shared_state.state == "down"
        private_redis.start()

        async def back() -> bool:
            return (await _status(sidecar.port)).shared_state.state == "up"

        await _eventually(back)
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
        assert (await _status(sidecar.port)).shared_state.state == "degraded"
        assert (
            await _health(sidecar.port, SHARED_STATE) == health_pb2.HealthCheckResponse.NOT_SERVING
        )
        async with _client(sidecar.port, "alice", session_id="s") as alice:
            await alice.ask("while redis was never there")
            server.start()

            async def up() -> bool:
                s = (await _status(sidecar.port)).shared_state
                return s.state == "up" and s.pending_writes == 0

            await _eventually(up)
            assert (await alice.get_usage()).total.requests == 1
        client = aioredis.from_url(server.url)
        try:
            keys = [k async for k in client.scan_iter(f"{redis_prefix}:*")]
            assert any(b":c:" in k for k in keys) and any(k.endswith(b":usage") for k in keys)
        finally:
            await client.aclose()
    finally:
        server.stop()


# -- Redis versions, bounds and TTLs in Redis ------------------------------------------------


def _binaries() -> list[Any]:
    found = {}
    for binary in (redis_server_binary(), shutil.which("redis-server")):
        if binary:
            version = RedisServer(binary=binary).version()
            found.setdefault(version.split(".")[0], (binary, version))
    return [pytest.param(b, id=f"redis-{v}") for b, v in found.values()]


@pytest.mark.parametrize("binary", _binaries())
async def test_store_on_each_redis_version(binary: str) -> None:
    server = RedisServer(binary=binary).start()
    backend = RedisBackend(RedisSettings(url=server.url, key_prefix="v"))
    try:
        bounds = HistoryBounds(max_turns=3, max_bytes=10_000, ttl_seconds=30)
        alice = RedisStateStore(backend, bounds, MemoryStateStore(bounds)).for_user("alice")
        convo = alice.conversations
        for i in range(5):
            await convo.append(
                "s", "t", [ChatMessage("user", f"q{i}"), ChatMessage("assistant", "a")]
            )
        history = await convo.load("s", "t")
        assert [m.content for m in history][::2] == ["q2", "q3", "q4"]  # oldest turns dropped
        keys = [k async for k in backend.client.scan_iter("v:*:c:*")]
        (thread_key,) = keys
        ttl_ms = await backend.client.pttl(thread_key)
        assert 0 < ttl_ms <= 30_000
        # Byte bound: one large turn pushes the older turns out (sizes as stored,
        # a role letter plus the text: 9,998 bytes for this turn, 5 for a small one).
        await convo.append(
            "s", "t", [ChatMessage("user", "x" * 9_995), ChatMessage("assistant", "a")]
        )
        assert [m.content[:1] for m in await convo.load("s", "t")][::2] == ["x"]
        ledger = alice.usage
        await ledger.record("s", "m", "p", Usage(3, 4, 7), cached=False)
        await ledger.record("s", "m", "p", Usage(0, 0, 0), cached=True)
        (row,) = await ledger.rows()
        assert (row.requests, row.cache_hits, row.total_tokens) == (2, 1, 7)
        # Any role and any text round-trip, including text that looks like the encoding.
        odd = [
            ChatMessage("system", "[1, 2]"),
            ChatMessage("user", 'a["json"]'),
            ChatMessage("assistant", ""),
        ]
        await convo.append("s", "odd", odd)
        assert await convo.load("s", "odd") == odd
        assert await convo.end_session("s") == 2
        assert await convo.load("s", "t") == []
    finally:
        await backend.aclose()
        server.stop()


# -- replays are exactly-once ------------------------------------------------------------------


class ReplyDroppingProxy:
    """A TCP proxy to Redis that, when armed, lets a script call run and then cuts
    the connection before its reply: the client cannot know the write landed."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        #: Cut after the next script call whose request contains these bytes.
        self.armed: bytes | None = None
        self.dropped = 0
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> ReplyDroppingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        cut = asyncio.Event()

        async def client_to_redis() -> None:
            while data := await reader.read(65536):
                if self.armed and b"EVAL" in data and self.armed in data:
                    self.armed = None
                    cut.set()
                up_writer.write(data)
                await up_writer.drain()

        async def redis_to_client() -> None:
            while data := await up_reader.read(65536):
                if cut.is_set():
                    self.dropped += 1
                    writer.transport.abort()
                    return
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.create_task(client_to_redis()), asyncio.create_task(redis_to_client())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        writer.transport.abort()
        up_writer.close()


async def test_replayed_writes_after_lost_replies_count_once(
    upstream: FakeUpstream, sidecar_factory, private_redis: RedisServer, redis_prefix: str
) -> None:
    proxy = await ReplyDroppingProxy(private_redis.port).start()
    try:
        redis = {
            "url": f"redis://127.0.0.1:{proxy.port}/0",
            "key_prefix": redis_prefix,
            "watch_interval_seconds": 0.1,
        }
        sidecar = await sidecar_factory(
            make_settings([provider("primary", upstream.url)], redis=redis)
        )
        async with _client(sidecar.port, "alice", session_id="s") as alice:
            await alice.ask("one")
            # Each kind of write runs in Redis once, its reply is lost, and it is
            # replayed: first a usage record, then a conversation append.
            for n, (marker, prompt) in enumerate([(b":usage\r\n", "two"), (b":c:", "three")]):
                proxy.armed = marker
                await alice.ask(prompt)
                assert proxy.dropped == n + 1 and proxy.armed is None

                async def settled(n: int = n) -> bool:
                    s = (await _status(sidecar.port)).shared_state
                    return s.state == "up" and s.pending_writes == 0 and s.replayed_writes > n

                await _eventually(settled)
            usage = await alice.get_usage()
        fresh = await sidecar_factory(
            make_settings([provider("primary", upstream.url)], redis=redis)
        )
        async with _client(fresh.port, "alice", session_id="s") as again:
            contents = [m.content for m in (await again.get_conversation()).messages]
        assert contents[::2] == ["one", "two", "three"]  # no append applied twice
        prompt, completion = _reported_usage(upstream)
        assert usage.total.requests == 3
        assert (usage.total.prompt_tokens, usage.total.completion_tokens) == (prompt, completion)
    finally:
        await proxy.stop()


# -- credentials from the URL ------------------------------------------------------------------


async def test_password_from_url_and_never_in_errors(
    upstream: FakeUpstream, sidecar_factory, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cret-redis-pass-91f2"
    server = RedisServer(password=secret).start()
    try:
        good = {"url": server.url, "key_prefix": redis_prefix, "durability": "required"}
        sidecar = await sidecar_factory(
            make_settings([provider("primary", upstream.url)], redis=good)
        )
        async with _client(sidecar.port, "alice", session_id="s") as alice:
            await alice.ask("authenticated")
            assert (await alice.get_usage()).total.requests == 1
        assert (await _status(sidecar.port)).shared_state.state == "up"

        wrong_url = server.url.replace(secret, "wrong-pass-77ad")
        bad = {**good, "url": wrong_url}
        refused = await sidecar_factory(
            make_settings([provider("primary", upstream.url)], redis=bad)
        )
        async with _client(refused.port, "alice", session_id="s") as alice:
            with pytest.raises(UnavailableError) as info:
                await alice.ask("not authenticated")
        message = str(info.value)
        assert "wrong-pass-77ad" not in message and secret not in message
        assert (await _status(refused.port)).shared_state.state == "down"
        logged = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
        assert "wrong-pass-77ad" not in logged and secret not in logged
    finally:
        server.stop()
