"""Upstream MCP servers that fail: each fault gets a documented JSON-RPC error within
the server's timeout, and the gateway's other servers and users carry on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from mcp.shared.exceptions import MCPError

from llm_sidecar import Sidecar
from tests.integration.mcp.conftest import mcp_url, notes_entry
from tests.support.mcp_servers import FaultyMcp, McpUpstream, mcp_client, text_of
from tests.support.sidecar import make_settings

#: Each fault and the reason its error carries.
EXPECTED = {
    "hang": "MCP_SERVER_UNAVAILABLE",
    "reset": "MCP_SERVER_UNAVAILABLE",
    "malformed": "MCP_SERVER_UNAVAILABLE",
    "not_json": "MCP_SERVER_UNAVAILABLE",
    "huge_sse": "MCP_SERVER_UNAVAILABLE",
}


@pytest.mark.parametrize("mode", sorted(EXPECTED))
async def test_a_failing_server_gets_a_clear_error_and_the_others_carry_on(
    mode: str,
    notes_server: McpUpstream,
    sidecar_factory: Callable[..., Awaitable[Sidecar]],
) -> None:
    faulty = await FaultyMcp(mode).start()
    try:
        entries = [
            {"name": "faulty", "url": faulty.url, "timeout_seconds": 1.0},
            notes_entry(notes_server.url),
        ]
        mcp = {"servers": entries, "max_result_bytes": 64 * 1024}
        sidecar = await sidecar_factory(make_settings(mcp=mcp))

        async def failing() -> MCPError:
            async with mcp_client(mcp_url(sidecar), {"x-user-id": "victim"}) as session:
                with pytest.raises(MCPError) as caught:
                    await session.call_tool("faulty__work", {})
                return caught.value

        async def bystander() -> list[str]:
            async with mcp_client(mcp_url(sidecar), {"x-user-id": "bystander"}) as session:
                return [text_of(await session.call_tool("notes__count", {})) for _ in range(5)]

        started = time.monotonic()
        error, counts = await asyncio.gather(failing(), bystander())
        assert time.monotonic() - started < 10
        assert error.code == -32014, error
        assert error.error.data["reason"] == EXPECTED[mode]
        assert "faulty" in error.message and "127.0.0.1" not in error.message
        assert "oops" not in error.message and "bad gateway" not in error.message
        assert counts == ["1", "2", "3", "4", "5"]
        assert faulty.calls == 1  # a tool call is never repeated
        async with mcp_client(mcp_url(sidecar), {"x-user-id": "lister"}) as session:
            listed = {tool.name for tool in (await session.list_tools()).tools}
        assert "faulty__work" in listed and "notes__count" in listed
    finally:
        await faulty.stop()


async def test_a_result_over_the_limit_is_refused_whole(
    notes_server: McpUpstream, sidecar_factory: Callable[..., Awaitable[Sidecar]]
) -> None:
    mcp = {"servers": [notes_entry(notes_server.url)], "max_result_bytes": 8192}
    sidecar = await sidecar_factory(make_settings(mcp=mcp))
    async with mcp_client(mcp_url(sidecar), {"x-user-id": "big"}) as session:
        small = await session.call_tool("notes__blob", {"size": 100})
        assert len(text_of(small)) == 100
        with pytest.raises(MCPError) as caught:
            await session.call_tool("notes__blob", {"size": 20000})
        assert caught.value.code == -32015
        assert "mcp.max_result_bytes" in caught.value.message


async def test_a_server_down_at_listing_is_left_out_and_its_calls_fail_fast(
    notes_server: McpUpstream, sidecar_factory: Callable[..., Awaitable[Sidecar]]
) -> None:
    faulty = await FaultyMcp().start()
    url = faulty.url
    await faulty.stop()  # nothing listens there now
    entries = [{"name": "gone", "url": url, "timeout_seconds": 1.0}, notes_entry(notes_server.url)]
    sidecar = await sidecar_factory(
        make_settings(mcp={"servers": entries}, failover={"failure_threshold": 2})
    )
    async with mcp_client(mcp_url(sidecar), {"x-user-id": "lister"}) as session:
        listed = {tool.name for tool in (await session.list_tools()).tools}
        assert "notes__count" in listed
        assert not any(name.startswith("gone__") for name in listed)
        with pytest.raises(MCPError) as caught:
            await session.call_tool("gone__work", {})
        assert caught.value.code == -32014
        assert "circuit is open" in caught.value.message
    assert sidecar.tools.health() == {"gone": False, "notes": True}
