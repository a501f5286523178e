"""The circuit breaker's state machine, driven by a fake clock."""

from __future__ import annotations

from llm_sidecar.core.routing.breaker import CircuitBreaker, CircuitState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _breaker(clock: Clock, **kwargs: float) -> tuple[CircuitBreaker, list[tuple[str, str]]]:
    changes: list[tuple[str, str]] = []
    breaker = CircuitBreaker(
        failure_threshold=int(kwargs.get("threshold", 3)),
        window_seconds=kwargs.get("window", 10.0),
        cooldown_seconds=kwargs.get("cooldown", 5.0),
        half_open_max_calls=int(kwargs.get("trials", 1)),
        clock=clock,
        on_change=lambda old, new: changes.append((old.value, new.value)),
    )
    return breaker, changes


def test_opens_after_threshold_within_window_only() -> None:
    clock = Clock()
    breaker, changes = _breaker(clock)
    breaker.on_failure()
    breaker.on_failure()
    clock.now += 11  # both fall out of the window
    breaker.on_failure()
    breaker.on_failure()
    assert breaker.state is CircuitState.CLOSED and breaker.try_acquire()
    breaker.on_failure()
    assert breaker.state is CircuitState.OPEN
    assert not breaker.try_acquire()
    assert breaker.retry_after() == 5.0
    assert changes == [("closed", "open")]


def test_half_open_admits_limited_trials_and_closes_on_success() -> None:
    clock = Clock()
    breaker, changes = _breaker(clock, threshold=1, trials=2)
    breaker.on_failure()
    clock.now += 5
    assert breaker.state is CircuitState.HALF_OPEN and breaker.retry_after() == 0.0
    assert breaker.try_acquire() and breaker.try_acquire()
    assert not breaker.try_acquire()  # both trial slots taken
    breaker.on_abandon()  # a cancelled trial gives its slot back
    assert breaker.try_acquire()
    breaker.on_success()
    assert breaker.state is CircuitState.CLOSED
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_failed_trial_reopens_for_a_full_cooldown() -> None:
    clock = Clock()
    breaker, _ = _breaker(clock, threshold=1)
    breaker.on_failure()
    clock.now += 5
    assert breaker.try_acquire()
    breaker.on_failure()
    assert breaker.state is CircuitState.OPEN
    clock.now += 4.9
    assert not breaker.try_acquire()
    clock.now += 0.1
    assert breaker.try_acquire()


def test_probe_success_moves_open_to_half_open_early() -> None:
    clock = Clock()
    breaker, _ = _breaker(clock, threshold=1, cooldown=60)
    breaker.on_failure()
    breaker.on_probe_success()
    assert breaker.state is CircuitState.HALF_OPEN
    breaker.on_probe_success()  # not open: nothing changes
    assert breaker.state is CircuitState.HALF_OPEN
