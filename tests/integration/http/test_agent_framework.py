"""An agent framework runs its tool loop through the sidecar's HTTP APIs: the OpenAI
Agents SDK with its Chat Completions model and with its default Responses model,
against fake upstreams of both kinds, with a failover from one kind to the other in
the middle of the loop."""

from __future__ import annotations

from typing import Any

import pytest
from openai import AsyncOpenAI

from llm_sidecar import Sidecar
from tests.support.sidecar import make_settings, provider
from tests.support.upstream import FakeUpstream

agents = pytest.importorskip("agents")


async def openai_then_anthropic(
    upstream_factory: Any, sidecar_factory: Any
) -> tuple[FakeUpstream, FakeUpstream, AsyncOpenAI]:
    """A route whose OpenAI-kind primary falls back to an Anthropic-kind provider, and
    an SDK client of the sidecar's HTTP API for one user."""
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
    return primary, fallback, client


async def test_an_agents_sdk_tool_loop_survives_a_failover_mid_loop(
    upstream_factory, sidecar_factory
) -> None:
    primary, fallback, client = await openai_then_anthropic(upstream_factory, sidecar_factory)
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


async def test_the_agents_sdk_default_responses_model_runs_a_tool_loop_with_a_failover(
    upstream_factory, sidecar_factory
) -> None:
    """The Agents SDK's own default: the Responses API. Its tool loop fails over from an
    OpenAI-kind provider to an Anthropic-kind one mid-loop; a second run continues the
    first by its last response id, from the stored chain."""
    primary, fallback, client = await openai_then_anthropic(upstream_factory, sidecar_factory)
    looked_up: list[str] = []

    @agents.function_tool
    def get_weather(query: str) -> str:
        """The weather for a question about a place."""
        looked_up.append(query)
        if len(looked_up) == 1:
            primary.mode = "error"  # the next model call must fail over, mid-loop
        return f"clear skies ({len(looked_up)})"

    agent = agents.Agent(name="weather", instructions="Use the tool.", tools=[get_weather])
    config = agents.RunConfig(model="m", model_provider=agents.OpenAIProvider(openai_client=client))
    async with client:
        first = await agents.Runner.run(agent, "Weather in Lisbon?", run_config=config)
        primary.mode = "healthy"
        follow = await agents.Runner.run(
            agent,
            "And tomorrow?",
            run_config=config,
            previous_response_id=first.last_response_id,
        )
        stored = await client.responses.retrieve(first.last_response_id)
    assert looked_up == ["Weather in Lisbon?", "And tomorrow?"]
    assert "clear skies (1)" in first.final_output and stored.output_text == first.final_output
    assert first.last_response_id is not None and first.last_response_id.startswith("resp_")
    # Step 1 (the call) went to the OpenAI-kind primary; step 2 (the tool result) failed
    # there and the Anthropic-kind fallback answered it, from the same stored turns.
    assert len(fallback.chat_requests) == 1
    blocks = fallback.chat_requests[0].body["messages"][-1]["content"]
    assert blocks[0]["type"] == "tool_result" and "clear skies (1)" in str(blocks[0]["content"])
    # The second run sent only its new input; the sidecar rebuilt the rest from the chain.
    last = primary.chat_requests[-1].body["messages"]
    assert [m["role"] for m in last][:2] == ["system", "user"] and last[1]["content"] == (
        "Weather in Lisbon?"
    )
    assert "clear skies (2)" in follow.final_output
