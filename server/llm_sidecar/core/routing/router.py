"""The router: ordered provider chains per model, failover, retries and breakers.

Policy, explicitly, for unary and streaming calls alike (one loop serves both):

* A chain is tried in order (providers of equal priority in weighted random
  order). An open circuit is skipped without a network call, and so is a
  provider that answered with ``Retry-After`` until that time has passed.
* Failing over happens on timeouts, connection errors, 429, 5xx, auth errors
  and malformed bodies. A 400-class rejection of the request itself is not
  retried anywhere: it goes back to the caller.
* A structured answer that is not valid against the schema fails over too,
  but does not count against the provider's health; nor does a 429 that said
  when to come back (the provider is held instead).
* When the whole chain failed with transient errors, it is tried again after
  an exponential backoff with full jitter (at least until a held provider may
  be called), up to ``retry_rounds`` more times.
* Nothing runs past the caller's deadline: every attempt's timeout is cut to
  the time left, an attempt cut by the deadline spares the provider's
  breaker, and a backoff that would end after the deadline is not slept.
* A stream fails over only until its first delta reached the caller.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn

from opentelemetry.trace import Span

from llm_sidecar.core import genai
from llm_sidecar.core.errors import (
    AttemptRecord,
    DeadlineExceededError,
    ErrorKind,
    ProviderError,
    ProviderRejectedError,
    SidecarError,
    StreamInterruptedError,
    UnknownModelError,
)
from llm_sidecar.core.models import ChatRequest, Completion, RoutedCompletion, Usage
from llm_sidecar.core.observability import NOOP, Observability
from llm_sidecar.core.providers import Provider
from llm_sidecar.core.routing.breaker import Permit
from llm_sidecar.core.routing.chain import ProviderSlot, RetryPolicy, order
from llm_sidecar.core.routing.events import RoutingEvents
from llm_sidecar.core.routing.verdict import MIN_ATTEMPT_SECONDS, exhausted, next_round_delay
from llm_sidecar.core.routing.watch import AttemptWatch
from llm_sidecar.core.tools import ToolCall

log = logging.getLogger(__name__)

# A hold that ends within this is over: timers may fire a hair early.
_HOLD_SLACK = 0.002

Validate = Callable[[Completion], Any]
#: Where refused but billed answers are noted: (provider name, usage).
Refused = list[tuple[str, Usage]]
#: Opens one attempt: deltas (str) as they arrive, then one Completion.
Opener = Callable[[Provider, ChatRequest], AsyncIterator["str | ToolCall | Completion"]]


async def _unary(
    provider: Provider, request: ChatRequest
) -> AsyncIterator[str | ToolCall | Completion]:
    """A non-streaming call in the shape of an attempt: one Completion."""
    yield await provider.complete(request)


def _streaming(
    provider: Provider, request: ChatRequest
) -> AsyncIterator[str | ToolCall | Completion]:
    return provider.stream(request)


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if default_model not in routes:
            raise ValueError(f"default model {default_model!r} has no route")
        self.routes = routes
        self.default_model = default_model
        self.policy = policy or RetryPolicy()
        self.obs = observability
        self._clock = clock
        # Asked on every call's admission: built once.
        self._names = {name: tuple(s.name for s in slots) for name, slots in routes.items()}
        self._has_ties = {
            name: len({s.priority for s in slots}) != len(slots) for name, slots in routes.items()
        }
        #: Logs each routing event and tells a listener of circuit changes.
        self.events = RoutingEvents()
        for slot in self.slots():
            slot.breaker.on_change = self._circuit_listener(slot)

    def _circuit_listener(self, slot: ProviderSlot) -> Callable[[Any, Any], None]:
        def changed(old: Any, new: Any) -> None:
            self.events.circuit(slot.name, slot.route, old, new)

        return changed

    # -- lookup -------------------------------------------------------------

    def resolve(self, model: str) -> str:
        """The route name for a requested model ('' is the default)."""
        if not model:
            return self.default_model
        if model not in self.routes:
            # Name the choices, not the value: a message never echoes what a caller sent.
            known = ", ".join(sorted(self.routes)[:20])
            raise UnknownModelError("model", f"is not a configured model (configured: {known})")
        return model

    def chain(self, route: str) -> list[ProviderSlot]:
        """The providers to try for ``route``, in order."""
        slots = self.routes[route]
        return order(slots) if self._has_ties[route] else slots

    def provider_names(self, route: str) -> tuple[str, ...]:
        """The names of every provider that may answer ``route``."""
        return self._names[route]

    def slots(self) -> list[ProviderSlot]:
        """Every slot of every route."""
        return [slot for slots in self.routes.values() for slot in slots]

    def any_serving(self) -> bool:
        """Whether some provider of some model can take requests."""
        return any(slot.serving for slot in self.slots())

    # -- whole requests -------------------------------------------------------

    async def complete(
        self,
        route: str,
        request: ChatRequest,
        deadline: float | None = None,
        validate: Validate | None = None,
        refused: Refused | None = None,
    ) -> RoutedCompletion:
        """Answer ``request`` from the first provider of the chain that can.

        ``validate`` checks a completion (raising ProviderError INVALID_OUTPUT
        to fail over); what it returns is the result's ``document``. Answers a
        provider billed but that were refused (by ``validate`` or the adapter's
        own checks) are appended to ``refused`` as (provider, usage), whatever
        the outcome, so they can be billed.
        """
        result: RoutedCompletion | None = None
        # Consumed to its end, so the generator finishes here and needs no finaliser.
        async for item in self._route(route, request, deadline, validate, _unary, refused):
            if isinstance(item, RoutedCompletion):
                result = item
        assert result is not None  # _route ends with a result or raises
        return result

    def stream(
        self,
        route: str,
        request: ChatRequest,
        deadline: float | None = None,
        refused: Refused | None = None,
    ) -> AsyncIterator[str | ToolCall | RoutedCompletion]:
        """Deltas and whole tool calls as they arrive, then one :class:`RoutedCompletion`.
        Refused but billed answers are noted in ``refused``, as in :meth:`complete`."""
        return self._route(route, request, deadline, None, _streaming, refused)

    # -- the attempt loop -------------------------------------------------------

    async def _route(
        self,
        route: str,
        request: ChatRequest,
        deadline: float | None,
        validate: Validate | None,
        open_attempt: Opener,
        refused: Refused | None = None,
    ) -> AsyncIterator[str | ToolCall | RoutedCompletion]:
        if request.deadline != deadline:
            request = dataclasses.replace(request, deadline=deadline)
        attempts: list[AttemptRecord] = []
        errors: list[ProviderError] = []
        round_no = 0
        while True:
            previous: ProviderSlot | None = None
            for slot in self.chain(route):
                now = self._clock()
                if deadline is not None and deadline - now < MIN_ATTEMPT_SECONDS:
                    raise DeadlineExceededError(
                        "the deadline passed before a provider answered", attempts
                    )
                if slot.hold_until > now + _HOLD_SLACK:
                    attempts.append(
                        AttemptRecord(slot.name, "skipped_retry_after", 0.0, "rate_limited")
                    )
                    genai.event("llm_sidecar.provider.held", {"llm_sidecar.provider": slot.name})
                    continue
                permit = slot.breaker.acquire()
                if permit is None:
                    attempts.append(
                        AttemptRecord(slot.name, "skipped_circuit_open", 0.0, "circuit_open")
                    )
                    genai.event("llm_sidecar.circuit.skipped", {"llm_sidecar.provider": slot.name})
                    continue
                if previous is not None:
                    self._failover_event(route, previous, slot, errors[-1])
                result: RoutedCompletion | None = None
                failure: ProviderError | None = None
                sent = 0
                with permit, genai.attempt_span(self.obs, slot.provider, route, request) as span:
                    start = time.perf_counter()
                    iterator = open_attempt(slot.provider, request)
                    watch = AttemptWatch(slot.timeout_seconds, self._loop_deadline(deadline))
                    watch.start()
                    try:
                        while True:
                            watch.waiting()
                            try:
                                item = await anext(iterator)
                            except asyncio.CancelledError:
                                if not watch.ended_wait():
                                    raise
                                # Cut by the caller's deadline rather than the provider's
                                # timeout: running out of time says nothing of the provider.
                                if watch.cut:
                                    self._deadline_cut(slot, span, start, attempts)
                                raise ProviderError(
                                    ErrorKind.TIMEOUT,
                                    f"no data within {slot.timeout_seconds:.3f}s",
                                ) from None
                            except StopAsyncIteration:
                                raise ProviderError(
                                    ErrorKind.BAD_RESPONSE, "the answer ended without a result"
                                ) from None
                            finally:
                                watch.waited()
                            if not isinstance(item, Completion):
                                if item:  # a delta, or a whole tool call
                                    sent += 1
                                    yield item
                                continue
                            try:
                                document = validate(item) if validate is not None else None
                            except ProviderError as error:
                                raise error.billing(item.usage) from None
                            result = self._succeeded(
                                slot, permit, span, item, document, start, attempts
                            )
                            break
                    except ProviderError as error:
                        failure = error
                    except SidecarError:
                        raise
                    except (asyncio.CancelledError, GeneratorExit):
                        elapsed = (time.perf_counter() - start) * 1000
                        attempts.append(AttemptRecord(slot.name, "cancelled", elapsed))
                        raise
                    except Exception as exc:
                        # An adapter bug must fail over like a bad answer, not escape the loop.
                        log.error(
                            "provider adapter failed",
                            extra={"provider": slot.name, "error_type": type(exc).__name__},
                        )
                        failure = ProviderError(
                            ErrorKind.BAD_RESPONSE, f"the adapter failed ({type(exc).__name__})"
                        )
                    finally:
                        watch.stop()
                        aclose = getattr(iterator, "aclose", None)
                        if aclose is not None:
                            await aclose()
                    if failure is not None:
                        self._failed(slot, permit, span, failure, start, attempts)
                        if failure.billed is not None and refused is not None:
                            refused.append((slot.name, failure.billed))
                if result is not None:
                    yield result
                    return
                assert failure is not None
                if sent:
                    raise StreamInterruptedError(
                        f"provider '{slot.name}' failed after {sent} chunks ({failure.kind.value})"
                    )
                if not failure.kind.fails_over:
                    raise ProviderRejectedError(
                        f"provider '{slot.name}' rejected the request"
                        + (f" (HTTP {failure.status})" if failure.status else ""),
                        attempts,
                    )
                errors.append(failure)
                previous = slot
            round_no += 1
            delay = next_round_delay(
                self.routes[route], self.policy, round_no, errors, deadline, self._clock()
            )
            if delay is None:
                break
            genai.event(
                "llm_sidecar.retry", {"llm_sidecar.round": round_no, "llm_sidecar.delay_s": delay}
            )
            await asyncio.sleep(delay)
        raise exhausted(route, self.routes[route], attempts, errors, deadline, self._clock())

    def _loop_deadline(self, deadline: float | None) -> float | None:
        """The caller's deadline on the event loop's clock."""
        if deadline is None:
            return None
        return asyncio.get_running_loop().time() + (deadline - self._clock())

    # -- outcomes of one attempt --------------------------------------------------

    def _succeeded(
        self,
        slot: ProviderSlot,
        permit: Permit,
        span: Span,
        completion: Completion,
        document: Any,
        start: float,
        attempts: list[AttemptRecord],
    ) -> RoutedCompletion:
        seconds = time.perf_counter() - start
        genai.record_success(self.obs, slot.provider, span, completion, seconds)
        slot.stats.record(True, seconds * 1000)
        permit.success()
        attempts.append(AttemptRecord(slot.name, "ok", seconds * 1000))
        return RoutedCompletion(completion, slot.name, tuple(attempts), document)

    def _failed(
        self,
        slot: ProviderSlot,
        permit: Permit,
        span: Span,
        error: ProviderError,
        start: float,
        attempts: list[AttemptRecord],
    ) -> None:
        seconds = time.perf_counter() - start
        kind = error.kind
        genai.record_failure(self.obs, slot.provider, span, kind.value, seconds)
        genai.record_http_status(span, error)
        slot.stats.record(False, seconds * 1000, kind.value)
        self.events.attempt_failed(slot.name, slot.route, error)
        if error.retry_after is not None:
            now = self._clock()
            seconds = min(error.retry_after, self.policy.max_hold_seconds)
            if slot.hold_until <= now:  # a new hold, not one extended
                self.events.held(slot.name, slot.route, seconds)
            slot.hold(now, seconds)
        # A 429 that said when to come back is a schedule, not ill health.
        polite = kind is ErrorKind.RATE_LIMITED and error.retry_after is not None
        if kind.counts_against_provider and not polite:
            before = slot.breaker.state
            permit.failure()
            after = slot.breaker.state
            if before is not after:
                genai.event(
                    "llm_sidecar.circuit.state_change",
                    {"llm_sidecar.provider": slot.name, "from": before.value, "to": after.value},
                )
        else:
            permit.release()
        outcome = "timeout" if kind is ErrorKind.TIMEOUT else "error"
        attempts.append(AttemptRecord(slot.name, outcome, seconds * 1000, kind.value))

    def _deadline_cut(
        self, slot: ProviderSlot, span: Span, start: float, attempts: list[AttemptRecord]
    ) -> NoReturn:
        seconds = time.perf_counter() - start
        genai.record_failure(self.obs, slot.provider, span, "deadline_exceeded", seconds)
        attempts.append(AttemptRecord(slot.name, "deadline", seconds * 1000, "deadline"))
        raise DeadlineExceededError("the deadline passed before a provider answered", attempts)

    def _failover_event(
        self, route: str, previous: ProviderSlot, slot: ProviderSlot, error: ProviderError
    ) -> None:
        self.obs.failovers.add(1, {"llm_sidecar.route": route})
        self.events.failover(route, previous.name, slot.name, error.kind.value)
        genai.event(
            "llm_sidecar.failover",
            {
                "llm_sidecar.from_provider": previous.name,
                "llm_sidecar.to_provider": slot.name,
                "error.type": error.kind.value,
            },
        )
