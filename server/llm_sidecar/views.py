"""What the operator surfaces show of the providers: each with its circuit, health and
recent figures."""

from __future__ import annotations

from dataclasses import dataclass

from llm_sidecar.core.routing.router import Router
from llm_sidecar.core.vocabulary.providers import Connections


@dataclass(frozen=True, slots=True)
class ProviderView:
    """Admin view of one provider."""

    name: str
    route: str
    circuit_state: str
    healthy: bool
    error_rate: float
    latency_p50_ms: float
    latency_p99_ms: float
    requests: int
    failures: int
    last_error_type: str
    connections: Connections


def provider_views(router: Router) -> list[ProviderView]:
    """Every provider of every route, as the admin surface shows it."""
    return [
        ProviderView(
            name=slot.name,
            route=slot.route,
            circuit_state=slot.breaker.state.value,
            healthy=slot.healthy,
            error_rate=slot.stats.error_rate,
            latency_p50_ms=slot.stats.latency_percentile(0.5),
            latency_p99_ms=slot.stats.latency_percentile(0.99),
            requests=slot.stats.requests,
            failures=slot.stats.failures,
            last_error_type=slot.stats.last_error_type,
            connections=slot.provider.connections(),
        )
        for slot in router.slots()
    ]
