"""One attempt: one provider tried once, from opening its call to the verdict on it.

The router's loop decides which provider to try next and when to give up
(:mod:`llm_sidecar.core.routing.router`); everything that happens inside one
try lives here. An attempt opens its CLIENT span and arms its timer (the
provider's idle timeout, cut to the caller's deadline), hands on each delta as
it comes, checks the answer, and then records exactly one verdict: on the
provider's breaker, its figures, its Retry-After hold, the attempt list the
caller sees, and the routing log.

Used as ``async with attempt:`` around a loop of :meth:`Attempt.next`: the
block ends with :attr:`Attempt.result` set, or with :attr:`Attempt.failure`
set and the failure absorbed (the loop then fails over), or with an exception
that ends the call (the caller's deadline, a cancellation).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

from opentelemetry.trace import Span

from llm_sidecar.core.observability import Observability, genai
from llm_sidecar.core.routing.breaker import Permit
from llm_sidecar.core.routing.chain import ProviderSlot
from llm_sidecar.core.routing.events import RoutingEvents
from llm_sidecar.core.routing.watch import AttemptWatch
from llm_sidecar.core.vocabulary.errors import (
    DeadlineExceededError,
    ErrorKind,
    ProviderError,
    SidecarError,
)
from llm_sidecar.core.vocabulary.models import (
    AttemptRecord,
    ChatRequest,
    Completion,
    EmbeddingRequest,
    Embeddings,
    Routed,
    Usage,
)
from llm_sidecar.core.vocabulary.providers import Provider
from llm_sidecar.core.vocabulary.tools import ToolCall

#: A provider's answer to one attempt: a chat completion, or embedding vectors.
Final = Completion | Embeddings
#: What an attempt is asked.
Request = ChatRequest | EmbeddingRequest
Validate = Callable[[Any], Any]
#: Opens one attempt: deltas (str) and whole tool calls as they arrive (chat streams),
#: then one final answer.
Opener = Callable[[Provider, Any], AsyncIterator["str | ToolCall | Final"]]
#: Where refused but billed answers are noted: (provider name, usage).
Refused = list[tuple[str, Usage]]


class Owner(Protocol):
    """What an attempt needs of the router that runs it."""

    obs: Observability
    events: RoutingEvents
    clock: Callable[[], float]

    def hold(self, slot: ProviderSlot, retry_after: float) -> None:
        """Leave ``slot`` alone for ``retry_after`` seconds (it answered Retry-After)."""


@dataclass(slots=True)
class Tries:
    """What the attempts of one call left: the records the caller sees, the failures
    that decide the next round, and the refused but billed answers."""

    records: list[AttemptRecord] = field(default_factory=list)
    errors: list[ProviderError] = field(default_factory=list)
    refused: Refused | None = None


class Attempt:
    """One provider, tried once for one call."""

    __slots__ = (
        "_iterator",
        "_operation",
        "_span",
        "_span_scope",
        "_start",
        "_watch",
        "failure",
        "permit",
        "request",
        "result",
        "router",
        "sent",
        "slot",
        "tries",
        "validate",
    )

    def __init__(
        self,
        router: Owner,
        slot: ProviderSlot,
        permit: Permit,
        request: Request,
        open_attempt: Opener,
        validate: Validate | None,
        tries: Tries,
    ) -> None:
        self.router = router
        self.slot = slot
        self.permit = permit
        self.request = request
        self.validate = validate
        self.tries = tries
        #: The answer, once the provider gave one that passed the checks.
        self.result: Routed[Any] | None = None
        #: Why the provider could not answer, when it could not.
        self.failure: ProviderError | None = None
        #: Deltas and tool calls already handed on (a stream fails over only before one).
        self.sent = 0
        self._operation = genai.operation_of(request)
        self._span_scope = genai.attempt_span(router.obs, slot.provider, slot.route, request)
        self._span: Span | None = None
        self._iterator = open_attempt(slot.provider, request)
        deadline = request.deadline
        loop_deadline = None
        if deadline is not None:
            # The caller's deadline on the event loop's clock.
            loop_deadline = asyncio.get_running_loop().time() + (deadline - router.clock())
        self._watch = AttemptWatch(slot.timeout_seconds, loop_deadline)
        self._start = 0.0

    async def __aenter__(self) -> Attempt:
        self._span = self._span_scope.__enter__()
        self._start = time.perf_counter()
        self._watch.start()
        return self

    async def next(self) -> str | ToolCall:
        """The provider's next delta or tool call; "" once the answer is in and checked
        (:attr:`result` is then set). Raises ProviderError when the provider fails."""
        watch = self._watch
        watch.waiting()
        try:
            item = await anext(self._iterator)
        except asyncio.CancelledError:
            if not watch.ended_wait():
                raise
            if watch.cut:  # the caller's deadline, not the provider's timeout
                self._deadline_cut()
            timeout = self.slot.timeout_seconds
            raise ProviderError(ErrorKind.TIMEOUT, f"no data within {timeout:.3f}s") from None
        except StopAsyncIteration:
            raise ProviderError(
                ErrorKind.BAD_RESPONSE, "the answer ended without a result"
            ) from None
        finally:
            watch.waited()
        if isinstance(item, str | ToolCall):
            if item:
                self.sent += 1
            return item
        try:
            document = self.validate(item) if self.validate is not None else None
        except ProviderError as error:
            raise error.billing(item.usage) from None
        self._succeeded(item, document)
        return ""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._watch.stop()
        try:
            aclose = getattr(self._iterator, "aclose", None)
            if aclose is not None:
                await aclose()
            return self._verdict(exc)
        finally:
            self.permit.release()  # no verdict recorded (a cancellation) frees a trial slot
            self._span_scope.__exit__(exc_type, exc, tb)

    def _verdict(self, exc: BaseException | None) -> bool:
        """Record how the attempt ended; whether its exception is absorbed (the router
        then fails over) rather than ending the call."""
        if exc is None:
            return False
        if isinstance(exc, ProviderError):
            self._failed(exc)
            return True
        if isinstance(exc, SidecarError):
            return False  # the caller's deadline: the call ends
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):
            self._record("cancelled")
            return False
        if isinstance(exc, Exception):
            # An adapter bug must fail over like a bad answer, not escape the loop.
            self.router.events.adapter_failed(self.slot.name, self.slot.route, exc)
            self._failed(
                ProviderError(ErrorKind.BAD_RESPONSE, f"the adapter failed ({type(exc).__name__})")
            )
            return True
        return False

    # -- verdicts ---------------------------------------------------------------------

    def _elapsed(self) -> float:
        return time.perf_counter() - self._start

    def _record(self, outcome: str, error_type: str = "", status: int = 0) -> None:
        self.tries.records.append(
            AttemptRecord(self.slot.name, outcome, self._elapsed() * 1000, error_type, status)
        )

    def _succeeded(self, answer: Completion | Embeddings, document: Any) -> None:
        slot, seconds = self.slot, self._elapsed()
        genai.record_success(self.router.obs, slot.provider, self._span_now(), answer, seconds)
        slot.stats.record(True, seconds * 1000)
        self.permit.success()
        self._record("ok")
        self.result = Routed(answer, slot.name, tuple(self.tries.records), document)

    def _failed(self, error: ProviderError) -> None:
        router, slot, seconds = self.router, self.slot, self._elapsed()
        kind = error.kind
        span = self._span_now()
        genai.record_failure(router.obs, slot.provider, span, kind.value, seconds, self._operation)
        genai.record_http_status(span, error)
        slot.stats.record(False, seconds * 1000, kind.value)
        router.events.attempt_failed(slot.name, slot.route, error)
        if error.retry_after is not None:
            router.hold(slot, error.retry_after)
        # A 429 that said when to come back is a schedule, not ill health.
        polite = kind is ErrorKind.RATE_LIMITED and error.retry_after is not None
        if kind.counts_against_provider and not polite:
            self.permit.failure()
        outcome = "timeout" if kind is ErrorKind.TIMEOUT else "error"
        self._record(outcome, kind.value, error.status or 0)
        if error.billed is not None and self.tries.refused is not None:
            self.tries.refused.append((slot.name, error.billed))
        self.failure = error

    def _deadline_cut(self) -> None:
        seconds = self._elapsed()
        genai.record_failure(
            self.router.obs,
            self.slot.provider,
            self._span_now(),
            "deadline_exceeded",
            seconds,
            self._operation,
        )
        self._record("deadline", "deadline")
        raise DeadlineExceededError(
            "the deadline passed before a provider answered", self.tries.records
        )

    def _span_now(self) -> Span:
        """The attempt's span (the attempt has been entered)."""
        assert self._span is not None
        return self._span
