"""Anthropic's Messages API (``POST /v1/messages``): its handler, and its bodies in
and out of the core.

Requests become an :class:`AskInput` (system as text or blocks; turns of text,
image, ``tool_use`` and ``tool_result`` blocks in their order; tools and tool
choice). Answers come back as a ``message`` object, or as the API's event stream
(``message_start``, ``content_block_start`` / ``_delta`` / ``_stop``,
``message_delta``, ``message_stop``), so the Anthropic SDKs parse them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from llm_sidecar.core.vocabulary.errors import InvalidRequestError
from llm_sidecar.core.vocabulary.models import AskInput, AskResult, ChatMessage, GenerationParams
from llm_sidecar.core.vocabulary.tools import AUTO, Image, Tool, ToolCall, ToolChoice
from llm_sidecar.http_api.edge import HttpCall
from llm_sidecar.http_api.endpoints import Endpoints
from llm_sidecar.http_api.errors import Refusal
from llm_sidecar.http_api.fields import Fields, json_text, stop_sequences
from llm_sidecar.http_api.sse import relay

UNSUPPORTED = {
    "thinking": "extended thinking is not supported",
    "container": "containers are not supported",
    "mcp_servers": "MCP servers are not supported",
}


class Messages(Endpoints):
    """``POST /v1/messages``."""

    async def handle(self, call: HttpCall) -> web.StreamResponse:
        assert call.body is not None and call.ctx is not None
        spec = parse(call.body)
        metadata = call.body.obj("metadata")
        if metadata is not None:
            call.same_user(metadata.raw("user_id"), "metadata.user_id")
        deadline = self._deadline(call)
        message_id = "msg_" + call.request_id.replace("-", "")
        if not spec.stream:
            result = await self._service.ask(call.ctx, spec.inp, deadline)
            call.answered(result)
            return call.json(message(result, spec, message_id))
        events = Events()
        stream = self._service.ask_stream(call.ctx, spec.inp, deadline)
        return await relay(call, stream, events, events.start(spec, message_id), events.finish)


@dataclass(frozen=True, slots=True)
class MessagesCall:
    """One parsed request: what the core is asked, and how to answer."""

    inp: AskInput
    model: str
    stream: bool


def parse(body: Fields) -> MessagesCall:
    """The core request for a Messages body; InvalidRequestError naming the field."""
    for key, why in UNSUPPORTED.items():
        if body.has(key):
            body.refuse(key, why)
    model = body.text("model", max_length=256)
    tools = _tools(body)
    turns: list[ChatMessage] = []
    for i, raw in enumerate(body.items("messages", required=True)):
        turns.extend(_turn(Fields(raw, f"messages[{i}]")))
    inp = AskInput(
        prompt="",
        model=model,
        params=GenerationParams(
            temperature=body.number("temperature", 0.0, 1.0),
            max_tokens=body.integer("max_tokens", minimum=1) or _required(body, "max_tokens"),
            top_p=body.number("top_p", 0.0, 1.0),
            stop=stop_sequences(body, "stop_sequences"),
        ),
        system_prompt=_system(body),
        messages=tuple(turns),
        tools=tools,
        tool_choice=_tool_choice(body),
        parallel_tool_calls=_parallel(body),
    )
    return MessagesCall(inp, model, bool(body.boolean("stream")))


def _required(body: Fields, key: str) -> int:
    raise InvalidRequestError(body.name(key), "is required")


def _system(body: Fields) -> str:
    return _text_blocks(body, "system", "system blocks must be text", "\n\n")


def _text_blocks(fields: Fields, key: str, why: str, joiner: str) -> str:
    """``key``: a string, or text blocks (any other block is refused for ``why``)."""
    value = fields.raw(key)
    if value is None or isinstance(value, str):
        return value or ""
    texts = []
    for k, raw in enumerate(fields.items(key)):
        block = Fields(raw, fields.name(f"{key}[{k}]"))
        if block.text("type") != "text":
            block.refuse("type", why)
        texts.append(block.text("text"))
    return joiner.join(texts)


def _turn(item: Fields) -> list[ChatMessage]:
    """One turn of the API; a user turn holding tool results becomes a tool turn per
    result (results first, as the API orders them), then the user's own content."""
    role = item.text("role")
    if role not in ("user", "assistant"):
        raise InvalidRequestError(item.name("role"), "must be user or assistant")
    content = item.raw("content")
    if isinstance(content, str):
        return [ChatMessage("assistant" if role == "assistant" else "user", content)]
    parts: list[str | Image] = []
    calls: list[ToolCall] = []
    results: list[ChatMessage] = []
    for j, raw in enumerate(item.items("content", required=True)):
        block = Fields(raw, item.name(f"content[{j}]"))
        _block(block, parts, calls, results)
    if role == "assistant":
        if any(isinstance(p, Image) for p in parts):
            raise InvalidRequestError(item.name("content"), "images belong on user turns")
        text = "\n".join(p for p in parts if isinstance(p, str))
        return [ChatMessage("assistant", text, tool_calls=tuple(calls))]
    if calls:
        raise InvalidRequestError(item.name("content"), "tool_use blocks belong on assistant turns")
    own = [ChatMessage.from_parts("user", parts)] if parts else []
    return results + own


def _block(
    block: Fields, parts: list[str | Image], calls: list[ToolCall], results: list[ChatMessage]
) -> None:
    kind = block.text("type")
    if kind == "text":
        parts.append(block.text("text"))
    elif kind == "image":
        parts.append(_image(block))
    elif kind == "tool_use":
        arguments = block.raw("input")
        if not isinstance(arguments, dict):
            raise InvalidRequestError(block.name("input"), "must be an object")
        calls.append(
            ToolCall(block.text("id", max_length=256), block.text("name"), json_text(arguments))
        )
    elif kind == "tool_result":
        results.append(
            ChatMessage("tool", _result_text(block), tool_call_id=block.text("tool_use_id"))
        )
    else:
        raise InvalidRequestError(
            block.name("type"), "must be text, image, tool_use or tool_result"
        )


def _image(block: Fields) -> Image:
    source = block.obj("source")
    if source is None:
        raise InvalidRequestError(block.name("source"), "is required")
    kind = source.text("type")
    if kind == "base64":
        media = source.text("media_type")
        return Image(url=f"data:{media};base64,{source.text('data')}")
    if kind == "url":
        return Image(url=source.text("url"))
    raise InvalidRequestError(source.name("type"), "must be base64 or url")


def _result_text(block: Fields) -> str:
    return _text_blocks(block, "content", "tool results may hold text only", "\n")


def _tools(body: Fields) -> tuple[Tool, ...]:
    tools = []
    for i, raw in enumerate(body.items("tools")):
        tool = Fields(raw, f"tools[{i}]")
        if tool.text("type", "custom") != "custom":
            tool.refuse("type", "server tools are not supported: declare client tools")
        schema = tool.raw("input_schema")
        if not isinstance(schema, dict):
            raise InvalidRequestError(tool.name("input_schema"), "must be a JSON Schema object")
        tools.append(Tool(tool.text("name"), tool.text("description", ""), schema))
    return tuple(tools)


def _tool_choice(body: Fields) -> ToolChoice:
    choice = body.obj("tool_choice")
    if choice is None:
        return AUTO
    kind = choice.text("type")
    modes = {"auto": "auto", "any": "required", "none": "none"}
    if kind == "tool":
        return ToolChoice("tool", choice.text("name"))
    if kind not in modes:
        raise InvalidRequestError("tool_choice.type", "must be auto, any, tool or none")
    return ToolChoice(modes[kind])  # type: ignore[arg-type]  # one of the modes


def _parallel(body: Fields) -> bool | None:
    choice = body.obj("tool_choice")
    if choice is None or not choice.boolean("disable_parallel_tool_use"):
        return None
    return False


# -- answers ----------------------------------------------------------------------------


def stop_reason(reason: str) -> str:
    """The API's stop reason for the core's (providers of either kind)."""
    return {
        "tool_calls": "tool_use",
        "length": "max_tokens",
        "max_tokens": "max_tokens",
        "stop_sequence": "stop_sequence",
    }.get(reason, "end_turn")


def usage(result: AskResult) -> dict[str, int]:
    """The API's usage: its ``input_tokens`` excludes cache reads and writes."""
    spent = result.usage
    plain = spent.prompt_tokens - spent.cached_input_tokens - spent.cache_write_input_tokens
    return {
        "input_tokens": max(plain, 0),
        "output_tokens": spent.completion_tokens,
        "cache_creation_input_tokens": spent.cache_write_input_tokens,
        "cache_read_input_tokens": spent.cached_input_tokens,
    }


def _tool_block(call: ToolCall) -> dict[str, Any]:
    return {"type": "tool_use", "id": call.id, "name": call.name, "input": call.parsed()}


def message(result: AskResult, call: MessagesCall, message_id: str) -> dict[str, Any]:
    """A ``message`` object."""
    content: list[dict[str, Any]] = []
    if result.text:
        content.append({"type": "text", "text": result.text})
    content += [_tool_block(c) for c in result.tool_calls]
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": content,
        "stop_reason": stop_reason(result.finish_reason),
        "stop_sequence": None,
        "usage": usage(result),
    }


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


class Events:
    """The event stream of one streamed answer: text in one block, each tool call in
    a block of its own (whole: its arguments in one ``input_json_delta``)."""

    __slots__ = ("_index", "_open_text")

    def __init__(self) -> None:
        self._index = 0
        self._open_text = False

    def start(self, call: MessagesCall, message_id: str) -> bytes:
        shell: dict[str, Any] = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": call.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return _event("message_start", {"message": shell}) + _event("ping", {})

    def delta(self, text: str) -> bytes:
        out = b""
        if not self._open_text:
            self._open_text = True
            block = {"type": "text", "text": ""}
            out = _event("content_block_start", {"index": self._index, "content_block": block})
        delta = {"type": "text_delta", "text": text}
        return out + _event("content_block_delta", {"index": self._index, "delta": delta})

    def _close_text(self) -> bytes:
        if not self._open_text:
            return b""
        self._open_text = False
        self._index += 1
        return _event("content_block_stop", {"index": self._index - 1})

    def failed(self, refusal: Refusal) -> bytes:
        """An error event in place of the rest of the stream."""
        return _event("error", refusal.body("anthropic"))

    def tool(self, call: ToolCall) -> bytes:
        out = self._close_text()
        index = self._index
        self._index += 1
        block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        delta = {"type": "input_json_delta", "partial_json": call.arguments}
        return (
            out
            + _event("content_block_start", {"index": index, "content_block": block})
            + _event("content_block_delta", {"index": index, "delta": delta})
            + _event("content_block_stop", {"index": index})
        )

    def finish(self, result: AskResult) -> bytes:
        delta = {"stop_reason": stop_reason(result.finish_reason), "stop_sequence": None}
        return (
            self._close_text()
            + _event("message_delta", {"delta": delta, "usage": usage(result)})
            + _event("message_stop", {})
        )
