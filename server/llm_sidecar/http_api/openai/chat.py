"""OpenAI's Chat Completions API (``POST /v1/chat/completions``): its handler, and its
bodies in and out of the core.

Requests become an :class:`AskInput` (every role; content as a string or as ordered
text and ``image_url`` parts; assistant tool calls and tool turns; tools, tool
choice, parallel calls; ``response_format`` through the structured path; sampling
and output caps). Answers come back in the API's own shapes, so the OpenAI SDKs
parse them unchanged: a ``chat.completion``, or ``chat.completion.chunk`` events.
"""

from __future__ import annotations

import time
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
from llm_sidecar.http_api.fields import Fields, content_parts, stop_sequences, text_of
from llm_sidecar.http_api.sse import Stream, relay, replayed

#: Fields that would change what an answer means, and which the sidecar does not
#: serve: refused with 400 naming them rather than silently dropped.
UNSUPPORTED = {
    "audio": "audio output is not supported",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "built-in web search is not supported",
    "functions": "the legacy functions field is not supported: use tools",
    "function_call": "the legacy function_call field is not supported: use tool_choice",
}
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


class ChatCompletions(Endpoints):
    """``POST /v1/chat/completions``."""

    async def handle(self, call: HttpCall) -> web.StreamResponse:
        assert call.body is not None and call.ctx is not None
        spec = parse(call.body)
        call.same_user(call.body.raw("user"), "user")
        deadline = self._deadline(call)
        completion_id = "chatcmpl-" + call.request_id
        if not spec.stream:
            result = await self._service.ask(call.ctx, spec.inp, deadline)
            call.answered(result)
            return call.json(completion(result, spec, completion_id))
        chunks = Chunks(spec, completion_id)
        stream: Stream
        if spec.inp.json_schema is not None:  # checked whole, then streamed
            stream = replayed(await self._service.ask(call.ctx, spec.inp, deadline))
        else:
            stream = self._service.ask_stream(call.ctx, spec.inp, deadline)
        return await relay(
            call, stream, chunks, b"", lambda r: chunks.finish(r, spec.include_usage)
        )


@dataclass(frozen=True, slots=True)
class ChatCompletionCall:
    """One parsed request: what the core is asked, and how to answer."""

    inp: AskInput
    model: str
    stream: bool
    include_usage: bool


def parse(body: Fields, max_images: int = 64) -> ChatCompletionCall:
    """The core request for a Chat Completions body; InvalidRequestError naming the field."""
    _refuse_unsupported(body)
    model = body.text("model", max_length=256)
    system, turns = _split_system(body.items("messages", required=True))
    stream = bool(body.boolean("stream"))
    options = body.obj("stream_options")
    include_usage = bool(options.boolean("include_usage")) if options is not None else False
    tools = _tools(body)
    inp = AskInput(
        prompt="",
        model=model,
        params=_params(body),
        system_prompt=system,
        json_schema=_response_format(body),
        messages=tuple(_message(Fields(m, f"messages[{i}]")) for i, m in turns),
        tools=tools,
        tool_choice=_tool_choice(body, tools),
        parallel_tool_calls=body.boolean("parallel_tool_calls"),
    )
    return ChatCompletionCall(inp, model, stream, include_usage)


def _refuse_unsupported(body: Fields) -> None:
    for key, why in UNSUPPORTED.items():
        if body.has(key):
            body.refuse(key, why)
    if (body.integer("n", minimum=1) or 1) > 1:
        body.refuse("n", "only one choice per request (n = 1) is supported")
    if body.boolean("logprobs") or body.has("top_logprobs"):
        body.refuse("logprobs", "log probabilities are not supported")
    modalities = body.items("modalities")
    if modalities and modalities != ["text"]:
        body.refuse("modalities", "only text output is supported")
    for penalty in ("frequency_penalty", "presence_penalty"):
        if body.number(penalty, -2.0, 2.0):
            body.refuse(penalty, "penalties are not supported (0 or absent)")
    if body.raw("logit_bias"):
        body.refuse("logit_bias", "logit bias is not supported")


def _split_system(messages: list[Any]) -> tuple[str, list[tuple[int, Any]]]:
    """Leading system (and developer) turns become the system prompt, which goes first,
    before any stored history; the others stay turns of their own."""
    system: list[str] = []
    index = 0
    while index < len(messages):
        item = Fields(messages[index], f"messages[{index}]")
        if item.raw("role") not in ("system", "developer"):
            break
        system.append(_text_content(item))
        index += 1
    return "\n\n".join(system), list(enumerate(messages))[index:]


def _message(item: Fields) -> ChatMessage:
    role = item.text("role")
    if role not in _ROLES:
        raise InvalidRequestError(item.name("role"), f"must be one of {', '.join(sorted(_ROLES))}")
    if role in ("system", "developer"):
        return ChatMessage("system", _text_content(item))
    if role == "tool":
        return ChatMessage(
            "tool", _text_content(item), tool_call_id=item.text("tool_call_id", max_length=256)
        )
    if role == "assistant":
        calls = tuple(
            _tool_call(Fields(c, item.name(f"tool_calls[{j}]")))
            for j, c in enumerate(item.items("tool_calls"))
        )
        return ChatMessage("assistant", _text_content(item, allow_null=True), tool_calls=calls)
    return ChatMessage.from_parts("user", _parts(item))


def _text_content(item: Fields, *, allow_null: bool = False) -> str:
    """Content that may only hold text: a string, or an array of text parts."""
    content = item.raw("content")
    if content is None and allow_null:
        return ""
    if isinstance(content, str):
        return content
    return text_of(item, _parts(item))


def _parts(item: Fields) -> list[str | Image]:
    return content_parts(item, _part)


def _part(part: Fields) -> str | Image:
    kind = part.text("type")
    if kind == "text":
        return part.text("text")
    if kind != "image_url":
        part.refuse("type", "must be text or image_url")
    image = part.obj("image_url")
    if image is None:
        raise InvalidRequestError(part.name("image_url"), "is required")
    return Image(url=image.text("url"))


def _tool_call(call: Fields) -> ToolCall:
    function = call.obj("function")
    if function is None:
        raise InvalidRequestError(call.name("function"), "is required")
    return ToolCall(
        call.text("id", max_length=256),
        function.text("name", max_length=64),
        function.text("arguments", "{}"),
    )


def _tools(body: Fields) -> tuple[Tool, ...]:
    tools = []
    for i, raw in enumerate(body.items("tools")):
        tool = Fields(raw, f"tools[{i}]")
        if tool.text("type", "function") != "function":
            tool.refuse("type", "only function tools are supported")
        function = tool.obj("function")
        if function is None:
            raise InvalidRequestError(tool.name("function"), "is required")
        parameters = function.raw("parameters")
        if parameters is None:
            parameters = {"type": "object", "properties": {}}
        if not isinstance(parameters, dict):
            raise InvalidRequestError(function.name("parameters"), "must be a JSON Schema object")
        tools.append(Tool(function.text("name"), function.text("description", ""), parameters))
    return tuple(tools)


def _tool_choice(body: Fields, tools: tuple[Tool, ...]) -> ToolChoice:
    choice = body.raw("tool_choice")
    if choice is None:
        return AUTO
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise InvalidRequestError("tool_choice", "must be auto, none, required or a function")
        return ToolChoice(choice)  # type: ignore[arg-type]  # checked above
    function = Fields(choice, "tool_choice").obj("function")
    if function is None:
        raise InvalidRequestError("tool_choice.function", "is required")
    return ToolChoice("tool", function.text("name"))


def _response_format(body: Fields) -> dict[str, Any] | None:
    """``json_schema`` and ``json_object`` through the structured path (the answer is
    checked against the schema, and fails over when it does not fit)."""
    shape = body.obj("response_format")
    if shape is None:
        return None
    kind = shape.text("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind != "json_schema":
        raise InvalidRequestError(
            "response_format.type", "must be text, json_object or json_schema"
        )
    spec = shape.obj("json_schema")
    schema = spec.raw("schema") if spec is not None else None
    if not isinstance(schema, dict):
        raise InvalidRequestError(
            "response_format.json_schema.schema", "must be a JSON Schema object"
        )
    return schema


def _params(body: Fields) -> GenerationParams:
    cap = body.integer("max_completion_tokens", minimum=1) or body.integer("max_tokens", minimum=1)
    return GenerationParams(
        temperature=body.number("temperature", 0.0, 2.0),
        max_tokens=cap,
        top_p=body.number("top_p", 0.0, 1.0),
        stop=stop_sequences(body, "stop"),
        seed=body.integer("seed"),
    )


# -- answers ----------------------------------------------------------------------------


def finish_reason(reason: str) -> str:
    """The API's finish reason for the core's (providers of either kind)."""
    return {
        "tool_calls": "tool_calls",
        "length": "length",
        "max_tokens": "length",
        "content_filter": "content_filter",
    }.get(reason, "stop")


def usage(result: AskResult) -> dict[str, Any]:
    """The API's usage object, cached and reasoning tokens included."""
    spent = result.usage
    return {
        "prompt_tokens": spent.prompt_tokens,
        "completion_tokens": spent.completion_tokens,
        "total_tokens": spent.total_tokens,
        "prompt_tokens_details": {"cached_tokens": spent.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": spent.reasoning_tokens},
    }


def tool_call(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def completion(result: AskResult, call: ChatCompletionCall, completion_id: str) -> dict[str, Any]:
    """A ``chat.completion`` object."""
    message: dict[str, Any] = {"role": "assistant", "content": result.text or None, "refusal": None}
    if result.tool_calls:
        message["tool_calls"] = [tool_call(c) for c in result.tool_calls]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": call.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason(result.finish_reason),
                "logprobs": None,
            }
        ],
        "usage": usage(result),
        "system_fingerprint": None,
    }


class Chunks:
    """``chat.completion.chunk`` events of one streamed answer. Every delta of a stream
    passes here, so each event is joined from bytes made once per stream."""

    __slots__ = ("_calls", "_delta", "_first", "_head", "_tail")

    def __init__(self, call: ChatCompletionCall, completion_id: str) -> None:
        head = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time())}
        opening = orjson.dumps({**head, "model": call.model})[:-1]
        self._head = b"data: " + opening + b',"choices":['
        self._delta = self._head + b'{"index":0,"delta":{"content":'
        self._tail = b'}}],"usage":null}\n\n'
        self._first = True
        self._calls = 0

    def delta(self, text: str) -> bytes:
        """One text delta (the first carries the assistant role)."""
        if self._first:
            self._first = False
            return self._event({"role": "assistant", "content": text})
        return self._delta + orjson.dumps(text) + self._tail

    def _event(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta}
        if finish is not None:
            choice["finish_reason"] = finish
        return self._head + orjson.dumps(choice) + b'],"usage":null}\n\n'

    def tool(self, call: ToolCall) -> bytes:
        """One whole tool call, at its index."""
        delta: dict[str, Any] = {"tool_calls": [{"index": self._calls, **tool_call(call)}]}
        if self._first:
            self._first = False
            delta["role"] = "assistant"
        self._calls += 1
        return self._event(delta)

    def failed(self, refusal: Refusal) -> bytes:
        """An error event in place of the rest of the stream."""
        return b"data: " + orjson.dumps(refusal.body("openai")) + b"\n\n"

    def finish(self, result: AskResult, include_usage: bool) -> bytes:
        """The closing chunk with the finish reason; the usage chunk when asked; [DONE]."""
        delta: dict[str, Any] = {"role": "assistant"} if self._first else {}
        out = self._event(delta, finish_reason(result.finish_reason))
        if include_usage:
            out += self._head + b'],"usage":' + orjson.dumps(usage(result)) + b"}\n\n"
        return out + b"data: [DONE]\n\n"
