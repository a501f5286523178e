"""The agent surface through the wire, against both provider kinds, unary and streaming.

The fake upstreams speak each provider's real format: every request body the
sidecar sends is checked against the official openai / anthropic SDKs' request
types (an unknown, missing or mistyped field is an HTTP 400 and a test failure),
and replies are built through the SDKs' response models.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from llm_manager_client import (
    AsyncLLMManagerClient,
    Image,
    InvalidArgumentError,
    Message,
    Tool,
    ToolCall,
    UserContext,
)
from llm_sidecar import Sidecar
from tests.support.sidecar import make_settings, provider
from tests.support.upstream import FakeUpstream

WEATHER = Tool(
    "get_weather",
    "The weather in a city",
    {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
)
CLOCK = Tool("get_time", "The time in a city", {"type": "object", "properties": {}})
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
KINDS = ["openai", "anthropic"]
MODES = ["unary", "stream"]


def _url(up: FakeUpstream, kind: str) -> str:
    return up.url if kind == "openai" else up.anthropic_url


async def _sidecar(sidecar_factory, up: FakeUpstream, kind: str, **sections: Any) -> Sidecar:
    return await sidecar_factory(
        make_settings([provider("up", _url(up, kind), kind=kind)], **sections)
    )


def _client(sidecar: Sidecar, user: str = "alice", **ctx: Any) -> AsyncLLMManagerClient:
    return AsyncLLMManagerClient(f"127.0.0.1:{sidecar.port}", UserContext(user, **ctx), timeout=10)


async def _ask(
    client: AsyncLLMManagerClient, mode: str, prompt: str = "", **kwargs: Any
) -> tuple[str, tuple[ToolCall, ...], Any]:
    """(text, tool calls, metadata) of one ask, unary or streamed."""
    if mode == "unary":
        result = await client.ask_full(prompt, **kwargs)
        return result.text, result.tool_calls, result.metadata
    text, calls, metadata = "", [], None
    async for chunk in client.ask_stream(prompt, **kwargs):
        text += chunk.delta
        if chunk.tool_call is not None:
            assert chunk.delta == "" and chunk.tool_call.args  # whole, parseable calls
            calls.append(chunk.tool_call)
        if chunk.metadata is not None:
            metadata = chunk.metadata
    return text, tuple(calls), metadata


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
async def test_two_round_tool_loop_through_server_history(
    kind: str, mode: str, upstream: FakeUpstream, sidecar_factory
) -> None:
    sidecar = await _sidecar(sidecar_factory, upstream, kind)
    async with _client(sidecar, session_id="trip") as client:
        text, calls, meta = await _ask(client, mode, "weather in Lisbon", tools=[WEATHER])
        assert text == "" and meta.finish_reason == "tool_calls"
        (call,) = calls
        assert call.name == "get_weather" and call.args == {"query": "weather in Lisbon"}
        # Round two: only the tool's result; the question and the call come from history.
        text, calls, meta = await _ask(
            client, mode, messages=[Message.tool_result(call, "sunny, 21C")], tools=[WEATHER]
        )
        assert calls == () and text == f"primary says: tools answered {call.id}=sunny, 21C (turn 3)"
        history = (await client.get_conversation()).messages
    assert [(m.role, m.content) for m in history] == [
        ("user", "weather in Lisbon"),
        ("assistant", ""),
        ("tool", "sunny, 21C"),
        ("assistant", text),
    ]
    assert history[1].tool_calls == (call,) and history[2].tool_call_id == call.id
    assert upstream.format_errors == []
    sent = upstream.chat_requests[-1].body["messages"]
    if kind == "openai":
        assert sent[1]["tool_calls"][0]["function"] == {
            "name": "get_weather",
            "arguments": call.arguments,
        }
        assert sent[2] == {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}
    else:
        (tool_use,) = [b for b in sent[1]["content"] if b["type"] == "tool_use"]
        assert (tool_use["id"], tool_use["input"]) == (call.id, {"query": "weather in Lisbon"})
        assert sent[2]["content"][0]["tool_use_id"] == call.id


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
async def test_tool_loop_with_caller_supplied_messages(
    kind: str, mode: str, upstream: FakeUpstream, sidecar_factory
) -> None:
    sidecar = await _sidecar(sidecar_factory, upstream, kind)
    async with _client(sidecar) as client:  # no session: the caller keeps the history
        question = Message.user("weather in Porto")
        _, calls, _ = await _ask(client, mode, messages=[question], tools=[WEATHER])
        (call,) = calls
        turns = [question, Message.assistant(tool_calls=calls), Message.tool_result(call, "rain")]
        text, calls, _ = await _ask(client, mode, messages=turns, tools=[WEATHER])
    assert calls == () and text.endswith(f"tools answered {call.id}=rain (turn 3)")
    assert upstream.format_errors == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
async def test_parallel_tool_calls(
    kind: str, mode: str, upstream: FakeUpstream, sidecar_factory
) -> None:
    sidecar = await _sidecar(sidecar_factory, upstream, kind)
    async with _client(sidecar, session_id="p") as client:
        _, calls, _ = await _ask(client, mode, "Oslo", tools=[WEATHER, CLOCK])
        assert [c.name for c in calls] == ["get_weather", "get_time"]
        results = [Message.tool_result(c, f"{c.name} ok") for c in calls]
        text, _, _ = await _ask(client, mode, messages=results, tools=[WEATHER, CLOCK])
        assert text == (
            f"primary says: tools answered {calls[0].id}=get_weather ok; {calls[1].id}=get_time ok"
            f" (turn {4 if kind == 'openai' else 3})"
        )
        _, one, _ = await _ask(
            client, mode, "Bergen", tools=[WEATHER, CLOCK], parallel_tool_calls=False
        )
        assert len(one) == 1
        _, named, _ = await _ask(
            client, mode, "Rome", tools=[WEATHER, CLOCK], tool_choice="get_time"
        )
        assert [c.name for c in named] == ["get_time"]
    assert upstream.format_errors == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
async def test_image_parts(kind: str, mode: str, upstream: FakeUpstream, sidecar_factory) -> None:
    sidecar = await _sidecar(sidecar_factory, upstream, kind)
    inline = Image.from_bytes(PNG, "image/png")
    linked = Image(url="https://example.com/cat.png")
    async with _client(sidecar, session_id="img") as client:
        text, _, _ = await _ask(
            client, mode, messages=[Message.user("what is this?", inline, linked)]
        )
        assert text == "primary says: what is this? (turn 1)"
        (stored,) = [m for m in (await client.get_conversation()).messages if m.role == "user"]
        assert stored.images == (inline, linked)
    assert upstream.format_errors == []
    content = upstream.chat_requests[-1].body["messages"][0]["content"]
    if kind == "openai":
        assert [p["type"] for p in content] == ["text", "image_url", "image_url"]
        assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")
        assert content[2]["image_url"]["url"] == linked.url
    else:
        assert content[1]["source"]["type"] == "base64"
        assert content[1]["source"]["media_type"] == "image/png"
        assert content[2]["source"] == {"type": "url", "url": linked.url}


@pytest.mark.parametrize("mode", MODES)
async def test_failover_from_openai_to_anthropic_in_the_middle_of_a_tool_loop(
    mode: str, upstream_factory, sidecar_factory
) -> None:
    gpt = await upstream_factory("gpt")
    claude = await upstream_factory("claude")
    settings = make_settings(
        [provider("gpt", gpt.url), provider("claude", claude.anthropic_url, kind="anthropic")]
    )
    sidecar = await sidecar_factory(settings)
    async with _client(sidecar, session_id="loop") as client:
        _, calls, meta = await _ask(client, mode, "weather in Kyiv", tools=[WEATHER])
        assert meta.provider == "gpt"
        (call,) = calls
        gpt.mode = "error"  # the primary fails on the loop's second step
        text, _, meta = await _ask(
            client, mode, messages=[Message.tool_result(call, "snow")], tools=[WEATHER]
        )
        assert meta.provider == "claude"
        assert text == f"claude says: tools answered {call.id}=snow (turn 3)"
    # Claude got the whole loop in its own format: the question, the OpenAI call as a
    # tool_use block with its id, and the result as a tool_result for that id.
    sent = claude.chat_requests[-1].body["messages"]
    assert sent[0] == {"role": "user", "content": "weather in Kyiv"}
    # (the stored history ends there: prompt caching marks it as a cache breakpoint)
    assert sent[1]["content"] == [
        {
            "type": "tool_use",
            "id": call.id,
            "name": "get_weather",
            "input": call.args,
            "cache_control": {"type": "ephemeral"},
        }
    ]
    assert sent[2]["content"][0]["tool_use_id"] == call.id
    assert gpt.format_errors == claude.format_errors == []


@pytest.mark.parametrize("mode", MODES)
async def test_invalid_tool_call_json_fails_over_and_stores_nothing(
    mode: str, upstream_factory, sidecar_factory
) -> None:
    gpt = await upstream_factory("gpt")
    claude = await upstream_factory("claude")
    gpt.tool_arguments = '{"query": "unterminated'
    settings = make_settings(
        [provider("gpt", gpt.url), provider("claude", claude.anthropic_url, kind="anthropic")]
    )
    sidecar = await sidecar_factory(settings)
    async with _client(sidecar, session_id="bad") as client:
        _, calls, meta = await _ask(client, mode, "weather in Rome", tools=[WEATHER])
        assert meta.provider == "claude" and meta.attempts[0].error_type == "bad_response"
        assert [c.args for c in calls] == [{"query": "weather in Rome"}]
        history = (await client.get_conversation()).messages
    assert len(history) == 2 and history[1].tool_calls == calls  # only the good answer


async def test_two_users_with_the_same_tools_share_nothing(
    upstream: FakeUpstream, sidecar_factory
) -> None:
    sidecar = await _sidecar(sidecar_factory, upstream, "openai")
    async with _client(sidecar, "alice", session_id="s") as alice:
        bob = alice.with_context(UserContext("bob", session_id="s"))
        first = await alice.ask_full("weather in Lisbon", tools=[WEATHER])
        theirs = await bob.ask_full("weather in Lisbon", tools=[WEATHER])
        again = await alice.ask_full("weather in Lisbon", tools=[WEATHER], skip_history=True)
        assert not first.metadata.cached and not theirs.metadata.cached
        assert again.metadata.cached and again.tool_calls == first.tool_calls
        assert theirs.tool_calls[0].id != first.tool_calls[0].id
        mine = (await alice.get_conversation()).messages
        bobs = (await bob.get_conversation()).messages
    assert mine[1].tool_calls == first.tool_calls and bobs[1].tool_calls == theirs.tool_calls
    assert len(upstream.chat_requests) == 2


async def test_structured_call_returns_tool_calls(upstream: FakeUpstream, sidecar_factory) -> None:
    sidecar = await _sidecar(sidecar_factory, upstream, "openai")
    async with _client(sidecar) as client:
        result = await client.ask_structured("look it up", {"type": "object"}, tools=[WEATHER])
    assert result.json == "" and result.data is None
    assert [c.name for c in result.tool_calls] == ["get_weather"]
    assert result.metadata.finish_reason == "tool_calls"


BAD_SCHEMA = {"type": "object", "minProperties": -1}
BMP = Image.from_bytes(PNG, "image/bmp")
NOT_AN_OBJECT = ToolCall("c", "f", "[1]")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tools": [Tool("no spaces allowed")]}, "tools[0].name"),
        ({"tools": [Tool(f"t{i}") for i in range(129)]}, "tools"),
        ({"tools": [Tool("t", parameters=BAD_SCHEMA)]}, "tools[0].parameters"),
        ({"tools": [Tool("t")], "tool_choice": "nope"}, "tool_choice.name"),
        ({"messages": [Message.tool_result("call_unknown", "x")]}, "messages[0].tool_call_id"),
        ({"messages": [Message.user("x", BMP)]}, "messages[0].parts[0].image.mime_type"),
        (
            {"messages": [Message.user("x", Image(url="ftp://host/x.png"))]},
            "messages[0].parts[0].image.url",
        ),
        (
            {"messages": [Message.assistant(tool_calls=[NOT_AN_OBJECT])]},
            "messages[0].tool_calls[0].arguments",
        ),
    ],
)
async def test_agent_fields_are_validated(
    kwargs: dict[str, Any], field: str, upstream: FakeUpstream, sidecar_factory
) -> None:
    sidecar = await _sidecar(sidecar_factory, upstream, "openai")
    async with _client(sidecar, session_id="v") as client:
        with pytest.raises(InvalidArgumentError) as info:
            await client.ask("hello", **kwargs)
    assert info.value.field == field
    assert upstream.chat_requests == [] and len(sidecar.registry) == 0


async def test_tool_arguments_stay_out_of_spans_and_logs(
    upstream: FakeUpstream, traced_factory, json_logs
) -> None:
    traced = await traced_factory(make_settings([provider("up", upstream.url)]))
    async with traced.client("alice", session_id="s") as client:
        result = await client.ask_full("secret-city-zq91", tools=[WEATHER])
        await client.ask_full(
            "",
            messages=[Message.tool_result(result.tool_calls[0], "zq-result-77")],
            tools=[WEATHER],
        )
    exported = json.dumps([dict(s.attributes or {}) for s in traced.spans()] + json_logs.lines)
    assert "secret-city-zq91" not in exported and "zq-result-77" not in exported
    chats = [s for s in traced.spans() if s.name.startswith("chat ")]
    assert chats[0].attributes["llm_sidecar.response.tool_calls"] == 1
    assert chats[0].attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)


async def test_openai_prompt_cache_key_is_a_keyed_pseudonym_per_thread(
    upstream_factory, sidecar_factory
) -> None:
    on = await upstream_factory("on")
    off = await upstream_factory("off")
    settings = make_settings(
        models={
            "cached": {"providers": [provider("on", on.url)]},
            "plain": {"providers": [provider("off", off.url, prompt_caching="off")]},
        }
    )
    sidecar = await sidecar_factory(settings)
    user = "alice@example.com"
    async with _client(sidecar, user, session_id="s1", thread_id="t1") as alice:
        await alice.ask("one", model="cached")
        await alice.ask("two", model="cached")
        other_thread = alice.with_context(UserContext(user, session_id="s1", thread_id="t2"))
        await other_thread.ask("three", model="cached")
        bob = alice.with_context(UserContext("bob", session_id="s1", thread_id="t1"))
        await bob.ask("one", model="cached")
        await alice.ask("four", model="plain")
    keys = [r.body["prompt_cache_key"] for r in on.chat_requests]
    assert keys[0] == keys[1]  # one thread, one key: its prefix keeps hitting the cache
    assert len({keys[0], keys[2], keys[3]}) == 3  # another thread, another user: other keys
    assert all(len(k) == 32 and user not in k and "alice" not in k for k in keys)
    assert "prompt_cache_key" not in off.chat_requests[0].body


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_grpc_parts_keep_text_and_images_in_order(
    upstream: FakeUpstream, sidecar_factory, kind: str
) -> None:
    """ "Picture A:" [a] "Picture B:" [b] "Which is brighter?" reaches the provider, and
    the stored history, in that order: labels stay next to their images."""
    from llm_manager_client import AsyncLLMManagerClient, Image, Message, UserContext

    url = upstream.anthropic_url if kind == "anthropic" else upstream.url
    sidecar = await sidecar_factory(make_settings([provider("primary", url, kind=kind)]))
    a = Image.from_bytes(b"\x89PNG first", "image/png")
    b = Image.from_bytes(b"\x89PNG second", "image/png")
    turn = Message.user_parts("Picture A:", a, "Picture B:", b, "Which is brighter?")
    address = f"127.0.0.1:{sidecar.port}"
    async with AsyncLLMManagerClient(address, UserContext("viewer", session_id="s")) as client:
        await client.ask("", messages=[turn])
        stored, _ = (await client.get_conversation()).messages
    sent = upstream.chat_requests[-1].body["messages"][-1]["content"]
    if kind == "openai":
        shape = [p["text"] if p["type"] == "text" else p["image_url"]["url"][-8:] for p in sent]
    else:
        shape = [p["text"] if p["type"] == "text" else p["source"]["data"][-8:] for p in sent]
    encoded = [base64.b64encode(i.data).decode()[-8:] for i in (a, b)]
    assert shape == ["Picture A:", encoded[0], "Picture B:", encoded[1], "Which is brighter?"]
    assert stored.parts == ("Picture A:", a, "Picture B:", b, "Which is brighter?")
