"""MCP servers as tool sources for agents (:func:`agxnt.mcp.client.mcp_tools`)."""

from agxnt.mcp.client import (
    CommandSource,
    McpSource,
    UrlSource,
    mcp_tools,
    parse_source,
)

__all__ = ["CommandSource", "McpSource", "UrlSource", "mcp_tools", "parse_source"]
