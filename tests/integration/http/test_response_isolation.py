"""Stored responses belong to their user: 200 users chain responses at once and then
use each other's ids on purpose (in previous_response_id, GET, DELETE and
input_items). Every such use is a 404 exactly like an id that never existed, and
no user's marker reaches another user's upstream request or stored chain: in memory,
in Redis, and in Redis after the sidecar restarts."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import pytest

from llm_sidecar import Sidecar
from tests.support.sidecar import make_settings, provider
from tests.support.upstream import FakeUpstream

USERS = 200
STEPS = 3
MARKER = re.compile(r"marker-(u\d+)-\d")


class Caller:
    """One user's HTTP calls to the Responses API."""

    def __init__(self, session: aiohttp.ClientSession, base: str, user: str) -> None:
        self.session = session
        self.base = base
        self.headers = {"x-user-id": user, "Authorization": "Bearer unused"}
        self.user = user

    async def create(self, text: str, previous: str | None = None) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {"model": "m", "input": text}
        if previous is not None:
            body["previous_response_id"] = previous
        return await self._send("POST", "/v1/responses", body)

    async def _send(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        async with self.session.request(
            method, self.base + path, json=body, headers=self.headers
        ) as reply:
            return reply.status, await reply.json()

    async def chain(self) -> list[str]:
        ids: list[str] = []
        for step in range(STEPS):
            status, body = await self.create(f"marker-{self.user}-{step}", ids[-1] if ids else None)
            assert status == 200, body
            ids.append(body["id"])
        return ids

    async def uses_of(self, response_id: str) -> list[tuple[int, dict[str, Any]]]:
        """Every way of naming a response: continue it, fetch it, list its input, delete it."""
        path = f"/v1/responses/{response_id}"
        return [
            await self.create("an attempt to continue", response_id),
            await self._send("GET", path),
            await self._send("GET", path + "/input_items?limit=100"),
            await self._send("DELETE", path),
        ]


def owners(text: str) -> set[str]:
    return set(MARKER.findall(text))


async def never_crossed(
    callers: list[Caller], ids: list[list[str]], up: FakeUpstream, steps: int = STEPS
) -> dict[str, int]:
    """Every cross-user use is the 404 of a missing id; each chain holds its own user's
    markers only; every upstream request carried one user's markers."""
    uses = await asyncio.gather(
        *(c.uses_of(ids[(i + 1) % USERS][-1]) for i, c in enumerate(callers)),
    )
    missing = await callers[0].uses_of("resp_" + "0" * 48)
    for attempt in uses:
        assert [(s, b["error"]["code"]) for s, b in attempt] == [
            (s, b["error"]["code"]) for s, b in missing
        ]
        assert all(s == 404 for s, _ in attempt)
    for i, caller in enumerate(callers):
        status, listed = await caller._send(
            "GET", f"/v1/responses/{ids[i][-1]}/input_items?limit=100&order=asc"
        )
        assert status == 200, listed
        texts = " ".join(str(item) for item in listed["data"])
        assert owners(texts) == {caller.user}
        assert len(listed["data"]) == 2 * steps - 1
    for request in up.chat_requests:
        assert len(owners(str(request.body))) <= 1, "one request carried two users' text"
    return {"cross_user_uses": 4 * USERS, "upstream_requests": len(up.chat_requests)}


@pytest.mark.parametrize("store", ["memory", "redis", "redis-cluster"])
async def test_200_users_chain_at_once_and_never_reach_each_other(
    store: str, upstream_factory, sidecar_factory, request: pytest.FixtureRequest
) -> None:
    up = await upstream_factory("up")
    sections: dict[str, Any] = {"limits": {"max_concurrent_per_user": 0}}
    if store != "memory":
        cluster = store == "redis-cluster"
        url = request.getfixturevalue("redis_cluster_url" if cluster else "redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        mode = "cluster" if cluster else "standalone"
        sections["redis"] = {"url": url, "key_prefix": prefix, "mode": mode}
    settings = make_settings([provider("up", up.url)], **sections)
    sidecar: Sidecar = await sidecar_factory(settings)
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:
        callers = [Caller(session, sidecar.http_url, f"u{i}") for i in range(USERS)]
        ids = await asyncio.gather(*(c.chain() for c in callers))
        figures = await never_crossed(callers, ids, up)
        assert figures["upstream_requests"] == USERS * STEPS  # no stolen id reached one
        if store == "memory":
            return
        # A new process on the same Redis: the chains are still there, still apart.
        await sidecar.stop(grace=0.2)
        again = await sidecar_factory(settings)
        callers = [Caller(session, again.http_url, f"u{i}") for i in range(USERS)]
        results = await asyncio.gather(
            *(c.create(f"marker-{c.user}-{STEPS}", ids[i][-1]) for i, c in enumerate(callers))
        )
        assert all(status == 200 for status, _ in results)
        for (_, body), caller in zip(results, callers, strict=True):
            assert body["previous_response_id"] in ids[int(caller.user[1:])]
        extended = [[*ids[i], body["id"]] for i, (_, body) in enumerate(results)]
        await never_crossed(callers, extended, up, STEPS + 1)
