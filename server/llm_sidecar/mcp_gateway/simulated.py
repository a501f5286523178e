"""The built-in demo MCP server (``kind = "simulated"``), run in-process over the SDK's
memory streams: the default configuration's ``demo`` server, so the gateway and the
Responses API's MCP tools work offline with ``make run``, as the simulated provider
does for models. Each session gets a server of its own, so its state is its own."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.shared.memory import create_client_server_memory_streams


def demo_server() -> MCPServer[Any]:
    """A fresh demo server: an echo, a counter and a note store, for one session."""
    server: MCPServer[Any] = MCPServer("demo", instructions="The sidecar's built-in demo.")
    counter = [0]
    notes: list[str] = []

    @server.tool()
    def echo(text: str) -> str:
        """Return the text as given."""
        return text

    @server.tool()
    def count() -> int:
        """Add one to this session's counter and return it."""
        counter[0] += 1
        return counter[0]

    @server.tool()
    def add_note(text: str) -> int:
        """Keep a note in this session; returns how many notes it holds."""
        notes.append(text)
        return len(notes)

    @server.tool()
    def list_notes() -> list[str]:
        """This session's notes, oldest first."""
        return list(notes)

    return server


@contextlib.asynccontextmanager
async def connect_demo() -> AsyncIterator[tuple[Any, Any]]:
    """Client streams to a demo server running in a task of this context."""
    lowlevel = demo_server()._lowlevel_server  # the SDK's own in-memory transport does so
    options = lowlevel.create_initialization_options()
    async with (
        create_client_server_memory_streams() as (client, served),
        anyio.create_task_group() as group,
    ):
        group.start_soon(lowlevel.run, served[0], served[1], options)
        try:
            yield client
        finally:
            group.cancel_scope.cancel()
