"""Fixtures of the MCP gateway's tests: a real MCP server (the SDK's) for the session,
and sidecars whose gateway points at it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from llm_sidecar import Sidecar
from tests.support.mcp_servers import McpUpstream
from tests.support.sidecar import make_settings


@pytest.fixture(scope="session")
def notes_server() -> Iterator[McpUpstream]:
    """The SDK-written MCP server with per-session state, one for the whole run (each
    test's users are its own, so their sessions are too)."""
    server = McpUpstream("notes")
    yield server
    server.stop()


def notes_entry(url: str, **extra: Any) -> dict[str, Any]:
    return {"name": "notes", "url": url, "timeout_seconds": 10, **extra}


@pytest.fixture
async def gateway(
    notes_server: McpUpstream, sidecar_factory: Callable[..., Awaitable[Sidecar]]
) -> Sidecar:
    """A sidecar whose gateway has the notes server, forwarding the raw user id."""
    entry = notes_entry(notes_server.url, forward_identity="raw")
    return await sidecar_factory(make_settings(mcp={"servers": [entry]}))


def mcp_url(sidecar: Sidecar) -> str:
    return f"{sidecar.http_url}/mcp"
