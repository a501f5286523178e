"""Redis state across versions and failures: bounds and TTLs on Redis 6 and 7,
exactly-once replays after lost replies, credentials that never leak."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import pytest

from llm_manager_client import UnavailableError
from llm_sidecar.config import RedisSettings
from llm_sidecar.core.state.conversation import HistoryBounds
from llm_sidecar.core.state.store import MemoryStateStore
from llm_sidecar.core.state.usage import answer_row
from llm_sidecar.core.vocabulary.models import ChatMessage, Usage
from llm_sidecar.stores.redis import RedisBackend, RedisStateStore
from tests.support.redis_helpers import (
    redis_client,
    reported_usage,
    resource_status,
)
from tests.support.redis_server import RedisServer, redis_server_binary
from tests.support.sidecar import make_settings, provider
from tests.support.upstream import FakeUpstream
from tests.support.waiting import eventually

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
        await ledger.record([answer_row("s", "m", "p", Usage(3, 4, 7), cached=False, cost=9)])
        await ledger.record([answer_row("s", "m", "p", Usage(), cached=True, cost=0)])
        (row,) = await ledger.rows()
        assert (row.requests, row.cache_hits, row.total_tokens) == (2, 1, 7)
        assert (row.cost_micro_usd, row.unpriced_answers) == (9, 0)
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
        #: Hang up on every new connection, as a Redis that went down would; with
        #: ``down_after_cut``, from the moment a reply is cut.
        self.refusing = False
        self.down_after_cut = False
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
        if self.refusing:
            writer.transport.abort()
            return
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
                    self.refusing = self.down_after_cut
                    writer.transport.abort()
                    return
                writer.write(data)
                await writer.drain()

        tasks = [
            asyncio.create_task(client_to_redis()),
            asyncio.create_task(redis_to_client()),
        ]
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
        # With a quota on, each answer's script also ends its quota reservation: the
        # replays must commit that once too.
        quotas = {"tokens_per_minute": 10**9, "minute_seconds": 3600}
        sidecar = await sidecar_factory(
            make_settings([provider("primary", upstream.url)], redis=redis, quotas=quotas)
        )
        async with redis_client(sidecar.port, "alice", session_id="s") as alice:
            await alice.ask("one")
            # Each kind of write runs in Redis once, its reply is lost (the connection
            # drops), and it is sent again on a fresh connection: first a usage record,
            # then a conversation append. Its write id applies it once.
            for n, (marker, prompt) in enumerate([(b":usage\r\n", "two"), (b":c:", "three")]):
                proxy.armed = marker
                await alice.ask(prompt)
                assert proxy.dropped == n + 1 and proxy.armed is None

                async def settled() -> bool:
                    s = (await resource_status(sidecar.port)).shared_state
                    return s.state == "up" and s.pending_writes == 0

                await eventually(settled)
            usage = await alice.get_usage()
        fresh = await sidecar_factory(
            make_settings([provider("primary", upstream.url)], redis=redis)
        )
        async with redis_client(fresh.port, "alice", session_id="s") as again:
            contents = [m.content for m in (await again.get_conversation()).messages]
        assert contents[::2] == ["one", "two", "three"]  # no append applied twice
        prompt, completion = reported_usage(upstream)
        assert usage.total.requests == 3
        assert (usage.total.prompt_tokens, usage.total.completion_tokens) == (prompt, completion)
        (quota,) = usage.quotas
        assert (quota.used, quota.reserved) == (prompt + completion, 0)
    finally:
        await proxy.stop()


async def test_an_answer_whose_commit_reply_was_lost_is_billed_once(
    upstream: FakeUpstream, sidecar_factory, private_redis: RedisServer, redis_prefix: str
) -> None:
    """Required durability: the answer's script runs in Redis, its reply is lost and
    Redis goes away before the retry, so the caller gets UNAVAILABLE and the spend is
    queued as undelivered. That replay carries the turn's write id: the spend the first
    script already recorded is not recorded again."""
    proxy = await ReplyDroppingProxy(private_redis.port).start()
    try:
        redis = {
            "url": f"redis://127.0.0.1:{proxy.port}/0",
            "key_prefix": redis_prefix,
            "durability": "required",
            "watch_interval_seconds": 0.1,
        }
        quotas = {"tokens_per_minute": 10**9, "minute_seconds": 3600}
        sidecar = await sidecar_factory(
            make_settings([provider("primary", upstream.url)], redis=redis, quotas=quotas)
        )
        async with redis_client(sidecar.port, "alice", session_id="s") as alice:
            await alice.ask("one")
            proxy.armed, proxy.down_after_cut = b":usage\r\n", True
            with pytest.raises(UnavailableError):
                await alice.ask("two")
            assert proxy.dropped == 1
            proxy.refusing = proxy.down_after_cut = False

            async def settled() -> bool:
                s = (await resource_status(sidecar.port)).shared_state
                return s.state == "up" and s.pending_writes == 0

            await eventually(settled, what="the undelivered spend replayed")
            usage = await alice.get_usage()
        total = usage.total
        prompt, completion = reported_usage(upstream)
        assert len(upstream.chat_requests) == 2
        assert total.requests + total.refused_answers == 2  # not 3
        assert (
            total.prompt_tokens + total.refused_prompt_tokens,
            total.completion_tokens + total.refused_completion_tokens,
        ) == (prompt, completion)
        (quota,) = usage.quotas
        assert (quota.used, quota.reserved) == (prompt + completion, 0)
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
        async with redis_client(sidecar.port, "alice", session_id="s") as alice:
            await alice.ask("authenticated")
            assert (await alice.get_usage()).total.requests == 1
        assert (await resource_status(sidecar.port)).shared_state.state == "up"

        wrong_url = server.url.replace(secret, "wrong-pass-77ad")
        bad = {**good, "url": wrong_url}
        refused = await sidecar_factory(
            make_settings([provider("primary", upstream.url)], redis=bad)
        )
        async with redis_client(refused.port, "alice", session_id="s") as alice:
            with pytest.raises(UnavailableError) as info:
                await alice.ask("not authenticated")
        message = str(info.value)
        assert "wrong-pass-77ad" not in message and secret not in message
        assert (await resource_status(refused.port)).shared_state.state == "down"
        logged = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
        assert "wrong-pass-77ad" not in logged and secret not in logged
    finally:
        server.stop()
