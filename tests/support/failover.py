"""Helpers of the failover tests: a two-provider chain, clients, provider states."""

from __future__ import annotations

import grpc
from llm_manager.v1 import llm_manager_pb2 as pb
from llm_manager.v1 import llm_manager_pb2_grpc as pb_grpc

from llm_manager_client import (
    AsyncLLMManagerClient,
    UserContext,
)
from llm_sidecar import Sidecar
from tests.support.sidecar import make_settings, provider
from tests.support.upstream import FakeUpstream


def chain_settings(
    primary: FakeUpstream, fallback: FakeUpstream, *, timeout: float = 2.0, **sections
):
    failover = {"failure_threshold": 1000, "cooldown_seconds": 30, **sections.pop("failover", {})}
    return make_settings(
        [
            provider("primary", primary.url, timeout=timeout),
            provider("fallback", fallback.url, timeout=timeout),
        ],
        failover=failover,
        **sections,
    )


async def client_for(sidecar: Sidecar, user: str = "alice", **ctx) -> AsyncLLMManagerClient:
    return AsyncLLMManagerClient(f"127.0.0.1:{sidecar.port}", UserContext(user, **ctx), timeout=10)


async def provider_states(sidecar: Sidecar) -> dict[str, pb.ProviderStatus]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.port}") as channel:
        reply = await pb_grpc.LLMAdminServiceStub(channel).ListProviders(
            pb.ListProvidersRequest(), timeout=5
        )
    return {p.name: p for p in reply.providers}
