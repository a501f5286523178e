"""Observable gauges of the sidecar's state: managers, cache, memory, circuits, store."""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from llm_sidecar.core.routing.router import Router
from llm_sidecar.core.state.cache import CacheBudget
from llm_sidecar.core.state.store_status import StoreStatus
from llm_sidecar.core.turn.registry import ManagerRegistry
from llm_sidecar.core.turn.supervisor import read_rss

_CIRCUIT_VALUES = {"closed": 0, "half_open": 1, "open": 2}

Callback = Callable[[CallbackOptions], list[Observation]]


class _Readings:
    """The callbacks: each reads the live objects when the metrics are collected."""

    def __init__(
        self,
        registry: ManagerRegistry,
        budget: CacheBudget,
        router: Router,
        store_status: Callable[[], StoreStatus],
        usage_dropped_users: Callable[[], int],
    ) -> None:
        self.registry = registry
        self.budget = budget
        self.router = router
        self.store_status = store_status
        self.usage_dropped_users = usage_dropped_users

    def managers(self, options: CallbackOptions) -> list[Observation]:
        return [Observation(len(self.registry))]

    def cache_bytes(self, options: CallbackOptions) -> list[Observation]:
        return [Observation(self.budget.bytes)]

    def memory(self, options: CallbackOptions) -> list[Observation]:
        return [Observation(read_rss())]

    def circuits(self, options: CallbackOptions) -> list[Observation]:
        return [
            Observation(
                _CIRCUIT_VALUES[slot.breaker.state.value], {"llm_sidecar.provider": slot.name}
            )
            for slot in self.router.slots()
        ]

    def connections(self, figure: str) -> Callback:
        def observe(options: CallbackOptions) -> list[Observation]:
            return [
                Observation(
                    getattr(slot.provider.connections(), figure),
                    {"llm_sidecar.provider": slot.name},
                )
                for slot in self.router.slots()
                if slot.provider.connections().limit
            ]

        return observe

    def store(self, options: CallbackOptions) -> list[Observation]:
        status = self.store_status()
        return [Observation(1 if status.serving else 0, {"llm_sidecar.store.state": status.state})]

    def pending(self, options: CallbackOptions) -> list[Observation]:
        return [Observation(self.store_status().pending_writes)]

    def dropped(self, options: CallbackOptions) -> list[Observation]:
        return [Observation(self.store_status().dropped_writes)]

    def usage_dropped(self, options: CallbackOptions) -> list[Observation]:
        return [Observation(self.usage_dropped_users())]


def register_gauges(
    meter: Meter,
    *,
    registry: ManagerRegistry,
    budget: CacheBudget,
    router: Router,
    store_status: Callable[[], StoreStatus],
    usage_dropped_users: Callable[[], int] = lambda: 0,
    mcp_sessions: Callable[[], int] = lambda: 0,
) -> None:
    """Register every gauge; callbacks read the live objects at collection time."""
    read = _Readings(registry, budget, router, store_status, usage_dropped_users)
    meter.create_observable_gauge(
        "llm_sidecar.mcp.sessions",
        [lambda options: [Observation(mcp_sessions())]],
        unit="{session}",
        description="Upstream MCP sessions open (one per user, user session and server)",
    )
    meter.create_observable_counter(
        "llm_sidecar.usage.dropped_users",
        [read.usage_dropped],
        unit="{user}",
        description="Users whose in-memory usage figures were dropped to keep the ledger bound",
    )
    meter.create_observable_gauge(
        "llm_sidecar.store.up", [read.store], description="1 when the shared store holds all writes"
    )
    meter.create_observable_gauge(
        "llm_sidecar.store.pending_writes", [read.pending], unit="{write}"
    )
    meter.create_observable_counter(
        "llm_sidecar.store.dropped_writes", [read.dropped], unit="{write}"
    )
    meter.create_observable_gauge("llm_sidecar.managers.active", [read.managers], unit="{manager}")
    meter.create_observable_gauge("llm_sidecar.cache.bytes", [read.cache_bytes], unit="By")
    meter.create_observable_gauge("process.memory.usage", [read.memory], unit="By")
    meter.create_observable_gauge(
        "llm_sidecar.circuit.state", [read.circuits], description="0 closed, 1 half-open, 2 open"
    )
    meter.create_observable_gauge(
        "llm_sidecar.provider.connections.in_use",
        [read.connections("in_use")],
        unit="{connection}",
        description="Provider calls holding a pooled connection",
    )
    meter.create_observable_gauge(
        "llm_sidecar.provider.connections.waiting",
        [read.connections("waiting")],
        unit="{call}",
        description="Provider calls queued for a free connection",
    )
