"""The gateway through the official MCP SDK's client: one namespace, per-user sessions,
each user's own token and identity upstream, and the entrance's refusals."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest
from mcp.shared.exceptions import MCPError

from llm_sidecar import Sidecar
from tests.integration.mcp.conftest import mcp_url
from tests.support.mcp_servers import INITIALIZE, mcp_client, text_of
from tests.support.raw_http import post_in_pieces

ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


async def test_tools_are_listed_under_their_servers_name_and_called(gateway: Sidecar) -> None:
    async with mcp_client(mcp_url(gateway), {"x-user-id": "lister"}) as session:
        names = {tool.name for tool in (await session.list_tools()).tools}
        assert {"notes__count", "notes__add_note", "notes__whoami"} <= names
        assert all(name.startswith("notes__") for name in names)
        first = await session.call_tool("notes__count", {})
        second = await session.call_tool("notes__count", {})
        assert (text_of(first), text_of(second)) == ("1", "2")


async def test_two_hundred_users_with_one_session_name_never_share_state(
    gateway: Sidecar,
) -> None:
    """Each (user, session) has its own upstream session: counters and notes stay apart
    though every user sends the same x-session-id, and each request upstream carries
    its own user's token and identity alone."""

    async def user(n: int) -> tuple[list[str], list[str], dict[str, str]]:
        headers = {
            "x-user-id": f"iso-{n}",
            "x-session-id": "same-session",
            "x-mcp-authorization-notes": f"Bearer token-of-{n}",
        }
        async with mcp_client(mcp_url(gateway), headers) as session:
            counts = [text_of(await session.call_tool("notes__count", {})) for _ in range(2)]
            await session.call_tool("notes__add_note", {"text": f"note of {n}"})
            notes = await session.call_tool("notes__list_notes", {})
            who = await session.call_tool("notes__whoami", {})
            assert who.structured_content is not None
            return counts, [c.text for c in notes.content], who.structured_content

    results = await asyncio.gather(*(user(n) for n in range(200)))
    for n, (counts, notes, who) in enumerate(results):
        assert counts == ["1", "2"], n
        assert notes == [f"note of {n}"], n
        assert who["authorization"] == f"Bearer token-of-{n}", n
        assert who["x-mcp-user"] == f"iso-{n}", n
    assert len(gateway.tools.sessions) == 200


async def test_a_users_next_session_starts_fresh_and_end_session_closes_it(
    gateway: Sidecar,
) -> None:
    headers = {"x-user-id": "ender", "x-session-id": "s1"}
    async with mcp_client(mcp_url(gateway), headers) as session:
        assert text_of(await session.call_tool("notes__count", {})) == "1"
    async with mcp_client(mcp_url(gateway), {**headers, "x-session-id": "s2"}) as session:
        assert text_of(await session.call_tool("notes__count", {})) == "1"
    async with mcp_client(mcp_url(gateway), headers) as session:
        assert text_of(await session.call_tool("notes__count", {})) == "2"
    assert len(gateway.tools.sessions) == 2
    await gateway.tools.sessions.end_session("ender", "s1")
    async with mcp_client(mcp_url(gateway), headers) as session:
        assert text_of(await session.call_tool("notes__count", {})) == "1"


async def test_a_name_of_no_server_is_a_json_rpc_error_and_the_rest_is_the_servers(
    gateway: Sidecar,
) -> None:
    async with mcp_client(mcp_url(gateway), {"x-user-id": "typo"}) as session:
        for name in ("nothing__count", "count", "notes__", "__count"):
            with pytest.raises(MCPError) as caught:
                await session.call_tool(name, {})
            assert caught.value.code == -32602
            assert "no such tool" in caught.value.message
        # A server's own tool names are its to judge: it answers as MCP says.
        answer = await session.call_tool("notes__nope", {})
        assert answer.is_error and "nope" in text_of(answer)


async def test_no_user_is_refused_before_any_mcp_message_is_read(gateway: Sidecar) -> None:
    async with aiohttp.ClientSession() as http:
        for body in (orjson.dumps(INITIALIZE), b"\x00\xff not json at all"):
            async with http.post(mcp_url(gateway), data=body, headers=ACCEPT) as reply:
                assert reply.status == 401
                answer = await reply.json()
                assert answer["jsonrpc"] == "2.0" and answer["id"] is None
                assert "x-user-id" in answer["error"]["message"]
                assert reply.headers["x-request-id"].startswith("sc-")


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-user-id", "null"),
        ("x-user-id", "a" * 200),
        ("x-permissions", "Finance"),
        ("x-mcp-authorization-notes", "t" * 5000),
        ("x-mcp-authorization-notes", "Bearer \x7fcontrol"),
        ("x-mcp-authorization-notes", "Bearer caf\xe9"),
    ],
)
async def test_hostile_headers_get_400_naming_the_header(
    gateway: Sidecar, header: str, value: str
) -> None:
    # A bare socket: the usual clients refuse to send some of these bytes at all.
    headers = {**ACCEPT, "x-user-id": "hostile", header: value}
    port = int(gateway.http_url.rsplit(":", 1)[1])
    reply = await post_in_pieces(
        "127.0.0.1", port, "/mcp", orjson.dumps(INITIALIZE), headers, pieces=1
    )
    assert reply.status == 400
    if value != "Bearer \x7fcontrol":  # aiohttp's own parser refuses DEL, in plain text
        assert header in orjson.loads(reply.body)["error"]["message"]
    assert len(gateway.tools.sessions) == 0


async def test_another_users_gateway_session_reads_as_not_found(gateway: Sidecar) -> None:
    async with aiohttp.ClientSession() as http:
        headers = {**ACCEPT, "x-user-id": "owner"}
        async with http.post(
            mcp_url(gateway), data=orjson.dumps(INITIALIZE), headers=headers
        ) as reply:
            assert reply.status == 200
            session_id = reply.headers["mcp-session-id"]
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        theirs = {
            **ACCEPT,
            "mcp-session-id": session_id,
            "mcp-protocol-version": "2025-11-25",
        }
        for user, status in (("intruder", 404), ("owner", 200)):
            async with http.post(
                mcp_url(gateway), data=orjson.dumps(listing), headers={**theirs, "x-user-id": user}
            ) as reply:
                assert reply.status == status, user


async def test_the_listening_stream_is_refused_and_resources_are_not_offered(
    gateway: Sidecar,
) -> None:
    async with aiohttp.ClientSession() as http:
        headers = {"accept": "text/event-stream", "x-user-id": "getter"}
        async with http.get(mcp_url(gateway), headers=headers) as reply:
            assert reply.status == 405
    async with mcp_client(mcp_url(gateway), {"x-user-id": "reader"}) as session:
        with pytest.raises(MCPError) as caught:
            await session.list_resources()
        assert caught.value.code == -32601


async def test_the_current_revision_needs_no_handshake_and_no_session(gateway: Sidecar) -> None:
    """A 2026-07-28 request is self-contained: no initialize, no Mcp-Session-Id; the
    user's upstream session is still their own."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "notes__count", "arguments": {}, "_meta": meta},
    }
    headers = {
        **ACCEPT,
        "x-user-id": "modern",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": "notes__count",
    }
    async with aiohttp.ClientSession() as http:
        for expected in ("1", "2"):
            async with http.post(
                mcp_url(gateway), data=orjson.dumps(body), headers=headers
            ) as reply:
                assert reply.status == 200 and "mcp-session-id" not in reply.headers
                assert (await reply.json())["result"]["content"][0]["text"] == expected
