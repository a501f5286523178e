"""Where the sidecar listens: the gRPC server and the HTTP APIs."""

from __future__ import annotations

import ipaddress
import os

from pydantic import Field, model_validator

from llm_sidecar.config.base import (
    Section,
)


class ServerSettings(Section):
    """Where and how the gRPC server listens."""

    host: str = "127.0.0.1"
    #: TCP port; 0 picks a free one, -1 disables TCP.
    port: int = Field(default=50051, ge=-1, le=65535)
    #: Unix socket path; empty disables it.
    unix_socket: str = ""
    grace_period_seconds: float = Field(default=10.0, ge=0)
    #: After SIGTERM, how long health reports NOT_SERVING while calls are still taken,
    #: before the listeners close (so readiness drops first). 0: close at once.
    drain_delay_seconds: float = Field(default=0.0, ge=0, le=300)
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_prompt_chars: int = Field(default=256 * 1024, ge=1)
    max_concurrent_rpcs: int = Field(default=0, ge=0)
    #: Calls of each LLMManagerService method that gRPC core may hand over at once
    #: (see transport/accept.py); 0 leaves it to grpc.aio's own loop (one at a time).
    accept_slots: int = Field(default=128, ge=0, le=4096)
    reflection: bool = True
    #: TLS for TCP listeners (PEM files). With ``tls_client_ca_file`` clients must
    #: present a certificate signed by that CA (mutual TLS).
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    #: Name of an environment variable holding a shared bearer token. When set,
    #: every call over TCP must send ``authorization: Bearer <token>``.
    auth_token_env: str = ""
    #: Listen on a non-loopback address without TLS or a token (not recommended).
    allow_insecure_remote: bool = False
    #: Use uvloop when it is installed.
    uvloop: bool = True
    #: Where LLMAdminService listens: "" (with the main service, on every listener),
    #: or its own "host:port" or "unix:/path", and then only there.
    admin_address: str = ""

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert_file)

    def auth_token(self) -> str:
        """The bearer token, read from the environment at use ('' when none is set)."""
        return os.environ.get(self.auth_token_env, "") if self.auth_token_env else ""

    @model_validator(mode="after")
    def _secure_by_default(self) -> ServerSettings:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("server: tls_cert_file and tls_key_file go together")
        if self.tls_client_ca_file and not self.tls:
            raise ValueError("server: tls_client_ca_file needs tls_cert_file and tls_key_file")
        guarded = self.tls or self.auth_token_env or self.allow_insecure_remote
        remote = [
            address
            for address, open_ in (
                (self.host, self.port >= 0),
                (self.admin_address.rpartition(":")[0], is_tcp(self.admin_address)),
            )
            if open_ and not is_loopback(address)
        ]
        if remote and not guarded:
            raise ValueError(
                f"server: {remote[0]!r} is not a loopback address, and nothing guards it. "
                "Set tls_cert_file and tls_key_file, or auth_token_env, or "
                "allow_insecure_remote = true to accept calls from the network unauthenticated"
            )
        return self


def is_tcp(address: str) -> bool:
    """Whether an ``admin_address``-style address is a TCP one."""
    return bool(address) and not address.startswith("unix:")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IP literal, maybe in brackets) is this machine only."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HttpSettings(Section):
    """Where the OpenAI- and Anthropic-compatible HTTP APIs listen. The server's TLS
    and bearer token apply to them too; a non-loopback address needs one of them (or
    ``server.allow_insecure_remote``), as for gRPC."""

    host: str = "127.0.0.1"
    #: TCP port; 0 picks a free one, -1 disables TCP. Away from 8080, which the
    #: backend in the same pod likely uses.
    port: int = Field(default=50080, ge=-1, le=65535)
    #: Unix socket path; empty disables it.
    unix_socket: str = ""
