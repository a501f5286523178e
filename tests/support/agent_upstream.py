"""What the fake upstreams answer to an agent's turn, in each provider's real format.

A request that declares tools, whose last turn is the user's, is answered with
tool calls: every declared tool when parallel calls are allowed, else the
first (or the one ``tool_choice`` names), each called with
``{"query": <the user's text>}``. A request whose last turn carries tool
results is answered with text quoting them. Replies are built through the
official SDKs' response models (tests/support/wire_formats.py).
"""

from __future__ import annotations

import json
from typing import Any

from tests.support.wire_formats import (
    anthropic_event,
    anthropic_reply,
    openai_chunk,
    openai_reply,
)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(b.get("text", "") for b in content or () if b.get("type") == "text")


def tool_results(kind: str, body: dict[str, Any]) -> list[str] | None:
    """The tool results of the last turn, or None when it carries none."""
    last = body["messages"][-1]
    if kind == "openai":
        results = []
        for message in reversed(body["messages"]):
            if message["role"] != "tool":
                break
            results.insert(0, f"{message['tool_call_id']}={message['content']}")
        return results or None
    if isinstance(last["content"], str):
        return None
    results = [
        f"{b['tool_use_id']}={_text(b['content'])}"
        for b in last["content"]
        if b.get("type") == "tool_result"
    ]
    return results or None


def planned_calls(kind: str, body: dict[str, Any], arguments: str | None) -> list[tuple[str, str]]:
    """(tool name, arguments JSON) the fake will call, or [] to answer with text."""
    tools = body.get("tools") or []
    if not tools or tool_results(kind, body) is not None:
        return []
    last = body["messages"][-1]
    query = _text(last["content"])
    args = arguments if arguments is not None else json.dumps({"query": query})
    if kind == "openai":
        names = [t["function"]["name"] for t in tools]
        choice = body.get("tool_choice", "auto")
        if choice == "none":
            return []
        if isinstance(choice, dict):
            names = [choice["function"]["name"]]
        elif not body.get("parallel_tool_calls", True):
            names = names[:1]
    else:
        names = [t["name"] for t in tools]
        choice = body.get("tool_choice", {"type": "auto"})
        if choice["type"] == "none":
            return []
        if choice["type"] == "tool":
            names = [choice["name"]]
        elif choice.get("disable_parallel_tool_use"):
            names = names[:1]
    return [(name, args) for name in names]


def openai_tool_reply(
    body: dict[str, Any], rid: str, calls: list[tuple[str, str]], usage: dict[str, Any] | None
) -> dict[str, Any]:
    reply: dict[str, Any] = {
        "id": rid,
        "object": "chat.completion",
        "created": 0,
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": f"call_{rid}_{i}",
                            "type": "function",
                            "function": {"name": name, "arguments": args},
                        }
                        for i, (name, args) in enumerate(calls)
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
    }
    if usage is not None:
        reply["usage"] = usage
    return openai_reply(reply)


def openai_tool_chunks(
    body: dict[str, Any], rid: str, calls: list[tuple[str, str]], usage: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """The stream of a tool-calling answer: each call's arguments in three fragments."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return openai_chunk(
            {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
        )

    chunks = []
    for i, (name, args) in enumerate(calls):
        third = max(1, len(args) // 3)
        pieces = [args[:third], args[third : 2 * third], args[2 * third :]]
        head = {"index": i, "id": f"call_{rid}_{i}", "type": "function"}
        chunks.append(
            chunk({"tool_calls": [{**head, "function": {"name": name, "arguments": ""}}]})
        )
        for piece in pieces:
            chunks.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
    chunks.append(chunk({}, "tool_calls"))
    if usage is not None:
        chunks.append(
            openai_chunk(
                {
                    "id": rid,
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": body["model"],
                    "choices": [],
                    "usage": usage,
                }
            )
        )
    return chunks


def anthropic_tool_reply(
    body: dict[str, Any], rid: str, calls: list[tuple[str, str]], usage: dict[str, Any]
) -> dict[str, Any]:
    return anthropic_reply(
        {
            "id": rid,
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [
                {
                    "type": "tool_use",
                    "id": f"toolu_{rid}_{i}",
                    "name": name,
                    "input": json.loads(args),
                }
                for i, (name, args) in enumerate(calls)
            ],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": usage,
        }
    )


def anthropic_tool_events(
    body: dict[str, Any], rid: str, calls: list[tuple[str, str]], usage: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of a tool-calling answer: input_json_delta in three fragments."""
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": rid,
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {**usage, "output_tokens": 1},
                },
            },
        )
    ]
    for i, (name, args) in enumerate(calls):
        third = max(1, len(args) // 3)
        block = {"type": "tool_use", "id": f"toolu_{rid}_{i}", "name": name, "input": {}}
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": i, "content_block": block},
            )
        )
        for piece in (args[:third], args[third : 2 * third], args[2 * third :]):
            delta = {"type": "input_json_delta", "partial_json": piece}
            events.append(
                ("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta})
            )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return [(name, anthropic_event(data)) for name, data in events]
