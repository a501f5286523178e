"""What an agent's turn may carry besides text: images, tool declarations, tool calls."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

#: MIME types an image may have (the ones both provider kinds accept).
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})

ToolChoiceMode = Literal["auto", "none", "required", "tool"]
#: Between an MCP server's name and its tool's in the one namespace the sidecar offers.
SEPARATOR = "__"


def qualified(server: str, tool: str) -> str:
    """The name a caller (or a model) sees for ``tool`` of MCP server ``server``."""
    return f"{server}{SEPARATOR}{tool}"


def split(name: str) -> tuple[str, str] | None:
    """(server, tool) of a qualified name; None when it names no server."""
    server, sep, tool = name.partition(SEPARATOR)
    if not sep or not server or not tool:
        return None
    return server, tool


@dataclass(frozen=True, slots=True)
class Image:
    """An image by URL (``https:`` or ``data:``), or inline bytes with their MIME type."""

    url: str = ""
    data: bytes = b""
    mime_type: str = ""


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool the model may call; ``parameters`` is its arguments' JSON Schema."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """Whether and which tools the model must call."""

    mode: ToolChoiceMode = "auto"
    #: The tool to call, with mode "tool".
    name: str = ""


AUTO = ToolChoice()


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call of a tool by the model; ``arguments`` is a JSON object as text."""

    id: str
    name: str
    arguments: str

    def parsed(self) -> dict[str, Any]:
        """The arguments as an object (ValueError when they are not a JSON object)."""
        value = json.loads(self.arguments)
        if not isinstance(value, dict):
            raise ValueError("tool arguments are not a JSON object")
        return value
