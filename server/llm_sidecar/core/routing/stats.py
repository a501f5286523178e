"""Rolling figures of one provider for the admin view and health decisions."""

from __future__ import annotations

from collections import deque


class ProviderStats:
    """Recent outcomes and latencies (bounded rings, O(1) per call)."""

    def __init__(self, window: int = 256) -> None:
        self.requests = 0
        self.failures = 0
        self.last_error_type = ""
        self._outcomes: deque[bool] = deque(maxlen=window)
        self._latencies_ms: deque[float] = deque(maxlen=window)

    def record(self, ok: bool, latency_ms: float, error_type: str = "") -> None:
        """Add one attempt's outcome."""
        self.requests += 1
        self._outcomes.append(ok)
        self._latencies_ms.append(latency_ms)
        if not ok:
            self.failures += 1
            self.last_error_type = error_type

    @property
    def error_rate(self) -> float:
        """Share of failed attempts among the recent ones."""
        if not self._outcomes:
            return 0.0
        return 1.0 - sum(self._outcomes) / len(self._outcomes)

    def latency_percentile(self, q: float) -> float:
        """Latency percentile (0..1) over recent attempts, in ms."""
        if not self._latencies_ms:
            return 0.0
        ordered = sorted(self._latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
