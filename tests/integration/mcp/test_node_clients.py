"""Third-party MCP parts from npm: ``@modelcontextprotocol/server-everything`` as an
upstream server over Streamable HTTP, and the Vercel AI SDK's MCP client as a client
of the gateway (clients/ts/test-mcp)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Iterator

import pytest

from llm_sidecar import Sidecar
from tests.integration.mcp.conftest import mcp_url
from tests.support.mcp_servers import mcp_client
from tests.support.sidecar import ROOT, free_port, make_settings
from tests.support.waiting import eventually

TS = ROOT / "clients" / "ts"
EVERYTHING = TS / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist"


@pytest.fixture
def everything() -> Iterator[str]:
    node = shutil.which("node")
    if node is None or not EVERYTHING.is_dir():
        pytest.fail("Node.js packages missing: run `make setup` (npm ci in clients/ts)")
    port = free_port()
    proc = subprocess.Popen(
        [node, str(EVERYTHING / "index.js"), "streamableHttp"],
        cwd=TS,
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield f"http://127.0.0.1:{port}/mcp"
    proc.terminate()
    proc.wait(10)


async def test_server_everything_behind_the_gateway_and_the_vercel_client_before_it(
    everything: str, sidecar_factory: Callable[..., Awaitable[Sidecar]]
) -> None:
    # Everything but reading the server's environment, for everyone.
    rules = [{"groups": ["*"], "servers": ["everything"], "tools": ["echo", "get-sum"]}]
    entry = {"name": "everything", "url": everything, "timeout_seconds": 10}
    sidecar = await sidecar_factory(make_settings(mcp={"servers": [entry], "rules": rules}))

    async def up() -> bool:
        try:
            async with mcp_client(mcp_url(sidecar), {"x-user-id": "probe"}) as session:
                return bool((await session.list_tools()).tools)
        except Exception:
            return False

    await eventually(up, timeout=30, what="server-everything listening")
    async with mcp_client(mcp_url(sidecar), {"x-user-id": "py"}) as session:
        summed = await session.call_tool("everything__get-sum", {"a": 2, "b": 3})
        assert "5" in summed.content[0].text
    proc = await asyncio.to_thread(
        subprocess.run,
        [shutil.which("node") or "node", "--test", "test-mcp/"],
        cwd=TS,
        env={**os.environ, "MCP_GATEWAY_URL": mcp_url(sidecar)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "# pass 2" in proc.stdout and "# fail 0" in proc.stdout, proc.stdout[-2000:]
