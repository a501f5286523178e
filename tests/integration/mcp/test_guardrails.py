"""Guardrails on the gateway's tool calls: a tool's arguments are masked or refused
before they reach the MCP server, and its result before it reaches the agent. Values
of pseudonymized categories pass: a tool is the user's own, and nothing comes back
through it to restore."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest
from mcp.shared.exceptions import MCPError
from openai import AsyncOpenAI

from llm_sidecar import Sidecar
from tests.integration.mcp.conftest import mcp_url, notes_entry
from tests.integration.mcp.test_policy import tally
from tests.support.mcp_servers import McpUpstream, mcp_client, text_of
from tests.support.sidecar import make_settings, provider
from tests.support.upstream import FakeUpstream

GUARDRAILS = {"email": "pseudonymize", "iban": "mask", "credit_card": "block", "secret": "block"}
CARD = "4111 1111 1111 1111"
IBAN = "DE89 3704 0044 0532 0130 00"
TOKEN = "ghp_" + "A1b2C3d4E5" * 3 + "f6G7h8"


async def _gateway(
    server: McpUpstream, factory: Callable[..., Awaitable[Sidecar]], **guardrails: str
) -> Sidecar:
    settings = make_settings(
        mcp={"servers": [notes_entry(server.url)]}, guardrails={**GUARDRAILS, **guardrails}
    )
    return await factory(settings)


async def test_a_blocked_argument_never_reaches_the_server(
    notes_server: McpUpstream, sidecar_factory
) -> None:
    sidecar = await _gateway(notes_server, sidecar_factory)
    before = (await tally(notes_server)).get("echo", 0)
    async with mcp_client(mcp_url(sidecar), {"x-user-id": "ana"}) as session:
        with pytest.raises(MCPError) as refused:
            await session.call_tool("notes__echo", {"text": f"pay with {CARD} today"})
        served = await session.call_tool("notes__echo", {"text": "no card here"})
    assert refused.value.error.code == -32602
    message = refused.value.error.message
    assert "arguments.text" in message and "'credit_card'" in message and CARD not in message
    assert text_of(served) == "no card here"
    assert (await tally(notes_server)).get("echo", 0) == before + 1


async def test_arguments_are_masked_and_pseudonymized_values_pass(
    notes_server: McpUpstream, sidecar_factory
) -> None:
    sidecar = await _gateway(notes_server, sidecar_factory)
    async with mcp_client(mcp_url(sidecar), {"x-user-id": "ben"}) as session:
        await session.call_tool("notes__add_note", {"text": f"refund to {IBAN}"})
        await session.call_tool("notes__add_note", {"text": "write to ben@example.com"})
        notes = await session.call_tool("notes__list_notes", {})
    # What the server kept is what it was sent.
    assert notes.structured_content == {"result": ["refund to [IBAN]", "write to ben@example.com"]}


@pytest.mark.parametrize(("action", "code"), [("block", -32015), ("mask", None)])
async def test_a_result_is_screened_before_the_agent_sees_it(
    notes_server: McpUpstream, sidecar_factory, action: str, code: int | None
) -> None:
    """``whoami`` answers with the caller's own token: a secret in a tool's result."""
    sidecar = await _gateway(notes_server, sidecar_factory, secret=action)
    headers = {"x-user-id": "cai", "x-mcp-authorization-notes": f"Bearer {TOKEN}"}
    async with mcp_client(mcp_url(sidecar), headers) as session:
        if code is not None:
            with pytest.raises(MCPError) as refused:
                await session.call_tool("notes__whoami", {})
            assert refused.value.error.code == code
            assert "result" in refused.value.error.message
            assert TOKEN not in refused.value.error.message
            return
        answer = await session.call_tool("notes__whoami", {})
    assert TOKEN not in text_of(answer) and "[SECRET]" in text_of(answer)
    assert answer.structured_content is not None
    assert answer.structured_content["authorization"] == "Bearer [SECRET]"


async def test_a_hosted_tool_gets_the_real_value_and_the_model_never_does(
    notes_server: McpUpstream, upstream: FakeUpstream, sidecar_factory
) -> None:
    """Hosted MCP tools in a response: the model sees the user's address as a
    placeholder and calls the tool with it; the tool gets the address, and its result
    goes back to the model as the placeholder again."""
    settings = make_settings(
        [provider("primary", upstream.url)],
        mcp={"servers": [notes_entry(notes_server.url)]},
        guardrails=GUARDRAILS,
    )
    sidecar = await sidecar_factory(settings)
    upstream.tool_arguments = json.dumps({"text": "<EMAIL_1>"})
    api = AsyncOpenAI(
        base_url=f"{sidecar.http_url}/v1",
        api_key="unused",
        default_headers={"x-user-id": "dee"},
        max_retries=0,
    )
    tools = [
        {
            "type": "mcp",
            "server_label": "notes",
            "require_approval": "never",
            "allowed_tools": ["echo"],
        }
    ]
    async with api:
        answer = await api.responses.create(
            model="m", input="send it to dee@example.com", tools=tools
        )
    called = answer.output[1]
    assert called.type == "mcp_call" and called.output == "dee@example.com"
    assert json.loads(called.arguments) == {"text": "dee@example.com"}
    sent = json.dumps([r.body for r in upstream.chat_requests])
    assert "dee@example.com" not in sent
    assert upstream.chat_requests[-1].body["messages"][-1]["content"] == "<EMAIL_1>"
