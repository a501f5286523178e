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


def register_gauges(
    meter: Meter,
    *,
    registry: ManagerRegistry,
    budget: CacheBudget,
    router: Router,
    store_status: Callable[[], StoreStatus],
    usage_dropped_users: Callable[[], int] = lambda: 0,
) -> None:
    """Register every gauge; callbacks read the live objects at collection time."""

    def managers(_: CallbackOptions) -> list[Observation]:
        return [Observation(len(registry))]

    def cache_bytes(_: CallbackOptions) -> list[Observation]:
        return [Observation(budget.bytes)]

    def memory(_: CallbackOptions) -> list[Observation]:
        return [Observation(read_rss())]

    def circuits(_: CallbackOptions) -> list[Observation]:
        return [
            Observation(
                _CIRCUIT_VALUES[slot.breaker.state.value], {"llm_sidecar.provider": slot.name}
            )
            for slot in router.slots()
        ]

    def connections(figure: str) -> Callable[[CallbackOptions], list[Observation]]:
        def observe(_: CallbackOptions) -> list[Observation]:
            return [
                Observation(
                    getattr(slot.provider.connections(), figure),
                    {"llm_sidecar.provider": slot.name},
                )
                for slot in router.slots()
                if slot.provider.connections().limit
            ]

        return observe

    def store(_: CallbackOptions) -> list[Observation]:
        status = store_status()
        return [Observation(1 if status.serving else 0, {"llm_sidecar.store.state": status.state})]

    def pending(_: CallbackOptions) -> list[Observation]:
        return [Observation(store_status().pending_writes)]

    def dropped(_: CallbackOptions) -> list[Observation]:
        return [Observation(store_status().dropped_writes)]

    def usage_dropped(_: CallbackOptions) -> list[Observation]:
        return [Observation(usage_dropped_users())]

    meter.create_observable_counter(
        "llm_sidecar.usage.dropped_users",
        [usage_dropped],
        unit="{user}",
        description="Users whose in-memory usage figures were dropped to keep the ledger bound",
    )
    meter.create_observable_gauge(
        "llm_sidecar.store.up", [store], description="1 when the shared store holds all writes"
    )
    meter.create_observable_gauge("llm_sidecar.store.pending_writes", [pending], unit="{write}")
    meter.create_observable_counter("llm_sidecar.store.dropped_writes", [dropped], unit="{write}")
    meter.create_observable_gauge("llm_sidecar.managers.active", [managers], unit="{manager}")
    meter.create_observable_gauge("llm_sidecar.cache.bytes", [cache_bytes], unit="By")
    meter.create_observable_gauge("process.memory.usage", [memory], unit="By")
    meter.create_observable_gauge(
        "llm_sidecar.circuit.state", [circuits], description="0 closed, 1 half-open, 2 open"
    )
    meter.create_observable_gauge(
        "llm_sidecar.provider.connections.in_use",
        [connections("in_use")],
        unit="{connection}",
        description="Provider calls holding a pooled connection",
    )
    meter.create_observable_gauge(
        "llm_sidecar.provider.connections.waiting",
        [connections("waiting")],
        unit="{call}",
        description="Provider calls queued for a free connection",
    )
