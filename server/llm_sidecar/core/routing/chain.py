"""A model's provider chain: the slots, their order, and how patiently a chain is retried."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from llm_sidecar.core.routing.breaker import CircuitBreaker, CircuitState
from llm_sidecar.core.routing.stats import ProviderStats
from llm_sidecar.core.vocabulary.providers import Provider

#: Per-attempt timeout (idle time between chunks for a stream).
DEFAULT_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a chain is retried."""

    retry_rounds: int = 1
    backoff_base_seconds: float = 0.05
    backoff_max_seconds: float = 2.0
    #: Longest a provider is left alone after it answered with Retry-After.
    max_hold_seconds: float = 60.0

    def backoff(self, round_no: int) -> float:
        """Jittered delay before retry round ``round_no`` (1-based)."""
        ceiling = min(self.backoff_max_seconds, self.backoff_base_seconds * 2 ** (round_no - 1))
        return random.uniform(0, ceiling)


DEFAULT_RETRY_POLICY = RetryPolicy()


@dataclass(slots=True)
class ProviderSlot:
    """A provider in a chain, with its own breaker, timeout and figures."""

    provider: Provider
    route: str
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    weight: float = 1.0
    priority: int = 0
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    stats: ProviderStats = field(default_factory=ProviderStats)
    #: Last health-probe verdict.
    healthy: bool = True
    #: Monotonic time before which the provider asked not to be called (Retry-After).
    hold_until: float = 0.0

    @property
    def name(self) -> str:
        return self.provider.name

    @property
    def serving(self) -> bool:
        """Whether this slot can take a request now: probes pass and the circuit is not open."""
        return self.healthy and self.breaker.state is not CircuitState.OPEN

    def hold(self, now: float, seconds: float) -> None:
        """Leave this provider alone until ``now + seconds`` (for every user)."""
        self.hold_until = max(self.hold_until, now + seconds)

    def wait_seconds(self, now: float) -> float | None:
        """Seconds until this slot may be tried again (0: now), or None when its circuit
        is open and only a cool-down or probe can change that."""
        if self.breaker.state is CircuitState.OPEN:
            return None
        return max(0.0, self.hold_until - now)


def order(slots: Sequence[ProviderSlot]) -> list[ProviderSlot]:
    """Chain order: by priority; equal priorities in weighted random order."""
    return sorted(
        slots, key=lambda s: (s.priority, -(random.random() ** (1.0 / max(s.weight, 1e-9))))
    )
