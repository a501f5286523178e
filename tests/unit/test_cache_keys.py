"""Cache keys: stable across processes, distinct for everything that changes an answer."""

from __future__ import annotations

import subprocess
import sys

from llm_sidecar.core.state.cache_keys import cache_key
from llm_sidecar.core.vocabulary.models import ChatMessage, GenerationParams
from llm_sidecar.core.vocabulary.tools import AUTO, Image, Tool, ToolCall, ToolChoice

BASE = {
    "user_id": "alice",
    "session_id": "s1",
    "thread_id": "t1",
    "model": "m",
    "params": GenerationParams(),
    "messages": [ChatMessage("user", "hello")],
}


def test_key_is_the_same_in_another_process() -> None:
    # Python's hash() is salted per process; the key must not be.
    code = (
        "from llm_sidecar.core.state.cache_keys import cache_key\n"
        "from llm_sidecar.core.vocabulary.models import ChatMessage, GenerationParams\n"
        "print(cache_key(user_id='alice', session_id='s1', thread_id='t1', model='m',"
        " params=GenerationParams(), messages=[ChatMessage('user', 'hello')]))"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == cache_key(**BASE)


def test_every_input_changes_the_key() -> None:
    variants = [
        {"user_id": "bob"},
        {"session_id": "s2"},
        {"session_id": None},
        {"thread_id": "t2"},
        {"model": "other"},
        {"params": GenerationParams(temperature=0.5)},
        {"messages": [ChatMessage("user", "hello!")]},
        {"messages": [ChatMessage("system", "hello")]},
        {"json_schema": {"type": "object"}},
    ]
    keys = {cache_key(**{**BASE, **v}) for v in variants}
    keys.add(cache_key(**BASE))
    assert len(keys) == len(variants) + 1


WEATHER = Tool("weather", "The weather", {"type": "object", "properties": {"city": {}}})
CALL = ToolCall("call_1", "weather", '{"city":"Lisbon"}')


def test_every_agent_input_changes_the_key() -> None:
    """Tools, the tool choice, images and tool calls and results all change an answer."""
    tools = {"tools": ((WEATHER,), AUTO, None)}
    asked = [ChatMessage("user", "weather?"), ChatMessage("assistant", "", tool_calls=(CALL,))]
    png = Image(data=b"\x89PNG one", mime_type="image/png")
    variants = [
        {},
        tools,
        {"tools": ((WEATHER,), ToolChoice("required"), None)},
        {"tools": ((WEATHER,), ToolChoice("tool", "weather"), None)},
        {"tools": ((WEATHER,), AUTO, False)},
        {"tools": ((Tool("weather", "The weather!", WEATHER.parameters),), AUTO, None)},
        {"tools": ((Tool("weather", "The weather", {"type": "object"}),), AUTO, None)},
        {"messages": [ChatMessage("user", "hello", images=(png,))]},
        {
            "messages": [
                ChatMessage(
                    "user", "hello", images=(Image(data=b"\x89PNG two", mime_type="image/png"),)
                )
            ]
        },
        {
            "messages": [
                ChatMessage("user", "hello", images=(Image(data=png.data, mime_type="image/jpeg"),))
            ]
        },
        {"messages": [ChatMessage("user", "hello", images=(Image(url="https://x/a.png"),))]},
        {"messages": [ChatMessage("user", "hello", images=(png, png))]},
        {"messages": asked},
        {
            "messages": [
                asked[0],
                ChatMessage(
                    "assistant", "", tool_calls=(ToolCall("call_1", "weather", '{"city":"Porto"}'),)
                ),
            ]
        },
        {
            "messages": [
                asked[0],
                ChatMessage(
                    "assistant", "", tool_calls=(ToolCall("call_2", "weather", CALL.arguments),)
                ),
            ]
        },
        {"messages": [*asked, ChatMessage("tool", "sunny", tool_call_id="call_1")]},
        {"messages": [*asked, ChatMessage("tool", "rainy", tool_call_id="call_1")]},
        {"messages": [*asked, ChatMessage("tool", "sunny", tool_call_id="call_2")]},
    ]
    keys = [cache_key(**{**BASE, **v}) for v in variants]
    assert len(set(keys)) == len(variants)
    # Stable for the same agent input, and another user never shares it.
    assert cache_key(**{**BASE, **tools}) == keys[1]
    assert cache_key(**{**BASE, **tools, "user_id": "bob"}) != keys[1]


def test_fields_cannot_run_into_each_other() -> None:
    # Length-prefixed fields: moving characters between ids changes the key.
    a = cache_key(**{**BASE, "user_id": "ab", "session_id": "c"})
    b = cache_key(**{**BASE, "user_id": "a", "session_id": "bc"})
    assert a != b
