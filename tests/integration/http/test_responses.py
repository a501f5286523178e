"""OpenAI's Responses API, driven by the official SDK: create, retrieve, delete,
input_items and streams; chains that continue, branch and truncate; function-call
loops that fail over between provider kinds; store: false; refused fields; and
stored responses that belong to their user alone."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import openai
import pytest

from llm_sidecar import Sidecar
from tests.support.http_clients import WEATHER_RESPONSES_TOOL, openai_client
from tests.support.sidecar import make_settings, provider
from tests.support.upstream import FakeUpstream


def texts_sent(upstream: FakeUpstream) -> list[str]:
    """The text of every turn of the last request an upstream got, system included."""
    body = upstream.chat_requests[-1].body
    turns = [body["system"]] if isinstance(body.get("system"), str) else []
    for message in body["messages"]:
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(str(b.get("text", b.get("content", ""))) for b in content)
        turns.append(str(content or ""))
    return turns


@pytest.mark.parametrize("route", ["gpt", "claude"])
async def test_create_continue_retrieve_list_and_delete(both, route: str) -> None:
    sidecar, gpt, claude = both
    upstream = gpt if route == "gpt" else claude
    async with openai_client(sidecar) as alice:
        raw = await alice.responses.with_raw_response.create(
            model=route, input="first question", instructions="be brief", metadata={"k": "v"}
        )
        first = raw.parse()
        assert first.status == "completed" and first.object == "response"
        assert first.output_text.startswith(f"{route} says: first question (turn ")
        assert first.id.startswith("resp_") and raw.headers["x-llm-response-id"] == first.id
        assert first.instructions == "be brief" and first.metadata == {"k": "v"}
        assert first.usage is not None and first.usage.input_tokens > 0
        assert first.usage.output_tokens_details.reasoning_tokens == 0
        second = await alice.responses.create(
            model=route, input="second question", previous_response_id=first.id
        )
        # The chain came before the new input; instructions are not carried over.
        assert texts_sent(upstream) == ["first question", first.output_text, "second question"]
        assert second.previous_response_id == first.id
        fetched = await alice.responses.retrieve(second.id)
        assert fetched.model_dump() == second.model_dump()
        items = await alice.responses.input_items.list(second.id, order="asc")
        kinds = [(i.type, i.role) for i in items.data]  # type: ignore[union-attr]
        assert kinds == [("message", "user"), ("message", "assistant"), ("message", "user")]
        assert items.data[1].id == first.output[0].id  # one item, one id, everywhere
        newest = await alice.responses.input_items.list(second.id, limit=1)
        assert [i.id for i in newest.data] == [items.data[-1].id] and newest.has_more
        after = await alice.responses.input_items.list(second.id, limit=5, after=newest.data[0].id)
        assert [i.id for i in after.data] == [items.data[1].id, items.data[0].id]
        await alice.responses.delete(first.id)
        with pytest.raises(openai.NotFoundError):
            await alice.responses.retrieve(first.id)
        # A chain whose ancestor is gone starts after the gap: the new input alone here.
        third = await alice.responses.create(
            model=route, input="third question", previous_response_id=second.id
        )
        assert texts_sent(upstream) == ["second question", second.output_text, "third question"]
        assert third.status == "completed"


async def test_a_stream_emits_the_real_event_sequence_and_is_stored(both) -> None:
    sidecar, gpt, _ = both
    gpt.stream_chunk_delay = 0.001
    async with openai_client(sidecar) as alice:
        async with alice.responses.stream(model="gpt", input="stream this") as stream:
            events = [event async for event in stream]
            final = await stream.get_final_response()
        tools = await alice.responses.create(
            model="gpt", input="weather in Oslo", tools=[WEATHER_RESPONSES_TOOL]
        )
        raw = await alice.responses.create(
            model="gpt",
            input=[
                {
                    "type": "function_call_output",
                    "call_id": tools.output[0].call_id,
                    "output": "sunny",
                }
            ],
            previous_response_id=tools.id,
            tools=[WEATHER_RESPONSES_TOOL],
            stream=True,
        )
        loop_events = [event async for event in raw]
        stored = await alice.responses.retrieve(final.id)
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.output_text == "gpt says: stream this (turn 1)"
    completed = events[-1].response  # type: ignore[union-attr]
    assert stored.model_dump(exclude_none=True) == completed.model_dump(exclude_none=True)
    assert stored.id == final.id
    assert "sunny" in loop_events[-1].response.output_text  # type: ignore[union-attr]


async def test_a_streamed_function_call_and_a_streamed_cache_hit(both) -> None:
    sidecar, gpt, _ = both
    async with openai_client(sidecar) as alice:
        events = [
            e
            async for e in await alice.responses.create(
                model="gpt", input="weather in Rome", tools=[WEATHER_RESPONSES_TOOL], stream=True
            )
        ]
        kinds = [e.type for e in events]
        assert kinds == [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
        done = events[-1].response  # type: ignore[union-attr]
        (call,) = done.output
        assert call.type == "function_call" and json.loads(call.arguments) == {
            "query": "weather in Rome"
        }
        # The same request again is a cache hit: its stream still carries the answer.
        again = [
            e async for e in await alice.responses.create(model="gpt", input="hi", stream=True)
        ]
        cached = [
            e async for e in await alice.responses.create(model="gpt", input="hi", stream=True)
        ]
    assert len(gpt.chat_requests) == 2
    deltas = [e.delta for e in cached if e.type == "response.output_text.delta"]  # type: ignore[union-attr]
    assert "".join(deltas) == again[-1].response.output_text  # type: ignore[union-attr]
    assert cached[-1].response.id != again[-1].response.id  # type: ignore[union-attr]


async def test_a_function_call_loop_fails_over_between_kinds(
    upstream_factory, sidecar_factory
) -> None:
    primary = await upstream_factory("primary")
    fallback = await upstream_factory("fallback")
    settings = make_settings(
        [
            provider("primary", primary.url),
            provider("fallback", fallback.anthropic_url, kind="anthropic"),
        ]
    )
    sidecar = await sidecar_factory(settings)
    async with openai_client(sidecar) as alice:
        asked = await alice.responses.create(
            model="m", input="weather in Lisbon", tools=[WEATHER_RESPONSES_TOOL]
        )
        (call,) = asked.output
        assert call.type == "function_call" and call.name == "get_weather"
        primary.mode = "error"
        answered = await alice.responses.create(
            model="m",
            previous_response_id=asked.id,
            tools=[WEATHER_RESPONSES_TOOL],
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "21 C"}],
        )
    assert "21 C" in answered.output_text and answered.status == "completed"
    (sent,) = fallback.chat_requests
    blocks = sent.body["messages"][-1]["content"]
    assert blocks[0]["type"] == "tool_result" and blocks[0]["tool_use_id"] == call.call_id
    assert sent.body["messages"][0]["content"] == "weather in Lisbon"


async def test_store_false_is_answered_billed_and_never_found(both) -> None:
    sidecar, *_ = both
    async with openai_client(sidecar) as alice:
        kept = await alice.responses.create(model="gpt", input="not stored", store=False)
        assert kept.store is False and kept.output_text
        with pytest.raises(openai.NotFoundError):
            await alice.responses.retrieve(kept.id)
        with pytest.raises(openai.NotFoundError) as continued:
            await alice.responses.create(model="gpt", input="x", previous_response_id=kept.id)
        assert continued.value.body["code"] == "previous_response_not_found"  # type: ignore[index]
    usage = await usage_of(sidecar, "alice")
    assert usage["total"]["requests"] == 1 and usage["total"]["prompt_tokens"] > 0


async def usage_of(sidecar: Sidecar, user: str) -> dict[str, Any]:
    from llm_manager_client import AsyncLLMManagerClient, UserContext

    async with AsyncLLMManagerClient(f"127.0.0.1:{sidecar.port}", UserContext(user)) as c:
        report = await c.get_usage()
    total = report.total
    return {"total": {"requests": total.requests, "prompt_tokens": total.prompt_tokens}}


async def test_branches_and_bounds(upstream_factory, sidecar_factory) -> None:
    up = await upstream_factory("up")
    settings = make_settings(
        [provider("up", up.url)], responses={"max_chain": 2, "max_chain_bytes": 2048}
    )
    sidecar = await sidecar_factory(settings)
    async with openai_client(sidecar) as alice:
        root = await alice.responses.create(model="m", input="root")
        left = await alice.responses.create(model="m", input="left", previous_response_id=root.id)
        right = await alice.responses.create(model="m", input="right", previous_response_id=root.id)
        assert "left" not in " ".join(texts_sent(up))  # a branch sees its own line only
        await alice.responses.create(model="m", input="after left", previous_response_id=left.id)
        assert texts_sent(up)[0] == "root" and texts_sent(up)[-1] == "after left"
        # max_chain 2: a response keeps its parent and one more ancestor.
        chain = [right]
        for i in range(4):
            chain.append(
                await alice.responses.create(
                    model="m", input=f"step {i}", previous_response_id=chain[-1].id
                )
            )
        sent = texts_sent(up)
        assert sent[0] == "step 1" and sent[-1] == "step 3" and "root" not in sent
        # max_chain_bytes (2048): the oldest messages go first, and what is kept starts
        # at a user turn (an answer without its question is dropped with it).
        m1 = await alice.responses.create(model="m", input="y" * 600, previous_response_id=right.id)
        m2 = await alice.responses.create(model="m", input="z" * 600, previous_response_id=m1.id)
        await alice.responses.create(model="m", input="w", previous_response_id=m2.id)
        assert texts_sent(up) == ["z" * 600, m2.output_text, "w"]
        # A response bigger than the bound alone: the continuation gets the new input.
        big = await alice.responses.create(model="m", input="x" * 1500)
        await alice.responses.create(model="m", input="small", previous_response_id=big.id)
        assert texts_sent(up) == ["small"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"background": True}, "background"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        (
            {"tools": [WEATHER_RESPONSES_TOOL], "tool_choice": {"type": "file_search"}},
            "tool_choice.type",
        ),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0].file_id",
        ),
        ({"text": {"format": {"type": "json_schema", "schema": 3}}}, "text.format.schema"),
        ({"input": ""}, "input"),
        (
            {"input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]},
            "input",
        ),
        ({"user": "mallory"}, "user"),
        ({"metadata": {"secret-key": 5}}, "metadata"),
        ({"metadata": {"secret-key" * 9: "v"}}, "metadata"),
    ],
)
async def test_fields_that_change_meaning_are_refused_by_name(
    both, body: dict[str, Any], param: str
) -> None:
    sidecar, gpt, _ = both
    request = {"model": "gpt", "input": "hello", **body}
    headers = {"x-user-id": "alice", "Authorization": "Bearer unused"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{sidecar.http_url}/v1/responses", json=request, headers=headers) as reply,
    ):
        answer = await reply.json()
    assert reply.status == 400, answer
    assert answer["error"]["param"] == param
    assert "secret" not in answer["error"]["message"]  # a caller's key is never quoted
    assert not gpt.chat_requests


async def test_structured_incomplete_and_the_ids_other_users_hold(both) -> None:
    sidecar, gpt, _ = both
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    text = {"format": {"type": "json_schema", "name": "person", "schema": schema}}
    async with openai_client(sidecar) as alice, openai_client(sidecar, "bob") as bob:
        structured = await alice.responses.create(model="gpt", input="a person", text=text)
        assert json.loads(structured.output_text) == {"name": "a person"}
        stream = await alice.responses.create(
            model="gpt", input="another person", text=text, stream=True
        )
        last = [e async for e in stream][-1]
        assert json.loads(last.response.output_text) == {"name": "another person"}  # type: ignore[union-attr]
        gpt.finish_reason = "length"
        cut = await alice.responses.create(model="gpt", input="a long answer", max_output_tokens=5)
        assert cut.status == "incomplete" and cut.incomplete_details is not None
        assert cut.incomplete_details.reason == "max_output_tokens"
        gpt.finish_reason = "stop"
        for attempt in (
            bob.responses.retrieve(structured.id),
            bob.responses.delete(structured.id),
            bob.responses.input_items.list(structured.id),
            bob.responses.retrieve("resp_" + "0" * 48),
            bob.responses.retrieve("not-an-id"),
        ):
            with pytest.raises(openai.NotFoundError) as missing:
                await attempt
            assert "resp_" not in str(missing.value.body)
        with pytest.raises(openai.NotFoundError):
            await bob.responses.create(
                model="gpt", input="steal", previous_response_id=structured.id
            )
        assert (await alice.responses.retrieve(structured.id)).id == structured.id
    assert not any("steal" in str(r.body) for r in gpt.chat_requests)


async def test_end_session_removes_a_sessions_responses_in_every_store(
    store_settings: dict[str, Any], upstream_factory, sidecar_factory
) -> None:
    from llm_manager_client import AsyncLLMManagerClient, UserContext

    up = await upstream_factory("up")
    sidecar = await sidecar_factory(make_settings([provider("up", up.url)], **store_settings))
    async with (
        openai_client(sidecar, **{"x-session-id": "s1"}) as in_s1,
        openai_client(sidecar) as outside,
    ):
        made = await in_s1.responses.create(model="m", input="in session one")
        kept = await outside.responses.create(model="m", input="in no session")
        async with AsyncLLMManagerClient(
            f"127.0.0.1:{sidecar.port}", UserContext("alice", session_id="s1")
        ) as grpc_client:
            await grpc_client.end_session()
        with pytest.raises(openai.NotFoundError):
            await outside.responses.retrieve(made.id)
        assert (await outside.responses.retrieve(kept.id)).id == kept.id


async def test_a_quota_refuses_with_429_and_retry_after(upstream_factory, sidecar_factory) -> None:
    up = await upstream_factory("up")
    quotas = {"requests_per_minute": 1, "minute_seconds": 30}
    sidecar = await sidecar_factory(make_settings([provider("up", up.url)], quotas=quotas))
    async with openai_client(sidecar) as alice:
        await alice.responses.create(model="m", input="the one allowed")
        with pytest.raises(openai.RateLimitError) as refused:
            await alice.responses.create(model="m", input="one too many")
    assert refused.value.status_code == 429
    assert 1 <= int(refused.value.response.headers["retry-after"]) <= 30
    assert len(up.chat_requests) == 1


async def test_a_stream_ends_incomplete_at_the_cap_and_failed_when_the_upstream_breaks(
    both,
) -> None:
    sidecar, gpt, _ = both
    async with openai_client(sidecar) as alice:
        gpt.finish_reason = "length"
        capped = await alice.responses.create(
            model="gpt", input="a long story", max_output_tokens=3, stream=True
        )
        last = [e async for e in capped][-1]
        assert last.type == "response.incomplete"
        assert last.response.incomplete_details.reason == "max_output_tokens"  # type: ignore[union-attr]
        gpt.finish_reason = "stop"
        gpt.mode = "stream_break"  # two chunks, then the connection drops
        broken = await alice.responses.create(model="gpt", input="break it", stream=True)
        events = [e async for e in broken]
    assert events[-1].type == "response.failed"
    failed = events[-1].response  # type: ignore[union-attr]
    assert failed.status == "failed" and failed.error is not None
    assert [e.sequence_number for e in events] == list(range(len(events)))
    async with openai_client(sidecar) as alice:
        with pytest.raises(openai.NotFoundError):  # a failed response is not stored
            await alice.responses.retrieve(failed.id)
