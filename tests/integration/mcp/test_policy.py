"""The access policy: deny by default once a rule is set, by the groups the backend
sends in x-permissions; a denied tool is neither listed nor called, and a reload
changes the rules without a restart."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from llm_sidecar import Sidecar
from tests.integration.mcp.conftest import mcp_url, notes_entry
from tests.support.mcp_servers import McpUpstream, mcp_client
from tests.support.sidecar import SidecarProcess, make_settings, write_process_config
from tests.support.waiting import eventually

#: Read-only tools for everyone; the whole "ledger" server for the finance group.
RULES = [
    {"groups": ["*"], "servers": ["notes"], "tools": ["list_*", "whoami", "echo", "count"]},
    {"groups": ["finance"], "servers": ["ledger"]},
]


def servers(url: str) -> list[dict[str, Any]]:
    return [notes_entry(url), {**notes_entry(url), "name": "ledger"}]


async def tally(server: McpUpstream) -> dict[str, int]:
    """What reached the server, asked of it directly."""
    async with mcp_client(server.url, {}) as session:
        answer = await session.call_tool("tally", {})
        assert answer.structured_content is not None
        return dict(answer.structured_content)


async def names(url: str, headers: dict[str, str]) -> set[str]:
    async with mcp_client(url, headers) as session:
        return {tool.name for tool in (await session.list_tools()).tools}


@pytest.fixture
async def guarded(
    notes_server: McpUpstream, sidecar_factory: Callable[..., Awaitable[Sidecar]]
) -> Sidecar:
    settings = make_settings(mcp={"servers": servers(notes_server.url), "rules": RULES})
    return await sidecar_factory(settings)


async def test_a_user_lists_only_what_the_rules_allow_their_groups(guarded: Sidecar) -> None:
    everyone = {"notes__list_notes", "notes__whoami", "notes__echo", "notes__count"}
    assert await names(mcp_url(guarded), {"x-user-id": "plain"}) == everyone
    finance = await names(mcp_url(guarded), {"x-user-id": "cfo", "x-permissions": "finance"})
    assert everyone < finance
    assert {"ledger__add_note", "ledger__delete_everything"} <= finance
    assert "notes__delete_everything" not in finance


async def test_a_denied_tool_is_refused_by_name_and_nothing_goes_upstream(
    guarded: Sidecar, notes_server: McpUpstream
) -> None:
    before = await tally(notes_server)
    async with mcp_client(mcp_url(guarded), {"x-user-id": "mallory"}) as session:
        for name in ("notes__delete_everything", "ledger__count", "notes__add_note"):
            with pytest.raises(MCPError) as caught:
                await session.call_tool(name, {"text": "x"})
            assert caught.value.code == -32011
            assert name in caught.value.message and "not allowed" in caught.value.message
            assert caught.value.error.data == {"reason": "TOOL_DENIED"}
        assert (await session.call_tool("notes__echo", {"text": "ok"})).content[0].text == "ok"
    after = await tally(notes_server)
    for tool in ("delete_everything", "count", "add_note"):
        assert after.get(tool, 0) == before.get(tool, 0), tool
    assert after["echo"] == before.get("echo", 0) + 1


async def test_a_reload_changes_the_rules_for_the_next_request(
    guarded: Sidecar, notes_server: McpUpstream
) -> None:
    headers = {"x-user-id": "writer"}
    assert "notes__add_note" not in await names(mcp_url(guarded), headers)
    wider = [*RULES, {"groups": ["*"], "servers": ["notes"], "tools": ["add_note"]}]
    settings = make_settings(mcp={"servers": servers(notes_server.url), "rules": wider})
    guarded.reload(settings)
    assert "notes__add_note" in await names(mcp_url(guarded), headers)


async def test_sighup_reloads_the_rules_and_a_bad_file_keeps_them(
    tmp_path: Path, notes_server: McpUpstream
) -> None:
    """The real process: SIGHUP reads the file again; a file with a mistake is refused
    whole (logged) and the rules in force stay."""
    path = tmp_path / "sidecar.json"
    mcp = {"servers": servers(notes_server.url), "rules": RULES}
    write_process_config(path, [{"name": "sim", "kind": "simulated"}], mcp=mcp)
    process = SidecarProcess(path)
    try:
        await process.wait_ready()
        url = f"{process.http_url}/mcp"
        headers = {"x-user-id": "hup"}
        assert "notes__add_note" not in await names(url, headers)
        config = json.loads(path.read_text())
        config["mcp"]["rules"].append({"groups": ["*"], "servers": ["notes"], "tools": ["add_*"]})
        path.write_text(json.dumps(config))
        os.kill(process.proc.pid, signal.SIGHUP)

        async def widened() -> bool:
            return "notes__add_note" in await names(url, headers)

        await eventually(widened, what="the reloaded rule in force")
        config["mcp"]["rules"].append({"groups": ["*"], "servers": ["no-such-server"]})
        path.write_text(json.dumps(config))
        os.kill(process.proc.pid, signal.SIGHUP)
        await eventually(lambda: b"reload refused" in process.output(), what="the refusal")
        assert "notes__add_note" in await names(url, headers)
        assert process.proc.poll() is None
    finally:
        process.stop()
