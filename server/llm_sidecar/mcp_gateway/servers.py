"""One configured MCP server as the gateway uses it: its name, where it is, what it is
sent, and its breaker. Built from configuration only: no request names an address."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llm_sidecar.core.routing.breaker import CircuitBreaker

Forward = Literal["none", "pseudonym", "raw"]
#: How the server is reached: Streamable HTTP, or the built-in demo in-process.
Kind = Literal["streamable_http", "simulated"]


@dataclass(slots=True)
class ToolServer:
    """An upstream MCP server (Streamable HTTP)."""

    name: str
    url: str
    #: Sent on every request (values read from the environment at start).
    headers: dict[str, str]
    timeout_seconds: float
    breaker: CircuitBreaker
    kind: Kind = "streamable_http"
    forward_identity: Forward = "none"
    identity_header: str = "x-mcp-user"

    @property
    def user_token_header(self) -> str:
        """The caller's header holding the user's own token for this server."""
        return f"x-mcp-authorization-{self.name}"
