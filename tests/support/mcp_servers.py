"""MCP servers for tests: the SDK-written one (``mcp_upstream``) in a child process, a
misbehaving one in-process (aiohttp) for faults, and MCP clients of the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import orjson
from aiohttp import web
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.support.sidecar import ROOT

#: Shared: building a TLS context per client loads the CA bundle each time (~50 ms).
_TLS = ssl.create_default_context()


class McpUpstream:
    """``tests/support/mcp_upstream.py`` in a child process (its state is its own)."""

    def __init__(self, name: str = "notes", *, sse: bool = False) -> None:
        args = [sys.executable, "-m", "tests.support.mcp_upstream", "--name", name]
        self.proc = subprocess.Popen(
            [*args, *(["--sse"] if sse else [])],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("listening "):
            self.proc.kill()
            raise RuntimeError(f"the MCP server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}/mcp"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.asynccontextmanager
async def mcp_client(url: str, headers: dict[str, str]) -> AsyncIterator[ClientSession]:
    """An initialised session of the official SDK's client, sending ``headers``."""
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0), verify=_TLS) as http,
        streamable_http_client(url, http_client=http) as (read, write, *_),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def text_of(result: Any) -> str:
    """The first text block of a tool result."""
    return str(result.content[0].text)


#: A client's first message (the handshake revision, as most clients send today).
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}

#: What the misbehaving server does on tools/call.
FAULTS = ("healthy", "hang", "reset", "malformed", "not_json", "huge_sse")


class FaultyMcp:
    """A server that speaks MCP's handshake correctly and then fails ``tools/call`` as
    ``mode`` says; it counts the calls it received."""

    def __init__(self, mode: str = "healthy", huge: int = 4 * 1024 * 1024) -> None:
        assert mode in FAULTS
        self.mode = mode
        self.huge = huge
        self.calls = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> FaultyMcp:
        app = web.Application()
        app.router.add_post("/mcp", self._post)
        app.router.add_route("GET", "/mcp", lambda _: _status(405))
        app.router.add_route("DELETE", "/mcp", lambda _: _status(200))
        # A hung handler ends when its client goes, or at once when the server stops.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/mcp"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _post(self, request: web.Request) -> web.StreamResponse:
        message = orjson.loads(await request.read())
        method, rid = message.get("method"), message.get("id")
        headers = {"mcp-session-id": "faulty-1"}
        if rid is None:
            return web.Response(status=202, headers=headers)
        if method == "initialize":
            result = {
                "protocolVersion": message["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "faulty", "version": "1"},
            }
        elif method == "tools/list":
            schema = {"type": "object", "properties": {}}
            result = {"tools": [{"name": "work", "inputSchema": schema}]}
        elif method == "tools/call":
            self.calls += 1
            return await self._fault(request, rid, headers)
        else:
            result = {}
        return web.json_response({"jsonrpc": "2.0", "id": rid, "result": result}, headers=headers)

    async def _fault(
        self, request: web.Request, rid: Any, headers: dict[str, str]
    ) -> web.StreamResponse:
        mode = self.mode
        if mode == "hang":
            await asyncio.Event().wait()
        if mode == "reset":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=200)
        if mode == "malformed":
            return web.json_response({"jsonrpc": "2.0", "id": rid, "oops": 1}, headers=headers)
        if mode == "not_json":
            return web.Response(
                body=b"<html>bad gateway", content_type="application/json", headers=headers
            )
        if mode == "huge_sse":
            response = web.StreamResponse(headers={**headers, "content-type": "text/event-stream"})
            await response.prepare(request)
            text = "y" * self.huge
            body = {
                "jsonrpc": "2.0",
                "id": rid,
                "result": {"content": [{"type": "text", "text": text}]},
            }
            await response.write(b"event: message\ndata: " + orjson.dumps(body) + b"\n\n")
            return response
        content = [{"type": "text", "text": "done"}]
        return web.json_response(
            {"jsonrpc": "2.0", "id": rid, "result": {"content": content}}, headers=headers
        )


def _status(status: int) -> web.Response:
    return web.Response(status=status)
