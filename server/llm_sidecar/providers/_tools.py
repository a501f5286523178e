"""Pieces both provider kinds need for agent turns: images as data URLs or base64,
tool-call ids both APIs accept, and tool calls assembled from streamed fragments."""

from __future__ import annotations

import base64
import json
import re

from llm_sidecar.core.vocabulary.errors import ErrorKind, ProviderError
from llm_sidecar.core.vocabulary.tools import Image, ToolCall

_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_-]")


def base64_data(image: Image) -> str:
    """The image's bytes, base64-encoded."""
    return base64.b64encode(image.data).decode("ascii")


def data_url(image: Image) -> str:
    """The image as a URL: its own, or a base64 ``data:`` URL of its bytes."""
    if image.url:
        return image.url
    return f"data:{image.mime_type};base64,{base64_data(image)}"


def portable_id(call_id: str) -> str:
    """A tool-call id both APIs accept (Anthropic allows [A-Za-z0-9_-] only). The same
    id always maps to the same result, so a call and its result still match after a
    failover from one kind of provider to the other."""
    return _UNSAFE_ID.sub("_", call_id) or "call"


def checked(call_id: str, name: str, arguments: str) -> ToolCall:
    """A tool call whose arguments are a JSON object; else the answer is bad (fail over)."""
    call = ToolCall(call_id, name, arguments or "{}")
    try:
        call.parsed()
    except ValueError:
        raise ProviderError(
            ErrorKind.BAD_RESPONSE, "a tool call's arguments are not a JSON object"
        ) from None
    if not name:
        raise ProviderError(ErrorKind.BAD_RESPONSE, "a tool call has no name")
    return call


class ToolCallParts:
    """Tool calls arriving in fragments (streamed), keyed by their index in the answer."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[int, list[str]] = {}  # index -> [id, name, arguments so far]

    def has(self, index: int) -> bool:
        return index in self._calls

    def start(self, index: int, call_id: str, name: str) -> None:
        parts = self._calls.setdefault(index, ["", "", ""])
        parts[0] = call_id or parts[0]
        parts[1] = name or parts[1]

    def add(self, index: int, fragment: str) -> None:
        self._calls.setdefault(index, ["", "", ""])[2] += fragment

    def finish(self, index: int) -> ToolCall:
        """One call, whole and checked."""
        call_id, name, arguments = self._calls.pop(index)
        return checked(call_id, name, arguments)

    def finish_all(self) -> list[ToolCall]:
        """Every call still open, in index order."""
        return [self.finish(index) for index in sorted(self._calls)]


def arguments_text(value: object) -> str:
    """An Anthropic ``input`` object as the arguments' JSON text."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
