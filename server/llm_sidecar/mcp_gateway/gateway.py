"""Tool requests of one user, to the configured MCP servers: the access policy, the
per-user quota, each server's breaker and timeout, the result limit, and the span.

Listing is safe to repeat, so it is retried; a tool call is not (it may act), so it
goes out once. A server that is down is left out of a listing, never the others.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import mcp_types
import orjson
from mcp.shared.exceptions import MCPError
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from llm_sidecar.core.admission.quotas import QuotaGate, Spend
from llm_sidecar.core.guard.policy import Guard
from llm_sidecar.core.guard.shield import Shield
from llm_sidecar.core.observability import Observability
from llm_sidecar.core.state.quota_store import UserQuotas
from llm_sidecar.core.tools.policy import ToolLimits, ToolPolicy
from llm_sidecar.core.vocabulary.context import UserExecutionContext
from llm_sidecar.core.vocabulary.errors import (
    NotFoundError,
    SidecarError,
    ToolDeniedError,
    ToolResultTooLargeError,
    ToolServerError,
)
from llm_sidecar.core.vocabulary.tools import qualified, split
from llm_sidecar.mcp_gateway.servers import ToolServer
from llm_sidecar.mcp_gateway.sessions import SessionKey, SessionTable

log = logging.getLogger("llm_sidecar.mcp")

#: Failures the SDK's client reports as JSON-RPC errors of its own: the connection
#: closed, no answer in time, or an answer that is not JSON-RPC (its message would
#: quote what the server sent, so it is never passed on).
_TRANSPORT_CODES = frozenset(
    {mcp_types.CONNECTION_CLOSED, mcp_types.REQUEST_TIMEOUT, mcp_types.PARSE_ERROR}
)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a tool request is for, and the user's own token per server name (each is
    sent only to its server, only in this user's sessions)."""

    ctx: UserExecutionContext
    tokens: Mapping[str, str] = field(default_factory=dict)


class ToolGateway:
    """See the module."""

    def __init__(
        self,
        servers: Sequence[ToolServer],
        policy: ToolPolicy,
        limits: ToolLimits,
        *,
        gate: QuotaGate,
        quotas: Callable[[str], UserQuotas],
        observability: Observability,
        guard: Guard | None = None,
    ) -> None:
        self.servers = {server.name: server for server in servers}
        self.policy = policy
        self.limits = limits
        self.sessions = SessionTable(limits)
        self._gate = gate
        self._quotas = quotas
        self._obs = observability
        #: The default guardrails: a tool's arguments and results are the user's own
        #: (nothing comes back to restore), so they are masked or refused, never
        #: replaced by placeholders.
        self._guard = None if guard is None else guard.policy("")

    def _shield(self, *, output: bool) -> Shield | None:
        if self._guard is None:
            return None
        return Shield(self._guard, self._obs, pseudonymize=False, output=output)

    def _session_of(
        self, server: ToolServer, caller: Caller
    ) -> tuple[SessionKey, dict[str, str], str]:
        """The session key, the headers and the credential digest of ``caller`` on ``server``."""
        ctx = caller.ctx
        headers = dict(server.headers)
        credential = ""
        token = caller.tokens.get(server.name)
        if token:
            headers["authorization"] = token
            credential = hashlib.blake2b(token.encode(), digest_size=16).hexdigest()
        if server.forward_identity == "raw":
            headers[server.identity_header] = ctx.user_id
        elif server.forward_identity == "pseudonym":
            headers[server.identity_header] = self._obs.keyed("mcp-user", ctx.user_id)
        return (ctx.user_id, ctx.session_id or "", server.name), headers, credential

    async def list_tools(self, caller: Caller) -> list[mcp_types.Tool]:
        """The tools ``caller`` may use, named ``<server>__<tool>``; a server that cannot
        answer is left out (and logged)."""
        groups = caller.ctx.permissions
        servers = [s for s in self.servers.values() if self.policy.may_use_server(groups, s.name)]
        found = await asyncio.gather(
            *(self._list_one(caller, server) for server in servers), return_exceptions=True
        )
        tools: list[mcp_types.Tool] = []
        for server, listed in zip(servers, found, strict=True):
            if isinstance(listed, BaseException):
                if not isinstance(listed, SidecarError | MCPError):
                    raise listed
                log.warning(
                    "MCP server left out of a tool list",
                    extra={"mcp_server": server.name, "reason": type(listed).__name__},
                )
                continue
            tools.extend(listed)
        return tools

    async def list_server(self, caller: Caller, name: str) -> list[mcp_types.Tool]:
        """The tools of one server ``caller`` may use, named ``<server>__<tool>``
        (retried, as every listing; SidecarError when the server cannot answer)."""
        if not self.policy.may_use_server(caller.ctx.permissions, name):
            return []
        try:
            return await self._list_one(caller, self.servers[name])
        except MCPError as exc:
            raise _transport_error(self.servers[name], exc) from None

    async def _list_one(self, caller: Caller, server: ToolServer) -> list[mcp_types.Tool]:
        key, headers, credential = self._session_of(server, caller)
        groups = caller.ctx.permissions
        for attempt in range(self.limits.list_retries + 1):
            permit = server.breaker.acquire()
            if permit is None:
                raise _circuit_open(server)
            with permit:
                try:
                    async with self.sessions.use(key, server, headers, credential) as session:
                        listed = await session.list_tools()
                except ToolServerError:
                    permit.failure()
                    if attempt == self.limits.list_retries:
                        raise
                    continue
                except MCPError as exc:
                    if exc.error.code not in _TRANSPORT_CODES:
                        permit.success()
                        raise
                    permit.failure()
                    if attempt == self.limits.list_retries:
                        raise _transport_error(server, exc) from None
                    continue
                permit.success()
            return [
                tool.model_copy(update={"name": qualified(server.name, tool.name)})
                for tool in listed
                if self.policy.allows(groups, server.name, tool.name)
            ]
        raise AssertionError("unreachable")  # pragma: no cover

    def _target(self, caller: Caller, name: str) -> tuple[ToolServer, str]:
        parts = split(name)
        server = self.servers.get(parts[0]) if parts is not None else None
        if parts is None or server is None:
            raise NotFoundError("name", "tool")
        if not self.policy.allows(caller.ctx.permissions, server.name, parts[1]):
            raise ToolDeniedError(name)
        return server, parts[1]

    async def call_tool(
        self,
        caller: Caller,
        name: str,
        arguments: dict[str, Any] | None,
        parent: Context | None = None,
    ) -> mcp_types.CallToolResult:
        """Run tool ``name`` for ``caller``: NotFoundError for a name no server has,
        ToolDeniedError when the policy says no (nothing goes upstream either way),
        QuotaExceededError past ``tool_calls_per_minute``, ToolServerError when the
        server cannot answer, ToolResultTooLargeError past the result limit."""
        server, tool = self._target(caller, name)
        shield = self._shield(output=False)
        if shield is not None and arguments:
            arguments = shield.tree(arguments, "arguments")
            shield.record()
        quotas = self._quotas(caller.ctx.user_id)
        reservation = await self._gate.admit(quotas, Spend(tool_calls=1), server.timeout_seconds)
        outcome = "error"
        try:
            with self._obs.span(
                f"execute_tool {name}", SpanKind.CLIENT, _attributes(name), parent
            ) as span:
                try:
                    result = self._screened(await self._call(caller, server, tool, arguments))
                except SidecarError as exc:
                    if span.is_recording():
                        span.set_attribute("error.type", exc.reason)
                        span.set_status(Status(StatusCode.ERROR, exc.reason))
                    raise
                outcome = "tool_error" if result.is_error else "ok"
                if result.is_error and span.is_recording():
                    span.set_attribute("error.type", "tool_error")
            return result
        finally:
            self._obs.tool_calls.add(1, {"mcp.server": server.name, "outcome": outcome})
            if reservation is not None:
                settlement = reservation.end(Spend(tool_calls=1))
                if settlement is not None:
                    await settlement.apply()

    async def _call(
        self, caller: Caller, server: ToolServer, tool: str, arguments: dict[str, Any] | None
    ) -> mcp_types.CallToolResult:
        permit = server.breaker.acquire()
        if permit is None:
            raise _circuit_open(server)
        key, headers, credential = self._session_of(server, caller)
        with permit:
            try:
                async with self.sessions.use(key, server, headers, credential) as session:
                    result = await session.call_tool(tool, arguments, server.timeout_seconds)
            except ToolServerError:
                permit.failure()
                raise
            except MCPError as exc:
                if exc.error.code in _TRANSPORT_CODES:
                    permit.failure()
                    raise _transport_error(server, exc) from None
                permit.success()
                raise
            permit.success()
        size = len(orjson.dumps(result.model_dump(by_alias=True, exclude_none=True, mode="json")))
        if size > self.limits.max_result_bytes:
            raise ToolResultTooLargeError(
                qualified(server.name, tool), size, self.limits.max_result_bytes
            )
        return result

    def _screened(self, result: mcp_types.CallToolResult) -> mcp_types.CallToolResult:
        """A tool's result as the guardrails let it back: its text and structured
        content masked, or refused whole (BAD_OUTPUT) for a blocked value."""
        shield = self._shield(output=True)
        if shield is None:
            return result
        content = [
            block.model_copy(update={"text": shield.text(block.text, f"result.content[{i}]")})
            if isinstance(block, mcp_types.TextContent)
            else block
            for i, block in enumerate(result.content)
        ]
        update: dict[str, Any] = {"content": content}
        if result.structured_content is not None:
            structured = shield.tree(result.structured_content, "result.structuredContent")
            update["structured_content"] = structured
        shield.record()
        return result.model_copy(update=update)

    def health(self) -> dict[str, bool]:
        """Each server's health as its breaker sees it (False: its circuit is open)."""
        return {name: server.breaker.retry_after() == 0 for name, server in self.servers.items()}

    async def close(self) -> None:
        """Close every upstream session (shutdown)."""
        await self.sessions.close_all()


def _attributes(name: str) -> dict[str, Any]:
    """The GenAI and MCP conventions' attributes of a tool call: its name, never its
    arguments or result."""
    return {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": name,
        "gen_ai.tool.type": "extension",
        "mcp.method.name": "tools/call",
    }


def _transport_error(server: ToolServer, exc: MCPError) -> ToolServerError:
    if exc.error.code == mcp_types.PARSE_ERROR:
        return ToolServerError(server.name, "answered something that is not MCP (JSON-RPC)")
    if exc.error.code == mcp_types.REQUEST_TIMEOUT:
        return ToolServerError(server.name, "did not answer in time")
    return ToolServerError(server.name, "the connection closed")


def _circuit_open(server: ToolServer) -> ToolServerError:
    wait = server.breaker.retry_after()
    return ToolServerError(
        server.name, f"failing; its circuit is open for {wait:.0f} s more", retry_after=wait
    )
