"""Builds the grpc.aio server: services, health, reflection, listeners."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from llm_manager.v1 import llm_manager_pb2 as pb

from llm_sidecar.config import ServerSettings
from llm_sidecar.core.observability import Observability
from llm_sidecar.entrance import ListenError
from llm_sidecar.service import LLMService
from llm_sidecar.telemetry.access import AccessLog
from llm_sidecar.transport.accept import AcceptSlots, available
from llm_sidecar.transport.handlers import add_service
from llm_sidecar.transport.servicer import (
    ADMIN_MAX_REQUEST_BYTES,
    ADMIN_SERVICE_NAME,
    SERVICE_NAME,
    LLMAdminServicer,
    LLMManagerServicer,
)

log = logging.getLogger(__name__)

#: gRPC core's limit on a call's metadata, all keys together. The soft and the hard
#: limit are one, so there is no band where core rejects at random: every value up
#: to 64 KiB reaches the sidecar's own validation, which names the key.
METADATA_LIMIT_BYTES = 1024 * 1024
#: gRPC core's limit on a request message: anything up to it reaches the sidecar's
#: own size check (``server.max_request_bytes``); past it core answers
#: RESOURCE_EXHAUSTED, every time.
MESSAGE_CEILING_BYTES = 64 * 1024 * 1024
#: Calls gRPC core holds for the server before the application takes them. Core's
#: defaults (1,000 soft, 3,000 hard, random refusal between) cancelled about one in
#: ten of 2,000 calls arriving together with CANCELLED; the sidecar's own limits
#: (per user, resources, max_concurrent_rpcs) decide instead.
MAX_PENDING_CALLS = 32_768


def core_options(settings: ServerSettings) -> list[tuple[str, int]]:
    """Channel arguments of the sidecar's servers."""
    ceiling = max(MESSAGE_CEILING_BYTES, settings.max_request_bytes) + 64 * 1024
    return [
        ("grpc.max_receive_message_length", ceiling),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ("grpc.max_metadata_size", METADATA_LIMIT_BYTES),
        ("grpc.absolute_max_metadata_size", METADATA_LIMIT_BYTES),
        ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
        ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_CALLS),
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
    ]


@dataclass(slots=True)
class Servers:
    """The main server, the admin server when it listens apart, the health servicer,
    and the main service's extra accept slots (None when off)."""

    main: grpc.aio.Server
    admin: grpc.aio.Server | None
    health: health.aio.HealthServicer
    accept: AcceptSlots | None = None

    def all(self) -> list[grpc.aio.Server]:
        return [self.main] if self.admin is None else [self.main, self.admin]

    async def start(self) -> None:
        """Start every server, then the accept slots."""
        for server in self.all():
            await server.start()
        if self.accept is not None:
            self.accept.start()

    async def stop(self, grace: float | None) -> None:
        """Stop every server (draining calls for up to ``grace`` seconds)."""
        await asyncio.gather(*(server.stop(grace) for server in self.all()))
        if self.accept is not None:
            await self.accept.wait_stopped()


def accept_slots(
    settings: ServerSettings, server: grpc.aio.Server, handlers: dict[str, grpc.RpcMethodHandler]
) -> AcceptSlots | None:
    """The main service's accept slots, or None when they are off or cannot run."""
    if settings.accept_slots == 0:
        return None
    if settings.max_concurrent_rpcs:
        # gRPC's own limiter counts only the calls its own loop accepts.
        log.info("accept slots off: server.max_concurrent_rpcs is set")
        return None
    why_not = available(server=server)
    if why_not:
        log.warning("accept slots off", extra={"reason": why_not})
        return None
    return AcceptSlots(server, handlers, settings.accept_slots)


def _reflect(server: grpc.aio.Server, *services: str) -> None:
    reflection.enable_server_reflection((*services, reflection.SERVICE_NAME), server)


def build_servers(
    settings: ServerSettings, service: LLMService, obs: Observability, access: AccessLog
) -> Servers:
    """Servers with every service added, not yet listening (see :func:`bind`)."""
    token = settings.auth_token()
    if settings.auth_token_env and not token:
        raise ValueError(
            f"server.auth_token_env names {settings.auth_token_env!r}, which is unset or empty"
        )
    options = core_options(settings)
    limit = settings.max_concurrent_rpcs or None
    main = grpc.aio.server(options=options, maximum_concurrent_rpcs=limit)
    handlers = add_service(
        main,
        pb.DESCRIPTOR.services_by_name["LLMManagerService"],
        LLMManagerServicer(service, obs, access, token=token),
        pb,
        max_request_bytes=settings.max_request_bytes,
    )
    admin = main if not settings.admin_address else grpc.aio.server(options=options)
    add_service(
        admin,
        pb.DESCRIPTOR.services_by_name["LLMAdminService"],
        LLMAdminServicer(service, obs, access, token=token),
        pb,
        max_request_bytes=ADMIN_MAX_REQUEST_BYTES,
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, main)
    health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
    if settings.reflection:
        if admin is main:
            _reflect(main, SERVICE_NAME, ADMIN_SERVICE_NAME, health_name)
        else:
            _reflect(main, SERVICE_NAME, health_name)
            _reflect(admin, ADMIN_SERVICE_NAME)
    return Servers(
        main,
        None if admin is main else admin,
        health_servicer,
        accept_slots(settings, main, handlers),
    )


def _credentials(settings: ServerSettings) -> grpc.ServerCredentials | None:
    if not settings.tls:
        return None
    ca = Path(settings.tls_client_ca_file).read_bytes() if settings.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(Path(settings.tls_key_file).read_bytes(), Path(settings.tls_cert_file).read_bytes())],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )


#: Where each listener's address is set, for a message that says how to change it.
PORT_SETTING = "server.port (--port, LLM_SIDECAR_SERVER__PORT)"
SOCKET_SETTING = "server.unix_socket (--unix-socket, LLM_SIDECAR_SERVER__UNIX_SOCKET)"
ADMIN_SETTING = "server.admin_address (LLM_SIDECAR_SERVER__ADMIN_ADDRESS)"


def _listen(
    server: grpc.aio.Server, address: str, creds: grpc.ServerCredentials | None, setting: str
) -> str:
    """Bind one address; return it with the real port. A failure names the setting
    that changes the address."""
    if address.startswith("unix:"):
        directory = Path(address[5:]).parent
        if not directory.is_dir():
            raise ListenError(
                f"cannot listen on {address}: the directory {directory} does not exist "
                f"(create it, or set {setting} to a path in one that does)"
            )
        try:
            server.add_insecure_port(address)  # file permissions guard a socket, not TLS
        except RuntimeError:
            raise ListenError(
                f"cannot listen on {address}: the socket cannot be created there "
                f"(permissions?); change it with {setting}"
            ) from None
        return address
    try:
        port = (
            server.add_insecure_port(address)
            if creds is None
            else server.add_secure_port(address, creds)
        )
    except RuntimeError:
        raise ListenError(
            f"cannot listen on {address} (gRPC): the port is in use, or the host is not an "
            f"address of this machine; change it with {setting}"
        ) from None
    host = address.rpartition(":")[0]
    return f"{host}:{port}"


def bind(servers: Servers, settings: ServerSettings) -> list[str]:
    """Add the configured listeners; return their addresses (with the real TCP port).

    The admin listener, when it has its own, comes last.
    """
    creds = _credentials(settings)
    addresses: list[str] = []
    if settings.port >= 0:
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        addresses.append(_listen(servers.main, f"{host}:{settings.port}", creds, PORT_SETTING))
    if settings.unix_socket:
        address = f"unix:{settings.unix_socket}"
        addresses.append(_listen(servers.main, address, None, SOCKET_SETTING))
    if servers.admin is not None:
        addresses.append(_listen(servers.admin, settings.admin_address, creds, ADMIN_SETTING))
    return addresses


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
#: The process's own health (the probes): SERVING once started, NOT_SERVING only while
#: draining after SIGTERM.
HEALTH_SERVICES = ("", SERVICE_NAME, ADMIN_SERVICE_NAME)
#: Health of the providers alone: NOT_SERVING while no provider of any route can
#: answer (every circuit open or every probe failing). For dashboards and alerts;
#: no probe points at it, since a provider outage is shared by every pod.
PROVIDERS_HEALTH_SERVICE = "llm_manager.v1.Providers"
#: Health of the shared state store alone: NOT_SERVING while Redis is
#: unreachable or replaying. The sidecar itself stays SERVING (best_effort
#: serves from memory), so Kubernetes does not restart pods for a Redis outage.
SHARED_STATE_HEALTH_SERVICE = "llm_manager.v1.SharedState"
#: The MCP gateway's servers: NOT_SERVING while any one's circuit is open; each server
#: has its own name below it (``llm_manager.v1.McpServers.<name>``).
TOOL_SERVERS_HEALTH_SERVICE = "llm_manager.v1.McpServers"
