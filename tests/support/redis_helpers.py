"""Helpers of the Redis shared-state tests."""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from llm_manager.v1 import llm_manager_pb2 as pb
from llm_manager.v1 import llm_manager_pb2_grpc as pb_grpc

from llm_manager_client import AsyncLLMManagerClient, UserContext
from tests.support.upstream import FakeUpstream

SHARED_STATE = "llm_manager.v1.SharedState"


def redis_client(sidecar_port: int, user: str, **ctx: Any) -> AsyncLLMManagerClient:
    return AsyncLLMManagerClient(f"127.0.0.1:{sidecar_port}", UserContext(user, **ctx), timeout=10)


async def resource_status(port: int) -> pb.GetResourceStatusResponse:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        return await pb_grpc.LLMAdminServiceStub(channel).GetResourceStatus(
            pb.GetResourceStatusRequest(), timeout=5
        )


async def health_of(port: int, service: str) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    return int(reply.status)


def reported_usage(*upstreams: FakeUpstream) -> tuple[int, int]:
    prompt = completion = 0
    for up in upstreams:
        for rec in up.chat_requests:
            usage = up.usage(rec.body, up.answer_text(rec.body))
            prompt += usage["prompt_tokens"]
            completion += usage["completion_tokens"]
    return prompt, completion
