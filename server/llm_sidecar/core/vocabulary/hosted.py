"""MCP tools a response request asks the sidecar to run for it (OpenAI's hosted ``mcp``
tools): which configured server, which of its tools, which need the user's approval,
and what each step of the loop did, for the response to show."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from llm_sidecar.core.vocabulary.tools import ToolCall, split

ApprovalMode = Literal["always", "never", "filter"]


@dataclass(frozen=True, slots=True)
class HostedServer:
    """One ``{"type": "mcp"}`` entry of a request's tools."""

    #: The configured server (the request's ``server_label``).
    server: str
    #: Where it is in the request (``tools[2]``), for errors.
    place: str
    #: The tools the model may be offered (None: all the user may use).
    allowed: frozenset[str] | None = None
    approval: ApprovalMode = "always"
    #: With ``filter``: tools that need no approval, and tools that always do.
    never: frozenset[str] = frozenset()
    always: frozenset[str] = frozenset()
    #: The user's own token for this server, for this call only.
    token: str | None = None
    #: The request's ``server_url``, which must be the configured server's own.
    url: str | None = None

    def needs_approval(self, tool: str) -> bool:
        """Whether a call of ``tool`` waits for the user's approval (as OpenAI's: a tool
        no filter names does)."""
        if self.approval != "filter":
            return self.approval == "always"
        return tool not in self.never or tool in self.always


@dataclass(frozen=True, slots=True)
class Approval:
    """The user's answer to one approval request."""

    request_id: str
    approve: bool


@dataclass(frozen=True, slots=True)
class ListedTool:
    """A tool as ``mcp_list_tools`` shows it."""

    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True, slots=True)
class McpRecord:
    """One step of the loop, in the order it happened: a listing, a call (with its
    output or error), or a call waiting for approval."""

    kind: Literal["list", "call", "approval"]
    server: str
    tools: tuple[ListedTool, ...] = ()
    #: The call as the model made it (its name is ``<server>__<tool>``).
    call: ToolCall | None = None
    output: str | None = None
    error: str | None = None

    @property
    def tool(self) -> str:
        """The tool's own name (without its server's)."""
        assert self.call is not None
        parts = split(self.call.name)
        return parts[1] if parts is not None else self.call.name


def hosted_call(
    hosted: Mapping[str, HostedServer], call: ToolCall
) -> tuple[HostedServer, str] | None:
    """The hosted server a model's call names, and the tool's own name; None for a call
    of the request's own functions."""
    parts = split(call.name)
    server = hosted.get(parts[0]) if parts is not None else None
    return (server, parts[1]) if server is not None and parts is not None else None


#: The prefix of an approval request's id; the rest is the model's call id.
APPROVAL_PREFIX = "mcpr_"
