"""Builds the grpc.aio server: services, health, reflection, listeners."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from llm_manager.v1 import llm_manager_pb2 as pb
from llm_manager.v1 import llm_manager_pb2_grpc as pb_grpc

from llm_sidecar.config import ServerSettings
from llm_sidecar.core.observability import Observability
from llm_sidecar.service import LLMService
from llm_sidecar.transport.servicer import (
    ADMIN_SERVICE_NAME,
    SERVICE_NAME,
    LLMAdminServicer,
    LLMManagerServicer,
)


def build_server(
    settings: ServerSettings, service: LLMService, obs: Observability
) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    """A server with every service added, not yet listening (see :func:`bind`).

    Returns the server and its health servicer.
    """
    # gRPC's own limit sits well above ours, so an oversized request reaches
    # the servicer and gets INVALID_ARGUMENT naming the limit.
    options = [
        ("grpc.max_receive_message_length", settings.max_request_bytes * 4 + 65536),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
    ]
    server = grpc.aio.server(
        options=options,
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs or None,
    )
    pb_grpc.add_LLMManagerServiceServicer_to_server(
        LLMManagerServicer(service, obs, max_request_bytes=settings.max_request_bytes), server
    )
    pb_grpc.add_LLMAdminServiceServicer_to_server(LLMAdminServicer(service, obs), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if settings.reflection:
        names = (
            pb.DESCRIPTOR.services_by_name["LLMManagerService"].full_name,
            pb.DESCRIPTOR.services_by_name["LLMAdminService"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        )
        reflection.enable_server_reflection(names, server)
    return server, health_servicer


def bind(server: grpc.aio.Server, settings: ServerSettings) -> list[str]:
    """Add the configured listeners; return their addresses (with the real TCP port)."""
    addresses: list[str] = []
    if settings.port >= 0:
        port = server.add_insecure_port(f"{settings.host}:{settings.port}")
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        addresses.append(f"{host}:{port}")
    if settings.unix_socket:
        server.add_insecure_port(f"unix:{settings.unix_socket}")
        addresses.append(f"unix:{settings.unix_socket}")
    return addresses


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
HEALTH_SERVICES = ("", SERVICE_NAME, ADMIN_SERVICE_NAME)
#: Health of the shared state store alone: NOT_SERVING while Redis is
#: unreachable or replaying. The sidecar itself stays SERVING (best_effort
#: serves from memory), so Kubernetes does not restart pods for a Redis outage.
SHARED_STATE_HEALTH_SERVICE = "llm_manager.v1.SharedState"
