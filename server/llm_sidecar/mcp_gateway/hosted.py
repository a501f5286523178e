"""The tool loop of a response with hosted MCP tools (OpenAI's ``{"type": "mcp"}``),
run by the sidecar for one user, in the one pipeline.

The sidecar lists each server's tools the user may use (an ``mcp_list_tools`` step),
offers them to the model as functions named ``<server>__<tool>``, runs each call the
model makes through the gateway (the same policy, quota, breaker and span as ``/mcp``)
and gives the model the results, until it answers in text or
``responses.max_mcp_rounds`` model calls have been made (the last one is asked for
text). Each model call is one turn of the pipeline, billed as such; each stores the
response so far under the response's id, so the last one stored is the whole.

A call that needs the user's approval ends the response with an approval request
(and so does an answer that also calls the caller's own functions: those go back to
the caller). The next response, continuing it by ``previous_response_id``, runs the
calls left pending (an approved one, or one that needs none) before its model call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

import mcp_types
from opentelemetry.context import Context

from llm_sidecar.core.state.responses import StoredResponse
from llm_sidecar.core.vocabulary.context import UserExecutionContext
from llm_sidecar.core.vocabulary.errors import InvalidRequestError, SidecarError
from llm_sidecar.core.vocabulary.hosted import (
    APPROVAL_PREFIX,
    HostedServer,
    ListedTool,
    McpRecord,
    hosted_call,
)
from llm_sidecar.core.vocabulary.models import AskResult, ChatMessage, ResponseInput
from llm_sidecar.core.vocabulary.tools import SEPARATOR, Tool, ToolCall, ToolChoice
from llm_sidecar.mcp_gateway.gateway import Caller, ToolGateway

Respond = Callable[[ResponseInput], Awaitable[AskResult]]
#: The caller's stored response of an id, and its ancestors (NotFoundError if none).
Chain = Callable[[UserExecutionContext, str], Awaitable[list[StoredResponse]]]
#: What a tool the user did not approve answers the model.
NOT_APPROVED = "The user did not approve this tool call."


@dataclasses.dataclass(slots=True)
class _Run:
    """One response's loop as it goes."""

    response: ResponseInput
    caller: Caller
    parent: Context | None
    servers: dict[str, HostedServer]
    new: tuple[ChatMessage, ...] = ()
    carried: list[ChatMessage] = dataclasses.field(default_factory=list)
    records: list[McpRecord] = dataclasses.field(default_factory=list)
    offered: tuple[Tool, ...] = ()

    def hosted(self, call: ToolCall) -> bool:
        return hosted_call(self.servers, call) is not None

    def waits(self, call: ToolCall) -> bool:
        found = hosted_call(self.servers, call)
        return found is not None and found[0].needs_approval(found[1])


class HostedLoop:
    """See the module."""

    def __init__(self, gateway: ToolGateway, max_rounds: int) -> None:
        self.gateway = gateway
        self.max_rounds = max_rounds

    def check(self, response: ResponseInput) -> None:
        """Refuse a server that is not configured, and approvals with no MCP tools."""
        for entry in response.hosted:
            server = self.gateway.servers.get(entry.server)
            if server is None:
                raise InvalidRequestError(
                    f"{entry.place}.server_label", "names no configured MCP server"
                )
            # The sidecar never connects where a request says: a URL must be the server's.
            if entry.url is not None and entry.url.rstrip("/") != server.url.rstrip("/"):
                raise InvalidRequestError(
                    f"{entry.place}.server_url",
                    "is not the configured URL of that server (omit it, or send that one)",
                )
        if response.approvals and not response.hosted:
            raise InvalidRequestError(
                "tools", "an mcp_approval_response needs the mcp tools it answers for"
            )

    async def run(
        self,
        ctx: UserExecutionContext,
        response: ResponseInput,
        respond: Respond,
        chain: Chain,
        parent: Context | None = None,
    ) -> tuple[AskResult, tuple[McpRecord, ...]]:
        """The response's answer once its loop has run (stored, unless it says not to),
        and the loop's steps."""
        self.check(response)
        tokens = {h.server: h.token for h in response.hosted if h.token}
        servers = {h.server: h for h in response.hosted}
        run = _Run(response, Caller(ctx, tokens), parent, servers)
        pending = None
        if response.previous_response_id is not None:
            continued = (await chain(ctx, response.previous_response_id))[-1]
            pending = continued.output[-1] if continued.output else None
        run.offered = (*response.inp.tools, *await self._listings(run))
        resumed = await self._resume(run, pending)
        run.new = (*resumed, *response.inp.messages)
        for round_number in range(1, self.max_rounds + 1):
            last = round_number == self.max_rounds
            result = await respond(self._round(run, last))
            calls = result.tool_calls
            # No call, the caller's own functions, or approvals: the response ends here
            # (its view shows the calls from the answer's own).
            if not calls or last or any(not run.hosted(c) or run.waits(c) for c in calls):
                return result, tuple(run.records)
            run.carried.append(ChatMessage("assistant", result.text, tool_calls=calls))
            for call in calls:
                run.carried.append(await self._call(run, call))
        raise AssertionError("unreachable")  # pragma: no cover

    def _round(self, run: _Run, last: bool) -> ResponseInput:
        """One model call: the input, the loop's turns so far, every tool offered (the
        last round may only answer in text)."""
        inp = dataclasses.replace(
            run.response.inp,
            messages=run.new,
            tools=run.offered,
            tool_choice=ToolChoice("none") if last else run.response.inp.tool_choice,
        )
        return dataclasses.replace(
            run.response,
            inp=inp,
            carried=tuple(run.carried),
            records=tuple(run.records),
        )

    async def _listings(self, run: _Run) -> list[Tool]:
        """Each server's tools the user may use and the request allows, recorded."""
        offered: list[Tool] = []
        for entry in run.response.hosted:
            try:
                tools = await self.gateway.list_server(run.caller, entry.server)
            except SidecarError as exc:
                run.records.append(McpRecord("list", entry.server, error=exc.message))
                continue
            listed = []
            for tool in tools:
                own = tool.name.partition(SEPARATOR)[2]
                if entry.allowed is not None and own not in entry.allowed:
                    continue
                schema = dict(tool.input_schema or {"type": "object", "properties": {}})
                listed.append(ListedTool(own, tool.description or "", schema))
                offered.append(Tool(tool.name, tool.description or "", schema))
            run.records.append(McpRecord("list", entry.server, tools=tuple(listed)))
        return offered

    async def _call(self, run: _Run, call: ToolCall) -> ChatMessage:
        """Run one call through the gateway; the result (or the error) for the model."""
        output, error = await self._outcome(run, call)
        server = call.name.partition(SEPARATOR)[0]
        run.records.append(McpRecord("call", server, call=call, output=output, error=error))
        told = output if error is None else f"error: {error}"
        return ChatMessage("tool", told or "", tool_call_id=call.id)

    async def _outcome(self, run: _Run, call: ToolCall) -> tuple[str | None, str | None]:
        """(output, None), or (None, error) for a call that failed."""
        try:
            arguments = call.parsed()
        except ValueError:
            return None, "the arguments are not a JSON object"
        try:
            result = await self.gateway.call_tool(run.caller, call.name, arguments, run.parent)
        except SidecarError as exc:
            return None, exc.message
        text = "\n".join(
            block.text for block in result.content if isinstance(block, mcp_types.TextContent)
        )
        return (None, text) if result.is_error else (text, None)

    async def _resume(self, run: _Run, last: ChatMessage | None) -> list[ChatMessage]:
        """Run the calls the continued response left pending: the approved ones, and
        those that need no approval; a refused one answers the model so."""
        approvals = {a.request_id: a.approve for a in run.response.approvals}
        pending = [] if last is None else [c for c in last.tool_calls if run.hosted(c)]
        results = []
        for call in pending:
            if run.waits(call):
                approved = approvals.pop(APPROVAL_PREFIX + call.id, None)
                if approved is None:
                    raise InvalidRequestError(
                        "input", f"no mcp_approval_response for {APPROVAL_PREFIX}{call.id}"
                    )
                if not approved:
                    server = call.name.partition(SEPARATOR)[0]
                    run.records.append(McpRecord("call", server, call=call, error=NOT_APPROVED))
                    results.append(ChatMessage("tool", NOT_APPROVED, tool_call_id=call.id))
                    continue
            results.append(await self._call(run, call))
        if approvals:
            raise InvalidRequestError(
                "input", "an mcp_approval_response answers no pending approval request"
            )
        return results
