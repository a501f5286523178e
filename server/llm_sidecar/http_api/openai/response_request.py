"""OpenAI's Responses API (``POST /v1/responses``) into the core: a request becomes a
:class:`ResponseInput`, a chat turn on top of the stored chain it continues.

Served: ``input`` as a string or as items (``message`` with ``input_text`` /
``input_image`` parts, or ``output_text`` when an assistant turn is replayed;
``function_call``; ``function_call_output``; ``reasoning`` items are dropped, since
no provider here reads them), ``instructions``, function ``tools``, ``tool_choice``,
``parallel_tool_calls``, ``text.format`` (``json_schema`` and ``json_object`` through
the structured path), ``max_output_tokens``, ``temperature``, ``top_p``,
``metadata``, ``previous_response_id``, ``store``, ``stream``. Fields that would
change what a response means and that the sidecar does not serve are refused,
naming the ``param``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from llm_sidecar.core.state.responses import new_response_id
from llm_sidecar.core.vocabulary.errors import InvalidRequestError
from llm_sidecar.core.vocabulary.hosted import Approval, HostedServer
from llm_sidecar.core.vocabulary.models import (
    AskInput,
    ChatMessage,
    GenerationParams,
    ResponseInput,
)
from llm_sidecar.core.vocabulary.tools import AUTO, Image, Tool, ToolCall, ToolChoice
from llm_sidecar.http_api.fields import Fields, content_parts, text_of
from llm_sidecar.http_api.openai.response_mcp import (
    approval_answer,
    hosted_tool,
    replayed_call,
)

#: Fields served by OpenAI that the sidecar does not serve, and why.
UNSUPPORTED = {
    "background": "background responses are not supported",
    "background_options": "background responses are not supported",
    "conversation": "conversation objects are not supported: use previous_response_id",
    "context_management": "server-side context management is not supported",
    "prompt": "prompt templates are not supported",
    "max_tool_calls": "built-in tools are not supported",
    "access_programs": "programmatic tool calling is not supported",
    "image": "image generation is not supported",
    "moderation": "moderation settings are not supported",
}
MAX_METADATA = 16
#: Input items served, and those dropped (no provider reads them; an MCP listing or
#: approval request replayed as input is already in the conversation it came from).
_SERVED = (
    "message",
    "function_call",
    "function_call_output",
    "mcp_call",
    "mcp_approval_response",
)
_DROPPED = frozenset({"reasoning", "mcp_list_tools", "mcp_approval_request"})


@dataclass(frozen=True, slots=True)
class ResponseSpec:
    """One parsed request: what the core is asked, and what the answer echoes."""

    response: ResponseInput
    model: str
    stream: bool
    created_at: int
    #: Request fields a response object repeats (instructions, tools, metadata, ...).
    echo: dict[str, Any] = field(default_factory=dict)


def parse(body: Fields) -> ResponseSpec:
    """The core request for a Responses body; InvalidRequestError naming the field."""
    _refuse_unsupported(body)
    model = body.text("model", max_length=256)
    tools, hosted, tool_echo = _tools(body)
    choice, choice_echo = _tool_choice(body, tools)
    messages, approvals = _input(body)
    schema, text_echo = _text_format(body)
    inp = AskInput(
        prompt="",
        model=model,
        params=GenerationParams(
            temperature=body.number("temperature", 0.0, 2.0),
            max_tokens=body.integer("max_output_tokens", minimum=1),
            top_p=body.number("top_p", 0.0, 1.0),
        ),
        system_prompt=body.text("instructions", ""),
        skip_history=True,
        json_schema=schema,
        messages=messages,
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=body.boolean("parallel_tool_calls"),
    )
    previous = body.text("previous_response_id", "") or None
    store = body.boolean("store")
    response = ResponseInput(
        inp, new_response_id(), previous, store is not False, hosted=hosted, approvals=approvals
    )
    echo = {
        "instructions": body.raw("instructions"),
        "max_output_tokens": inp.params.max_tokens,
        "metadata": _metadata(body),
        "parallel_tool_calls": inp.parallel_tool_calls is not False,
        "previous_response_id": previous,
        "store": response.store,
        "temperature": inp.params.temperature,
        "text": text_echo,
        "tool_choice": choice_echo,
        "tools": tool_echo,
        "top_p": inp.params.top_p,
        "truncation": "disabled",
        "user": body.raw("user"),
    }
    stream = bool(body.boolean("stream"))
    return ResponseSpec(response, model, stream, int(time.time()), echo)


def _refuse_unsupported(body: Fields) -> None:
    for key, why in UNSUPPORTED.items():
        if body.has(key) and body.raw(key) is not False:
            body.refuse(key, why)
    if body.integer("top_logprobs", minimum=0):
        body.refuse("top_logprobs", "log probabilities are not supported")


def _metadata(body: Fields) -> dict[str, str]:
    """Up to 16 string pairs, echoed back (never sent to a provider, never logged)."""
    raw = body.raw("metadata")
    if raw is None:
        return {}
    # The keys are the caller's: the message names the rule, never the key.
    if (
        not isinstance(raw, dict)
        or len(raw) > MAX_METADATA
        or any(
            len(key) > 64 or not isinstance(value, str) or len(value) > 512
            for key, value in raw.items()
        )
    ):
        raise InvalidRequestError(
            "metadata", "must be at most 16 string pairs: keys of 64 characters, values of 512"
        )
    return dict(raw)


# -- input --------------------------------------------------------------------------------


def _input(body: Fields) -> tuple[tuple[ChatMessage, ...], tuple[Approval, ...]]:
    """The new input as turns, and the answers to MCP approval requests. A function
    call joins the assistant turn before it (one turn may hold text and several calls,
    as providers expect); an MCP call replayed as input is a call and its result."""
    value = body.raw("input")
    if isinstance(value, str):
        if not value.strip():
            raise InvalidRequestError("input", "is empty")
        return (ChatMessage("user", value),), ()
    turns: list[ChatMessage] = []
    approvals: list[Approval] = []
    for i, raw in enumerate(body.items("input", required=True)):
        item = Fields(raw, f"input[{i}]")
        kind = item.text("type", "message")
        if kind == "message":
            turns.append(_message(item))
        elif kind == "function_call":
            _add_call(turns, item)
        elif kind == "function_call_output":
            call_id = item.text("call_id", max_length=256)
            turns.append(ChatMessage("tool", _output_text(item), tool_call_id=call_id))
        elif kind == "mcp_approval_response":
            approvals.append(approval_answer(item))
        elif kind == "mcp_call":
            turns.extend(replayed_call(item))
        elif kind not in _DROPPED:
            item.refuse("type", f"must be one of {', '.join(_SERVED)}")
    if not turns and not approvals:
        raise InvalidRequestError("input", "is empty")
    return tuple(turns), tuple(approvals)


def _add_call(turns: list[ChatMessage], item: Fields) -> None:
    call = ToolCall(
        item.text("call_id", max_length=256),
        item.text("name", max_length=64),
        item.text("arguments", "{}"),
    )
    last = turns[-1] if turns else None
    if last is not None and last.role == "assistant":
        turns[-1] = ChatMessage("assistant", last.content, tool_calls=(*last.tool_calls, call))
    else:
        turns.append(ChatMessage("assistant", "", tool_calls=(call,)))


def _message(item: Fields) -> ChatMessage:
    role = item.text("role")
    if role not in ("user", "assistant", "system", "developer"):
        item.refuse("role", "must be user, assistant, system or developer")
    parts = content_parts(item, _part)
    if role == "user":
        return ChatMessage.from_parts("user", parts)
    return ChatMessage("assistant" if role == "assistant" else "system", text_of(item, parts))


def _part(part: Fields) -> str | Image:
    kind = part.text("type")
    if kind in ("input_text", "output_text"):
        return part.text("text")
    if kind == "refusal":
        return part.text("refusal")
    if kind != "input_image":
        part.refuse("type", "must be input_text, output_text or input_image")
    if part.has("file_id"):
        part.refuse("file_id", "files are not supported: send image_url")
    return Image(url=part.text("image_url"))


def _output_text(item: Fields) -> str:
    """A function's output: a string, or text parts."""
    output = item.raw("output")
    if isinstance(output, str):
        return output
    texts = []
    for j, raw in enumerate(item.items("output", required=True)):
        part = Fields(raw, item.name(f"output[{j}]"))
        if part.text("type") != "input_text":
            part.refuse("type", "only text outputs are supported")
        texts.append(part.text("text"))
    return "\n".join(texts)


# -- tools and format --------------------------------------------------------------------


def _tools(
    body: Fields,
) -> tuple[tuple[Tool, ...], tuple[HostedServer, ...], list[dict[str, Any]]]:
    """Function tools (flat, as this API has them), hosted MCP servers, and how the
    response echoes them."""
    tools, hosted, echo = [], [], []
    for i, raw in enumerate(body.items("tools")):
        tool = Fields(raw, f"tools[{i}]")
        kind = tool.text("type")
        if kind == "mcp":
            server, shown = hosted_tool(tool)
            hosted.append(server)
            echo.append(shown)
            continue
        if kind != "function":
            tool.refuse("type", "only function and mcp tools are supported")
        parameters = tool.raw("parameters")
        if parameters is None:
            parameters = {"type": "object", "properties": {}}
        if not isinstance(parameters, dict):
            raise InvalidRequestError(tool.name("parameters"), "must be a JSON Schema object")
        name, description = tool.text("name"), tool.text("description", "")
        tools.append(Tool(name, description, parameters))
        strict = tool.boolean("strict")
        echo.append(
            {
                "type": "function",
                "name": name,
                "description": description or None,
                "parameters": parameters,
                "strict": True if strict is None else strict,
            }
        )
    return tuple(tools), tuple(hosted), echo


def _tool_choice(body: Fields, tools: tuple[Tool, ...]) -> tuple[ToolChoice, Any]:
    choice = body.raw("tool_choice")
    if choice is None:
        return AUTO, "auto"
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise InvalidRequestError("tool_choice", "must be auto, none, required or a function")
        return ToolChoice(choice), choice  # type: ignore[arg-type]  # checked above
    spec = Fields(choice, "tool_choice")
    if spec.text("type") != "function":
        spec.refuse("type", "only function tool choices are supported")
    name = spec.text("name")
    return ToolChoice("tool", name), {"type": "function", "name": name}


def _text_format(body: Fields) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """``text.format``: the schema for the structured path, and the echoed format."""
    text = body.obj("text")
    shape = text.obj("format") if text is not None else None
    if shape is None:
        return None, {"format": {"type": "text"}}
    kind = shape.text("type")
    if kind == "text":
        return None, {"format": {"type": "text"}}
    if kind == "json_object":
        return {"type": "object"}, {"format": {"type": "json_object"}}
    if kind != "json_schema":
        shape.refuse("type", "must be text, json_object or json_schema")
    schema = shape.raw("schema")
    if not isinstance(schema, dict):
        raise InvalidRequestError(shape.name("schema"), "must be a JSON Schema object")
    echo = {
        "type": "json_schema",
        "name": shape.text("name", "response", max_length=64),
        "schema": schema,
        "strict": bool(shape.boolean("strict")),
    }
    return schema, {"format": echo}
