"""The MCP gateway's section: the upstream servers tool calls may go to (from here
only: a request never names an address), and the access rules by user group."""

from __future__ import annotations

import os
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from llm_sidecar.config.base import Section
from llm_sidecar.core.tools.policy import DEFAULT_TOOL_LIMITS
from llm_sidecar.core.vocabulary.tools import SEPARATOR

_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"
_HEADER = r"^[A-Za-z0-9-]{1,64}$"


class McpServerSettings(Section):
    """One upstream MCP server, reached over Streamable HTTP."""

    name: str = Field(pattern=_NAME)
    #: "streamable_http" (at ``url``), or "simulated": the built-in demo, in-process.
    kind: Literal["streamable_http", "simulated"] = "streamable_http"
    url: str = ""
    #: Headers sent on every request, their values read from environment variables at
    #: start: header name -> variable name (``{"authorization" = "CRM_MCP_TOKEN"}``).
    header_env: dict[str, str] = Field(default_factory=dict)
    #: Longest one request to the server may take (a tool call included).
    timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    #: Which user identity the server gets: none, the user's pseudonym (the telemetry
    #: key's), or the raw x-user-id, in ``identity_header``.
    forward_identity: Literal["none", "pseudonym", "raw"] = "none"
    identity_header: str = Field(default="x-mcp-user", pattern=_HEADER)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        # The name is the prefix of its tools' names, so it cannot hold the separator.
        if SEPARATOR in value:
            raise ValueError(f"{value!r} holds {SEPARATOR!r}, which separates server and tool")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL")
        if parts.username or parts.password:
            raise ValueError("the URL holds credentials: put them in header_env")
        return value

    @field_validator("header_env")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for header in value:
            if not header or len(header) > 64 or not header.replace("-", "").isalnum():
                raise ValueError(f"header name {header!r} is not a valid header name")
        return value

    @model_validator(mode="after")
    def _reached(self) -> McpServerSettings:
        if self.kind == "streamable_http" and not self.url:
            raise ValueError(f'mcp server {self.name!r} needs url (or kind = "simulated")')
        if self.kind == "simulated" and self.url:
            raise ValueError(f"mcp server {self.name!r} is simulated: it takes no url")
        return self

    def env_headers(self) -> dict[str, str]:
        """The ``header_env`` headers with their values read from the environment."""
        return {header: os.environ.get(var, "") for header, var in self.header_env.items()}


class McpRuleSettings(Section):
    """One rule: users holding any of ``groups`` (from x-permissions; "*": everyone) may
    use the tools matching ``tools`` (globs; "*": all) on ``servers``."""

    groups: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    servers: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    tools: list[str] = Field(default_factory=lambda: ["*"], min_length=1)


class McpSettings(Section):
    """The MCP gateway at ``/mcp`` on the HTTP listener. With no servers it answers
    with no tools; with no rules every user may use every tool, and once a rule is set
    whatever no rule allows is denied."""

    #: By default the built-in demo alone, so /mcp works offline (replace it).
    servers: list[McpServerSettings] = Field(
        default_factory=lambda: [McpServerSettings(name="demo", kind="simulated")]
    )
    rules: list[McpRuleSettings] = Field(default_factory=list)
    #: Upstream sessions (one per user, session and server) open at once; the least
    #: recently used idle one closes to make room.
    max_sessions: int = Field(default=DEFAULT_TOOL_LIMITS.max_sessions, ge=1)
    #: Gateway sessions clients hold with /mcp at once (each cheap: the upstream ones
    #: are counted by max_sessions); past it, a client's initialize gets 503.
    max_client_sessions: int = Field(default=10_000, ge=1)
    #: An upstream session unused this long is closed.
    session_idle_seconds: float = Field(default=DEFAULT_TOOL_LIMITS.session_idle_seconds, gt=0)
    #: Largest tool result passed back (a bigger one is refused, not cut).
    max_result_bytes: int = Field(default=DEFAULT_TOOL_LIMITS.max_result_bytes, ge=1024)
    #: Extra tries of the calls that are safe to repeat (listing; never tools/call).
    list_retries: int = Field(default=DEFAULT_TOOL_LIMITS.list_retries, ge=0, le=5)

    @model_validator(mode="after")
    def _names(self) -> McpSettings:
        names = [server.name for server in self.servers]
        if len(set(names)) != len(names):
            raise ValueError("mcp.servers: names repeat")
        for index, rule in enumerate(self.rules):
            for server in rule.servers:
                if server != "*" and server not in names:
                    raise ValueError(f"mcp.rules[{index}]: no server is named {server!r}")
            for tool in rule.tools:
                if SEPARATOR in tool:
                    raise ValueError(
                        f"mcp.rules[{index}]: tool {tool!r} holds {SEPARATOR!r}: name the "
                        "server in servers and the tool alone in tools"
                    )
        return self
