"""Upstream MCP sessions are a bounded resource: a global cap that closes the least
recently used idle one, idle eviction by the sweep, and EndSession and ReleaseManager
over gRPC closing a user's."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from llm_manager_client import AsyncLLMManagerClient, UserContext
from llm_sidecar import Sidecar
from tests.integration.mcp.conftest import mcp_url, notes_entry
from tests.support.mcp_servers import McpUpstream, mcp_client, text_of
from tests.support.sidecar import make_settings
from tests.support.waiting import eventually


async def count(sidecar: Sidecar, user: str, session: str = "s") -> str:
    headers = {"x-user-id": user, "x-session-id": session}
    async with mcp_client(mcp_url(sidecar), headers) as client:
        return text_of(await client.call_tool("notes__count", {}))


async def gateway_with(
    notes_server: McpUpstream, factory: Callable[..., Awaitable[Sidecar]], **sections: Any
) -> Sidecar:
    mcp = {"servers": [notes_entry(notes_server.url)], **sections.pop("mcp", {})}
    return await factory(make_settings(mcp=mcp, **sections))


async def test_at_the_cap_the_least_recently_used_idle_session_closes(
    notes_server: McpUpstream, sidecar_factory: Callable[..., Awaitable[Sidecar]]
) -> None:
    sidecar = await gateway_with(notes_server, sidecar_factory, mcp={"max_sessions": 2})
    assert [await count(sidecar, "a"), await count(sidecar, "b")] == ["1", "1"]
    assert await count(sidecar, "a") == "2"  # b is now the least recently used
    assert await count(sidecar, "c") == "1"
    assert len(sidecar.tools.sessions) == 2
    assert await count(sidecar, "a") == "3"  # a's session was kept
    assert await count(sidecar, "b") == "1"  # b's was closed: a new one counts from 1


async def test_with_every_session_busy_a_new_one_is_refused_not_queued(
    notes_server: McpUpstream, sidecar_factory: Callable[..., Awaitable[Sidecar]]
) -> None:
    sidecar = await gateway_with(notes_server, sidecar_factory, mcp={"max_sessions": 1})
    async with mcp_client(mcp_url(sidecar), {"x-user-id": "sleeper"}) as sleeper:
        nap = asyncio.ensure_future(sleeper.call_tool("notes__nap", {"seconds": 30}))

        def busy() -> bool:
            return any(s.in_flight for s in sidecar.tools.sessions._sessions.values())

        await eventually(busy, what="the nap in flight")
        async with mcp_client(mcp_url(sidecar), {"x-user-id": "newcomer"}) as newcomer:
            with pytest.raises(MCPError) as caught:
                await newcomer.call_tool("notes__count", {})
        assert caught.value.code == -32012
        assert "mcp.max_sessions" in caught.value.message
        nap.cancel()


async def test_an_idle_session_is_closed_by_the_sweep(
    notes_server: McpUpstream, sidecar_factory: Callable[..., Awaitable[Sidecar]]
) -> None:
    sidecar = await gateway_with(
        notes_server,
        sidecar_factory,
        mcp={"session_idle_seconds": 0.2},
        managers={"sweep_interval_seconds": 0.1},
    )
    assert await count(sidecar, "idler") == "1"
    await eventually(lambda: len(sidecar.tools.sessions) == 0, what="the idle session closed")
    assert await count(sidecar, "idler") == "1"


async def test_end_session_and_release_manager_over_grpc_close_the_users_sessions(
    notes_server: McpUpstream, sidecar_factory: Callable[..., Awaitable[Sidecar]]
) -> None:
    sidecar = await gateway_with(notes_server, sidecar_factory)
    for session in ("s1", "s2"):
        assert await count(sidecar, "ender", session) == "1"
    assert await count(sidecar, "bystander", "s1") == "1"
    client = AsyncLLMManagerClient(
        f"127.0.0.1:{sidecar.port}", UserContext("ender", session_id="s1"), timeout=10
    )
    try:
        await client.end_session()
        assert len(sidecar.tools.sessions) == 2
        assert await count(sidecar, "ender", "s1") == "1"  # a new session
        assert await count(sidecar, "ender", "s2") == "2"  # untouched
        await client.release_manager()
    finally:
        await client.close()
    assert await count(sidecar, "ender", "s2") == "1"
    assert await count(sidecar, "bystander", "s1") == "2"
