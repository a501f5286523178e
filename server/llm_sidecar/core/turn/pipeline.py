"""The one path of every call, whatever its kind (chat, unary or streamed; embeddings).

Every call goes through the same steps, in this order, in :meth:`Pipeline.run`:

1. **hold**: the user's concurrency slot, and the thread's turn lock when the call
   reads and extends a history (turns of one thread run one at a time);
2. **prepare**: the kind builds its request (history, cache key, output cap);
   **guard**: the route's guardrails look at every text that would go upstream,
   masking, replacing with placeholders, or refusing the call;
3. **cache**: when the user's cache holds the whole answer, it is billed as a hit,
   remembered, and returned; nothing below runs;
4. **admit**: the call's worst case is reserved in the user's quotas;
5. **route**: the router tries the route's chain; a stream's deltas go to the
   caller as they arrive, the guard's placeholders restored in them and in the answer;
6. **settle**: the answer is billed and remembered, and the reservation ends with
   the exact spend; a call that got no answer bills what providers charged for
   answers it refused, and frees the rest of its reservation.

What differs between kinds of call (how a request is built and cached, what is
routed, what an answer leaves in history) is a :class:`CallKind`; the steps, and
their guarantees, are written once, here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from opentelemetry import trace

from llm_sidecar.core.admission.billing import Billing, Charges, Worst
from llm_sidecar.core.admission.limits import UserLimiter
from llm_sidecar.core.admission.quotas import Reservation
from llm_sidecar.core.guard.messages import restored_deltas
from llm_sidecar.core.guard.policy import Guard
from llm_sidecar.core.guard.scan import Memo
from llm_sidecar.core.guard.shield import Shield
from llm_sidecar.core.observability import Observability
from llm_sidecar.core.routing.router import Refused
from llm_sidecar.core.state.cache import UserCache
from llm_sidecar.core.state.responses import StoredResponse
from llm_sidecar.core.state.store import UserState
from llm_sidecar.core.state.turns import Turn
from llm_sidecar.core.vocabulary.errors import StoreUnavailableError
from llm_sidecar.core.vocabulary.models import ChatMessage, Usage
from llm_sidecar.core.vocabulary.tools import ToolCall

log = logging.getLogger(__name__)

_NO_LOCK: contextlib.nullcontext[None] = contextlib.nullcontext()

Result = TypeVar("Result")
Routed = TypeVar("Routed")
#: What a stream hands on before its result: text deltas and whole tool calls.
Delta = str | ToolCall


@dataclass(frozen=True, slots=True)
class Answer(Generic[Result]):
    """What a kind makes of an answer: the caller's result, and the exchange the
    conversation keeps (no thread: nothing is remembered) or the response it stores."""

    result: Result
    thread: tuple[str, str] | None = None
    messages: tuple[ChatMessage, ...] = ()
    stored: StoredResponse | None = None
    #: What a stream of a cached answer hands on before its result (a fresh one's
    #: deltas come from the provider): its text and tool calls.
    replay: tuple[Delta, ...] = ()


@dataclass(frozen=True, slots=True)
class Billed:
    """Who answered a routed call and what they billed for it."""

    provider: str
    usage: Usage


class CallKind(Protocol[Result, Routed]):
    """The steps of a call that differ by kind; see the module's list for the order."""

    #: The model route and the session (for the bill), known once prepared.
    route: str
    session_id: str
    #: Whether the call hands on deltas before its result.
    stream: bool

    def thread(self) -> tuple[str, str] | None:
        """The (session, thread) whose history this call reads and extends, if any."""

    async def prepare(self) -> None:
        """Build the request: history, cache key, output cap."""

    def guard(self, shield: Shield) -> None:
        """Pass every text the request would send upstream through the call's guard."""

    def restored(self, routed: Routed, shield: Shield) -> Routed:
        """The routed answer with the guard's placeholders restored."""

    def cached(self, cache: UserCache, started: float) -> tuple[str, Answer[Result]] | None:
        """(provider, answer) when the user's cache holds the whole answer."""

    def worst_case(self) -> Worst:
        """The most the call may spend, for admission."""

    def attempts(self, deadline: float | None, refused: Refused) -> AsyncIterator[Delta | Routed]:
        """The routed call: deltas (streams), then the routed answer."""

    def billed(self, routed: Routed) -> Billed:
        """The provider that answered and the usage it billed."""

    def answered(
        self, routed: Routed, billed: Billed, cost: int | None, started: float, cache: UserCache
    ) -> Answer[Result]:
        """The caller's result and the exchange to remember; the answer cached."""


class Pipeline:
    """Runs calls of one user through the steps, against that user's stores."""

    __slots__ = ("_billing", "_guard", "_locks", "_memo", "_obs", "cache", "limiter", "state")

    def __init__(
        self,
        *,
        cache: UserCache,
        state: UserState,
        limiter: UserLimiter,
        billing: Billing,
        observability: Observability,
        guard: Guard | None = None,
    ) -> None:
        self.cache = cache
        self.state = state
        self.limiter = limiter
        self._billing = billing
        self._obs = observability
        self._guard = guard
        #: The guard's checks already made for this user (their own values, which
        #: come back turn after turn).
        self._memo = Memo()
        #: One lock per active thread, with the number of calls holding or awaiting it.
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    async def run(
        self, kind: CallKind[Result, Routed], deadline: float | None
    ) -> AsyncGenerator[Delta | Result, None]:
        """The call's deltas (streams), then its result."""
        self.limiter.acquire()  # 1. hold
        try:
            async with self._turn_lock(kind.thread()):
                started = time.perf_counter()
                await kind.prepare()  # 2. prepare
                shield = self._shield(kind)  # 2. guard
                cached = kind.cached(self.cache, started)  # 3. cache
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("cache", extra={"route": kind.route, "hit": cached is not None})
                if cached is not None:
                    hit: Result = await self._remember_hit(kind, *cached)
                    for delta in cached[1].replay:
                        yield delta
                    yield hit
                    return
                # 4. admit (the worst case is worked out only when a quota is on)
                reservation = await self._billing.admit(
                    self.state.quotas, kind.worst_case, deadline
                )
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("admitted", extra=admitted(kind.route, reservation))
                refused: Refused = []
                routed: Routed | None = None
                items = kind.attempts(deadline, refused)  # 5. route
                if shield is not None and shield.restoring and kind.stream:
                    items = restored_deltas(shield, items)
                try:
                    async for item in items:
                        if isinstance(item, str | ToolCall):
                            yield item
                        else:
                            routed = item
                finally:
                    if routed is None:  # 6. settle: no answer
                        await self._unanswered(kind, refused, reservation)
                assert routed is not None
                if shield is not None and shield.restoring:
                    routed = kind.restored(routed, shield)
                result: Result = await self._settle(kind, routed, refused, reservation, started)
                yield result  # 6. settled
        finally:
            self.limiter.release()

    # -- the steps ----------------------------------------------------------------------

    def _shield(self, kind: CallKind[Result, Routed]) -> Shield | None:
        """The call's guard, having passed the request through it; None when the
        route's guardrails look for nothing (the request is then left as it is)."""
        policy = None if self._guard is None else self._guard.policy(kind.route)
        if policy is None:
            return None
        shield = Shield(policy, self._obs, memo=self._memo)
        kind.guard(shield)
        shield.record()
        return shield

    def _turn_lock(
        self, thread: tuple[str, str] | None
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Turns of one thread run one at a time, so no answer is appended to a history
        it was not computed from; a call outside a thread takes no lock."""
        return _NO_LOCK if thread is None else self._thread_lock(thread)

    @contextlib.asynccontextmanager
    async def _thread_lock(self, thread: tuple[str, str]) -> AsyncIterator[None]:
        """The thread's lock, which lives while someone holds or awaits it."""
        lock, users = self._locks.get(thread) or (asyncio.Lock(), 0)
        self._locks[thread] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[thread]
            if users == 1:
                del self._locks[thread]
            else:
                self._locks[thread] = (lock, users - 1)

    async def _remember_hit(
        self, kind: CallKind[Result, Routed], provider: str, answer: Answer[Result]
    ) -> Result:
        """A cache hit: billed as one (no tokens, no cost), and remembered."""
        charges = self._billing.charges(kind.session_id, kind.route, (), (provider, Usage(), True))
        await self._commit(Turn(charges.rows, answer.thread, answer.messages, None, answer.stored))
        return answer.result

    async def _settle(
        self,
        kind: CallKind[Result, Routed],
        routed: Routed,
        refused: Refused,
        reservation: Reservation | None,
        started: float,
    ) -> Result:
        """Bill, cache and remember a fresh answer, and end its reservation."""
        billed = kind.billed(routed)
        self.limiter.record_tokens(billed.usage.total_tokens)
        charges = self._billing.charges(
            kind.session_id, kind.route, refused, (billed.provider, billed.usage, False)
        )
        answer = kind.answered(routed, billed, charges.cost, started, self.cache)
        settlement = reservation.end(charges.spend) if reservation is not None else None
        await self._commit(
            Turn(charges.rows, answer.thread, answer.messages, settlement, answer.stored)
        )
        return answer.result

    async def _commit(self, turn: Turn) -> None:
        """Write the turn; when the store cannot take it, the caller gets UNAVAILABLE,
        and what the provider billed is recorded as refused spend (with the settlement)
        once the store is back."""
        try:
            await self.state.turns.commit(turn)
        except StoreUnavailableError:
            await self.state.turns.commit_undelivered(turn.undelivered())
            raise

    async def _unanswered(
        self, kind: CallKind[Result, Routed], refused: Refused, reservation: Reservation | None
    ) -> None:
        """A call that ended without an answer: bill what providers charged for answers
        it refused, and free the rest of its reservation. The call's own error is what
        the caller gets; a failure here is logged, not raised over it."""
        charges: Charges = self._billing.charges(kind.session_id, kind.route, refused)
        settlement = reservation.end(charges.spend) if reservation is not None else None
        if not (charges.rows or settlement is not None):
            return
        try:
            await self.state.turns.commit_undelivered(Turn(charges.rows, settlement=settlement))
        except Exception as exc:
            log.error(
                "spend of an unanswered call not recorded",
                extra={"error_type": type(exc).__name__, "refused_answers": len(refused)},
            )


def admitted(route: str, reservation: Reservation | None) -> dict[str, object]:
    """A debug line's fields for an admitted call: whether a quota reserved its worst
    case, and how much (micro-USD, tokens)."""
    if reservation is None:
        return {"route": route, "quota": "off"}
    return {"route": route, "quota": "reserved", **reservation.figures()}


def record_lookup(obs: Observability, hit: bool) -> None:
    """One cache lookup, in the metrics and on the current span."""
    obs.cache_lookups.add(1, {"llm_sidecar.cache.hit": hit})
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event("llm_sidecar.cache.lookup", {"llm_sidecar.cache.hit": hit})
        span.set_attribute("llm_sidecar.cache.hit", hit)
