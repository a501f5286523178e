"""The routing policy without a sidecar: rounds, deadline cuts, Retry-After holds,
trial slots and failover events, each checked for unary and streaming calls alike.

Providers here are scripted stand-ins for upstreams (the router's own code runs
as it does in production); each call takes the next step of its script.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from llm_sidecar.core.observability import Observability
from llm_sidecar.core.routing.breaker import BreakerPolicy, CircuitBreaker, CircuitState
from llm_sidecar.core.routing.chain import ProviderSlot, RetryPolicy
from llm_sidecar.core.routing.router import STREAMING, UNARY, Router
from llm_sidecar.core.vocabulary.errors import (
    DeadlineExceededError,
    ErrorKind,
    ProviderError,
    ProviderUnavailableError,
    StreamInterruptedError,
)
from llm_sidecar.core.vocabulary.models import (
    ChatMessage,
    ChatRequest,
    Completion,
    Routed,
    RoutedCompletion,
    Usage,
)
from tests.support.waiting import eventually

REQUEST = ChatRequest((ChatMessage("user", "hello"),))
MODES = ["unary", "stream"]

Step = Callable[[str], Any]


def ok(name: str) -> Completion:
    return Completion(f"{name} answers", f"id-{name}", f"{name}-model", "stop", Usage(1, 2, 3))


def fail(kind: ErrorKind, retry_after: float | None = None) -> Step:
    def step(name: str) -> Any:
        raise ProviderError(kind, "scripted", retry_after=retry_after)

    return step


def hang(name: str) -> Any:
    return asyncio.Event().wait()  # awaited below: never set


def broken_adapter(name: str) -> Any:
    return {"not": "an event"}.get("x").get("y")  # type: ignore[union-attr]  # AttributeError


class Scripted:
    """A provider that plays one step per call; the last step repeats."""

    system = "test"

    def __init__(self, name: str, *steps: Step) -> None:
        self.name = name
        self.model = f"{name}-model"
        self._steps = list(steps)
        self.calls = 0
        self.cancelled = 0

    def _step(self) -> Step:
        self.calls += 1
        return self._steps.pop(0) if len(self._steps) > 1 else self._steps[0]

    async def _run(self, step: Step) -> Completion:
        try:
            result = step(self.name)
            if asyncio.iscoroutine(result):
                await result
            assert isinstance(result, Completion)
            return result
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def complete(self, request: ChatRequest) -> Completion:
        return await self._run(self._step())

    async def stream(self, request: ChatRequest) -> AsyncIterator[str | Completion]:
        step = self._step()
        if step is ok:
            completion = ok(self.name)
            for word in completion.text.split(" "):
                yield word
            yield completion
            return
        if step is after_first_chunk:
            yield "partial"
            raise ProviderError(ErrorKind.CONNECTION, "scripted")
        yield await self._run(step)

    async def probe(self) -> None:
        return None


def after_first_chunk(name: str) -> Any:
    raise AssertionError("streams only")


class FakeClock:
    """The router's and breakers' clock, moved by the test: holds and cool-downs end
    when the test says, not after a sleep that a busy machine may stretch."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def router(
    *providers: Scripted,
    rounds: int = 0,
    threshold: int = 1,
    cooldown: float = 30.0,
    timeout: float = 5.0,
    obs: Observability | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Router:
    policy = BreakerPolicy(failure_threshold=threshold, cooldown_seconds=cooldown)
    slots = [
        ProviderSlot(
            p,
            "m",
            timeout_seconds=timeout,
            priority=i,
            breaker=CircuitBreaker(policy, clock=clock),
        )
        for i, p in enumerate(providers)
    ]
    return Router(
        {"m": slots},
        default_model="m",
        policy=RetryPolicy(retry_rounds=rounds, backoff_base_seconds=0.001),
        clock=clock,
        **({"observability": obs} if obs else {}),
    )


async def complete(
    r: Router, deadline: float | None = None, validate: Any = None
) -> RoutedCompletion:
    """A unary call through the router's one entry point, consumed to its end."""
    result = None
    async for item in r.route("m", REQUEST, deadline, validate, opener=UNARY):
        if isinstance(item, Routed):
            result = item
    assert result is not None
    return result


def stream(r: Router, deadline: float | None = None) -> AsyncIterator[Any]:
    """A streamed call through the router's one entry point."""
    return r.route("m", REQUEST, deadline, opener=STREAMING)


async def call(r: Router, mode: str, deadline: float | None = None) -> RoutedCompletion:
    if mode == "unary":
        return await complete(r, deadline)
    deltas = []
    async for item in stream(r, deadline):
        if isinstance(item, Routed):
            assert "".join(deltas).replace(" ", "") == item.answer.text.replace(" ", "")
            return item
        deltas.append(item)
    raise AssertionError("the stream ended without a result")


def slot(r: Router, name: str) -> ProviderSlot:
    return next(s for s in r.slots() if s.name == name)


@pytest.mark.parametrize("mode", MODES)
async def test_retry_rounds(mode: str) -> None:
    only = Scripted("only", fail(ErrorKind.SERVER_ERROR), ok)
    r = router(only, rounds=1, threshold=10)
    result = await call(r, mode)
    assert result.provider == "only" and only.calls == 2
    assert [(a.outcome, a.error_type) for a in result.attempts] == [
        ("error", "server_error"),
        ("ok", ""),
    ]


@pytest.mark.parametrize("mode", MODES)
async def test_no_round_without_retry_rounds(mode: str) -> None:
    only = Scripted("only", fail(ErrorKind.SERVER_ERROR), ok)
    with pytest.raises(ProviderUnavailableError):
        await call(router(only, rounds=0, threshold=10), mode)
    assert only.calls == 1


@pytest.mark.parametrize("mode", MODES)
async def test_deadline_cut_spares_the_breaker_and_cancels_the_call(mode: str) -> None:
    slow = Scripted("slow", hang)
    r = router(slow, threshold=1, timeout=5.0)
    deadline = time.monotonic() + 0.1
    with pytest.raises(DeadlineExceededError) as info:
        await call(r, mode, deadline)
    assert [a.outcome for a in info.value.attempts] == ["deadline"]
    assert slow.cancelled == 1
    # Running out of the caller's time says nothing about the provider.
    state = slot(r, "slow")
    assert state.breaker.state is CircuitState.CLOSED and state.stats.failures == 0


@pytest.mark.parametrize("mode", MODES)
async def test_provider_timeout_counts_and_fails_over_with_a_full_event(mode: str) -> None:
    exporter = InMemorySpanExporter()
    tracer = TracerProvider()
    tracer.add_span_processor(SimpleSpanProcessor(exporter))
    obs = Observability(tracer)
    primary, fallback = Scripted("primary", hang), Scripted("fallback", ok)
    r = router(primary, fallback, threshold=1, timeout=0.05, obs=obs)
    with obs.span("request", SpanKind.SERVER, {}):
        result = await call(r, mode)
    assert result.provider == "fallback"
    assert [(a.provider, a.outcome, a.error_type) for a in result.attempts] == [
        ("primary", "timeout", "timeout"),
        ("fallback", "ok", ""),
    ]
    assert slot(r, "primary").breaker.state is CircuitState.OPEN
    (request_span,) = [s for s in exporter.get_finished_spans() if s.name == "request"]
    (event,) = [e for e in request_span.events if e.name == "llm_sidecar.failover"]
    assert dict(event.attributes or {}) == {
        "llm_sidecar.from_provider": "primary",
        "llm_sidecar.to_provider": "fallback",
        "error.type": "timeout",
    }
    attempt_spans = [s for s in exporter.get_finished_spans() if s.name.startswith("chat ")]
    assert [(s.attributes or {}).get("error.type") for s in attempt_spans] == ["timeout", None]


@pytest.mark.parametrize("mode", MODES)
async def test_retry_after_holds_the_provider_for_everyone_without_opening_it(mode: str) -> None:
    primary = Scripted("primary", fail(ErrorKind.RATE_LIMITED, retry_after=0.3), ok)
    fallback = Scripted("fallback", ok)
    clock = FakeClock()
    r = router(primary, fallback, threshold=1, clock=clock)
    first = await call(r, mode)
    assert first.provider == "fallback" and primary.calls == 1
    # Another caller inside the window: the primary is not asked at all.
    second = await call(r, mode)
    assert second.provider == "fallback" and primary.calls == 1
    assert [(a.provider, a.outcome) for a in second.attempts] == [
        ("primary", "skipped_retry_after"),
        ("fallback", "ok"),
    ]
    # A schedule, not ill health: the circuit stayed closed.
    assert slot(r, "primary").breaker.state is CircuitState.CLOSED
    clock.advance(0.29)
    assert (await call(r, mode)).provider == "fallback" and primary.calls == 1
    clock.advance(0.02)
    assert (await call(r, mode)).provider == "primary"


@pytest.mark.parametrize("mode", MODES)
async def test_a_round_waits_for_a_held_provider(mode: str) -> None:
    only = Scripted("only", fail(ErrorKind.RATE_LIMITED, retry_after=0.2), ok)
    r = router(only, rounds=1)
    start = asyncio.get_running_loop().time()
    result = await call(r, mode)
    assert asyncio.get_running_loop().time() - start >= 0.2
    assert [a.outcome for a in result.attempts] == ["error", "ok"]


@pytest.mark.parametrize("mode", MODES)
async def test_an_adapter_bug_fails_over_and_frees_the_trial_slot(mode: str) -> None:
    flaky = Scripted("flaky", fail(ErrorKind.SERVER_ERROR), broken_adapter, ok)
    fallback = Scripted("fallback", ok)
    clock = FakeClock()
    r = router(flaky, fallback, threshold=1, cooldown=0.05, clock=clock)
    assert (await call(r, mode)).provider == "fallback"  # opens the circuit
    clock.advance(0.06)
    result = await call(r, mode)  # the half-open trial meets the adapter bug
    assert result.provider == "fallback"
    assert result.attempts[0].error_type == "bad_response"
    assert slot(r, "flaky").breaker.state is CircuitState.OPEN  # a verdict, not a leak
    clock.advance(0.06)
    assert (await call(r, mode)).provider == "flaky"  # a new trial was let through
    assert slot(r, "flaky").breaker.state is CircuitState.CLOSED


@pytest.mark.parametrize("mode", MODES)
async def test_cancelled_trial_frees_its_slot(mode: str) -> None:
    slow = Scripted("slow", fail(ErrorKind.SERVER_ERROR), hang, ok)
    clock = FakeClock()
    r = router(slow, threshold=1, cooldown=0.02, clock=clock)
    with pytest.raises(ProviderUnavailableError):
        await call(r, mode)
    clock.advance(0.03)
    task = asyncio.ensure_future(call(r, mode))
    await eventually(lambda: slow.calls == 2, what="the trial call started")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert slot(r, "slow").breaker.state is CircuitState.HALF_OPEN
    assert (await call(r, mode)).provider == "slow"


async def test_invalid_output_fails_over_but_spares_the_breaker() -> None:
    primary, fallback = Scripted("primary", ok), Scripted("fallback", ok)
    r = router(primary, fallback, threshold=1)

    def validate(completion: Completion) -> str:
        if completion.text.startswith("primary"):
            raise ProviderError(ErrorKind.INVALID_OUTPUT, "not the schema")
        return "checked"

    result = await complete(r, validate=validate)
    assert result.provider == "fallback" and result.document == "checked"
    assert slot(r, "primary").breaker.state is CircuitState.CLOSED


async def test_stream_never_fails_over_after_a_chunk_was_sent() -> None:
    primary, fallback = Scripted("primary", after_first_chunk), Scripted("fallback", ok)
    r = router(primary, fallback, threshold=10)
    received = []
    with pytest.raises(StreamInterruptedError):
        async for item in stream(r):
            received.append(item)
    assert received == ["partial"] and fallback.calls == 0


async def test_request_rejection_goes_back_to_the_caller() -> None:
    primary, fallback = Scripted("primary", fail(ErrorKind.REQUEST_REJECTED)), Scripted("f", ok)
    r = router(primary, fallback, threshold=1)
    with pytest.raises(Exception, match="rejected the request"):
        await complete(r)
    assert fallback.calls == 0 and slot(r, "primary").breaker.state is CircuitState.CLOSED
