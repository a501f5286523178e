"""Health as Kubernetes reads it: the process's own health never follows a provider outage.

The probes in k8s/ read "" (startup, liveness) and llm_manager.v1.LLMManagerService
(readiness). A provider outage is shared by every pod, so if those followed it every
pod would restart or leave its Service at once. Provider reachability has its own
name, llm_manager.v1.Providers, for dashboards and alerts.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from llm_manager_client import UnavailableError
from tests.support.failover import chain_settings, client_for
from tests.support.sidecar import SidecarProcess, provider, write_process_config
from tests.support.upstream import FakeUpstream
from tests.support.waiting import eventually

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
PROCESS = ("", "llm_manager.v1.LLMManagerService", "llm_manager.v1.LLMAdminService")
PROVIDERS = "llm_manager.v1.Providers"


async def check(port: int, service: str) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    return int(reply.status)


class Watched:
    """Every status the health service sent for ``service`` on a Watch stream."""

    def __init__(self, port: int, service: str) -> None:
        self.statuses: list[int] = []
        self.ended = asyncio.Event()
        self._channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self._task = asyncio.ensure_future(self._watch(service))

    async def _watch(self, service: str) -> None:
        stream = health_pb2_grpc.HealthStub(self._channel).Watch(
            health_pb2.HealthCheckRequest(service=service)
        )
        try:
            async for reply in stream:
                self.statuses.append(int(reply.status))
        except grpc.aio.AioRpcError:
            pass
        finally:
            self.ended.set()

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._channel.close()


@pytest.fixture
async def watch_process() -> AsyncIterator[list[Watched]]:
    watches: list[Watched] = []
    yield watches
    for watched in watches:
        await watched.close()


@pytest.mark.parametrize("fault", ["server_error", "unauthorized", "refused"])
async def test_provider_outage_keeps_the_process_serving(
    pair: tuple[FakeUpstream, FakeUpstream], sidecar_factory, watch_process, fault: str
) -> None:
    primary, fallback = pair
    sidecar = await sidecar_factory(
        chain_settings(
            primary,
            fallback,
            failover={
                "health_interval_seconds": 0.05,
                "probe_timeout_seconds": 0.5,
                "failure_threshold": 2,
                "cooldown_seconds": 60,
            },
        )
    )
    port = sidecar.port
    await eventually(lambda: primary.probes > 0 and fallback.probes > 0, what="first probes")
    assert await check(port, PROVIDERS) == SERVING
    watch_process.extend(Watched(port, name) for name in PROCESS)
    await eventually(lambda: all(w.statuses for w in watch_process), what="watches started")

    for up in (primary, fallback):
        if fault == "refused":
            await up.stop()
        else:
            up.mode = "error"
            up.error_status = 500 if fault == "server_error" else 401
    await eventually(lambda: _is(port, PROVIDERS, NOT_SERVING), what="providers NOT_SERVING")
    # Callers still learn it per call, with when to come back.
    async with await client_for(sidecar) as client:
        with pytest.raises(UnavailableError) as refused:
            await client.ask("anyone?")
    assert refused.value.retry_after is not None and refused.value.retry_after > 0

    # Many failing probe rounds later (the probes' failure windows, scaled to the test's
    # probe interval), the process's own health has never left SERVING.
    if fault != "refused":  # a stopped upstream counts no probes
        seen = primary.probes
        await eventually(lambda: primary.probes >= seen + 20, what="20 more probe rounds")
    for name in PROCESS:
        assert await check(port, name) == SERVING
    assert all(w.statuses == [SERVING] for w in watch_process), [w.statuses for w in watch_process]

    if fault == "refused":
        return  # the upstreams are gone; healing is covered by the other faults
    primary.mode = fallback.mode = "healthy"
    await eventually(lambda: _is(port, PROVIDERS, SERVING), what="providers SERVING again")
    async with await client_for(sidecar) as client:
        assert (await client.ask("back?")).startswith(("primary says", "fallback says"))


async def probe(base_url: str, **headers: str) -> dict[str, int]:
    """The status of each HTTP probe, which says in its body what it says by its status."""
    statuses = {}
    async with aiohttp.ClientSession() as session:
        for path in ("/healthz", "/readyz"):
            async with session.get(base_url + path, headers=headers) as reply:
                body = await reply.json()
            assert body == {"status": "SERVING" if reply.status == 200 else "NOT_SERVING"}
            statuses[path] = reply.status
    return statuses


async def test_http_probes_report_the_process_without_token_or_user(
    pair: tuple[FakeUpstream, FakeUpstream], sidecar_factory, monkeypatch
) -> None:
    """What kubelet sends: no token, no x-user-id. Every provider down changes nothing."""
    monkeypatch.setenv("TEST_PROBE_TOKEN", "probe-t0ken")
    primary, fallback = pair
    settings = chain_settings(
        primary,
        fallback,
        server={"auth_token_env": "TEST_PROBE_TOKEN"},
        failover={"failure_threshold": 1, "cooldown_seconds": 60},
    )
    sidecar = await sidecar_factory(settings)
    assert await probe(sidecar.http_url) == {"/healthz": 200, "/readyz": 200}
    primary.mode = fallback.mode = "error"
    async with aiohttp.ClientSession() as session:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"x-user-id": "alice", "authorization": "Bearer probe-t0ken"}
        async with session.post(
            sidecar.http_url + "/v1/chat/completions", json=body, headers=headers
        ) as reply:
            assert reply.status == 503
        async with session.head(sidecar.http_url + "/readyz") as reply:
            assert reply.status == 200
    assert await check(sidecar.port, PROVIDERS) == NOT_SERVING
    assert await probe(sidecar.http_url) == {"/healthz": 200, "/readyz": 200}


async def _is(port: int, service: str, status: int) -> bool:
    return await check(port, service) == status


async def test_circuits_opened_by_calls_flip_provider_health_without_probes(
    pair: tuple[FakeUpstream, FakeUpstream], sidecar_factory
) -> None:
    primary, fallback = pair
    sidecar = await sidecar_factory(
        chain_settings(
            # A cool-down long enough that a busy machine still reads the circuits open
            # when it asks; the half-open trial after it is waited for below.
            primary,
            fallback,
            failover={"failure_threshold": 1, "cooldown_seconds": 2.0},
        )
    )
    primary.mode = fallback.mode = "error"
    async with await client_for(sidecar) as client:
        with pytest.raises(UnavailableError):
            await client.ask("both down")
        assert await check(sidecar.port, PROVIDERS) == NOT_SERVING
        assert await check(sidecar.port, "") == SERVING
        primary.mode = fallback.mode = "healthy"

        async def answered() -> bool:
            try:
                await client.ask("after the cool-down")
            except UnavailableError:
                return False
            return True

        await eventually(answered, what="a half-open trial closes a circuit")
    assert await check(sidecar.port, PROVIDERS) == SERVING


async def test_sigterm_turns_the_process_not_serving_before_listeners_close(
    upstream: FakeUpstream, tmp_path: Path, watch_process
) -> None:
    config = write_process_config(
        tmp_path / "sidecar.json",
        [provider("primary", upstream.url)],
        server={"drain_delay_seconds": 1.0, "grace_period_seconds": 1.0},
    )
    process = SidecarProcess(config)
    try:
        await process.wait_ready()
        port = process.port
        await eventually(lambda: _is(port, "", SERVING), what="serving after start")
        watched = Watched(port, "")
        watch_process.append(watched)
        await eventually(lambda: watched.statuses == [SERVING], what="watch started")
        http = process.http_url
        assert await probe(http) == {"/healthz": 200, "/readyz": 200}
        process.proc.send_signal(signal.SIGTERM)
        # The listener still answers, and says NOT_SERVING (readiness drops first).
        await eventually(lambda: _is(port, "", NOT_SERVING), what="NOT_SERVING while draining")
        assert await check(port, "llm_manager.v1.LLMManagerService") == NOT_SERVING
        # The HTTP probes say the same, on the HTTP listener that is still open.
        assert await probe(http) == {"/healthz": 503, "/readyz": 503}
        await eventually(lambda: NOT_SERVING in watched.statuses, what="watchers told")
        assert process.proc.poll() is None  # answered by the still-running process
        code = await asyncio.to_thread(process.proc.wait, 15)
        assert code == 0
    finally:
        process.stop()
