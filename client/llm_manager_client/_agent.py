"""Typed helpers for agents: tools to declare, tool calls to read, images, turns to send."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool the model may call. ``parameters`` is its arguments' JSON Schema."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call of a tool by the model."""

    id: str
    name: str
    #: The arguments as JSON object text (see :attr:`args`).
    arguments: str

    @property
    def args(self) -> dict[str, Any]:
        """The arguments, parsed."""
        value = json.loads(self.arguments)
        assert isinstance(value, dict)
        return value


@dataclass(frozen=True, slots=True)
class Image:
    """An image: by URL (https: or data:), or bytes with their MIME type."""

    url: str = ""
    data: bytes = b""
    mime_type: str = ""

    @classmethod
    def from_bytes(cls, data: bytes, mime_type: str) -> Image:
        return cls(data=data, mime_type=mime_type)


@dataclass(frozen=True, slots=True)
class Message:
    """One turn: of a conversation read back, or sent in ``messages=``."""

    role: str
    content: str
    images: tuple[Image, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""
    #: Text and images in order, when the order matters ("Picture A:", image, "Picture
    #: B:", image, "Which is brighter?"); empty when the text simply comes first.
    parts: tuple[str | Image, ...] = ()

    @classmethod
    def user(cls, text: str, *images: Image) -> Message:
        return cls("user", text, images)

    @classmethod
    def user_parts(cls, *parts: str | Image) -> Message:
        """A user turn of text and images in the order given."""
        texts = [p for p in parts if isinstance(p, str)]
        images = tuple(p for p in parts if isinstance(p, Image))
        return cls("user", "\n".join(texts), images, parts=tuple(parts))

    @classmethod
    def assistant(cls, text: str = "", tool_calls: Sequence[ToolCall] = ()) -> Message:
        return cls("assistant", text, tool_calls=tuple(tool_calls))

    @classmethod
    def tool_result(cls, call: ToolCall | str, content: str) -> Message:
        """The result of a tool call, to send back to the model."""
        call_id = call if isinstance(call, str) else call.id
        return cls("tool", content, tool_call_id=call_id)
