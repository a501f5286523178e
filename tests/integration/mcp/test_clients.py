"""Real MCP clients of the gateway: the OpenAI Agents SDK's Streamable HTTP client on
its own, and in an agent whose model calls and tool calls both go through the sidecar."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest
from openai import AsyncOpenAI

from llm_sidecar import Sidecar
from tests.integration.mcp.conftest import mcp_url, notes_entry
from tests.support.mcp_servers import McpUpstream
from tests.support.sidecar import make_settings, provider
from tests.support.upstream import FakeUpstream

agents = pytest.importorskip("agents")
from agents.mcp import MCPServerStreamableHttp, create_static_tool_filter  # noqa: E402


async def test_the_agents_sdk_lists_and_calls_tools_through_the_gateway(gateway: Sidecar) -> None:
    params = {"url": mcp_url(gateway), "headers": {"x-user-id": "agent-a", "x-session-id": "s"}}
    async with MCPServerStreamableHttp(params, name="sidecar") as server:
        names = {tool.name for tool in await server.list_tools()}
        assert {"notes__count", "notes__add_note"} <= names
        first = await server.call_tool("notes__count", {})
        second = await server.call_tool("notes__count", {})
        assert [first.content[0].text, second.content[0].text] == ["1", "2"]


async def test_an_agents_model_calls_and_tool_calls_both_go_through_the_sidecar(
    notes_server: McpUpstream,
    upstream: FakeUpstream,
    sidecar_factory: Callable[..., Awaitable[Sidecar]],
) -> None:
    settings = make_settings(
        [provider("primary", upstream.url)], mcp={"servers": [notes_entry(notes_server.url)]}
    )
    sidecar = await sidecar_factory(settings)
    upstream.tool_arguments = json.dumps({"text": "noted by the agent"})
    agents.set_tracing_disabled(True)
    headers = {"x-user-id": "agent-b", "x-session-id": "run-1"}
    client = AsyncOpenAI(
        base_url=f"{sidecar.http_url}/v1", api_key="unused", default_headers=headers, max_retries=0
    )
    params = {"url": mcp_url(sidecar), "headers": headers}
    only = create_static_tool_filter(allowed_tool_names=["notes__add_note"])
    async with client, MCPServerStreamableHttp(params, tool_filter=only) as server:
        agent = agents.Agent(
            name="scribe",
            instructions="Keep a note.",
            mcp_servers=[server],
            model=agents.OpenAIChatCompletionsModel(model="m", openai_client=client),
        )
        result = await agents.Runner.run(agent, "Note this down.")
        assert result.final_output
        listed = await server.call_tool("notes__list_notes", {})
    assert [block.text for block in listed.content] == ["noted by the agent"]
    offered = upstream.chat_requests[0].body["tools"]
    assert [tool["function"]["name"] for tool in offered] == ["notes__add_note"]
    # The tool's result went back to the model in the loop's second step.
    assert "1" in json.dumps(upstream.chat_requests[1].body["messages"][-1])
