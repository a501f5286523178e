"""An agent framework runs its tool loop through the sidecar's Chat Completions API: the
OpenAI Agents SDK with its Chat Completions model, against fake upstreams of both
kinds, with a failover from one kind to the other in the middle of the loop."""

from __future__ import annotations

import pytest

from llm_sidecar import Sidecar
from tests.support.sidecar import make_settings, provider
from tests.support.upstream import FakeUpstream

agents = pytest.importorskip("agents")


async def test_an_agents_sdk_tool_loop_survives_a_failover_mid_loop(
    upstream_factory, sidecar_factory
) -> None:
    from openai import AsyncOpenAI

    primary: FakeUpstream = await upstream_factory("primary")
    fallback: FakeUpstream = await upstream_factory("fallback")
    settings = make_settings(
        [
            provider("primary", primary.url),
            provider("fallback", fallback.anthropic_url, kind="anthropic"),
        ]
    )
    sidecar: Sidecar = await sidecar_factory(settings)
    agents.set_tracing_disabled(True)
    client = AsyncOpenAI(
        base_url=f"{sidecar.http_url}/v1",
        api_key="unused",
        default_headers={"x-user-id": "agent-user"},
        max_retries=0,
    )
    looked_up: list[str] = []

    @agents.function_tool
    def get_weather(query: str) -> str:
        """The weather for a question about a place."""
        looked_up.append(query)
        primary.mode = "error"  # the next model call must fail over, mid-loop
        return f"clear skies ({len(looked_up)})"

    agent = agents.Agent(
        name="weather",
        instructions="Answer with the weather tool.",
        tools=[get_weather],
        model=agents.OpenAIChatCompletionsModel(model="m", openai_client=client),
    )
    async with client:
        result = await agents.Runner.run(agent, "What is the weather in Lisbon?")
    assert looked_up == ["What is the weather in Lisbon?"]
    assert "clear skies (1)" in result.final_output
    # The first step went to the OpenAI-kind primary, the second, carrying the tool's
    # result, failed there and was answered by the Anthropic-kind fallback.
    assert len(primary.chat_requests) == 2 and len(fallback.chat_requests) == 1
    (answered,) = fallback.chat_requests
    blocks = answered.body["messages"][-1]["content"]
    assert blocks[0]["type"] == "tool_result" and "clear skies (1)" in str(blocks[0]["content"])
