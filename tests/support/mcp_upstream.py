"""A real MCP server for tests, written with the official SDK (``MCPServer``), served
over Streamable HTTP by uvicorn on a loopback port.

Its tools keep state per MCP session (a counter, a note store), so a test can tell
whether two callers shared a session; ``whoami`` says which credentials and identity
a request carried. Run it in a child process: ``python -m tests.support.mcp_upstream``
prints ``listening <port>`` once it takes requests.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from collections import Counter
from typing import Any

import uvicorn
from mcp.server.mcpserver import Context, MCPServer

#: Per MCP session: the counter and the notes.
COUNTS: dict[str, int] = {}
NOTES: dict[str, list[str]] = {}
#: Every call of every tool, whoever made it: what reached the server at all.
TALLY: Counter[str] = Counter()


def _session(ctx: Context[Any, Any]) -> str:
    headers = ctx.headers or {}
    return str(headers.get("mcp-session-id", "-"))


def build(name: str = "notes") -> MCPServer[Any]:
    """The server and its tools."""
    server: MCPServer[Any] = MCPServer(name)

    @server.tool()
    def count(ctx: Context[Any, Any]) -> int:
        """Add one to this session's counter and return it."""
        TALLY["count"] += 1
        sid = _session(ctx)
        COUNTS[sid] = COUNTS.get(sid, 0) + 1
        return COUNTS[sid]

    @server.tool()
    def add_note(text: str, ctx: Context[Any, Any]) -> int:
        """Keep a note in this session; returns how many it holds."""
        TALLY["add_note"] += 1
        notes = NOTES.setdefault(_session(ctx), [])
        notes.append(text)
        return len(notes)

    @server.tool()
    def list_notes(ctx: Context[Any, Any]) -> list[str]:
        """This session's notes."""
        TALLY["list_notes"] += 1
        return NOTES.get(_session(ctx), [])

    @server.tool()
    def whoami(ctx: Context[Any, Any]) -> dict[str, str]:
        """The credentials and identity this request carried."""
        TALLY["whoami"] += 1
        headers = ctx.headers or {}
        return {
            key: str(headers.get(key, ""))
            for key in ("authorization", "x-mcp-user", "x-service-key")
        }

    @server.tool()
    def echo(text: str) -> str:
        """The text back."""
        TALLY["echo"] += 1
        return text

    @server.tool()
    def blob(size: int) -> str:
        """A text of ``size`` bytes."""
        TALLY["blob"] += 1
        return "x" * size

    @server.tool()
    async def nap(seconds: float) -> str:
        """Answer after ``seconds``."""
        TALLY["nap"] += 1
        await asyncio.sleep(seconds)
        return "awake"

    @server.tool()
    def delete_everything() -> str:
        """A tool no policy should let through."""
        TALLY["delete_everything"] += 1
        return "deleted"

    @server.tool()
    def tally() -> dict[str, int]:
        """How many times each tool was called, by anyone."""
        return dict(TALLY)

    return server


async def serve(port: int, name: str, json_response: bool) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: without it, small answers wait on delayed ACKs.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", port))
    app = build(name).streamable_http_app(json_response=json_response)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    print(f"listening {sock.getsockname()[1]}", flush=True)
    await task


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--name", default="notes")
    parser.add_argument("--sse", action="store_true", help="answer in SSE, not JSON")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port, args.name, not args.sse))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
