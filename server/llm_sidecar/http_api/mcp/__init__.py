"""The MCP gateway's wire: ``/mcp``, Streamable HTTP, served by the official SDK."""
