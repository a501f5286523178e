"""Tool calls counted, limited and traced: the per-user quota (shared by replicas
through Redis), the execute_tool span in the caller's trace, and no content in either."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from mcp.shared.exceptions import MCPError
from opentelemetry.trace import SpanKind

from llm_sidecar import Sidecar
from tests.integration.mcp.conftest import mcp_url, notes_entry
from tests.support.mcp_servers import McpUpstream, mcp_client, text_of
from tests.support.sidecar import make_settings
from tests.support.telemetry import TracedFactory

SECRET = "the-secret-argument-3141"


@pytest.mark.redis
async def test_the_tool_call_quota_holds_across_two_replicas(
    notes_server: McpUpstream,
    sidecar_factory: Callable[..., Awaitable[Sidecar]],
    redis_url: str,
    redis_prefix: str,
) -> None:
    settings = make_settings(
        mcp={"servers": [notes_entry(notes_server.url)]},
        quotas={"tool_calls_per_minute": 5, "minute_seconds": 3600},
        redis={"url": redis_url, "key_prefix": redis_prefix},
    )
    replicas = [await sidecar_factory(settings), await sidecar_factory(settings)]
    admitted = 0
    refusals: list[MCPError] = []
    for turn in range(8):
        replica = replicas[turn % 2]
        async with mcp_client(mcp_url(replica), {"x-user-id": "thrifty"}) as session:
            try:
                await session.call_tool("notes__echo", {"text": "hi"})
                admitted += 1
            except MCPError as exc:
                refusals.append(exc)
    assert admitted == 5 and len(refusals) == 3
    for refusal in refusals:
        assert refusal.code == -32012
        assert "tool_calls_per_minute" in refusal.message
        assert refusal.error.data["reason"] == "QUOTA_EXCEEDED"
        assert 0 < refusal.error.data["retry_after_seconds"] <= 3600
    # Another user's minute is their own.
    async with mcp_client(mcp_url(replicas[1]), {"x-user-id": "other"}) as session:
        assert text_of(await session.call_tool("notes__echo", {"text": "ok"})) == "ok"


async def test_a_tool_call_is_an_execute_tool_span_in_the_callers_trace(
    notes_server: McpUpstream, traced_factory: TracedFactory
) -> None:
    traced = await traced_factory(make_settings(mcp={"servers": [notes_entry(notes_server.url)]}))
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = {"x-user-id": "traced", "traceparent": traceparent}
    async with mcp_client(mcp_url(traced.sidecar), headers) as session:
        assert text_of(await session.call_tool("notes__echo", {"text": SECRET})) == SECRET
        with pytest.raises(MCPError):
            await session.call_tool("nowhere__echo", {"text": SECRET})
    spans = traced.spans()
    tool_spans = [s for s in spans if s.name == "execute_tool notes__echo"]
    assert len(tool_spans) == 1
    span = tool_spans[0]
    assert span.kind is SpanKind.CLIENT
    assert span.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    parent = next(s for s in spans if span.parent and s.context.span_id == span.parent.span_id)
    assert parent.name == "POST /mcp" and parent.kind is SpanKind.SERVER
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.operation.name"] == "execute_tool"
    assert attributes["gen_ai.tool.name"] == "notes__echo"
    assert attributes["mcp.method.name"] == "tools/call"
    for recorded in spans:
        assert SECRET not in repr(dict(recorded.attributes or {})), recorded.name
        assert all(SECRET not in repr(event.attributes) for event in recorded.events)
    outcomes = {
        (point[0]["mcp.server"], point[0]["outcome"]): point[1].value
        for point in traced.metric_points("llm_sidecar.mcp.tool_calls")
    }
    assert outcomes == {("notes", "ok"): 1}
    (sessions,) = traced.metric_points("llm_sidecar.mcp.sessions")
    assert sessions[1].value == 1
