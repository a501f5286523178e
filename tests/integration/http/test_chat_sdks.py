"""The OpenAI and Anthropic HTTP APIs, driven by the official SDKs: chat, streams,
tools, structured output, and errors mapped to the SDKs' own exception classes."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest
from pydantic import BaseModel

from tests.support.http_clients import WEATHER_CHAT_TOOL, anthropic_client, openai_client


@pytest.mark.parametrize("route", ["gpt", "claude"])
async def test_openai_sdk_chat_and_stream(both, route: str) -> None:
    sidecar, gpt, claude = both
    client = openai_client(sidecar)
    async with client:
        raw = await client.chat.completions.with_raw_response.create(
            model=route,
            messages=[
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hello there"},
            ],
            max_tokens=50,
        )
        reply = raw.parse()
        assert reply.choices[0].message.content.startswith(f"{route} says: hello there (turn ")
        assert reply.choices[0].finish_reason == "stop"
        assert reply.usage is not None and reply.usage.total_tokens > 0
        assert reply.usage.prompt_tokens_details.cached_tokens == 0
        assert raw.headers["x-llm-provider"] == route and raw.headers["x-llm-cached"] == "false"
        assert raw.headers["x-request-id"].startswith("sc-")
        stream = await client.chat.completions.create(
            model=route,
            messages=[{"role": "user", "content": "stream this please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"{route} says: stream this please (turn 1)"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    upstream = gpt if route == "gpt" else claude
    sent = upstream.chat_requests[0].body
    system = sent["messages"][0]["content"] if route == "gpt" else sent["system"]
    assert system == "be brief"


@pytest.mark.parametrize("route", ["gpt", "claude"])
async def test_openai_sdk_tool_round_trip(both, route: str) -> None:
    sidecar, *_ = both
    async with openai_client(sidecar) as client:
        asked = [{"role": "user", "content": "weather in Lisbon"}]
        first = await client.chat.completions.create(
            model=route, messages=asked, tools=[WEATHER_CHAT_TOOL]
        )
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls"
        (call,) = choice.message.tool_calls
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"query": "weather in Lisbon"}
        follow = [
            *asked,
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
        ]
        second = await client.chat.completions.create(
            model=route, messages=follow, tools=[WEATHER_CHAT_TOOL]
        )
    assert "sunny, 21 C" in (second.choices[0].message.content or "")
    assert second.choices[0].finish_reason == "stop"


class City(BaseModel):
    name: str
    population: int


async def test_openai_sdk_parse_with_a_pydantic_model(both) -> None:
    sidecar, gpt, _ = both
    gpt.json_answer = '{"name": "Lisbon", "population": 545000}'
    async with openai_client(sidecar) as client:
        parsed = await client.chat.completions.parse(
            model="gpt", messages=[{"role": "user", "content": "a city"}], response_format=City
        )
    assert parsed.choices[0].message.parsed == City(name="Lisbon", population=545000)
    sent = gpt.chat_requests[-1].body["response_format"]
    assert sent["type"] == "json_schema" and "population" in json.dumps(sent)


async def test_openai_sdk_errors_map_to_its_exception_classes(both) -> None:
    sidecar, gpt, _ = both
    async with openai_client(sidecar) as client:
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(
                model="nope", messages=[{"role": "user", "content": "x"}]
            )
        assert bad.value.body["param"] == "model"
        with pytest.raises(openai.BadRequestError) as many:
            await client.chat.completions.create(
                model="gpt", messages=[{"role": "user", "content": "x"}], n=2
            )
        assert many.value.body["param"] == "n"
        with pytest.raises(openai.BadRequestError) as other_user:
            await client.chat.completions.create(
                model="gpt", messages=[{"role": "user", "content": "x"}], user="mallory"
            )
        assert other_user.value.body["param"] == "user"
        gpt.mode = "error"
        with pytest.raises(openai.InternalServerError) as down:
            await client.chat.completions.create(
                model="gpt", messages=[{"role": "user", "content": "x"}]
            )
        assert (
            down.value.status_code == 503 and int(down.value.response.headers["retry-after"]) >= 1
        )
    anonymous = openai.AsyncOpenAI(base_url=f"{sidecar.http_url}/v1", api_key="k", max_retries=0)
    async with anonymous:
        with pytest.raises(openai.AuthenticationError):
            await anonymous.chat.completions.create(
                model="gpt", messages=[{"role": "user", "content": "who am i"}]
            )


@pytest.mark.parametrize("route", ["claude", "gpt"])
async def test_anthropic_sdk_messages_stream_and_tools(both, route: str) -> None:
    sidecar, *_ = both
    client = anthropic_client(sidecar)
    async with client:
        reply = await client.messages.create(
            model=route,
            max_tokens=100,
            system="be brief",
            messages=[{"role": "user", "content": "hello claude"}],
        )
        assert reply.content[0].text.startswith(f"{route} says: hello claude (turn ")
        assert reply.stop_reason == "end_turn" and reply.usage.output_tokens > 0
        async with client.messages.stream(
            model=route, max_tokens=100, messages=[{"role": "user", "content": "stream it"}]
        ) as stream:
            text = "".join([t async for t in stream.text_stream])
            final = await stream.get_final_message()
        assert text == f"{route} says: stream it (turn 1)" and final.stop_reason == "end_turn"
        tool = {
            "name": "get_weather",
            "description": "The weather in a city",
            "input_schema": WEATHER_CHAT_TOOL["function"]["parameters"],
        }
        asked = [{"role": "user", "content": "weather in Porto"}]
        called = await client.messages.create(
            model=route, max_tokens=100, messages=asked, tools=[tool]
        )
        assert called.stop_reason == "tool_use"
        (use,) = [b for b in called.content if b.type == "tool_use"]
        assert use.input == {"query": "weather in Porto"}
        answered = await client.messages.create(
            model=route,
            max_tokens=100,
            tools=[tool],
            messages=[
                *asked,
                {"role": "assistant", "content": [b.model_dump() for b in called.content]},
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "foggy"}],
                },
            ],
        )
    assert "foggy" in answered.content[0].text


async def test_anthropic_sdk_errors(both) -> None:
    sidecar, *_ = both
    async with anthropic_client(sidecar) as client:
        with pytest.raises(anthropic.BadRequestError):
            await client.messages.create(
                model="claude",
                max_tokens=10,
                messages=[{"role": "user", "content": "x"}],
                thinking={"type": "enabled", "budget_tokens": 1024},
            )
        with pytest.raises(anthropic.BadRequestError):
            await client.messages.create(
                model="claude",
                max_tokens=10,
                messages=[{"role": "user", "content": "x"}],
                metadata={"user_id": "mallory"},
            )
    async with anthropic.AsyncAnthropic(
        base_url=sidecar.http_url, api_key="k", max_retries=0
    ) as anon:
        with pytest.raises(anthropic.AuthenticationError):
            await anon.messages.create(
                model="claude", max_tokens=10, messages=[{"role": "user", "content": "x"}]
            )


async def test_models_lists_the_routes_in_each_sdks_shape(both) -> None:
    sidecar, *_ = both
    async with openai_client(sidecar) as client:
        listed = [m.id async for m in client.models.list()]
    assert listed == ["claude", "gpt"]
    async with anthropic_client(sidecar) as client:
        page = await client.models.list()
    assert [m.id for m in page.data] == ["claude", "gpt"]


async def test_a_streamed_cache_hit_still_streams_the_answer(both) -> None:
    """A stream answered from the cache carries the cached text (and tool calls), over
    HTTP and gRPC alike, with no provider call."""
    from llm_manager_client import AsyncLLMManagerClient, UserContext

    sidecar, gpt, _ = both
    async with openai_client(sidecar) as client:
        texts = []
        for _ in range(2):
            stream = await client.chat.completions.create(
                model="gpt", messages=[{"role": "user", "content": "cache me"}], stream=True
            )
            chunks = [c async for c in stream]
            texts.append("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
        calls = []
        for _ in range(2):
            stream = await client.chat.completions.create(
                model="gpt",
                messages=[{"role": "user", "content": "weather in Paris"}],
                tools=[WEATHER_CHAT_TOOL],
                stream=True,
            )
            deltas = [c.choices[0].delta for c in [c async for c in stream] if c.choices]
            calls.append([t.function.name for d in deltas for t in d.tool_calls or ()])
    assert texts[0] == texts[1] == "gpt says: cache me (turn 1)"
    assert calls == [["get_weather"], ["get_weather"]]
    assert len(gpt.chat_requests) == 2
    context = UserContext("alice")  # no session: the same question is the same request
    async with AsyncLLMManagerClient(f"127.0.0.1:{sidecar.port}", context) as grpc_client:
        streams = [
            [c async for c in grpc_client.ask_stream("cache me too", model="gpt")] for _ in range(2)
        ]
    first, second = ("".join(c.delta for c in s) for s in streams)
    assert first and second == first
    assert streams[1][-1].metadata is not None and streams[1][-1].metadata.cached
