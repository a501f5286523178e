"""The composition root: builds every component from Settings and runs them.

Dependencies point one way: transport -> service -> core. This module is the
only place that knows all three, plus the adapters (providers, stores) and
the telemetry SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time

import aiohttp
import grpc

from llm_sidecar.config import Settings
from llm_sidecar.core.admission.resources import ResourceMonitor, Thresholds
from llm_sidecar.core.registry import CacheLimits, LLMManagerFactory, ManagerRegistry, UserLimits
from llm_sidecar.core.routing.breaker import CircuitBreaker
from llm_sidecar.core.routing.chain import ProviderSlot, RetryPolicy
from llm_sidecar.core.routing.health import HealthMonitor
from llm_sidecar.core.routing.router import Router
from llm_sidecar.core.state.cache import CacheBudget
from llm_sidecar.core.state.conversation import (
    ConversationStore,
    HistoryBounds,
    MemoryConversationStore,
)
from llm_sidecar.core.state.store_status import StoreHealth
from llm_sidecar.core.state.turns import TurnWriterFactory
from llm_sidecar.core.state.usage import MemoryUsageLedger, UsageLedger
from llm_sidecar.providers import build_provider
from llm_sidecar.providers._http import new_session
from llm_sidecar.service import LLMService
from llm_sidecar.telemetry.setup import TelemetryHandles, setup_telemetry
from llm_sidecar.transport.server import (
    HEALTH_SERVICES,
    NOT_SERVING,
    SERVING,
    SHARED_STATE_HEALTH_SERVICE,
    build_server,
)

log = logging.getLogger("llm_sidecar")


class Sidecar:
    """One running sidecar: gRPC server, managers, providers and background tasks."""

    def __init__(self, settings: Settings, *, telemetry: TelemetryHandles | None = None) -> None:
        self.settings = settings
        self.telemetry = telemetry or setup_telemetry(settings.telemetry)
        self.obs = self.telemetry.observability
        self.addresses: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._server: grpc.aio.Server | None = None
        self._stopped = asyncio.Event()
        self._stopping = False
        self._closers: list[object] = []
        self.store: StoreHealth | None = None
        self._turn_writers: TurnWriterFactory | None = None

    # -- construction -----------------------------------------------------------------

    def _build_router(self, session: aiohttp.ClientSession) -> Router:
        s = self.settings
        routes: dict[str, list[ProviderSlot]] = {}
        for route_name, route in s.models.items():
            slots = []
            for index, p in enumerate(route.providers):
                slots.append(
                    ProviderSlot(
                        provider=build_provider(p, session),
                        route=route_name,
                        timeout_seconds=p.timeout_seconds,
                        weight=p.weight,
                        priority=index if p.priority is None else p.priority,
                        breaker=CircuitBreaker(
                            failure_threshold=s.failover.failure_threshold,
                            window_seconds=s.failover.failure_window_seconds,
                            cooldown_seconds=s.failover.cooldown_seconds,
                            half_open_max_calls=s.failover.half_open_max_calls,
                        ),
                    )
                )
            routes[route_name] = sorted(slots, key=lambda slot: slot.priority)
        policy = RetryPolicy(
            retry_rounds=s.failover.retry_rounds,
            backoff_base_seconds=s.failover.backoff_base_seconds,
            backoff_max_seconds=s.failover.backoff_max_seconds,
        )
        return Router(routes, default_model=s.default_model, policy=policy, observability=self.obs)

    async def _build_stores(self) -> tuple[ConversationStore, UsageLedger]:
        s = self.settings
        bounds = HistoryBounds(s.history.max_turns, s.history.max_bytes, s.history.ttl_seconds)
        conversations: ConversationStore = MemoryConversationStore(bounds)
        usage: UsageLedger = MemoryUsageLedger()
        if s.redis.url:
            from llm_sidecar.stores.redis import connect_redis_stores, turn_writers

            conversations, usage, backend = await connect_redis_stores(
                s.redis, bounds, conversations, usage
            )
            self.store = backend
            self._turn_writers = turn_writers
            self._closers.append(backend)
        return conversations, usage

    async def start(self) -> None:
        """Build everything, bind the listeners and start serving."""
        s = self.settings
        self._session = new_session()
        self.router = self._build_router(self._session)
        conversations, usage = await self._build_stores()
        self.budget = CacheBudget(s.cache.global_max_bytes)
        self.factory = LLMManagerFactory(
            router=self.router,
            budget=self.budget,
            conversations=conversations,
            usage=usage,
            cache_limits=CacheLimits(
                enabled=s.cache.enabled,
                max_entries=s.cache.max_entries_per_user,
                max_bytes=s.cache.max_bytes_per_user,
                ttl_seconds=s.cache.ttl_seconds,
            ),
            user_limits=UserLimits(
                max_concurrent=s.limits.max_concurrent_per_user,
                tokens_per_minute=s.limits.tokens_per_minute_per_user,
            ),
            observability=self.obs,
            turn_writers=self._turn_writers,
        )
        self.registry = ManagerRegistry(
            self.factory.create_llm_manager,
            max_managers=s.managers.max_managers,
            idle_ttl_seconds=s.managers.idle_ttl_seconds,
        )
        r = s.resources
        self.monitor = ResourceMonitor(
            registry=self.registry,
            budget=self.budget,
            thresholds=Thresholds(
                rss_warning=r.rss_warning_bytes,
                rss_critical=r.rss_critical_bytes,
                cache_warning=int(s.cache.global_max_bytes * r.cache_warning_ratio),
                cache_critical=int(s.cache.global_max_bytes * r.cache_critical_ratio),
                managers_warning=int(s.managers.max_managers * r.managers_warning_ratio),
                managers_critical=int(s.managers.max_managers * r.managers_critical_ratio),
                keep_fraction=r.degraded_keep_fraction,
                keep_turns=r.degraded_keep_turns,
            ),
            in_flight=lambda: self.service.in_flight,
            interval_seconds=r.sample_interval_seconds,
            on_alert=lambda level, what: self.obs.alerts.add(1, {"level": level, "resource": what}),
        )
        self.service = LLMService(
            registry=self.registry,
            factory=self.factory,
            router=self.router,
            monitor=self.monitor,
            max_prompt_chars=s.server.max_prompt_chars,
            store=self.store,
        )
        self._register_gauges()
        self._server, self.health, self.addresses = build_server(s.server, self.service, self.obs)
        self.health_monitor = HealthMonitor(
            self.router,
            interval_seconds=s.failover.health_interval_seconds,
            probe_timeout_seconds=s.failover.probe_timeout_seconds,
            on_serving_change=self._serving_changed,
        )
        await self._server.start()
        for name in HEALTH_SERVICES:
            await self.health.set(name, SERVING)
        store_serving = self.service.store_status().serving
        await self.health.set(
            SHARED_STATE_HEALTH_SERVICE, SERVING if store_serving else NOT_SERVING
        )
        self.health_monitor.start()
        self.monitor.start()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._sweep(), name="sweeper"))
        if self.store is not None:
            self._tasks.append(loop.create_task(self._watch_store(store_serving), name="store"))
        log.info("sidecar started", extra={"addresses": self.addresses, "pid": os.getpid()})

    def _register_gauges(self) -> None:
        from opentelemetry.metrics import CallbackOptions, Observation

        def managers(_: CallbackOptions) -> list[Observation]:
            return [Observation(len(self.registry))]

        def cache_bytes(_: CallbackOptions) -> list[Observation]:
            return [Observation(self.budget.bytes)]

        def memory(_: CallbackOptions) -> list[Observation]:
            from llm_sidecar.core.admission.resources import read_rss

            return [Observation(read_rss())]

        def circuits(_: CallbackOptions) -> list[Observation]:
            values = {"closed": 0, "half_open": 1, "open": 2}
            return [
                Observation(values[slot.breaker.state.value], {"llm_sidecar.provider": slot.name})
                for slot in self.router.slots()
            ]

        def store(_: CallbackOptions) -> list[Observation]:
            status = self.service.store_status()
            return [
                Observation(1 if status.serving else 0, {"llm_sidecar.store.state": status.state})
            ]

        def pending(_: CallbackOptions) -> list[Observation]:
            return [Observation(self.service.store_status().pending_writes)]

        def dropped(_: CallbackOptions) -> list[Observation]:
            return [Observation(self.service.store_status().dropped_writes)]

        meter = self.obs.meter
        meter.create_observable_gauge(
            "llm_sidecar.store.up", [store], description="1 when the shared store holds all writes"
        )
        meter.create_observable_gauge("llm_sidecar.store.pending_writes", [pending], unit="{write}")
        meter.create_observable_counter(
            "llm_sidecar.store.dropped_writes", [dropped], unit="{write}"
        )
        meter.create_observable_gauge("llm_sidecar.managers.active", [managers], unit="{manager}")
        meter.create_observable_gauge("llm_sidecar.cache.bytes", [cache_bytes], unit="By")
        meter.create_observable_gauge("process.memory.usage", [memory], unit="By")
        meter.create_observable_gauge(
            "llm_sidecar.circuit.state", [circuits], description="0 closed, 1 half-open, 2 open"
        )

    def _serving_changed(self, serving: bool) -> None:
        if self._stopping:
            return
        status = SERVING if serving else NOT_SERVING
        (log.info if serving else log.warning)("serving status", extra={"serving": serving})

        async def publish() -> None:
            for name in HEALTH_SERVICES:
                await self.health.set(name, status)

        task = asyncio.get_running_loop().create_task(publish())
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

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

    async def _sweep(self) -> None:
        interval = self.settings.managers.sweep_interval_seconds
        while True:
            await asyncio.sleep(interval)
            try:
                await self.registry.evict_idle()
                for manager in self.registry:
                    manager.cache.sweep_expired()
            except Exception:
                log.exception("sweep failed")

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
        start = time.perf_counter()
        grace = self.settings.server.grace_period_seconds if grace is None else grace
        with contextlib.suppress(Exception):
            await self.health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(grace)
        await self.health_monitor.stop()
        await self.monitor.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self.registry.close_all()
        for closer in self._closers:
            with contextlib.suppress(Exception):
                await closer.aclose()  # type: ignore[attr-defined]
        if self._session is not None:
            await self._session.close()
        self.telemetry.shutdown()
        log.info("sidecar stopped", extra={"seconds": round(time.perf_counter() - start, 3)})
        self._stopped.set()

    async def wait_closed(self) -> None:
        """Until stop() has finished."""
        await self._stopped.wait()
