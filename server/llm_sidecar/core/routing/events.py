"""What routing tells an operator: one log line per event, naming the provider and route.

Circuit changes, failovers, Retry-After holds, exhausted connection pools and
refused credentials are what an operator acts on during an outage, so each is
logged once, when it happens, with the provider's configured name and the
route (never a user id or any text of a request). A circuit change is also an
event on the current span; the router adds the other moments' span events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from llm_sidecar.core.observability import genai
from llm_sidecar.core.routing.breaker import CircuitState
from llm_sidecar.core.vocabulary.errors import ErrorKind, ProviderError

log = logging.getLogger("llm_sidecar.routing")


class RoutingEvents:
    """Logs routing events, and tells a listener when a circuit changes (provider
    health is republished from it)."""

    def __init__(self) -> None:
        #: Called after any circuit changed state.
        self.on_circuit_change: Callable[[], object] | None = None

    def circuit(self, provider: str, route: str, old: CircuitState, new: CircuitState) -> None:
        """A provider's circuit moved from ``old`` to ``new``."""
        level = logging.WARNING if new is CircuitState.OPEN else logging.INFO
        log.log(
            level,
            f"circuit {new.value}",
            extra={"provider": provider, "route": route, "from_state": old.value},
        )
        # On the current span: the failed attempt's when a call's failure opened it.
        genai.event(
            "llm_sidecar.circuit.state_change",
            {"llm_sidecar.provider": provider, "from": old.value, "to": new.value},
        )
        if self.on_circuit_change is not None:
            self.on_circuit_change()

    def failover(self, route: str, from_provider: str, to_provider: str, error_type: str) -> None:
        """A call moved on to the next provider of its chain."""
        log.info(
            "failover",
            extra={
                "route": route,
                "from_provider": from_provider,
                "to_provider": to_provider,
                "error_type": error_type,
            },
        )

    def held(self, provider: str, route: str, seconds: float) -> None:
        """A provider asked not to be called for ``seconds`` (Retry-After)."""
        log.warning(
            "provider held (Retry-After)",
            extra={"provider": provider, "route": route, "hold_seconds": round(seconds, 3)},
        )

    def adapter_failed(self, provider: str, route: str, exc: Exception) -> None:
        """An adapter raised what it should not have: a bug, logged as one (the attempt
        fails over like a bad answer)."""
        log.error(
            "provider adapter failed",
            extra={"provider": provider, "route": route, "error_type": type(exc).__name__},
        )

    # -- decisions, at DEBUG (``telemetry.log_level = "debug"``) ----------------------

    def attempting(self, route: str, provider: str, round_no: int) -> None:
        """The provider a call tries now, in which round of its chain."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug("attempt", extra={"route": route, "provider": provider, "round": round_no})

    def retrying(self, route: str, round_no: int, delay: float) -> None:
        """Every provider of the chain failed; another round follows after ``delay``."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "retry round",
                extra={"route": route, "round": round_no + 1, "delay_seconds": round(delay, 3)},
            )

    def answered(self, route: str, provider: str, attempts: int) -> None:
        """The provider that answered, after how many tries."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "answered", extra={"route": route, "provider": provider, "attempts": attempts}
            )

    def attempt_failed(self, provider: str, route: str, error: ProviderError) -> None:
        """One attempt failed: refused credentials and a full connection pool are worth an
        operator's attention on their own; other kinds show in failovers and circuits."""
        if error.kind is ErrorKind.AUTH:
            log.warning(
                "provider refused the credentials",
                extra={"provider": provider, "route": route, "http_status": error.status},
            )
        elif error.kind is ErrorKind.POOL_EXHAUSTED:
            log.warning(
                "provider connection pool exhausted", extra={"provider": provider, "route": route}
            )
