"""Requests in the Anthropic Messages API's format: turns as content blocks, tools,
tool choice, and ``cache_control`` on the stable prefix of a conversation."""

from __future__ import annotations

import json
from typing import Any

from llm_sidecar.core.vocabulary.models import ChatMessage, ChatRequest
from llm_sidecar.core.vocabulary.tools import Image, ToolChoice
from llm_sidecar.providers._tools import base64_data, portable_id

DEFAULT_MAX_TOKENS = 1024
_EPHEMERAL = {"type": "ephemeral"}


def _image(image: Image) -> dict[str, Any]:
    if image.data:
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": image.mime_type, "data": base64_data(image)},
        }
    if image.url.startswith("data:"):
        header, _, data = image.url.partition(",")
        media_type = header[5:].split(";", 1)[0]
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": image.url}}


def _blocks(message: ChatMessage) -> list[dict[str, Any]]:
    """A turn's content blocks (tool results first, as the API requires of a user turn)."""
    if message.role == "tool":
        return [
            {
                "type": "tool_result",
                "tool_use_id": portable_id(message.tool_call_id),
                "content": message.content,
            }
        ]
    blocks: list[dict[str, Any]] = [
        {"type": "text", "text": part} if isinstance(part, str) else _image(part)
        for part in message.ordered()
        if part != ""
    ]
    blocks += [
        {
            "type": "tool_use",
            "id": portable_id(call.id),
            "name": call.name,
            "input": call.parsed(),
        }
        for call in message.tool_calls
    ]
    return blocks


def _turns(request: ChatRequest, prompt_caching: bool) -> list[dict[str, Any]]:
    """User and assistant turns; tool results become user turns, and consecutive turns
    of one role merge into one, since the API alternates roles."""
    turns: list[dict[str, Any]] = []
    stable_end = -1  # index, in ``turns``, of the last turn of the stored history
    seen = 0
    for message in request.messages:
        if message.role == "system":
            continue
        role = "user" if message.role == "tool" else message.role
        if message.plain and not (turns and turns[-1]["role"] == role):
            turns.append({"role": role, "content": message.content})
        else:
            blocks = _blocks(message)
            if turns and turns[-1]["role"] == role:
                previous = turns[-1]["content"]
                if isinstance(previous, str):
                    previous = [{"type": "text", "text": previous}] if previous else []
                results = [b for b in blocks if b["type"] == "tool_result"]
                others = [b for b in blocks if b["type"] != "tool_result"]
                head = [b for b in previous if b["type"] == "tool_result"]
                tail = [b for b in previous if b["type"] != "tool_result"]
                turns[-1]["content"] = head + results + tail + others
            else:
                turns.append({"role": role, "content": blocks})
        seen += 1
        if seen == request.history_turns:
            stable_end = len(turns) - 1
    if prompt_caching and 0 <= stable_end < len(turns) - 1:
        _mark(turns[stable_end])
    return turns


def _mark(turn: dict[str, Any]) -> None:
    """Put a cache breakpoint at the end of a turn."""
    content = turn["content"]
    if isinstance(content, str):
        content = turn["content"] = [{"type": "text", "text": content}]
    if content:
        content[-1]["cache_control"] = _EPHEMERAL


def _tool_choice(choice: ToolChoice, parallel: bool | None) -> dict[str, Any]:
    kind = {"auto": "auto", "none": "none", "required": "any", "tool": "tool"}[choice.mode]
    value: dict[str, Any] = {"type": kind}
    if kind == "tool":
        value["name"] = choice.name
    if parallel is False and kind != "none":
        value["disable_parallel_tool_use"] = True
    return value


def messages_body(
    model: str, request: ChatRequest, *, stream: bool, prompt_caching: bool
) -> dict[str, Any]:
    """The request body of POST /v1/messages."""
    system = [m.content for m in request.messages if m.role == "system"]
    if request.json_schema is not None:
        system.append(
            "Answer with one JSON document only, no prose, valid against this JSON Schema: "
            + json.dumps(request.json_schema)
        )
    params = request.params
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": params.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": _turns(request, prompt_caching),
    }
    if system:
        text = "\n\n".join(system)
        body["system"] = (
            [{"type": "text", "text": text, "cache_control": _EPHEMERAL}]
            if prompt_caching and request.cache_hint
            else text
        )
    if request.tools:
        body["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": t.parameters}
            for t in request.tools
        ]
        if prompt_caching and request.cache_hint:
            body["tools"][-1]["cache_control"] = _EPHEMERAL
        body["tool_choice"] = _tool_choice(request.tool_choice, request.parallel_tool_calls)
    if params.temperature is not None:
        body["temperature"] = params.temperature
    if params.top_p is not None:
        body["top_p"] = params.top_p
    if params.stop:
        body["stop_sequences"] = list(params.stop)
    if stream:
        body["stream"] = True
    return body
