"""Hosted MCP tools in the Responses API, through the OpenAI SDK: the sidecar lists,
calls and loops per user, asks for approval when told to, refuses an address the
request chose, and stores every step so chains continue."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI

from llm_sidecar import Sidecar
from tests.integration.mcp.conftest import notes_entry
from tests.support.mcp_servers import McpUpstream
from tests.support.sidecar import make_settings, provider
from tests.support.upstream import FakeUpstream

SIMULATED = {"sim": {"providers": [{"name": "sim", "kind": "simulated"}]}}


def mcp_tool(**extra: Any) -> dict[str, Any]:
    return {"type": "mcp", "server_label": "notes", **extra}


@pytest.fixture
async def sim(
    notes_server: McpUpstream, sidecar_factory: Callable[..., Awaitable[Sidecar]]
) -> Sidecar:
    """The simulated model (it calls the first tool it is offered) and the notes server."""
    rules = [{"groups": ["*"], "servers": ["notes"], "tools": ["count", "whoami", "echo"]}]
    mcp = {"servers": [notes_entry(notes_server.url)], "rules": rules}
    return await sidecar_factory(make_settings(models=SIMULATED, mcp=mcp))


def client(sidecar: Sidecar, user: str, **headers: str) -> AsyncOpenAI:
    return AsyncOpenAI(
        base_url=f"{sidecar.http_url}/v1",
        api_key="unused",
        default_headers={"x-user-id": user, **headers},
        max_retries=0,
    )


async def test_the_sidecar_runs_the_tool_loop_and_a_chain_continues(sim: Sidecar) -> None:
    async with client(sim, "looper") as api:
        tools = [mcp_tool(require_approval="never", allowed_tools=["count"])]
        first = await api.responses.create(model="sim", input="count", tools=tools)
        assert [item.type for item in first.output] == ["mcp_list_tools", "mcp_call", "message"]
        listing, called = first.output[0], first.output[1]
        assert [tool.name for tool in listing.tools] == ["count"]
        assert (called.name, called.server_label, called.output) == ("count", "notes", "1")
        assert first.output_text
        second = await api.responses.create(
            model="sim", input="again", tools=tools, previous_response_id=first.id
        )
        assert second.output[1].output == "2"
        stored = await api.responses.retrieve(first.id)
        assert stored.model_dump() == first.model_dump()
    async with client(sim, "someone-else") as api:
        other = await api.responses.create(model="sim", input="count", tools=tools)
        assert other.output[1].output == "1"


async def test_approval_requests_wait_for_the_user_and_a_refusal_is_told(sim: Sidecar) -> None:
    tools = [mcp_tool(allowed_tools=["count"])]  # approval: always, as OpenAI's default
    async with client(sim, "approver", **{"x-session-id": "a"}) as api:
        asked = await api.responses.create(model="sim", input="count", tools=tools)
        assert [item.type for item in asked.output] == ["mcp_list_tools", "mcp_approval_request"]
        request = asked.output[1]
        assert (request.name, request.server_label) == ("count", "notes")
        approve = {
            "type": "mcp_approval_response",
            "approval_request_id": request.id,
            "approve": True,
        }
        done = await api.responses.create(
            model="sim", input=[approve], tools=tools, previous_response_id=asked.id
        )
        calls = [item for item in done.output if item.type == "mcp_call"]
        assert calls[0].output == "1" and calls[0].error is None
        again = await api.responses.create(model="sim", input="count", tools=tools)
        deny = {**approve, "approval_request_id": again.output[1].id, "approve": False}
        denied = await api.responses.create(
            model="sim", input=[deny], tools=tools, previous_response_id=again.id
        )
        refused = next(item for item in denied.output if item.type == "mcp_call")
        assert refused.error and "not approve" in refused.error and refused.output is None
        with pytest.raises(openai.BadRequestError) as caught:
            await api.responses.create(
                model="sim", input="hi", tools=tools, previous_response_id=again.id
            )
        assert "no mcp_approval_response" in caught.value.message
    async with client(sim, "approver", **{"x-session-id": "a"}) as api:
        listing = await api.responses.create(
            model="sim",
            input="count",
            tools=[mcp_tool(require_approval="never", allowed_tools=["count"])],
        )
        assert listing.output[1].output == "2"  # the denied call never ran


@pytest.mark.parametrize(
    ("entry", "param"),
    [
        (mcp_tool(server_url="http://127.0.0.1:1/mcp"), "tools[0].server_url"),
        (mcp_tool(server_label="elsewhere"), "tools[0].server_label"),
        (mcp_tool(headers={"x-forwarded-for": "1.2.3.4"}), "tools[0].headers.x-forwarded-for"),
        (mcp_tool(connector_id="connector_gmail"), "tools[0].connector_id"),
    ],
)
async def test_an_address_or_server_the_request_chose_is_refused(
    sim: Sidecar, entry: dict[str, Any], param: str
) -> None:
    async with client(sim, "chooser") as api:
        with pytest.raises(openai.BadRequestError) as caught:
            await api.responses.create(model="sim", input="count", tools=[entry])
    assert caught.value.body["param"] == param  # type: ignore[index]
    assert len(sim.tools.sessions) == 0


async def test_the_users_token_and_the_policy_hold_in_responses(sim: Sidecar) -> None:
    tools = [
        mcp_tool(
            require_approval="never", allowed_tools=["whoami", "add_note"], authorization="tok-1"
        )
    ]
    async with client(sim, "holder") as api:
        answer = await api.responses.create(model="sim", input="who", tools=tools)
    listing, called = answer.output[0], answer.output[1]
    assert [tool.name for tool in listing.tools] == ["whoami"]  # add_note: no rule allows it
    assert json.loads(called.output)["authorization"] == "Bearer tok-1"


async def test_a_stream_emits_the_mcp_events_then_the_answer(sim: Sidecar) -> None:
    tools = [mcp_tool(require_approval="never", allowed_tools=["count"])]
    async with client(sim, "streamer") as api:
        stream = await api.responses.create(model="sim", input="count", tools=tools, stream=True)
        events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    for kind in (
        "response.mcp_list_tools.in_progress",
        "response.mcp_list_tools.completed",
        "response.mcp_call.in_progress",
        "response.mcp_call_arguments.done",
        "response.mcp_call.completed",
        "response.output_text.delta",
    ):
        assert kind in kinds, kind
    assert kinds.index("response.mcp_call.completed") < kinds.index("response.output_text.delta")
    final = events[-1]
    assert final.type == "response.completed"
    assert [item.type for item in final.response.output] == [
        "mcp_list_tools",
        "mcp_call",
        "message",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))


async def test_the_model_gets_the_tools_result_in_the_loop(
    notes_server: McpUpstream,
    upstream: FakeUpstream,
    sidecar_factory: Callable[..., Awaitable[Sidecar]],
) -> None:
    mcp = {"servers": [notes_entry(notes_server.url)]}
    sidecar = await sidecar_factory(make_settings([provider("primary", upstream.url)], mcp=mcp))
    upstream.tool_arguments = json.dumps({"text": "from the model"})
    async with client(sidecar, "modelled") as api:
        tools = [mcp_tool(require_approval="never", allowed_tools=["echo"])]
        answer = await api.responses.create(model="m", input="echo this", tools=tools)
    assert [item.type for item in answer.output] == ["mcp_list_tools", "mcp_call", "message"]
    first, second = upstream.chat_requests
    assert [t["function"]["name"] for t in first.body["tools"]] == ["notes__echo"]
    last = second.body["messages"][-1]
    assert last["role"] == "tool" and last["content"] == "from the model"


async def test_the_loop_stops_at_max_rounds_with_a_text_answer(
    notes_server: McpUpstream,
    upstream: FakeUpstream,
    sidecar_factory: Callable[..., Awaitable[Sidecar]],
) -> None:
    """A model that would call tools for ever: the last round allowed is asked for text
    (tool_choice none), so the response ends with an answer after that many calls."""
    mcp = {"servers": [notes_entry(notes_server.url)]}
    settings = make_settings(
        [provider("primary", upstream.url)], mcp=mcp, responses={"max_mcp_rounds": 2}
    )
    sidecar = await sidecar_factory(settings)
    upstream.tool_arguments = "{}"
    async with client(sidecar, "rounds") as api:
        tools = [mcp_tool(require_approval="never", allowed_tools=["count"])]
        answer = await api.responses.create(model="m", input="count for ever", tools=tools)
    assert [item.type for item in answer.output] == ["mcp_list_tools", "mcp_call", "message"]
    first, last = upstream.chat_requests
    assert first.body.get("tool_choice", "auto") == "auto"
    assert last.body["tool_choice"] == "none"


async def test_an_answer_calling_the_callers_own_function_goes_back_to_it(
    notes_server: McpUpstream,
    upstream: FakeUpstream,
    sidecar_factory: Callable[..., Awaitable[Sidecar]],
) -> None:
    """The model calls the request's own function and a hosted tool at once: the
    function call goes back to the caller, and the hosted call runs when the caller
    continues with the function's output."""
    mcp = {"servers": [notes_entry(notes_server.url)]}
    sidecar = await sidecar_factory(make_settings([provider("primary", upstream.url)], mcp=mcp))
    upstream.tool_arguments = json.dumps({"text": "both"})
    own = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}
    tools = [own, mcp_tool(require_approval="never", allowed_tools=["echo"])]
    async with client(sidecar, "mixed") as api:
        asked = await api.responses.create(model="m", input="do both", tools=tools)
        assert [item.type for item in asked.output] == ["mcp_list_tools", "function_call"]
        (call,) = [item for item in asked.output if item.type == "function_call"]
        assert call.name == "lookup"
        output = {"type": "function_call_output", "call_id": call.call_id, "output": "found"}
        done = await api.responses.create(
            model="m", input=[output], tools=tools, previous_response_id=asked.id
        )
    ran = [item for item in done.output if item.type == "mcp_call"]
    assert [(item.name, item.output) for item in ran] == [("echo", "both")]
    results = [m for m in upstream.chat_requests[-1].body["messages"] if m["role"] == "tool"]
    assert sorted(m["content"] for m in results) == ["both", "found"]
