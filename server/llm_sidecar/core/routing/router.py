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
import itertools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from llm_sidecar.core.observability import NOOP, Observability, genai
from llm_sidecar.core.routing.attempt import Attempt, Opener, Refused, Request, Tries, Validate
from llm_sidecar.core.routing.breaker import CircuitState, Permit
from llm_sidecar.core.routing.chain import ProviderSlot, RetryPolicy, order
from llm_sidecar.core.routing.events import RoutingEvents
from llm_sidecar.core.routing.verdict import MIN_ATTEMPT_SECONDS, exhausted, next_round_delay
from llm_sidecar.core.vocabulary.errors import (
    DeadlineExceededError,
    InvalidRequestError,
    ProviderError,
    ProviderRejectedError,
    StreamInterruptedError,
    UnknownModelError,
)
from llm_sidecar.core.vocabulary.models import (
    AttemptRecord,
    ChatRequest,
    Completion,
    EmbeddingRequest,
    Embeddings,
    Routed,
)
from llm_sidecar.core.vocabulary.providers import Provider
from llm_sidecar.core.vocabulary.tools import ToolCall

__all__ = ["Refused", "Router", "Validate"]

# A hold that ends within this is over: timers may fire a hair early.
_HOLD_SLACK = 0.002


async def _unary(
    provider: Provider, request: ChatRequest
) -> AsyncIterator[str | ToolCall | Completion]:
    """A non-streaming call in the shape of an attempt: one Completion."""
    yield await provider.complete(request)


def _streaming(
    provider: Provider, request: ChatRequest
) -> AsyncIterator[str | ToolCall | Completion]:
    return provider.stream(request)


async def _embedding(provider: Provider, request: EmbeddingRequest) -> AsyncIterator[Embeddings]:
    """An embedding call in the shape of an attempt: one answer."""
    yield await provider.embed(request)


#: How an attempt opens its provider call: a whole chat answer, a streamed one, vectors.
UNARY: Opener = _unary
STREAMING: Opener = _streaming
EMBEDDING: Opener = _embedding


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
        embedding_routes: frozenset[str] = frozenset(),
        default_embedding_model: str = "",
    ) -> None:
        if default_model not in routes:
            raise ValueError(f"default model {default_model!r} has no route")
        self.routes = routes
        self.default_model = default_model
        #: The routes that embed (every other one chats), and the default of them.
        self.embedding_routes = embedding_routes
        self.default_embedding_model = default_embedding_model
        self.policy = policy or RetryPolicy()
        self.obs = observability
        #: The clock of holds and deadlines (``time.monotonic``; tests move a fake one).
        self.clock = clock
        # Asked on every call's admission: built once.
        self._names = {name: tuple(s.name for s in slots) for name, slots in routes.items()}
        self._has_ties = {
            name: len({s.priority for s in slots}) != len(slots) for name, slots in routes.items()
        }
        #: Logs each routing event and tells a listener of circuit changes.
        self.events = RoutingEvents()
        for slot in self.slots():
            slot.breaker.on_change = self._circuit_listener(slot)

    def _circuit_listener(self, slot: ProviderSlot) -> Callable[[CircuitState, CircuitState], None]:
        def changed(old: CircuitState, new: CircuitState) -> None:
            self.events.circuit(slot.name, slot.route, old, new)

        return changed

    # -- lookup -------------------------------------------------------------

    def resolve(self, model: str, *, embedding: bool = False) -> str:
        """The route name for a requested model ('' is the default of its kind): a chat
        route, or with ``embedding`` an embedding route; the other kind is refused."""
        if not model:
            default = self.default_embedding_model if embedding else self.default_model
            if not default:
                raise UnknownModelError("model", "is required: no default embedding route")
            return default
        if model not in self.routes:
            # Name the choices, not the value: a message never echoes what a caller sent.
            known = ", ".join(sorted(self.routes)[:20])
            raise UnknownModelError("model", f"is not a configured model (configured: {known})")
        if (model in self.embedding_routes) != embedding:
            found, wanted = ("a chat", "an embedding") if embedding else ("an embedding", "a chat")
            raise InvalidRequestError("model", f"names {found} route, not {wanted} route")
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

    # -- the attempt loop -------------------------------------------------------

    async def route(
        self,
        route: str,
        request: Request,
        deadline: float | None,
        validate: Validate | None = None,
        refused: Refused | None = None,
        *,
        opener: Opener,
    ) -> AsyncIterator[str | ToolCall | Routed[Any]]:
        """The policy: rounds over the chain, each provider tried once per round unless
        held or open, until one answers; deltas (streams only) as they arrive, then
        the :class:`Routed` answer. ``opener`` says what each attempt asks (UNARY,
        STREAMING or EMBEDDING)."""
        if request.deadline != deadline:
            request = dataclasses.replace(request, deadline=deadline)
        open_attempt = opener
        tries = Tries(refused=refused)
        for round_no in itertools.count(1):
            previous: ProviderSlot | None = None
            for slot in self.chain(route):
                permit = self._permit(slot, deadline, tries)
                if permit is None:
                    continue
                if previous is not None:
                    self._failover_event(route, previous, slot, tries.errors[-1])
                self.events.attempting(route, slot.name, round_no)
                attempt = Attempt(self, slot, permit, request, open_attempt, validate, tries)
                async with attempt:
                    while attempt.result is None:
                        item = await attempt.next()
                        if item:
                            yield item
                if attempt.result is not None:
                    self.events.answered(route, slot.name, len(tries.records))
                    yield attempt.result
                    return
                self._fail_over_or_raise(slot, attempt, tries)
                previous = slot
            delay = next_round_delay(
                self.routes[route], self.policy, round_no, tries.errors, deadline, self.clock()
            )
            if delay is None:
                break
            self.events.retrying(route, round_no, delay)
            genai.event(
                "llm_sidecar.retry", {"llm_sidecar.round": round_no, "llm_sidecar.delay_s": delay}
            )
            await asyncio.sleep(delay)
        raise exhausted(
            route, self.routes[route], tries.records, tries.errors, deadline, self.clock()
        )

    def _permit(self, slot: ProviderSlot, deadline: float | None, tries: Tries) -> Permit | None:
        """A breaker permit to try ``slot`` now, or None to skip it (held by Retry-After,
        or its circuit open). Raises when the caller's deadline leaves no time."""
        now = self.clock()
        if deadline is not None and deadline - now < MIN_ATTEMPT_SECONDS:
            raise DeadlineExceededError(
                "the deadline passed before a provider answered", tries.records
            )
        if slot.hold_until > now + _HOLD_SLACK:
            tries.records.append(
                AttemptRecord(slot.name, "skipped_retry_after", 0.0, "rate_limited")
            )
            genai.event("llm_sidecar.provider.held", {"llm_sidecar.provider": slot.name})
            return None
        permit = slot.breaker.acquire()
        if permit is None:
            tries.records.append(
                AttemptRecord(slot.name, "skipped_circuit_open", 0.0, "circuit_open")
            )
            genai.event("llm_sidecar.circuit.skipped", {"llm_sidecar.provider": slot.name})
        return permit

    def _fail_over_or_raise(self, slot: ProviderSlot, attempt: Attempt, tries: Tries) -> None:
        """After a failed attempt: end the call when no other provider may answer (a stream
        that already sent chunks, a request the upstream rejected), else note the failure
        for the next round's decision."""
        failure = attempt.failure
        assert failure is not None
        if attempt.sent:
            raise StreamInterruptedError(
                f"provider '{slot.name}' failed after {attempt.sent} chunks ({failure.kind.value})"
            )
        if not failure.kind.fails_over:
            raise ProviderRejectedError(
                f"provider '{slot.name}' rejected the request"
                + (f" (HTTP {failure.status})" if failure.status else ""),
                tries.records,
            )
        tries.errors.append(failure)

    def hold(self, slot: ProviderSlot, retry_after: float) -> None:
        """Leave ``slot`` alone for every user's calls for ``retry_after`` seconds (at most
        the policy's longest hold): it answered with Retry-After."""
        now = self.clock()
        seconds = min(retry_after, self.policy.max_hold_seconds)
        if slot.hold_until <= now:  # a new hold, not one extended
            self.events.held(slot.name, slot.route, seconds)
        slot.hold(now, seconds)

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
