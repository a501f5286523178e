"""The HTTP listener (aiohttp.web): its routes, its sockets and its drain.

It listens on ``http.host:http.port`` (127.0.0.1:50080 by default) and/or
``http.unix_socket``, with the server's TLS when that is set. A caller that
disconnects cancels its handler (``handler_cancellation``), so the upstream call
is abandoned and its reservation settled. On SIGTERM the listeners close (new
requests are refused) and in-flight requests, streams included, get the grace
period to finish.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from llm_sidecar.config import HttpSettings, ServerSettings
from llm_sidecar.core.observability import Observability
from llm_sidecar.entrance import ListenError
from llm_sidecar.http_api.anthropic.messages import Messages
from llm_sidecar.http_api.edge import Edge
from llm_sidecar.http_api.errors import HttpError
from llm_sidecar.http_api.mcp.endpoint import McpEndpoint
from llm_sidecar.http_api.openai.chat import ChatCompletions
from llm_sidecar.http_api.openai.embeddings import Embeddings
from llm_sidecar.http_api.openai.models import Models
from llm_sidecar.http_api.openai.responses import Responses
from llm_sidecar.service import LLMService
from llm_sidecar.telemetry.access import AccessLog

#: Connections the kernel may queue for accepting (gRPC core uses its own).
BACKLOG = 4096


class HttpServer:
    """The OpenAI- and Anthropic-compatible APIs over HTTP, not yet listening."""

    def __init__(
        self,
        settings: HttpSettings,
        server: ServerSettings,
        service: LLMService,
        obs: Observability,
        access: AccessLog,
        route_seconds: Callable[[str], float],
        serving: Callable[[], bool] = lambda: True,
        mcp: McpEndpoint | None = None,
    ) -> None:
        self.settings = settings
        self._server = server
        edge = Edge(
            obs, access, token=server.auth_token(), max_request_bytes=server.max_request_bytes
        )
        self.app = web.Application(client_max_size=server.max_request_bytes + 1)
        self._routes(edge, service, route_seconds)
        if mcp is not None:
            handle = edge.route("mcp", mcp.handle, json_body=False)
            for method in ("POST", "GET", "DELETE"):
                self.app.router.add_route(method, "/mcp", handle)
        probes = Probes(serving)
        self.app.router.add_get("/healthz", probes.healthz)
        self.app.router.add_get("/readyz", probes.readyz)
        self.app.middlewares.append(_unrouted(edge))
        self._runner: web.AppRunner | None = None
        #: Bound addresses ("host:port", "unix:/path"), known once started.
        self.addresses: list[str] = []

    def _routes(
        self, edge: Edge, service: LLMService, route_seconds: Callable[[str], float]
    ) -> None:
        """The route table: each endpoint's handler, under its API's error shape. A new
        endpoint is a module under ``openai/`` or ``anthropic/`` and a line here."""
        add = self.app.router
        endpoints = service, route_seconds
        add.add_post(
            "/v1/chat/completions", edge.route("openai", ChatCompletions(*endpoints).handle)
        )
        add.add_post("/v1/messages", edge.route("anthropic", Messages(*endpoints).handle))
        add.add_post("/v1/embeddings", edge.route("openai", Embeddings(*endpoints).handle))
        responses = Responses(*endpoints)
        one = "/v1/responses/{response_id}"
        add.add_post("/v1/responses", edge.route("openai", responses.create))
        add.add_get(one, edge.route("openai", responses.retrieve))
        add.add_delete(one, edge.route("openai", responses.delete))
        add.add_get(one + "/input_items", edge.route("openai", responses.input_items))
        models = Models(*endpoints).handle
        add.add_get("/v1/models", edge.route("openai", models, needs_user=False))

    @property
    def enabled(self) -> bool:
        return self.settings.port >= 0 or bool(self.settings.unix_socket)

    async def start(self) -> list[str]:
        """Bind every configured listener; ListenError naming the one that cannot."""
        runner = web.AppRunner(self.app, handler_cancellation=True, access_log=None)
        await runner.setup()
        self._runner = runner
        try:
            if self.settings.port >= 0:
                await self._tcp(runner)
            if self.settings.unix_socket:
                await self._unix(runner, self.settings.unix_socket)
        except ListenError:
            await runner.cleanup()
            raise
        return self.addresses

    async def _tcp(self, runner: web.AppRunner) -> None:
        host, port = self.settings.host, self.settings.port
        # aiohttp's default backlog (128) drops the connections of a burst beyond it,
        # which retry a second later: 500 streams opened at once waited seconds for
        # their first chunk. The kernel caps it at net.core.somaxconn.
        site = web.TCPSite(
            runner, host, port, ssl_context=_tls(self._server), reuse_port=False, backlog=BACKLOG
        )
        try:
            await site.start()
        except OSError as exc:
            raise ListenError(
                f"cannot listen on {host}:{port} (HTTP): the port is in use, or the host is "
                f"not an address of this machine ({type(exc).__name__}); change it with "
                "http.port (--http-port, LLM_SIDECAR_HTTP__PORT), or -1 to turn TCP off"
            ) from None
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        shown = f"[{host}]" if ":" in host else host
        self.addresses.append(f"http://{shown}:{bound}")

    async def _unix(self, runner: web.AppRunner, path: str) -> None:
        directory = Path(path).parent
        if not directory.is_dir():
            raise ListenError(
                f"cannot listen on unix:{path} (HTTP): the directory {directory} does not "
                "exist (create it, or set http.unix_socket to a path in one that does)"
            )
        site = web.UnixSite(runner, path, backlog=BACKLOG)
        try:
            await site.start()
        except OSError as exc:
            raise ListenError(
                f"cannot listen on unix:{path} (HTTP): {type(exc).__name__}; change it with "
                "http.unix_socket"
            ) from None
        self.addresses.append(f"unix:{path}")

    async def stop(self, grace: float) -> None:
        """Close the listeners (new requests are refused), let in-flight requests, streams
        included, finish for up to ``grace`` seconds, then close what is left."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for site in list(runner.sites):
            await site.stop()
        server = runner.server
        if server is not None:
            await asyncio.sleep(0)  # requests that arrived before the close start first
            server.pre_shutdown()
            await server.shutdown(grace)
        await runner.cleanup()


class Probes:
    """``/healthz`` and ``/readyz``, for clusters that probe over HTTP: the same answers
    as the gRPC health names ``""`` and ``llm_manager.v1.LLMManagerService``. Both
    report the process (200 while it takes calls, 503 once it drains after SIGTERM),
    never a provider or Redis, whose outages every pod shares. No token, no user and
    no access line: kubelet sends none, and a probe every few seconds is not a call."""

    def __init__(self, serving: Callable[[], bool]) -> None:
        self._serving = serving

    def _answer(self) -> web.Response:
        serving = self._serving()
        return web.json_response(
            {"status": "SERVING" if serving else "NOT_SERVING"}, status=200 if serving else 503
        )

    async def healthz(self, request: web.Request) -> web.Response:
        """The process runs (liveness)."""
        return self._answer()

    async def readyz(self, request: web.Request) -> web.Response:
        """The process takes calls: not draining (readiness)."""
        return self._answer()


def _tls(server: ServerSettings) -> ssl.SSLContext | None:
    """The server's TLS for the HTTP listener too (mutual TLS with a client CA)."""
    if not server.tls:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server.tls_cert_file, server.tls_key_file)
    if server.tls_client_ca_file:
        context.load_verify_locations(server.tls_client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _unrouted(edge: Edge) -> Any:
    """A middleware: an unknown path or method answers through ``edge`` in the APIs'
    error shape (not aiohttp's page), with a request id and an access line."""

    @web.middleware
    async def unrouted(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        start = time.perf_counter()
        try:
            return await handler(request)
        except web.HTTPNotFound:
            error = HttpError(
                404, "no such endpoint (see /v1/models and the docs)", reason="NO_ROUTE"
            )
        except web.HTTPMethodNotAllowed:
            error = HttpError(
                405, "that method is not allowed on this endpoint", reason="METHOD_NOT_ALLOWED"
            )
        return edge.unrouted(request, error, start)

    return unrouted
