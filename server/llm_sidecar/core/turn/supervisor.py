"""Resource monitoring, alerts and graceful degradation.

Three pressures are watched: process RSS, the global cache budget and the
number of managers. Crossing a warning threshold raises an alert; crossing a
critical one enters degraded mode, which sheds memory in an order that hurts
least: stop admitting cache entries, trim caches and histories, and refuse new
users before refusing anything to users already being served. Degraded mode
ends by itself once every pressure is back under its warning threshold.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import resource
from collections.abc import Callable
from dataclasses import dataclass

from llm_sidecar.core.background import BackgroundTask, Periodic
from llm_sidecar.core.state.cache import CacheBudget
from llm_sidecar.core.turn.registry import ManagerRegistry

log = logging.getLogger(__name__)

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def read_rss() -> int:
    """Resident set size of this process in bytes."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Mode(enum.Enum):
    NORMAL = "normal"
    WARNING = "warning"
    DEGRADED = "degraded"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Limits in absolute figures (0 disables one)."""

    rss_warning: int = 0
    rss_critical: int = 0
    cache_warning: int = 0
    cache_critical: int = 0
    managers_warning: int = 0
    managers_critical: int = 0
    keep_fraction: float = 0.5
    keep_turns: int = 10


DEFAULT_THRESHOLDS = Thresholds()
DEFAULT_SAMPLE_INTERVAL_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class ResourceSnapshot:
    """One sample of the figures and the mode they put the sidecar in."""

    mode: Mode
    rss_bytes: int
    managers: int
    cache_entries: int
    cache_bytes: int
    in_flight: int
    alerts: tuple[str, ...]


class ResourceMonitor(Periodic):
    """Samples figures, raises alerts and switches degraded mode."""

    def __init__(
        self,
        *,
        registry: ManagerRegistry,
        budget: CacheBudget,
        thresholds: Thresholds,
        in_flight: Callable[[], int],
        interval_seconds: float = DEFAULT_SAMPLE_INTERVAL_SECONDS,
        rss_reader: Callable[[], int] = read_rss,
        on_alert: Callable[[str, str], None] | None = None,
    ) -> None:
        self.registry = registry
        self.budget = budget
        self.thresholds = thresholds
        self.interval = interval_seconds
        self._in_flight = in_flight
        self._rss = rss_reader
        self._on_alert = on_alert
        self.mode = Mode.NORMAL
        self._loop = BackgroundTask("resource-monitor")
        self.last: ResourceSnapshot | None = None

    @staticmethod
    def _level(value: int, warning: int, critical: int) -> int:
        if critical and value >= critical:
            return 2
        if warning and value >= warning:
            return 1
        return 0

    def _snapshot(self, rss: int, alerts: tuple[str, ...]) -> ResourceSnapshot:
        return ResourceSnapshot(
            mode=self.mode,
            rss_bytes=rss,
            managers=len(self.registry),
            cache_entries=self.budget.entries,
            cache_bytes=self.budget.bytes,
            in_flight=self._in_flight(),
            alerts=alerts,
        )

    def sample(self) -> ResourceSnapshot:
        """Take a sample, act on it (alerts, mode switches), and return it."""
        t = self.thresholds
        rss, managers, cache_bytes = self._rss(), len(self.registry), self.budget.bytes
        checks = (
            ("rss_bytes", rss, t.rss_warning, t.rss_critical),
            ("cache_bytes", cache_bytes, t.cache_warning, t.cache_critical),
            ("managers", managers, t.managers_warning, t.managers_critical),
        )
        alerts: list[str] = []
        level = 0
        for name, value, warning, critical in checks:
            this = self._level(value, warning, critical)
            if this:
                limit = critical if this == 2 else warning
                alerts.append(f"{name} {value} >= {'critical' if this == 2 else 'warning'} {limit}")
            level = max(level, this)
        new_mode = (Mode.NORMAL, Mode.WARNING, Mode.DEGRADED)[level]
        if self.mode is Mode.DEGRADED and new_mode is Mode.WARNING:
            new_mode = Mode.DEGRADED  # hysteresis: leave only once under every warning line
        self._switch(new_mode, alerts)
        self.last = self._snapshot(rss, tuple(alerts))
        return self.last

    def read(self) -> ResourceSnapshot:
        """Current figures with the mode and alerts of the last sample. Changes nothing:
        only the sampling task (or :meth:`sample`) raises alerts and switches modes."""
        return self._snapshot(self._rss(), self.last.alerts if self.last is not None else ())

    def _switch(self, new: Mode, alerts: list[str]) -> None:
        old = self.mode
        if new is not Mode.NORMAL and (new is not old or alerts):
            for alert in alerts:
                if new is not old:
                    level = "critical" if new is Mode.DEGRADED else "warning"
                    log.warning("resource alert", extra={"alert": alert, "level": level})
                    if self._on_alert is not None:
                        self._on_alert(level, alert.split(" ", 1)[0])
        if new is old:
            return
        self.mode = new
        if new is Mode.DEGRADED:
            self._enter_degraded()
        elif old is Mode.DEGRADED:
            self._leave_degraded()
        log.info("resource mode changed", extra={"from_mode": old.value, "to_mode": new.value})

    def _enter_degraded(self) -> None:
        self.budget.admitting = False
        self.registry.admitting_new = False
        for manager in self.registry:
            manager.trim(self.thresholds.keep_fraction, self.thresholds.keep_turns)

    def _leave_degraded(self) -> None:
        self.budget.admitting = True
        self.registry.admitting_new = True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.sample()
            except Exception:
                log.exception("resource sample failed")
