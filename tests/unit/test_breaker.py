"""The circuit breaker's state machine, driven by a fake clock."""

from __future__ import annotations

from llm_sidecar.core.routing.breaker import BreakerPolicy, CircuitBreaker, CircuitState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _breaker(clock: Clock, **kwargs: float) -> CircuitBreaker:
    policy = BreakerPolicy(
        failure_threshold=int(kwargs.get("threshold", 3)),
        window_seconds=kwargs.get("window", 10.0),
        cooldown_seconds=kwargs.get("cooldown", 5.0),
        half_open_max_calls=int(kwargs.get("trials", 1)),
    )
    return CircuitBreaker(policy, clock=clock)


def test_opens_after_threshold_within_window_only() -> None:
    clock = Clock()
    breaker = _breaker(clock)
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


def test_half_open_admits_limited_trials_and_closes_on_success() -> None:
    clock = Clock()
    breaker = _breaker(clock, threshold=1, trials=2)
    breaker.on_failure()
    clock.now += 5
    assert breaker.state is CircuitState.HALF_OPEN and breaker.retry_after() == 0.0
    assert breaker.try_acquire() and breaker.try_acquire()
    assert not breaker.try_acquire()  # both trial slots taken
    breaker.on_abandon()  # a cancelled trial gives its slot back
    assert breaker.try_acquire()
    breaker.on_success()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.try_acquire() and breaker.try_acquire() and breaker.try_acquire()


def test_failed_trial_reopens_for_a_full_cooldown() -> None:
    clock = Clock()
    breaker = _breaker(clock, threshold=1)
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
    breaker = _breaker(clock, threshold=1, cooldown=60)
    breaker.on_failure()
    breaker.on_probe_success()
    assert breaker.state is CircuitState.HALF_OPEN
    breaker.on_probe_success()  # not open: nothing changes
    assert breaker.state is CircuitState.HALF_OPEN


def test_permit_frees_its_trial_slot_on_any_exit_without_a_verdict() -> None:
    clock = Clock()
    breaker = _breaker(clock, threshold=1)
    breaker.on_failure()
    clock.now += 5
    permit = breaker.acquire()
    assert permit is not None and breaker.acquire() is None  # the one trial is taken
    try:
        with permit:
            raise RuntimeError("the adapter blew up")
    except RuntimeError:
        pass
    assert breaker.state is CircuitState.HALF_OPEN
    again = breaker.acquire()
    assert again is not None  # the slot came back
    with again:
        again.success()
    assert breaker.state is CircuitState.CLOSED


def test_permit_records_exactly_one_verdict() -> None:
    clock = Clock()
    breaker = _breaker(clock, threshold=2)
    permit = breaker.acquire()
    assert permit is not None
    with permit:
        permit.failure()
        permit.failure()  # ignored: one call, one verdict
    assert breaker.state is CircuitState.CLOSED
    second = breaker.acquire()
    assert second is not None
    with second:
        second.failure()
    assert breaker.state is CircuitState.OPEN
