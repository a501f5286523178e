"""Validation of what an agent's request carries: turns, images, tools, tool choice.

Each problem is an InvalidRequestError naming the field (``messages[2].tool_calls[0].name``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from llm_sidecar.core.turn.structured import checked_schema
from llm_sidecar.core.vocabulary.errors import InvalidRequestError
from llm_sidecar.core.vocabulary.models import AskInput, ChatMessage
from llm_sidecar.core.vocabulary.tools import IMAGE_TYPES, Image, ToolCall

MAX_TOOLS = 128
MAX_MESSAGES = 1024
MAX_TOOL_DESCRIPTION = 4096
MAX_CALL_ID = 256
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DATA_IMAGE = re.compile(r"data:(image/(?:png|jpeg|gif|webp));base64,[A-Za-z0-9+/=\s]+")


def check_agent_input(inp: AskInput) -> None:
    """Everything about the turns, tools and tool choice that needs no history."""
    if len(inp.messages) > MAX_MESSAGES:
        raise InvalidRequestError("messages", f"holds more than {MAX_MESSAGES} turns")
    for i, message in enumerate(inp.messages):
        _check_message(message, f"messages[{i}]")
    _check_tools(inp)


def unanswered_tool_results(messages: Sequence[ChatMessage]) -> list[tuple[int, str]]:
    """(index, id) of tool turns whose call is not among the earlier turns given."""
    seen: set[str] = set()
    pending = []
    for i, message in enumerate(messages):
        if message.role == "assistant":
            seen.update(call.id for call in message.tool_calls)
        elif message.role == "tool" and message.tool_call_id not in seen:
            pending.append((i, message.tool_call_id))
    return pending


def check_tool_results(pending: list[tuple[int, str]], history: Sequence[ChatMessage]) -> None:
    """Every pending tool result must answer a call made earlier in the thread."""
    known = {call.id for m in history if m.role == "assistant" for call in m.tool_calls}
    for i, call_id in pending:
        if call_id not in known:
            raise InvalidRequestError(
                f"messages[{i}].tool_call_id", "matches no earlier tool call of this thread"
            )


def _check_message(message: ChatMessage, field: str) -> None:
    role = message.role
    if message.images and role != "user":
        raise InvalidRequestError(f"{field}.parts", "images belong on user turns")
    if message.tool_calls and role != "assistant":
        raise InvalidRequestError(f"{field}.tool_calls", "belong on assistant turns")
    if role == "tool":
        if not message.tool_call_id:
            raise InvalidRequestError(f"{field}.tool_call_id", "is required on tool turns")
    elif message.tool_call_id:
        raise InvalidRequestError(f"{field}.tool_call_id", "belongs on tool turns")
    for j, image in enumerate(message.images):
        _check_image(image, f"{field}.parts[{j}].image")
    for j, call in enumerate(message.tool_calls):
        _check_call(call, f"{field}.tool_calls[{j}]")
    if role != "tool" and not (message.content.strip() or message.images or message.tool_calls):
        raise InvalidRequestError(field, "is empty")


def _check_image(image: Image, field: str) -> None:
    if bool(image.url) == bool(image.data):
        raise InvalidRequestError(field, "needs exactly one of url or data")
    if image.data:
        if image.mime_type not in IMAGE_TYPES:
            raise InvalidRequestError(
                f"{field}.mime_type", "must be image/png, image/jpeg, image/gif or image/webp"
            )
        return
    url = image.url
    if url.startswith("data:"):
        if _DATA_IMAGE.fullmatch(url) is None:
            raise InvalidRequestError(
                f"{field}.url", "a data: URL must be base64 image/png, jpeg, gif or webp"
            )
    elif not url.startswith(("https://", "http://")):
        raise InvalidRequestError(f"{field}.url", "must be an https:, http: or data: URL")


def _check_call(call: ToolCall, field: str) -> None:
    if not call.id or len(call.id) > MAX_CALL_ID:
        raise InvalidRequestError(f"{field}.id", f"must be 1 to {MAX_CALL_ID} characters")
    if TOOL_NAME.fullmatch(call.name) is None:
        raise InvalidRequestError(f"{field}.name", "must match [A-Za-z0-9_-]{1,64}")
    try:
        call.parsed()
    except ValueError:
        raise InvalidRequestError(f"{field}.arguments", "must be a JSON object") from None


def _check_tools(inp: AskInput) -> None:
    if len(inp.tools) > MAX_TOOLS:
        raise InvalidRequestError("tools", f"holds more than {MAX_TOOLS} tools")
    names: set[str] = set()
    for i, tool in enumerate(inp.tools):
        if TOOL_NAME.fullmatch(tool.name) is None:
            raise InvalidRequestError(f"tools[{i}].name", "must match [A-Za-z0-9_-]{1,64}")
        if tool.name in names:
            raise InvalidRequestError(f"tools[{i}].name", "repeats another tool's name")
        names.add(tool.name)
        if len(tool.description) > MAX_TOOL_DESCRIPTION:
            raise InvalidRequestError(
                f"tools[{i}].description", f"is longer than {MAX_TOOL_DESCRIPTION} characters"
            )
        _check_schema(tool.parameters, f"tools[{i}].parameters")
    choice = inp.tool_choice
    if choice.mode not in ("auto", "none", "required", "tool"):
        raise InvalidRequestError("tool_choice.mode", "must be auto, none, required or tool")
    if choice.mode in ("required", "tool") and not inp.tools:
        raise InvalidRequestError("tool_choice.mode", f"'{choice.mode}' needs tools")
    if choice.mode == "tool" and choice.name not in names:
        raise InvalidRequestError("tool_choice.name", "names no declared tool")


# Schemas already found valid, by their canonical text: an agent sends the same
# tools on every call, and checking a schema against its metaschema costs about a
# millisecond. Bounded; cleared whole when full.
_VALID_SCHEMAS: set[str] = set()
_VALID_SCHEMAS_MAX = 4096


def _check_schema(schema: dict[str, object], field: str) -> None:
    if schema.get("type", "object") != "object":
        raise InvalidRequestError(field, "must describe an object (type: object)")
    text = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    if text in _VALID_SCHEMAS:
        return
    checked_schema(schema, field)
    if len(_VALID_SCHEMAS) >= _VALID_SCHEMAS_MAX:
        _VALID_SCHEMAS.clear()
    _VALID_SCHEMAS.add(text)
