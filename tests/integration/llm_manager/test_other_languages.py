"""The contract from other languages: the generated TypeScript stubs, over real gRPC."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess

import pytest

from llm_sidecar import Sidecar
from tests.support.sidecar import ROOT

TS = ROOT / "clients" / "ts"


async def test_typescript_client_from_node(sidecar: Sidecar) -> None:
    node = shutil.which("node")
    if node is None or not (TS / "node_modules" / "@connectrpc" / "connect-node").is_dir():
        pytest.fail("Node.js packages missing: run `make setup` (npm ci in clients/ts)")
    proc = await asyncio.to_thread(
        subprocess.run,
        [node, "--test", "test/"],
        cwd=TS,
        env={**os.environ, "SIDECAR_ADDR": f"127.0.0.1:{sidecar.port}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "# pass 2" in proc.stdout and "# fail 0" in proc.stdout, proc.stdout[-2000:]
