"""``/mcp``: the gateway's Streamable HTTP endpoint, served by the official MCP SDK
(its low-level server and session manager speak every revision the SDK knows, the
2026-07-28 per-request envelope and the handshake revisions alike).

The entrance has already checked the token, read the user and the body; the caller
rides in the ASGI scope to the handlers, which run in the SDK's own tasks. A gateway
session belongs to the user (and user session) that opened it: under another user's
headers its id reads as not found. The gateway sends no server-initiated messages, so
the listening GET stream is refused (405), as the specification allows.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import mcp_types
from aiohttp import web
from opentelemetry import trace

from llm_sidecar.core.vocabulary.errors import Category, InvalidRequestError, SidecarError
from llm_sidecar.http_api.edge import HttpCall
from llm_sidecar.http_api.errors import HttpError
from llm_sidecar.http_api.mcp.asgi import serve_asgi
from llm_sidecar.mcp_gateway.gateway import Caller, ToolGateway
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError

#: Where the caller rides in the ASGI scope to the SDK's handlers.
CALLER = "llm_sidecar.caller"
#: The SDK's principal needs a token field; the gateway's principals have none.
NO_TOKEN = ""
#: Longest a user's own token for a server may be.
MAX_TOKEN_LENGTH = 4096
_TOKEN = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")

#: JSON-RPC error codes of the core's categories (the SDK's standard ones where they
#: fit, else in the range JSON-RPC leaves to servers); ``data`` carries the reason.
RPC_CODES: dict[Category, int] = {
    Category.INVALID: mcp_types.INVALID_PARAMS,
    Category.TOO_LARGE: mcp_types.INVALID_PARAMS,
    Category.NOT_FOUND: mcp_types.INVALID_PARAMS,
    Category.UNAUTHENTICATED: -32010,
    Category.DENIED: -32011,
    Category.EXHAUSTED: -32012,
    Category.DEADLINE: -32013,
    Category.UNAVAILABLE: -32014,
    Category.BAD_OUTPUT: -32015,
    Category.INTERNAL: mcp_types.INTERNAL_ERROR,
}


def rpc_error(exc: SidecarError) -> MCPError:
    """The JSON-RPC error a core error answers with: its category's code, its message
    (written for the caller: a tool's name, never its arguments), and its reason."""
    if exc.category is Category.INTERNAL:
        return MCPError(mcp_types.INTERNAL_ERROR, "internal error")
    data: dict[str, Any] = {"reason": exc.reason}
    if exc.retry_after is not None:
        data["retry_after_seconds"] = round(exc.retry_after, 3)
    return MCPError(RPC_CODES[exc.category], exc.message, data)


class McpEndpoint:
    """The ``/mcp`` handlers, over a :class:`ToolGateway`."""

    def __init__(
        self, gateway: ToolGateway, *, max_sessions: int, idle_seconds: float, max_body: int
    ) -> None:
        self.gateway = gateway
        self.server: Server[Any] = Server(
            "llm-sidecar",
            version="0.1.0",
            instructions="Tools of the configured MCP servers, named <server>__<tool>.",
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        self.manager = StreamableHTTPSessionManager(
            self.server,
            json_response=True,
            session_idle_timeout=idle_seconds,
            max_sessions=max_sessions,
            max_request_body_size=max_body,
        )
        self._stop = asyncio.Event()
        self._running: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the SDK's session manager (its task group lives in a task of its own)."""
        self._running = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(), name="mcp-endpoint")
        await asyncio.shield(self._running)

    async def _run(self) -> None:
        assert self._running is not None
        async with self.manager.run():
            self._running.set_result(None)
            await self._stop.wait()

    async def stop(self) -> None:
        """End every gateway session, then every upstream one."""
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self.gateway.close()

    async def handle(self, call: HttpCall) -> web.StreamResponse:
        """One request to ``/mcp`` from an admitted caller."""
        request = call.request
        if request.method == "GET":
            raise HttpError(
                405,
                "this gateway sends no server-initiated messages: POST only",
                reason="METHOD_NOT_ALLOWED",
            )
        ctx = call.ctx
        assert ctx is not None
        caller = Caller(ctx, self._tokens(request))
        # The SDK ties a session to the principal that opened it; here that is the user
        # and user session the entrance admitted (no token of theirs is involved).
        principal = f"{ctx.user_id}\x1f{ctx.session_id or ''}"
        owner = AccessToken(token=NO_TOKEN, client_id=principal, scopes=[])
        extra = {CALLER: (caller, call.scope.span), "user": AuthenticatedUser(owner)}
        return await serve_asgi(self.manager.handle_request, request, call.raw, extra, call.headers)

    def _tokens(self, request: web.Request) -> dict[str, str]:
        """The user's own token per server, from ``x-mcp-authorization-<server>``."""
        tokens: dict[str, str] = {}
        for name, server in self.gateway.servers.items():
            header = server.user_token_header
            value = request.headers.get(header)
            if value is None:
                continue
            if len(value) > MAX_TOKEN_LENGTH or _TOKEN.fullmatch(value) is None:
                raise InvalidRequestError(
                    header, f"must be printable ASCII, at most {MAX_TOKEN_LENGTH} characters"
                )
            tokens[name] = value
        return tokens

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListToolsResult:
        caller, _ = _caller(ctx)
        try:
            tools = await self.gateway.list_tools(caller)
        except SidecarError as exc:
            raise rpc_error(exc) from None
        return mcp_types.ListToolsResult(tools=tools)

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: mcp_types.CallToolRequestParams
    ) -> mcp_types.CallToolResult:
        caller, span = _caller(ctx)
        parent = trace.set_span_in_context(span) if span is not None else None
        try:
            return await self.gateway.call_tool(caller, params.name, params.arguments, parent)
        except SidecarError as exc:
            raise rpc_error(exc) from None


def _caller(ctx: ServerRequestContext[Any, Any]) -> tuple[Caller, Any]:
    """The caller the entrance admitted for the HTTP request this message came in."""
    request = ctx.request
    scope = getattr(request, "scope", None)
    if scope is None or CALLER not in scope:
        raise MCPError(mcp_types.INTERNAL_ERROR, "internal error")
    found: tuple[Caller, Any] = scope[CALLER]
    return found
