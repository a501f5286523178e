"""Hosted MCP tools in the Responses API (``{"type": "mcp"}``): the request's entries
and approval answers read into the core's terms, and the MCP items a response shows
(``mcp_list_tools``, ``mcp_call``, ``mcp_approval_request``) in OpenAI's shapes."""

from __future__ import annotations

from typing import Any

from llm_sidecar.core.vocabulary.errors import InvalidRequestError
from llm_sidecar.core.vocabulary.hosted import (
    APPROVAL_PREFIX,
    Approval,
    HostedServer,
    McpRecord,
)
from llm_sidecar.core.vocabulary.models import ChatMessage
from llm_sidecar.core.vocabulary.tools import SEPARATOR, ToolCall
from llm_sidecar.http_api.fields import Fields

#: Fields of an mcp tool entry the sidecar does not serve.
_UNSERVED = {"connector_id": "connectors are not supported: name a configured server"}
_MAX_TOKEN = 4096


def hosted_tool(tool: Fields) -> tuple[HostedServer, dict[str, Any]]:
    """One ``{"type": "mcp"}`` entry, and how the response echoes it (its token never)."""
    for key, why in _UNSERVED.items():
        if tool.has(key):
            tool.refuse(key, why)
    label = tool.text("server_label", max_length=64)
    url = tool.text("server_url", "", max_length=2048) or None
    approval, never, always = _approval(tool)
    token = _token(tool)
    allowed = _allowed(tool)
    hosted = HostedServer(label, tool.path, allowed, approval, never, always, token, url)
    echo = {
        "type": "mcp",
        "server_label": label,
        "server_url": url,
        "allowed_tools": sorted(allowed) if allowed is not None else None,
        "require_approval": tool.raw("require_approval") or "always",
        "headers": None,
    }
    return hosted, echo


def _allowed(tool: Fields) -> frozenset[str] | None:
    raw = tool.raw("allowed_tools")
    if raw is None:
        return None
    if isinstance(raw, dict):
        spec = Fields(raw, tool.name("allowed_tools"))
        if spec.has("read_only"):
            spec.refuse("read_only", "filtering by read-only hints is not supported")
        raw = spec.raw("tool_names") or []
    if not isinstance(raw, list) or not all(isinstance(n, str) and n for n in raw):
        raise InvalidRequestError(tool.name("allowed_tools"), "must be a list of tool names")
    return frozenset(raw)


def _approval(tool: Fields) -> tuple[Any, frozenset[str], frozenset[str]]:
    raw = tool.raw("require_approval")
    if raw is None or raw in ("always", "never"):
        return raw or "always", frozenset(), frozenset()
    if not isinstance(raw, dict):
        raise InvalidRequestError(
            tool.name("require_approval"), "must be always, never, or a filter of tool names"
        )
    spec = Fields(raw, tool.name("require_approval"))
    names: list[frozenset[str]] = []
    for key in ("never", "always"):
        part = spec.obj(key)
        found = part.raw("tool_names") if part is not None else None
        if found is not None and (
            not isinstance(found, list) or not all(isinstance(n, str) for n in found)
        ):
            raise InvalidRequestError(spec.name(key), "tool_names must be a list of names")
        names.append(frozenset(found or ()))
    return "filter", names[0], names[1]


def _token(tool: Fields) -> str | None:
    """The user's token: ``authorization``, or an Authorization entry of ``headers``
    (no other header is sent: the server's own come from the configuration)."""
    token = tool.text("authorization", "", max_length=_MAX_TOKEN) or None
    headers = tool.obj("headers")
    if headers is not None:
        for key, value in headers.data.items():
            if key.lower() != "authorization" or not isinstance(value, str):
                headers.refuse(key, "only an Authorization header may be sent")
            token = value if value.lower().startswith("bearer ") else f"Bearer {value}"
    if token is not None and not token.lower().startswith("bearer "):
        token = f"Bearer {token}"
    if token is not None and (len(token) > _MAX_TOKEN or not token.isprintable()):
        raise InvalidRequestError(tool.name("authorization"), "must be a printable token")
    return token


def approval_answer(item: Fields) -> Approval:
    """One ``mcp_approval_response`` input item."""
    request_id = item.text("approval_request_id", max_length=300)
    if not request_id.startswith(APPROVAL_PREFIX):
        raise InvalidRequestError(item.name("approval_request_id"), "is not an approval request")
    approve = item.boolean("approve")
    if approve is None:
        raise InvalidRequestError(item.name("approve"), "is required (true or false)")
    return Approval(request_id, approve)


def replayed_call(item: Fields) -> list[ChatMessage]:
    """An ``mcp_call`` item sent back as input (by a client that keeps the conversation
    itself): the call, then its result, as the model saw them."""
    call = ToolCall(
        item.text("id", max_length=256),
        f"{item.text('server_label', max_length=64)}__{item.text('name', max_length=128)}",
        item.text("arguments", "{}"),
    )
    error = item.raw("error")
    output = f"error: {error}" if isinstance(error, str) else item.text("output", "")
    return [
        ChatMessage("assistant", "", tool_calls=(call,)),
        ChatMessage("tool", output, tool_call_id=call.id),
    ]


def record_item(record: McpRecord, item_id: str) -> dict[str, Any]:
    """One step of the loop as the response's output item."""
    if record.kind == "list":
        tools = [
            {
                "name": t.name,
                "description": t.description,
                "input_schema": t.input_schema,
                "annotations": None,
            }
            for t in record.tools
        ]
        return {
            "type": "mcp_list_tools",
            "id": item_id,
            "server_label": record.server,
            "tools": tools,
            "error": record.error,
        }
    assert record.call is not None
    return {
        "type": "mcp_call",
        "id": item_id,
        "server_label": record.server,
        "name": record.tool,
        "arguments": record.call.arguments,
        "output": record.output,
        "error": record.error,
        "status": "failed" if record.error is not None else "completed",
        "approval_request_id": None,
    }


def approval_request(call: ToolCall) -> dict[str, Any]:
    """A call waiting for the user's approval (its id names the call, to answer it)."""
    server, _, tool = call.name.partition(SEPARATOR)
    return {
        "type": "mcp_approval_request",
        "id": APPROVAL_PREFIX + call.id,
        "server_label": server,
        "name": tool,
        "arguments": call.arguments,
    }
