"""The composition root: builds every component from Settings and runs them.

Dependencies point one way: transport -> service -> core. This module is the
only place that knows all three, plus the adapters (providers, stores) and
the telemetry SDK. Construction (``Sidecar(...)``, inside a running event
loop) builds the whole object graph; :meth:`Sidecar.start` only does I/O:
it checks the shared store, binds the listeners and starts background tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Coroutine
from typing import Any

from llm_sidecar import wiring
from llm_sidecar.config import Settings
from llm_sidecar.core.background import cancel_and_wait
from llm_sidecar.core.routing.health import HealthMonitor
from llm_sidecar.core.state.cache import CacheBudget
from llm_sidecar.core.turn.registry import LLMManagerFactory, ManagerRegistry
from llm_sidecar.core.turn.supervisor import ResourceMonitor
from llm_sidecar.entrance import ListenError
from llm_sidecar.http_api.mcp.endpoint import McpEndpoint
from llm_sidecar.http_api.server import HttpServer
from llm_sidecar.mcp_gateway.hosted import HostedLoop
from llm_sidecar.providers import HttpPools
from llm_sidecar.service import LLMService
from llm_sidecar.telemetry.access import AccessLog
from llm_sidecar.telemetry.gauges import register_gauges
from llm_sidecar.telemetry.logs import withhold_library_log_arguments
from llm_sidecar.telemetry.setup import TelemetryHandles, setup_telemetry
from llm_sidecar.transport.server import (
    HEALTH_SERVICES,
    NOT_SERVING,
    PROVIDERS_HEALTH_SERVICE,
    SERVING,
    SHARED_STATE_HEALTH_SERVICE,
    TOOL_SERVERS_HEALTH_SERVICE,
    bind,
    build_servers,
)

log = logging.getLogger("llm_sidecar")

#: Longest shutdown waits for the store's or the providers' connections to close.
RELEASE_SECONDS = 2.0


class Sidecar:
    """One running sidecar: gRPC server, managers, providers and background tasks."""

    def __init__(self, settings: Settings, *, telemetry: TelemetryHandles | None = None) -> None:
        self.settings = settings
        withhold_library_log_arguments()
        self.telemetry = telemetry or setup_telemetry(settings.telemetry)
        self.obs = self.telemetry.observability
        #: Bound listener addresses (gRPC, then HTTP), known once started.
        self.addresses: list[str] = []
        self.http_addresses: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = asyncio.Event()
        self._stopping = False
        #: The process's own health, as the probes read it: from start until SIGTERM.
        self._serving = False
        self._build_core(settings)
        self._build_edges(settings)

    def _build_core(self, settings: Settings) -> None:
        """Providers, router, stores, billing, the manager factory and registry, the
        resource supervisor, and the service over them."""
        #: Every provider's connection pool.
        self.pools = HttpPools()
        self.router = wiring.router(settings, self.pools, self.obs)
        self.state, self.store = wiring.state_store(settings)
        self.budget = CacheBudget(settings.cache.global_max_bytes)
        self.billing = wiring.billing(settings, self.obs)
        #: The guardrails of model calls and tool calls alike (None: none configured).
        self.guard = wiring.guard(settings)
        self.factory = LLMManagerFactory(
            router=self.router,
            budget=self.budget,
            state=self.state,
            cache_limits=wiring.cache_limits(settings),
            user_limits=wiring.user_limits(settings),
            billing=self.billing,
            observability=self.obs,
            guard=self.guard,
        )
        self.registry = ManagerRegistry(
            self.factory.create_llm_manager,
            max_managers=settings.managers.max_managers,
            idle_ttl_seconds=settings.managers.idle_ttl_seconds,
        )
        self.monitor = ResourceMonitor(
            registry=self.registry,
            budget=self.budget,
            thresholds=wiring.thresholds(settings),
            in_flight=lambda: self.registry.in_flight,
            interval_seconds=settings.resources.sample_interval_seconds,
            on_alert=lambda level, what: self.obs.alerts.add(1, {"level": level, "resource": what}),
        )
        self.service = LLMService(
            registry=self.registry,
            factory=self.factory,
            router=self.router,
            monitor=self.monitor,
            max_prompt_chars=settings.server.max_prompt_chars,
            store=self.store,
            embedding_limits=(settings.embeddings.max_inputs, settings.embeddings.max_total_chars),
        )
        self.tools = wiring.tool_gateway(
            settings, lambda user_id: self.state.for_user(user_id).quotas, self.obs, self.guard
        )
        self.service.tool_sessions = self.tools.sessions
        self.service.hosted = HostedLoop(self.tools, settings.responses.max_mcp_rounds)

    def _build_edges(self, settings: Settings) -> None:
        """Gauges, the access log, the servers and their health, and provider probes."""
        register_gauges(
            self.obs.meter,
            registry=self.registry,
            budget=self.budget,
            router=self.router,
            store_status=self.service.store_status,
            usage_dropped_users=lambda: self.state.memory.usage.dropped_users,
            mcp_sessions=lambda: len(self.tools.sessions),
        )
        self.access = AccessLog(
            enabled=settings.telemetry.access_log,
            sample_rate=settings.telemetry.access_log_sample_rate,
            user_ref=self.obs.user_ref,
        )
        self.servers = build_servers(settings.server, self.service, self.obs, self.access)
        self.mcp = McpEndpoint(
            self.tools,
            max_sessions=settings.mcp.max_client_sessions,
            idle_seconds=settings.mcp.session_idle_seconds,
            max_body=settings.server.max_request_bytes,
        )
        self.health = self.servers.health
        self.http = HttpServer(
            settings.http,
            settings.server,
            self.service,
            self.obs,
            self.access,
            lambda route: settings.models[route].timeout_seconds,
            serving=lambda: self._serving,
            mcp=self.mcp,
        )
        self.health_monitor = HealthMonitor(
            self.router,
            interval_seconds=settings.failover.health_interval_seconds,
            probe_timeout_seconds=settings.failover.probe_timeout_seconds,
            on_serving_change=self._providers_changed,
        )
        # A circuit that opens or closes during calls changes provider health at once,
        # probes or not.
        self.router.events.on_circuit_change = self.health_monitor.publish

    async def start(self) -> None:
        """Check the shared store, bind the listeners and start serving."""
        store_serving = True
        if self.store is not None:
            if not await self.store.ping():
                log.warning(
                    "redis unreachable at start",
                    extra={"durability": self.settings.redis.durability},
                )
            store_serving = self.store.status().serving
        try:
            self.addresses = bind(self.servers, self.settings.server)
            self.http_addresses = await self.http.start() if self.http.enabled else []
        except ListenError:
            await self.http.stop(0)
            await self._release()  # nothing started: only what construction opened
            raise
        await self.servers.start()
        await self.mcp.start()
        # The process's own health: SERVING from now until SIGTERM. Provider and Redis
        # outages are shared by every pod, so they have health names of their own and
        # never reach the probes, which would restart or unready every pod at once.
        for name in HEALTH_SERVICES:
            await self.health.set(name, SERVING)
        self._serving = True
        await self.health.set(
            SHARED_STATE_HEALTH_SERVICE, SERVING if store_serving else NOT_SERVING
        )
        providers_serving = self.health_monitor.publish()
        await self.health.set(
            PROVIDERS_HEALTH_SERVICE, SERVING if providers_serving else NOT_SERVING
        )
        self.health_monitor.start()
        self.monitor.start()
        self._spawn(self._sweep(), "sweeper")
        if self.tools.servers:
            self._spawn(self._watch_tools(), "tool-servers")
        if self.store is not None:
            self._spawn(self._watch_store(store_serving), "store")
        log.info(
            "sidecar started",
            extra={"addresses": self.addresses, "http": self.http_addresses, "pid": os.getpid()},
        )

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def background_tasks(self) -> int:
        """Background tasks running now (sweeper, store watch, health publishing, monitors)."""
        return len(self._tasks) + self.health_monitor.running + self.monitor.running

    def _providers_changed(self, serving: bool) -> None:
        if self._stopping:
            return
        if serving:
            log.info("providers serving: some provider of some route can answer")
        else:
            log.warning("no provider of any route can answer")

        async def publish() -> None:
            # The state now, not the one that scheduled this: changes may have piled up.
            status = SERVING if self.health_monitor.serving else NOT_SERVING
            await self.health.set(PROVIDERS_HEALTH_SERVICE, status)

        self._spawn(publish(), "publish-health")

    async def _watch_store(self, serving: bool) -> None:
        """Ping the shared store; publish its health when it changes."""
        assert self.store is not None
        while True:
            await asyncio.sleep(self.settings.redis.watch_interval_seconds)
            try:
                status = await self.store.check()
            except Exception:
                log.exception("store check failed")
                continue
            if status.serving != serving:
                serving = status.serving
                (log.info if serving else log.warning)(
                    "shared state store", extra={"state": status.state}
                )
                await self.health.set(
                    SHARED_STATE_HEALTH_SERVICE, SERVING if serving else NOT_SERVING
                )

    async def _watch_tools(self) -> None:
        """Publish each MCP server's health (its circuit) under its own name, and the
        whole's under TOOL_SERVERS_HEALTH_SERVICE; never through the probes."""
        known: dict[str, bool] = {}
        while True:
            health = self.tools.health()
            for name, serving in health.items():
                if known.get(name) != serving:
                    (log.info if serving else log.warning)(
                        "MCP server health", extra={"mcp_server": name, "serving": serving}
                    )
                    await self.health.set(
                        f"{TOOL_SERVERS_HEALTH_SERVICE}.{name}", SERVING if serving else NOT_SERVING
                    )
            if health != known:
                whole = SERVING if all(health.values()) else NOT_SERVING
                await self.health.set(TOOL_SERVERS_HEALTH_SERVICE, whole)
            known = health
            await asyncio.sleep(1.0)

    async def _sweep(self) -> None:
        interval = self.settings.managers.sweep_interval_seconds
        while True:
            await asyncio.sleep(interval)
            try:
                await self.tools.sessions.evict_idle()
                await self.registry.evict_idle()
                for manager in self.registry:
                    manager.cache.sweep_expired()
            except Exception:
                log.exception("sweep failed")

    def reload(self, settings: Settings) -> None:
        """Apply a new configuration's reloadable part: the MCP gateway's access rules,
        in force for every tool request from now. The rest needs a restart."""
        rules = wiring.tool_rules(settings)
        self.tools.policy.replace(rules)
        log.info("configuration reloaded", extra={"mcp_rules": len(rules)})

    @property
    def http_url(self) -> str:
        """The base URL of the HTTP listener on TCP (``http://host:port``)."""
        for address in self.http_addresses:
            if address.startswith("http"):
                return address
        raise RuntimeError("no HTTP listener on TCP")

    @property
    def port(self) -> int:
        """The bound TCP port (first TCP listener)."""
        for address in self.addresses:
            if not address.startswith("unix:"):
                return int(address.rsplit(":", 1)[1])
        raise RuntimeError("no TCP listener")

    # -- shutdown ---------------------------------------------------------------------

    async def stop(self, grace: float | None = None) -> None:
        """Drain in-flight calls (up to ``grace`` seconds), then free everything."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        self._serving = False
        start = time.perf_counter()
        grace = self.settings.server.grace_period_seconds if grace is None else grace
        with contextlib.suppress(Exception):
            await self.health.enter_graceful_shutdown()
        drain = self.settings.server.drain_delay_seconds
        if drain > 0:
            # Readiness sees NOT_SERVING while calls are still taken, before listeners close.
            log.info("draining", extra={"seconds": drain})
            await asyncio.sleep(drain)
        await asyncio.gather(self.servers.stop(grace), self.http.stop(grace))
        await self.mcp.stop()
        await self.health_monitor.stop()
        await self.monitor.stop()
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        self.registry.close_all()
        await self._release()
        log.info("sidecar stopped", extra={"seconds": round(time.perf_counter() - start, 3)})
        self._stopped.set()

    async def _release(self) -> None:
        """Close what construction opened: store connections, provider sessions, exporters.
        Each step is bounded: a store that does not answer must not hold the exit."""
        for name, close in (
            ("shared state store", self.state.aclose),
            ("providers", self.pools.aclose),
        ):
            try:
                async with asyncio.timeout(RELEASE_SECONDS):
                    await close()
            except Exception as exc:
                log.warning(
                    "not closed cleanly", extra={"what": name, "error_type": type(exc).__name__}
                )
        self.telemetry.shutdown()

    async def wait_closed(self) -> None:
        """Until stop() has finished."""
        await self._stopped.wait()
