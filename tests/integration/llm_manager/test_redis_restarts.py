"""Redis killed and restarted under a running sidecar: no call fails once it is back, and
no money is counted in a quota window that the bill does not show."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llm_manager_client import AsyncLLMManagerClient, UnavailableError, UserContext
from tests.support.redis_helpers import resource_status
from tests.support.redis_server import RedisServer
from tests.support.sidecar import make_settings, provider
from tests.support.upstream import FakeUpstream
from tests.support.waiting import eventually

PRICE = {"input": "2.5", "output": "10"}


def client(port: int, user: str, **ctx: Any) -> AsyncLLMManagerClient:
    return AsyncLLMManagerClient(f"127.0.0.1:{port}", UserContext(user, **ctx), timeout=10)


async def store_up(port: int) -> bool:
    status = (await resource_status(port)).shared_state
    return status.state == "up" and status.pending_writes == 0


async def _state_is(port: int, state: str) -> bool:
    return (await resource_status(port)).shared_state.state == state


async def ask_all(port: int, users: list[str], prompt: str) -> list[BaseException | str]:
    async def one(user: str) -> str:
        async with client(port, user, session_id="s") as c:
            return await c.ask(f"{prompt} from {user}", skip_cache=True)

    return await asyncio.gather(*(one(u) for u in users), return_exceptions=True)


@pytest.mark.parametrize("noticed", [True, False], ids=["outage-seen", "outage-unseen"])
async def test_required_mode_serves_every_call_once_redis_is_back(
    upstream: FakeUpstream,
    sidecar_factory,
    private_redis: RedisServer,
    redis_prefix: str,
    noticed: bool,
) -> None:
    """Connections pooled before a restart are dead. When the sidecar saw the outage it
    retires them; when Redis came back before anything noticed, each dead one fails
    once and the command is retried on a fresh connection. Either way concurrent calls
    after the restart all succeed (they used to fail for tens of seconds)."""
    redis = {
        "url": private_redis.url,
        "key_prefix": redis_prefix,
        "durability": "required",
        "watch_interval_seconds": 0.1 if noticed else 600,
        "health_check_interval_seconds": 600,  # no ping-before-use to hide dead connections
    }
    sidecar = await sidecar_factory(make_settings([provider("primary", upstream.url)], redis=redis))
    users = [f"user-{i}" for i in range(16)]
    upstream.latency = 0.05  # the 16 calls overlap, so the pool holds 16 connections
    assert all(isinstance(r, str) for r in await ask_all(sidecar.port, users, "before"))
    private_redis.stop()
    if noticed:
        await eventually(lambda: _state_is(sidecar.port, "down"), what="outage seen")
    await asyncio.to_thread(private_redis.start)
    await eventually(lambda: store_up(sidecar.port), what="store up again")
    for round_no in range(3):
        results = await ask_all(sidecar.port, users, f"after {round_no}")
        failures = [r for r in results if isinstance(r, BaseException)]
        assert failures == [], failures
    async with client(sidecar.port, "user-0", session_id="s") as c:
        history = [m.content for m in (await c.get_conversation()).messages]
        assert history[::2] == [
            f"{p} from user-0" for p in ("before", *(f"after {i}" for i in range(3)))
        ]
        assert (await c.get_usage()).total.requests == 4


async def test_an_answer_that_cannot_be_recorded_is_billed_as_refused_spend(
    upstream: FakeUpstream, sidecar_factory, private_redis: RedisServer, redis_prefix: str
) -> None:
    """The provider answered (and billed) while Redis was down, so the caller got
    UNAVAILABLE. The spend reaches the quota window and the bill together, as refused
    spend, once Redis is back: the window never counts what the bill does not show."""
    settings = make_settings(
        [provider("primary", upstream.url, price=PRICE)],
        redis={
            "url": private_redis.url,
            "key_prefix": redis_prefix,
            "durability": "required",
            "watch_interval_seconds": 0.1,
        },
        quotas={"usd_per_day": "10"},
    )
    sidecar = await sidecar_factory(settings)
    async with client(sidecar.port, "alice", session_id="s") as alice:
        first = await alice.ask_full("recorded")
        upstream.latency = 1.0
        call = asyncio.ensure_future(alice.ask("answered while redis is down"))
        await eventually(lambda: len(upstream.chat_requests) == 2, what="the upstream has it")
        private_redis.stop()
        with pytest.raises(UnavailableError):
            await call
        upstream.latency = 0.0
        await asyncio.to_thread(private_redis.start)
        await eventually(lambda: store_up(sidecar.port), what="store up, replays done")
        report = await alice.get_usage()
        history = (await alice.get_conversation()).messages
    total = report.total
    assert total.requests == 1 and total.cost_micro_usd == first.metadata.usage.cost_micro_usd
    assert total.refused_answers == 1 and total.refused_cost_micro_usd > 0
    assert total.refused_prompt_tokens > 0 and total.refused_completion_tokens > 0
    (window,) = report.quotas
    assert window.used == total.cost_micro_usd + total.refused_cost_micro_usd
    assert window.reserved == 0
    assert [m.content for m in history][::2] == ["recorded"]


async def test_responses_continue_through_an_outage_and_reach_redis_after_it(
    upstream: FakeUpstream, sidecar_factory, private_redis: RedisServer, redis_prefix: str
) -> None:
    """Best effort: while Redis is down a chain continues from the sidecar's own copy;
    once Redis is back the queued writes land, and another process finds them."""
    import aiohttp

    redis = {"url": private_redis.url, "key_prefix": redis_prefix, "watch_interval_seconds": 0.1}
    settings = make_settings([provider("primary", upstream.url)], redis=redis)
    sidecar = await sidecar_factory(settings)
    headers = {"x-user-id": "alice"}

    async def create(base: str, text: str, previous: str | None = None) -> dict[str, Any]:
        body = {"model": "m", "input": text, "previous_response_id": previous}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{base}/v1/responses", json=body, headers=headers) as reply,
        ):
            assert reply.status == 200, await reply.text()
            return dict(await reply.json())

    first = await create(sidecar.http_url, "before the outage")
    private_redis.stop()
    await eventually(lambda: _state_is(sidecar.port, "degraded"), what="outage seen")
    second = await create(sidecar.http_url, "during the outage", first["id"])
    assert upstream.chat_requests[-1].body["messages"][0]["content"] == "before the outage"
    await asyncio.to_thread(private_redis.start)
    await eventually(lambda: store_up(sidecar.port), what="queued writes replayed")
    other = await sidecar_factory(settings)
    third = await create(other.http_url, "after it, elsewhere", second["id"])
    sent = [m["content"] for m in upstream.chat_requests[-1].body["messages"]]
    assert sent[0::2] == ["before the outage", "during the outage", "after it, elsewhere"]
    assert third["previous_response_id"] == second["id"]
