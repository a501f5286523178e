"""Circuit breaker of one provider: closed, open, half-open.

Closed counts failures in a sliding window; reaching the threshold opens the
circuit. Open refuses at once (no network call) until the cool-down ends, then
half-open lets a limited number of trial calls through: a success closes the
circuit, a failure opens it again.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType


class CircuitState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a circuit opens and how it recovers."""

    #: Failures within ``window_seconds`` that open the circuit.
    failure_threshold: int = 5
    window_seconds: float = 30.0
    #: Open -> half-open after this long.
    cooldown_seconds: float = 15.0
    #: Trial calls let through while half-open.
    half_open_max_calls: int = 1


DEFAULT_BREAKER_POLICY = BreakerPolicy()


class CircuitBreaker:
    """Thread-unsafe by design: it lives on the event loop."""

    def __init__(
        self,
        policy: BreakerPolicy = DEFAULT_BREAKER_POLICY,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = policy.failure_threshold
        self.window_seconds = policy.window_seconds
        self.cooldown_seconds = policy.cooldown_seconds
        self.half_open_max_calls = policy.half_open_max_calls
        self._clock = clock
        self._state = CircuitState.CLOSED
        self._failures: deque[float] = deque()
        self._opened_at = 0.0
        self._trials = 0
        #: Told of every change of state (old, new): the router logs it and republishes
        #: provider health.
        self.on_change: Callable[[CircuitState, CircuitState], None] | None = None

    def _transition(self, new: CircuitState) -> None:
        old, self._state = self._state, new
        if new is CircuitState.OPEN:
            self._opened_at = self._clock()
        if new is not CircuitState.CLOSED:
            self._trials = 0
        if new is CircuitState.CLOSED:
            self._failures.clear()
        if self.on_change is not None and old is not new:
            self.on_change(old, new)

    @property
    def state(self) -> CircuitState:
        """Current state; an open circuit whose cool-down ended reads as half-open."""
        if (
            self._state is CircuitState.OPEN
            and self._clock() - self._opened_at >= self.cooldown_seconds
        ):
            self._transition(CircuitState.HALF_OPEN)
        return self._state

    def try_acquire(self) -> bool:
        """Whether a call may go out now. In half-open, takes one trial slot."""
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.HALF_OPEN and self._trials < self.half_open_max_calls:
            self._trials += 1
            return True
        return False

    def acquire(self) -> Permit | None:
        """A permit for one call, or None when the circuit refuses it now.

        Use the permit as a context manager: leaving the block without a
        verdict (an exception, a cancellation, a closed generator) frees a
        half-open trial slot, so no path can leak one.
        """
        return Permit(self) if self.try_acquire() else None

    def on_success(self) -> None:
        """A call (or probe in half-open) succeeded."""
        if self._state is CircuitState.HALF_OPEN:
            self._transition(CircuitState.CLOSED)

    def on_failure(self) -> None:
        """A call failed in a way that says the provider is unhealthy."""
        now = self._clock()
        state = self.state
        if state is CircuitState.HALF_OPEN:
            self._transition(CircuitState.OPEN)
            return
        if state is CircuitState.OPEN:
            return
        self._failures.append(now)
        horizon = now - self.window_seconds
        while self._failures and self._failures[0] < horizon:
            self._failures.popleft()
        if len(self._failures) >= self.failure_threshold:
            self._transition(CircuitState.OPEN)

    def on_abandon(self) -> None:
        """A trial call ended without a verdict (cancelled): free its slot."""
        if self._state is CircuitState.HALF_OPEN and self._trials > 0:
            self._trials -= 1

    def on_probe_success(self) -> None:
        """A health probe succeeded: an open circuit may try real calls again."""
        if self.state is CircuitState.OPEN:
            self._transition(CircuitState.HALF_OPEN)

    def retry_after(self) -> float:
        """Seconds until an open circuit lets a trial through (0 when not open)."""
        if self.state is not CircuitState.OPEN:
            return 0.0
        return max(0.0, self.cooldown_seconds - (self._clock() - self._opened_at))


class Permit:
    """Leave to make one call through a breaker; records exactly one verdict."""

    __slots__ = ("_breaker", "_settled")

    def __init__(self, breaker: CircuitBreaker) -> None:
        self._breaker = breaker
        self._settled = False

    def success(self) -> None:
        """The call succeeded."""
        if not self._settled:
            self._settled = True
            self._breaker.on_success()

    def failure(self) -> None:
        """The call failed in a way that says the provider is unhealthy."""
        if not self._settled:
            self._settled = True
            self._breaker.on_failure()

    def release(self) -> None:
        """The call ended without a verdict on the provider's health."""
        if not self._settled:
            self._settled = True
            self._breaker.on_abandon()

    def __enter__(self) -> Permit:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
