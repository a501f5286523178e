"""What the Responses API answers: ``response`` objects, items, and the event stream.

Item ids are derived from the response that holds the item and the item's place in
it, so an item has the same id in its response, in every later ``input_items``
listing, and in the stream that announced it.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from llm_sidecar.core.state.responses import ChainItem
from llm_sidecar.core.vocabulary.hosted import McpRecord, hosted_call
from llm_sidecar.core.vocabulary.models import AskResult, ChatMessage
from llm_sidecar.core.vocabulary.tools import Image, ToolCall
from llm_sidecar.http_api.errors import Refusal
from llm_sidecar.http_api.openai.response_mcp import approval_request, record_item
from llm_sidecar.http_api.openai.response_request import ResponseSpec

#: Places of output messages start here, past any input's (inputs hold at most 1024).
OUTPUT_BASE = 0x800
#: Places of a hosted MCP loop's steps (listings and calls), before the output's.
MCP_BASE = 0x600
_INCOMPLETE = {"length": "max_output_tokens", "max_tokens": "max_output_tokens"}


def item_id(prefix: str, response_id: str, place: int, sub: int = 0) -> str:
    return f"{prefix}_{response_id[5:]}{place:03x}{sub:02x}"


def items_of(item: ChainItem) -> list[dict[str, Any]]:
    """The API's items for one stored message (an assistant turn may be several: its
    text, then each function call)."""
    message, rid = item.message, item.response_id
    place = OUTPUT_BASE + item.index if item.output else item.index
    if message.role == "tool":
        return [
            {
                "type": "function_call_output",
                "id": item_id("fco", rid, place),
                "call_id": message.tool_call_id,
                "output": message.content,
                "status": "completed",
            }
        ]
    if message.role != "assistant":
        content = [_input_part(p) for p in message.ordered()]
        role = "user" if message.role == "user" else "system"
        entry = {"type": "message", "id": item_id("msg", rid, place), "role": role}
        return [{**entry, "status": "completed", "content": content}]
    out = []
    if message.content or not message.tool_calls:
        out.append(_output_message(item_id("msg", rid, place), message.content, "completed"))
    for k, call in enumerate(message.tool_calls):
        out.append(_function_call(item_id("fc", rid, place, k + 1), call, "completed"))
    return out


def _input_part(part: str | Image) -> dict[str, Any]:
    if isinstance(part, str):
        return {"type": "input_text", "text": part}
    url = part.url or f"data:{part.mime_type};base64,{base64.b64encode(part.data).decode()}"
    return {"type": "input_image", "image_url": url, "detail": "auto"}


def _output_message(item: str, text: str, status: str) -> dict[str, Any]:
    content = [] if status == "in_progress" else [_output_text(text)]
    return {
        "type": "message",
        "id": item,
        "role": "assistant",
        "status": status,
        "content": content,
    }


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}


def _function_call(item: str, call: ToolCall, status: str) -> dict[str, Any]:
    arguments = "" if status == "in_progress" else call.arguments
    return {
        "type": "function_call",
        "id": item,
        "call_id": call.id,
        "name": call.name,
        "arguments": arguments,
        "status": status,
    }


def usage(result: AskResult) -> dict[str, Any]:
    spent = result.usage
    return {
        "input_tokens": spent.prompt_tokens,
        "input_tokens_details": {"cached_tokens": spent.cached_input_tokens},
        "output_tokens": spent.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": spent.reasoning_tokens},
        "total_tokens": spent.total_tokens,
    }


def response_object(
    spec: ResponseSpec,
    result: AskResult | None,
    status: str = "in_progress",
    records: tuple[McpRecord, ...] = (),
) -> dict[str, Any]:
    """A ``response``: the shell of one in progress, or the answered one."""
    rid = spec.response.response_id
    body: dict[str, Any] = {
        "id": rid,
        "object": "response",
        "created_at": spec.created_at,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "model": spec.model,
        "output": [],
        "usage": None,
        "reasoning": {"effort": None, "summary": None},
        **spec.echo,
    }
    if result is None:
        return body
    reason = _INCOMPLETE.get(result.finish_reason)
    if reason is None and result.finish_reason == "content_filter":
        reason = "content_filter"
    body["status"] = "incomplete" if reason else "completed"
    if reason:
        body["incomplete_details"] = {"reason": reason}
    own, waiting = _split_calls(spec, result.tool_calls)
    answer = ChatMessage("assistant", result.text, tool_calls=own)
    steps = [record_item(r, item_id("mcp", rid, MCP_BASE + k)) for k, r in enumerate(records)]
    # A turn that only asks for approvals shows no empty message before them.
    said = answer.content or answer.tool_calls or not waiting
    body["output"] = [
        *steps,
        *(items_of(ChainItem(rid, True, 0, answer)) if said else ()),
        *(approval_request(call) for call in waiting),
    ]
    body["usage"] = usage(result)
    return body


def _split_calls(
    spec: ResponseSpec, calls: tuple[ToolCall, ...]
) -> tuple[tuple[ToolCall, ...], list[ToolCall]]:
    """The caller's own function calls, and the hosted MCP calls waiting for approval
    (a hosted call that needs none is not shown: the next response runs it)."""
    hosted = {h.server: h for h in spec.response.hosted}
    own, waiting = [], []
    for call in calls:
        found = hosted_call(hosted, call)
        if found is None:
            own.append(call)
        elif found[0].needs_approval(found[1]):
            waiting.append(call)
    return tuple(own), waiting


def own_calls(spec: ResponseSpec, calls: tuple[ToolCall, ...]) -> tuple[ToolCall, ...]:
    """The calls that go back to the caller as function calls (not hosted MCP ones)."""
    return _split_calls(spec, calls)[0]


def rendered(spec: ResponseSpec, result: AskResult, records: tuple[McpRecord, ...] = ()) -> bytes:
    """The answered response as JSON: what the caller gets, and what a GET returns."""
    return orjson.dumps(response_object(spec, result, records=records))


def item_list(items: list[dict[str, Any]], *, limit: int, order: str, after: str) -> dict[str, Any]:
    """A page of ``input_items``: newest first unless ``order`` is ``asc``."""
    ordered = items if order == "asc" else items[::-1]
    if after:
        ids = [i["id"] for i in ordered]
        ordered = ordered[ids.index(after) + 1 :] if after in ids else []
    page = ordered[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(ordered) > limit,
    }


class ResponseEvents:
    """The event stream of one response: ``response.created``, ``.in_progress``, the
    output items as they come (a text item opened by its first delta; each function
    call whole), then ``response.completed`` (or ``.incomplete``, ``.failed``); every
    event with its ``sequence_number``."""

    __slots__ = ("_calls", "_index", "_open", "_records", "_seq", "_spec", "_text")

    def __init__(self, spec: ResponseSpec, records: tuple[McpRecord, ...] = ()) -> None:
        self._spec = spec
        #: A hosted MCP loop's steps, announced first (the loop has run by then).
        self._records = records
        self._seq = 0
        self._index = 0
        self._calls = 0
        self._open = False
        self._text: list[str] = []

    def _event(self, kind: str, data: dict[str, Any]) -> bytes:
        body = orjson.dumps({"type": kind, "sequence_number": self._seq, **data})
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + body + b"\n\n"

    @property
    def _message_id(self) -> str:
        return item_id("msg", self._spec.response.response_id, OUTPUT_BASE)

    def start(self) -> bytes:
        shell = response_object(self._spec, None)
        out = self._event("response.created", {"response": shell})
        out += self._event("response.in_progress", {"response": shell})
        rid = self._spec.response.response_id
        for k, record in enumerate(self._records):
            out += self._step(record_item(record, item_id("mcp", rid, MCP_BASE + k)))
        return out

    def _step(self, item: dict[str, Any]) -> bytes:
        """One MCP step's events, as OpenAI's stream has them."""
        where = {"item_id": item["id"], "output_index": self._index}
        index = {"output_index": self._index}
        if item["type"] == "mcp_list_tools":
            out = self._event(
                "response.output_item.added", {**index, "item": {**item, "tools": []}}
            )
            out += self._event("response.mcp_list_tools.in_progress", where)
            done = (
                "response.mcp_list_tools.failed"
                if item["error"]
                else "response.mcp_list_tools.completed"
            )
            out += self._event(done, where)
        else:
            opened = {
                **item,
                "status": "in_progress",
                "output": None,
                "error": None,
                "arguments": "",
            }
            out = self._event("response.output_item.added", {**index, "item": opened})
            out += self._event("response.mcp_call.in_progress", where)
            out += self._event(
                "response.mcp_call_arguments.delta", {**where, "delta": item["arguments"]}
            )
            out += self._event(
                "response.mcp_call_arguments.done", {**where, "arguments": item["arguments"]}
            )
            done = (
                "response.mcp_call.failed"
                if item["status"] == "failed"
                else "response.mcp_call.completed"
            )
            out += self._event(done, where)
        out += self._event("response.output_item.done", {**index, "item": item})
        self._index += 1
        return out

    def delta(self, text: str) -> bytes:
        out = b"" if self._open else self._open_message()
        self._text.append(text)
        where = {"item_id": self._message_id, "output_index": self._index, "content_index": 0}
        return out + self._event(
            "response.output_text.delta", {**where, "delta": text, "logprobs": []}
        )

    def _open_message(self) -> bytes:
        self._open = True
        item = _output_message(self._message_id, "", "in_progress")
        where = {"item_id": self._message_id, "output_index": self._index, "content_index": 0}
        return self._event(
            "response.output_item.added", {"output_index": self._index, "item": item}
        ) + self._event("response.content_part.added", {**where, "part": _output_text("")})

    def _close_message(self) -> bytes:
        if not self._open:
            return b""
        self._open = False
        text = "".join(self._text)
        where = {"item_id": self._message_id, "output_index": self._index, "content_index": 0}
        item = _output_message(self._message_id, text, "completed")
        out = self._event("response.output_text.done", {**where, "text": text, "logprobs": []})
        out += self._event("response.content_part.done", {**where, "part": _output_text(text)})
        out += self._event("response.output_item.done", {"output_index": self._index, "item": item})
        self._index += 1
        return out

    def tool(self, call: ToolCall) -> bytes:
        out = self._close_message()
        self._calls += 1
        rid = self._spec.response.response_id
        fid = item_id("fc", rid, OUTPUT_BASE, self._calls)
        index = self._index
        where = {"item_id": fid, "output_index": index}
        out += self._event(
            "response.output_item.added",
            {"output_index": index, "item": _function_call(fid, call, "in_progress")},
        )
        out += self._event(
            "response.function_call_arguments.delta", {**where, "delta": call.arguments}
        )
        out += self._event(
            "response.function_call_arguments.done",
            {**where, "arguments": call.arguments, "name": call.name},
        )
        out += self._event(
            "response.output_item.done",
            {"output_index": index, "item": _function_call(fid, call, "completed")},
        )
        self._index += 1
        return out

    def finish(self, result: AskResult) -> bytes:
        # An empty answer is still one (empty) message, unless calls wait for approval.
        waiting = bool(_split_calls(self._spec, result.tool_calls)[1])
        out = b"" if self._calls or self._open or waiting else self._open_message()
        out += self._close_message()
        for call in _split_calls(self._spec, result.tool_calls)[1]:
            item = approval_request(call)
            index = {"output_index": self._index}
            out += self._event("response.output_item.added", {**index, "item": item})
            out += self._event("response.output_item.done", {**index, "item": item})
            self._index += 1
        body = response_object(self._spec, result, records=self._records)
        kind = "response.completed" if body["status"] == "completed" else "response.incomplete"
        return out + self._event(kind, {"response": body})

    def failed(self, refusal: Refusal) -> bytes:
        body = response_object(self._spec, None, "failed")
        body["error"] = {"code": refusal.code, "message": refusal.message}
        return self._event("response.failed", {"response": body})
