"""The guard over a conversation: every text of every turn (the system prompt, the
history, the caller's turns, tool results, the arguments of earlier tool calls) and,
on the way back, the answer's text and tool calls."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from llm_sidecar.core.guard.shield import Shield
from llm_sidecar.core.vocabulary.models import ChatMessage, Completion
from llm_sidecar.core.vocabulary.tools import ToolCall

T = TypeVar("T")


def guard_messages(shield: Shield, messages: tuple[ChatMessage, ...]) -> tuple[ChatMessage, ...]:
    """The turns as a provider may see them. Places count the turns as sent upstream
    (``messages[0]`` is the system prompt when there is one, then the history)."""
    texts: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        if message.parts:
            texts.extend(
                (part, f"messages[{i}].content[{k}]")
                for k, part in enumerate(message.parts)
                if isinstance(part, str)
            )
        elif message.content:
            texts.append((message.content, f"messages[{i}].content"))
        texts.extend(
            (call.arguments, f"messages[{i}].tool_calls[{j}].arguments")
            for j, call in enumerate(message.tool_calls)
        )
    guarded = iter(shield.texts(texts))
    out = tuple(_rebuilt(message, guarded) for message in messages)
    if all(new is old for new, old in zip(out, messages, strict=True)):
        return messages  # nothing found: the request goes as it is
    return out


def _rebuilt(message: ChatMessage, guarded: Any) -> ChatMessage:
    """The turn with its texts taken in the order :func:`guard_messages` listed them."""
    content, parts = message.content, message.parts
    if parts:
        parts = tuple(next(guarded) if isinstance(p, str) else p for p in parts)
        content = "\n".join(p for p in parts if isinstance(p, str))
    elif content:
        content = next(guarded)
    calls = tuple(dataclasses.replace(c, arguments=next(guarded)) for c in message.tool_calls)
    if content == message.content and parts == message.parts and calls == message.tool_calls:
        return message
    return dataclasses.replace(message, content=content, parts=parts, tool_calls=calls)


def restore_call(shield: Shield, call: ToolCall) -> ToolCall:
    """A tool call of the answer with its arguments restored (as JSON string content)."""
    arguments = shield.restore_json(call.arguments)
    return call if arguments == call.arguments else dataclasses.replace(call, arguments=arguments)


def restore_completion(shield: Shield, completion: Completion, structured: bool) -> Completion:
    """The answer restored: its text (a structured answer's as JSON) and tool calls."""
    text = shield.restore_json(completion.text) if structured else shield.restore(completion.text)
    calls = tuple(restore_call(shield, call) for call in completion.tool_calls)
    return dataclasses.replace(completion, text=text, tool_calls=calls)


async def restored_deltas(
    shield: Shield, deltas: AsyncIterator[str | ToolCall | T]
) -> AsyncIterator[str | ToolCall | T]:
    """A stream's deltas restored, a placeholder cut between two deltas held back until
    it is whole; what is held goes out before a tool call or the routed answer."""
    restorer = shield.restorer()
    async for item in deltas:
        if isinstance(item, str):
            text = restorer.feed(item)
            if text:
                yield text
            continue
        held = restorer.flush()
        if held:
            yield held
        yield restore_call(shield, item) if isinstance(item, ToolCall) else item
