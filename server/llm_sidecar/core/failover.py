"""The router: ordered provider chains per model, failover, retries and breakers.

Policy, explicitly:

* A chain is tried in order (providers of equal priority in weighted random
  order). An open circuit is skipped without a network call.
* Failing over happens on timeouts, connection errors, 429, 5xx, auth errors
  and malformed bodies. A 400-class rejection of the request itself is not
  retried anywhere: it goes back to the caller.
* A structured answer that is not valid against the schema fails over too,
  but does not count against the provider's health.
* When the whole chain failed with transient errors, it is tried again after
  an exponential backoff with full jitter (at least any Retry-After), up to
  ``retry_rounds`` more times.
* Nothing runs past the caller's deadline: every attempt's timeout is cut to
  the time left, and a backoff that would end after it is not slept.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, NoReturn

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from llm_sidecar.core.breaker import CircuitBreaker, CircuitState
from llm_sidecar.core.errors import (
    AttemptRecord,
    DeadlineExceededError,
    ErrorKind,
    ProviderError,
    ProviderRejectedError,
    ProviderUnavailableError,
    StreamInterruptedError,
    StructuredOutputError,
    UnknownModelError,
)
from llm_sidecar.core.models import ChatRequest, Completion, RoutedCompletion
from llm_sidecar.core.observability import NO_SPAN, NOOP, Observability
from llm_sidecar.core.providers import Provider
from llm_sidecar.core.stats import ProviderStats

# Below this much time left an attempt cannot finish; fail fast instead.
MIN_ATTEMPT_SECONDS = 0.002


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a chain is retried."""

    retry_rounds: int = 1
    backoff_base_seconds: float = 0.05
    backoff_max_seconds: float = 2.0
    max_retry_after_seconds: float = 10.0

    def backoff(self, round_no: int, retry_after: float | None) -> float:
        """Delay before retry round ``round_no`` (1-based)."""
        ceiling = min(self.backoff_max_seconds, self.backoff_base_seconds * 2 ** (round_no - 1))
        delay = random.uniform(0, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after_seconds))
        return delay


@dataclass(slots=True)
class ProviderSlot:
    """A provider in a chain, with its own breaker, timeout and figures."""

    provider: Provider
    route: str
    timeout_seconds: float = 30.0
    weight: float = 1.0
    priority: int = 0
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    stats: ProviderStats = field(default_factory=ProviderStats)
    #: Last health-probe verdict.
    healthy: bool = True

    @property
    def name(self) -> str:
        return self.provider.name

    @property
    def serving(self) -> bool:
        """Whether this slot can take a request now: probes pass and the circuit is not open."""
        return self.healthy and self.breaker.state is not CircuitState.OPEN


Validate = Callable[[Completion], Any]


def _order(slots: Sequence[ProviderSlot]) -> list[ProviderSlot]:
    """Chain order: by priority; equal priorities in weighted random order."""
    if len({s.priority for s in slots}) == len(slots):
        return sorted(slots, key=lambda s: s.priority)
    return sorted(
        slots, key=lambda s: (s.priority, -(random.random() ** (1.0 / max(s.weight, 1e-9))))
    )


class _AttemptFailed(Exception):
    def __init__(self, error: ProviderError) -> None:
        self.error = error


class Router:
    """Routes chat requests of every user over the configured provider chains.

    The router holds provider health, never user data: a request's messages
    live only in the call that carries them.
    """

    def __init__(
        self,
        routes: dict[str, list[ProviderSlot]],
        *,
        default_model: str,
        policy: RetryPolicy | None = None,
        observability: Observability = NOOP,
    ) -> None:
        if default_model not in routes:
            raise ValueError(f"default model {default_model!r} has no route")
        self.routes = routes
        self.default_model = default_model
        self.policy = policy or RetryPolicy()
        self.obs = observability
        self._clock = time.monotonic
        self._has_ties = {
            name: len({s.priority for s in slots}) != len(slots) for name, slots in routes.items()
        }

    # -- lookup -------------------------------------------------------------

    def resolve(self, model: str) -> str:
        """The route name for a requested model ('' is the default)."""
        if not model:
            return self.default_model
        if model not in self.routes:
            raise UnknownModelError("model", f"'{model[:64]}' is not a configured model")
        return model

    def chain(self, route: str) -> list[ProviderSlot]:
        """The providers to try for ``route``, in order."""
        slots = self.routes[route]
        return _order(slots) if self._has_ties[route] else slots

    def slots(self) -> list[ProviderSlot]:
        """Every slot of every route."""
        return [slot for slots in self.routes.values() for slot in slots]

    def any_serving(self) -> bool:
        """Whether some provider of some model can take requests."""
        return any(slot.serving for slot in self.slots())

    # -- one attempt ----------------------------------------------------------

    def _remaining(self, deadline: float | None) -> float | None:
        return None if deadline is None else deadline - self._clock()

    def _attempt_span(
        self, slot: ProviderSlot, request: ChatRequest
    ) -> AbstractContextManager[Span]:
        if not self.obs.in_recorded_trace():
            return NO_SPAN
        provider = slot.provider
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider.system,
            "gen_ai.request.model": provider.model,
            "llm_sidecar.provider": provider.name,
            "llm_sidecar.route": slot.route,
        }
        if self.obs.capture_content:
            # Opt-in only: this puts user text on spans.
            attributes["gen_ai.input.messages"] = json.dumps(
                [{"role": m.role, "content": m.content} for m in request.messages]
            )
        params = request.params
        if params.temperature is not None:
            attributes["gen_ai.request.temperature"] = params.temperature
        if params.max_tokens is not None:
            attributes["gen_ai.request.max_tokens"] = params.max_tokens
        return self.obs.span(f"chat {provider.model}", SpanKind.CLIENT, attributes)

    def _finish_ok(
        self, slot: ProviderSlot, span: Span, completion: Completion, seconds: float
    ) -> None:
        provider = slot.provider
        attrs = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider.system,
            "gen_ai.request.model": provider.model,
            "gen_ai.response.model": completion.model or provider.model,
        }
        self.obs.operation_duration.record(seconds, attrs)
        usage = completion.usage
        if span.is_recording():
            # One set_attributes call: each call takes the span's lock.
            response: dict[str, Any] = {"gen_ai.response.model": attrs["gen_ai.response.model"]}
            if completion.response_id:
                response["gen_ai.response.id"] = completion.response_id
            if completion.finish_reason:
                response["gen_ai.response.finish_reasons"] = (completion.finish_reason,)
            if usage is not None:
                response["gen_ai.usage.input_tokens"] = usage.prompt_tokens
                response["gen_ai.usage.output_tokens"] = usage.completion_tokens
            if self.obs.capture_content:
                response["gen_ai.output.text"] = completion.text
            span.set_attributes(response)
        if usage is not None:
            self.obs.token_usage.record(
                usage.prompt_tokens, {**attrs, "gen_ai.token.type": "input"}
            )
            self.obs.token_usage.record(
                usage.completion_tokens, {**attrs, "gen_ai.token.type": "output"}
            )

    def _finish_error(
        self, slot: ProviderSlot, span: Span, error: ProviderError, seconds: float
    ) -> None:
        provider = slot.provider
        self.obs.operation_duration.record(
            seconds,
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": provider.system,
                "gen_ai.request.model": provider.model,
                "error.type": error.kind.value,
            },
        )
        if span.is_recording():
            span.set_attribute("error.type", error.kind.value)
            if error.status is not None:
                span.set_attribute("http.response.status_code", error.status)
            span.set_status(Status(StatusCode.ERROR, error.kind.value))

    def _record_failure(self, slot: ProviderSlot, error: ProviderError, latency_ms: float) -> None:
        slot.stats.record(False, latency_ms, error.kind.value)
        if error.kind.counts_against_provider:
            before = slot.breaker.state
            slot.breaker.on_failure()
            after = slot.breaker.state
            if before is not after:
                self._event(
                    "llm_sidecar.circuit.state_change",
                    {"llm_sidecar.provider": slot.name, "from": before.value, "to": after.value},
                )
        else:
            slot.breaker.on_abandon()

    def _event(self, name: str, attributes: dict[str, Any]) -> None:
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(name, attributes)

    def _deadline_hit(
        self, slot: ProviderSlot, span: Span, start: float, attempts: list[AttemptRecord]
    ) -> NoReturn:
        slot.breaker.on_abandon()
        attempts.append(
            AttemptRecord(slot.name, "deadline", (time.perf_counter() - start) * 1000, "deadline")
        )
        if span.is_recording():
            span.set_attribute("error.type", "deadline_exceeded")
            span.set_status(Status(StatusCode.ERROR, "deadline_exceeded"))
        raise DeadlineExceededError("the deadline passed before a provider answered", attempts)

    async def _attempt(
        self,
        slot: ProviderSlot,
        request: ChatRequest,
        deadline: float | None,
        validate: Validate | None,
        attempts: list[AttemptRecord],
    ) -> tuple[Completion, Any]:
        remaining = self._remaining(deadline)
        # When the caller's deadline, not the provider's timeout, bounds this
        # attempt, running out of time says nothing about the provider.
        cut = remaining is not None and remaining < slot.timeout_seconds
        timeout = (
            slot.timeout_seconds if remaining is None else min(slot.timeout_seconds, remaining)
        )
        start = time.perf_counter()
        with self._attempt_span(slot, request) as span:
            try:
                try:
                    async with asyncio.timeout(timeout):
                        completion = await slot.provider.complete(request)
                except TimeoutError:
                    if cut:
                        self._deadline_hit(slot, span, start, attempts)
                    raise ProviderError(
                        ErrorKind.TIMEOUT, f"no answer within {timeout:.3f}s"
                    ) from None
                checked = validate(completion) if validate is not None else None
            except ProviderError as error:
                seconds = time.perf_counter() - start
                self._finish_error(slot, span, error, seconds)
                self._record_failure(slot, error, seconds * 1000)
                attempts.append(
                    AttemptRecord(
                        slot.name,
                        "timeout" if error.kind is ErrorKind.TIMEOUT else "error",
                        seconds * 1000,
                        error.kind.value,
                    )
                )
                raise _AttemptFailed(error) from None
            except asyncio.CancelledError:
                slot.breaker.on_abandon()
                attempts.append(
                    AttemptRecord(slot.name, "cancelled", (time.perf_counter() - start) * 1000)
                )
                raise
            seconds = time.perf_counter() - start
            self._finish_ok(slot, span, completion, seconds)
        slot.stats.record(True, seconds * 1000)
        slot.breaker.on_success()
        attempts.append(AttemptRecord(slot.name, "ok", seconds * 1000))
        return completion, checked

    # -- whole requests ---------------------------------------------------------

    async def complete(
        self,
        route: str,
        request: ChatRequest,
        deadline: float | None = None,
        validate: Validate | None = None,
    ) -> tuple[RoutedCompletion, Any]:
        """Answer ``request`` from the first provider of the chain that can.

        Returns the routed completion and whatever ``validate`` returned for it.
        """
        attempts: list[AttemptRecord] = []
        errors: list[ProviderError] = []
        round_no = 0
        while True:
            previous: ProviderSlot | None = None
            for slot in self.chain(route):
                if not slot.breaker.try_acquire():
                    attempts.append(
                        AttemptRecord(slot.name, "skipped_circuit_open", 0.0, "circuit_open")
                    )
                    self._event("llm_sidecar.circuit.skipped", {"llm_sidecar.provider": slot.name})
                    continue
                remaining = self._remaining(deadline)
                if remaining is not None and remaining < MIN_ATTEMPT_SECONDS:
                    slot.breaker.on_abandon()
                    raise DeadlineExceededError(
                        "the deadline passed before a provider answered", attempts
                    )
                if previous is not None:
                    self.obs.failovers.add(1, {"llm_sidecar.route": route})
                    self._event(
                        "llm_sidecar.failover",
                        {
                            "llm_sidecar.from_provider": previous.name,
                            "llm_sidecar.to_provider": slot.name,
                            "error.type": errors[-1].kind.value if errors else "",
                        },
                    )
                try:
                    completion, checked = await self._attempt(
                        slot, request, deadline, validate, attempts
                    )
                except _AttemptFailed as failed:
                    error = failed.error
                    errors.append(error)
                    if not error.kind.fails_over:
                        raise ProviderRejectedError(
                            f"provider '{slot.name}' rejected the request"
                            + (f" (HTTP {error.status})" if error.status else ""),
                            attempts,
                        ) from None
                    previous = slot
                    continue
                return RoutedCompletion(completion, slot.name, tuple(attempts)), checked
            round_no += 1
            delay = self._next_round_delay(route, round_no, errors, deadline)
            if delay is None:
                break
            self._event(
                "llm_sidecar.retry", {"llm_sidecar.round": round_no, "llm_sidecar.delay_s": delay}
            )
            await asyncio.sleep(delay)
        raise self._exhausted(route, attempts, errors, deadline)

    def _next_round_delay(
        self, route: str, round_no: int, errors: list[ProviderError], deadline: float | None
    ) -> float | None:
        """Backoff before another round, or None when no round should follow."""
        if round_no > self.policy.retry_rounds or not errors:
            return None
        if all(e.kind is ErrorKind.INVALID_OUTPUT for e in errors):
            return None
        retry_afters = [e.retry_after for e in errors if e.retry_after is not None]
        delay = self.policy.backoff(round_no, max(retry_afters) if retry_afters else None)
        remaining = self._remaining(deadline)
        if remaining is not None and delay + MIN_ATTEMPT_SECONDS >= remaining:
            return None
        if not any(slot.breaker.state is not CircuitState.OPEN for slot in self.routes[route]):
            return None
        return delay

    def _exhausted(
        self,
        route: str,
        attempts: list[AttemptRecord],
        errors: list[ProviderError],
        deadline: float | None,
    ) -> Exception:
        if errors and all(e.kind is ErrorKind.INVALID_OUTPUT for e in errors):
            return StructuredOutputError(
                f"no provider of '{route}' produced JSON valid against the schema "
                f"({errors[-1].message})",
                attempts,
            )
        remaining = self._remaining(deadline)
        if remaining is not None and remaining < MIN_ATTEMPT_SECONDS:
            return DeadlineExceededError("the deadline passed before a provider answered", attempts)
        waits = [
            s.breaker.retry_after()
            for s in self.routes[route]
            if s.breaker.state is CircuitState.OPEN
        ]
        hints = [e.retry_after for e in errors if e.retry_after is not None]
        retry_after = min(waits + hints) if (waits or hints) else 1.0
        kinds = ", ".join(sorted({a.error_type for a in attempts if a.error_type})) or "no attempt"
        return ProviderUnavailableError(
            f"no provider of '{route}' could answer ({kinds})",
            attempts,
            retry_after=max(retry_after, 0.05),
        )

    async def stream(
        self, route: str, request: ChatRequest, deadline: float | None = None
    ) -> AsyncIterator[str | RoutedCompletion]:
        """Stream deltas, failing over only until the first delta was yielded.

        The last item is a :class:`RoutedCompletion` with the whole answer.
        """
        attempts: list[AttemptRecord] = []
        errors: list[ProviderError] = []
        for slot in self.chain(route):
            if not slot.breaker.try_acquire():
                attempts.append(
                    AttemptRecord(slot.name, "skipped_circuit_open", 0.0, "circuit_open")
                )
                self._event("llm_sidecar.circuit.skipped", {"llm_sidecar.provider": slot.name})
                continue
            remaining = self._remaining(deadline)
            if remaining is not None and remaining < MIN_ATTEMPT_SECONDS:
                slot.breaker.on_abandon()
                raise DeadlineExceededError(
                    "the deadline passed before a provider answered", attempts
                )
            if errors:
                self.obs.failovers.add(1, {"llm_sidecar.route": route})
                self._event(
                    "llm_sidecar.failover",
                    {"llm_sidecar.to_provider": slot.name, "error.type": errors[-1].kind.value},
                )
            start = time.perf_counter()
            sent = 0
            with self._attempt_span(slot, request) as span:
                iterator = slot.provider.stream(request).__aiter__()
                try:
                    while True:
                        remaining = self._remaining(deadline)
                        timeout = (
                            slot.timeout_seconds
                            if remaining is None
                            else min(slot.timeout_seconds, remaining)
                        )
                        try:
                            async with asyncio.timeout(timeout):
                                item = await iterator.__anext__()
                        except TimeoutError:
                            raise ProviderError(
                                ErrorKind.TIMEOUT, f"no stream data within {timeout:.3f}s"
                            ) from None
                        except StopAsyncIteration:
                            raise ProviderError(
                                ErrorKind.BAD_RESPONSE, "stream ended without a result"
                            ) from None
                        if isinstance(item, Completion):
                            seconds = time.perf_counter() - start
                            self._finish_ok(slot, span, item, seconds)
                            slot.stats.record(True, seconds * 1000)
                            slot.breaker.on_success()
                            attempts.append(AttemptRecord(slot.name, "ok", seconds * 1000))
                            yield RoutedCompletion(item, slot.name, tuple(attempts))
                            return
                        if item:
                            sent += 1
                            yield item
                except ProviderError as error:
                    seconds = time.perf_counter() - start
                    self._finish_error(slot, span, error, seconds)
                    self._record_failure(slot, error, seconds * 1000)
                    attempts.append(
                        AttemptRecord(slot.name, "error", seconds * 1000, error.kind.value)
                    )
                    if sent:
                        raise StreamInterruptedError(
                            f"provider '{slot.name}' failed after {sent} chunks "
                            f"({error.kind.value})"
                        ) from None
                    if not error.kind.fails_over:
                        raise ProviderRejectedError(
                            f"provider '{slot.name}' rejected the request"
                            + (f" (HTTP {error.status})" if error.status else ""),
                            attempts,
                        ) from None
                    errors.append(error)
                    continue
                except (asyncio.CancelledError, GeneratorExit):
                    slot.breaker.on_abandon()
                    raise
                finally:
                    aclose = getattr(iterator, "aclose", None)
                    if aclose is not None:
                        await aclose()
        raise self._exhausted(route, attempts, errors, deadline)
