"""Background health probes that feed the breakers and detect recovery."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from llm_sidecar.core.background import BackgroundTask, Periodic
from llm_sidecar.core.routing.breaker import CircuitState
from llm_sidecar.core.routing.chain import ProviderSlot
from llm_sidecar.core.routing.router import Router
from llm_sidecar.core.vocabulary.errors import ProviderError

log = logging.getLogger(__name__)


class HealthMonitor(Periodic):
    """Probes every provider every ``interval`` seconds.

    A failed probe counts as a failure on the provider's breaker, so a dead
    provider is opened without any user paying for it; a good probe on an open
    circuit moves it to half-open, so recovery is noticed without waiting for
    the whole cool-down.
    """

    def __init__(
        self,
        router: Router,
        *,
        interval_seconds: float,
        probe_timeout_seconds: float,
        on_serving_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.router = router
        self.interval = interval_seconds
        self.probe_timeout = probe_timeout_seconds
        self._on_serving_change = on_serving_change
        self._serving: bool | None = None
        self._loop = BackgroundTask("health-monitor")

    async def probe_once(self) -> None:
        """Probe every provider once, concurrently."""
        await asyncio.gather(*(self._probe(slot) for slot in self.router.slots()))
        self.publish()

    @property
    def serving(self) -> bool:
        """Whether some provider of some route can answer, as last published."""
        return bool(self._serving)

    def publish(self) -> bool:
        """Re-evaluate provider health; tell the listener when it changed. The first call
        only records it. Returns whether some provider can answer."""
        serving = self.router.any_serving()
        if serving != self._serving:
            first = self._serving is None
            self._serving = serving
            if not first and self._on_serving_change is not None:
                self._on_serving_change(serving)
        return serving

    async def _probe(self, slot: ProviderSlot) -> None:
        try:
            async with asyncio.timeout(self.probe_timeout):
                await slot.provider.probe()
        except (ProviderError, TimeoutError) as exc:
            kind = exc.kind.value if isinstance(exc, ProviderError) else "timeout"
            if slot.healthy:
                log.warning(
                    "provider probe failed", extra={"provider": slot.name, "error_type": kind}
                )
            slot.healthy = False
            slot.breaker.on_failure()
            return
        if not slot.healthy:
            log.info("provider recovered", extra={"provider": slot.name})
        slot.healthy = True
        if slot.breaker.state is CircuitState.OPEN:
            slot.breaker.on_probe_success()

    async def _run(self) -> None:
        while True:
            try:
                await self.probe_once()
            except Exception:  # a monitor that dies silently is worse than a noisy one
                log.exception("health probe round failed")
            await asyncio.sleep(self.interval)
