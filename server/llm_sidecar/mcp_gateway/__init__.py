"""The MCP gateway's service side: each user's sessions with the configured MCP
servers, and the tool calls over them under the access policy, the quota and the
limits. The wire (``/mcp``) is in ``http_api/mcp/``."""

from llm_sidecar.mcp_gateway.gateway import ToolGateway
from llm_sidecar.mcp_gateway.servers import ToolServer

__all__ = ["ToolGateway", "ToolServer"]
