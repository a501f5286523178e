"""One user's session with one MCP server, through the official SDK's client.

The SDK's client lives inside async context managers (its task group must be left by
the task that entered it), so each session has a task of its own that opens it, holds
it until it is closed, and closes it: requests from any task use the session meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import mcp_types
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from llm_sidecar.core.vocabulary.errors import ToolServerError
from llm_sidecar.mcp_gateway.servers import ToolServer
from llm_sidecar.mcp_gateway.simulated import connect_demo

log = logging.getLogger("llm_sidecar.mcp")

#: Longest closing a session waits for the server's goodbye.
CLOSE_SECONDS = 2.0


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every session: building one loads the CA bundle, which
    measured 56 ms, paid by every session opened until it was shared."""
    return ssl.create_default_context()


class UpstreamSession:
    """An open MCP session; see the module."""

    __slots__ = (
        "_closing",
        "_owner",
        "_ready",
        "_session",
        "credential",
        "headers",
        "in_flight",
        "last_used",
        "max_result_bytes",
        "server",
    )

    def __init__(
        self, server: ToolServer, headers: dict[str, str], credential: str, max_result_bytes: int
    ) -> None:
        self.server = server
        self.headers = headers
        #: A digest of the user's own token this session was opened with ("" if none).
        self.credential = credential
        self.max_result_bytes = max_result_bytes
        self.last_used = time.monotonic()
        self.in_flight = 0
        self._session: ClientSession | None = None
        self._closing = asyncio.Event()
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._owner: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Connect and initialise; ToolServerError when the server cannot be reached."""
        self._owner = asyncio.create_task(self._own(), name=f"mcp-session-{self.server.name}")
        try:
            async with asyncio.timeout(self.server.timeout_seconds):
                await asyncio.shield(self._ready)
        except TimeoutError:
            await self.aclose()
            raise ToolServerError(self.server.name, "did not answer initialize in time") from None

    async def _own(self) -> None:
        server = self.server
        try:
            async with (
                self._streams() as (read, write, *_),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                self._session = session
                self._ready.set_result(None)
                await self._closing.wait()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(_unreachable(server.name, exc))
            else:
                log.warning(
                    "MCP session ended by the server",
                    extra={"mcp_server": server.name, "error": type(exc).__name__},
                )
        finally:
            self._session = None
            if not self._ready.done():
                self._ready.set_exception(ToolServerError(server.name, "the session closed"))

    @contextlib.asynccontextmanager
    async def _streams(self) -> AsyncIterator[tuple[Any, ...]]:
        """The SDK's streams to the server: Streamable HTTP, or the in-process demo."""
        server = self.server
        if server.kind == "simulated":
            async with connect_demo() as streams:
                yield streams
            return
        timeout = httpx2.Timeout(server.timeout_seconds, read=None)
        async with (
            httpx2.AsyncClient(headers=self.headers, timeout=timeout, verify=tls_context()) as http,
            streamable_http_client(
                server.url, http_client=http, max_sse_event_size=self.max_result_bytes
            ) as streams,
        ):
            yield streams

    @property
    def alive(self) -> bool:
        return self._session is not None and not self._closing.is_set()

    def _live(self) -> ClientSession:
        session = self._session
        if session is None or self._closing.is_set():
            raise ToolServerError(self.server.name, "the session has ended")
        return session

    async def list_tools(self) -> list[mcp_types.Tool]:
        """Every tool the server offers this session (all pages)."""
        session = self._live()
        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        for _ in range(100):  # a server that pages forever is cut off
            params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await self._timed(session.list_tools(params=params))
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def call_tool(
        self, tool: str, arguments: dict[str, Any] | None, timeout: float
    ) -> mcp_types.CallToolResult:
        """Run one tool call; ToolServerError when the server does not answer in time."""
        session = self._live()
        request = mcp_types.CallToolRequest(
            params=mcp_types.CallToolRequestParams(name=tool, arguments=arguments)
        )
        # Sent as a plain request, not through ``call_tool``: that one checks the result
        # against the tool's output schema (listing the tools first, once per session),
        # which is the calling agent's to do; the gateway passes the result on as sent.
        result: mcp_types.CallToolResult = await self._timed(
            session.send_request(request, mcp_types.CallToolResult), timeout
        )
        return result

    async def _timed(self, request: Any, timeout: float | None = None) -> Any:
        seconds = self.server.timeout_seconds if timeout is None else timeout
        try:
            async with asyncio.timeout(seconds):
                return await request
        except TimeoutError:
            raise ToolServerError(self.server.name, f"no answer within {seconds:g} s") from None

    async def aclose(self) -> None:
        """End the session (the SDK sends the server its DELETE) and wait for its task."""
        self._closing.set()
        owner = self._owner
        if owner is None or owner.done():
            return
        try:
            async with asyncio.timeout(CLOSE_SECONDS):
                await asyncio.shield(owner)
        except (TimeoutError, Exception):
            owner.cancel()
            with contextlib.suppress(BaseException):
                await owner


def _unreachable(server: str, exc: BaseException) -> ToolServerError:
    """What a failed open tells the caller: the server's name and the kind of failure,
    never its URL or what it said (which may quote request data)."""
    leaf = exc
    while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
        leaf = leaf.exceptions[0]
    return ToolServerError(server, f"cannot open a session ({type(leaf).__name__})")
