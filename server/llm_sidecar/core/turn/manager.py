"""The per-user LLM manager.

One manager serves one user. It owns that user's response cache, limiter and
conversation view, holds the context it was created from, and refuses any
call made with another user's context. It shares only the router (provider
health, no user data) with other managers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from opentelemetry import trace

from llm_sidecar.core.admission.billing import Billing, Charges
from llm_sidecar.core.admission.limits import UserLimiter
from llm_sidecar.core.admission.quotas import Reservation
from llm_sidecar.core.observability import NOOP, Observability
from llm_sidecar.core.routing.router import Refused, Router
from llm_sidecar.core.state.cache import UserCache
from llm_sidecar.core.state.quota_store import Settlement
from llm_sidecar.core.state.store import UserState
from llm_sidecar.core.state.turns import Turn
from llm_sidecar.core.state.usage import UsageRow
from llm_sidecar.core.turn.assembly import Prepared, estimate_usage, exchange, prepare
from llm_sidecar.core.turn.structured import canonical_json, validate_output
from llm_sidecar.core.vocabulary.context import UserExecutionContext
from llm_sidecar.core.vocabulary.errors import IsolationViolationError, StoreUnavailableError
from llm_sidecar.core.vocabulary.models import (
    AskInput,
    AskResult,
    CachedAnswer,
    ChatMessage,
    ChatRequest,
    Completion,
    RoutedCompletion,
    StreamEvent,
    Usage,
)
from llm_sidecar.core.vocabulary.tools import ToolCall

log = logging.getLogger(__name__)


_NO_LOCK: contextlib.nullcontext[None] = contextlib.nullcontext()


class LLMManager:
    """All LLM work of one user. Create it with a factory, never share it."""

    def __init__(
        self,
        context: UserExecutionContext,
        *,
        router: Router,
        cache: UserCache,
        state: UserState,
        limiter: UserLimiter,
        billing: Billing | None = None,
        cache_enabled: bool = True,
        observability: Observability = NOOP,
    ) -> None:
        self.context = context
        self.user_id = context.user_id
        self.cache = cache
        #: This user's stores, as the factory handed them over.
        self.state = state
        self.conversations = state.conversations
        self.usage_ledger = state.usage
        self.turns = state.turns
        self.limiter = limiter
        self.billing = billing or Billing()
        self._router = router
        self._cache_enabled = cache_enabled
        self._obs = observability
        #: One lock per active thread, with the number of calls holding or awaiting it.
        self._thread_locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}
        self.last_used = time.monotonic()
        self.closed = False

    # -- guards -----------------------------------------------------------------

    def _check(self, ctx: UserExecutionContext) -> None:
        if ctx.user_id != self.user_id:
            raise IsolationViolationError("a manager was handed another user's context")
        self.last_used = time.monotonic()

    @property
    def in_flight(self) -> int:
        """Requests of this user being answered now."""
        return self.limiter.in_flight

    def _turn_of(
        self, ctx: UserExecutionContext, inp: AskInput
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """The thread's turn lock when the call reads and extends a history."""
        if ctx.session_id is None or inp.skip_history:
            return _NO_LOCK
        return self._thread_turn(ctx.session_id, ctx.conversation_thread)

    @contextlib.asynccontextmanager
    async def _thread_turn(self, session_id: str, thread_id: str) -> AsyncIterator[None]:
        """Turns of one thread run one at a time, so no answer is appended to a history
        it was not computed from. The lock lives while someone holds or awaits it."""
        key = (session_id, thread_id)
        lock, users = self._thread_locks.get(key) or (asyncio.Lock(), 0)
        self._thread_locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._thread_locks[key]
            if users == 1:
                del self._thread_locks[key]
            else:
                self._thread_locks[key] = (lock, users - 1)

    # -- request preparation ------------------------------------------------------

    async def _prepare(self, ctx: UserExecutionContext, inp: AskInput) -> Prepared:
        route = self._router.resolve(inp.model)
        history: list[ChatMessage] = []
        if ctx.session_id is not None and not inp.skip_history:
            history = await self.conversations.load(ctx.session_id, ctx.conversation_thread)
        hint = ""
        if ctx.session_id is not None:
            hint = self._obs.keyed(self.user_id, ctx.session_id, ctx.conversation_thread)
        return prepare(
            self.user_id, ctx, inp, route, history, cache=self._cache_enabled, cache_hint=hint
        )

    # -- public operations -------------------------------------------------------

    async def ask(
        self, ctx: UserExecutionContext, inp: AskInput, deadline: float | None = None
    ) -> AskResult:
        """Answer one prompt for this user, inside its conversation unless opted out."""
        self._check(ctx)
        self.limiter.acquire()
        try:
            async with self._turn_of(ctx, inp):
                return await self._ask(ctx, inp, deadline)
        finally:
            self.limiter.release()

    async def _ask(
        self, ctx: UserExecutionContext, inp: AskInput, deadline: float | None
    ) -> AskResult:
        start = time.perf_counter()
        prep = await self._prepare(ctx, inp)
        hit = self._lookup(prep)
        if hit is not None:
            return await self._answer_from_cache(ctx, inp, prep, hit, start)
        validate = None
        if prep.validator is not None:
            validator = prep.validator

            def validate(completion: Completion) -> Any:
                if completion.tool_calls:
                    return None  # the model called tools instead of answering
                return validate_output(completion.text, validator)

        request, reservation = await self._admit(prep, prep.request, deadline)
        refused: Refused = []
        try:
            routed = await self._router.complete(prep.route, request, deadline, validate, refused)
        except BaseException:
            await self._unanswered(prep, refused, reservation)
            raise
        return await self._settle(ctx, inp, prep, routed, start, refused, reservation)

    async def _admit(
        self, prep: Prepared, request: ChatRequest, deadline: float | None
    ) -> tuple[ChatRequest, Reservation | None]:
        """The user's quotas' verdict on a call about to reach a provider."""
        providers = self._router.provider_names(prep.route)
        return await self.billing.admit(
            self.user_id, self.state.quota, prep.route, providers, request, deadline
        )

    async def _unanswered(
        self, prep: Prepared, refused: Refused, reservation: Reservation | None
    ) -> None:
        """A call that ended without an answer: bill what providers charged for answers
        it refused, and free the rest of its reservation. The call's own error is what
        the caller gets; a failure here is logged, not raised over it."""
        charges = self.billing.charges(prep.session_id or "", prep.route, refused)
        settlement = reservation.end(charges.spend) if reservation is not None else None
        try:
            if charges.rows or settlement is not None:
                await self.turns.commit_undelivered(Turn(charges.rows, settlement=settlement))
        except Exception as exc:
            log.error(
                "spend of an unanswered call not recorded",
                extra={"error_type": type(exc).__name__, "refused_answers": len(refused)},
            )

    def _lookup(self, prep: Prepared) -> CachedAnswer | None:
        """This user's cached answer to the prepared request, if caching applies."""
        if prep.key is None:
            return None
        hit = self.cache.get(prep.key)
        self._record_lookup(hit is not None)
        return hit

    def _record_lookup(self, hit: bool) -> None:
        self._obs.cache_lookups.add(1, {"llm_sidecar.cache.hit": hit})
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event("llm_sidecar.cache.lookup", {"llm_sidecar.cache.hit": hit})
            span.set_attribute("llm_sidecar.cache.hit", hit)

    async def _answer_from_cache(
        self,
        ctx: UserExecutionContext,
        inp: AskInput,
        prep: Prepared,
        hit: CachedAnswer,
        start: float,
    ) -> AskResult:
        completion = hit.completion
        text = hit.structured_json if hit.structured_json is not None else completion.text
        charges = self.billing.charges(
            prep.session_id or "", prep.route, (), (hit.provider, Usage(), True)
        )
        await self._commit(prep, inp, charges, text, completion)
        structured = None
        if hit.structured_json is not None:
            structured = json.loads(hit.structured_json)
        return AskResult(
            text=text,
            provider=hit.provider,
            model=completion.model,
            response_id=completion.response_id,
            usage=Usage(),
            cached=True,
            latency_ms=(time.perf_counter() - start) * 1000,
            finish_reason=completion.finish_reason,
            attempts=(),
            request_id=ctx.request_id or "",
            structured=structured,
            tool_calls=completion.tool_calls,
            cost_micro_usd=0,
            route=prep.route,
        )

    async def _settle(
        self,
        ctx: UserExecutionContext,
        inp: AskInput,
        prep: Prepared,
        routed: RoutedCompletion,
        start: float,
        refused: Refused,
        reservation: Reservation | None,
    ) -> AskResult:
        """Bill, cache and remember a fresh answer; then build the result."""
        completion = routed.completion
        document = routed.document
        usage = completion.usage or estimate_usage(prep.request.messages, completion.text)
        self.limiter.record_tokens(usage.total_tokens)
        structured_json = None
        if prep.validator is not None and not completion.tool_calls:
            structured_json = canonical_json(document)
        if prep.key is not None and not self.closed:
            self.cache.put(
                prep.key,
                CachedAnswer(completion, routed.provider, prep.session_id or "", structured_json),
            )
        text = structured_json if structured_json is not None else completion.text
        charges = self.billing.charges(
            prep.session_id or "", prep.route, refused, (routed.provider, usage, False)
        )
        settlement = reservation.end(charges.spend) if reservation is not None else None
        await self._commit(prep, inp, charges, text, completion, settlement)
        return AskResult(
            text=text,
            provider=routed.provider,
            model=completion.model,
            response_id=completion.response_id,
            usage=usage,
            cached=False,
            latency_ms=(time.perf_counter() - start) * 1000,
            finish_reason=completion.finish_reason,
            attempts=routed.attempts,
            request_id=ctx.request_id or "",
            structured=document,
            tool_calls=completion.tool_calls,
            cost_micro_usd=charges.cost,
            route=prep.route,
        )

    async def _commit(
        self,
        prep: Prepared,
        inp: AskInput,
        charges: Charges,
        answer: str,
        completion: Completion,
        settlement: Settlement | None = None,
    ) -> None:
        """Bill the answer, in a conversation remember the exchange, and end the call's
        quota reservation (the writer applies it even when the writes fail)."""
        thread, messages = exchange(prep, inp, answer, completion)
        turn = Turn(charges.rows, thread, messages, settlement)
        try:
            await self.turns.commit(turn)
        except StoreUnavailableError:
            # The provider answered and billed, but the caller gets UNAVAILABLE: the
            # spend is billed as refused, with the settlement, once the store is back.
            await self.turns.commit_undelivered(turn.undelivered())
            raise

    async def ask_stream(
        self, ctx: UserExecutionContext, inp: AskInput, deadline: float | None = None
    ) -> AsyncIterator[str | ToolCall | StreamEvent]:
        """Stream one answer: text deltas and whole tool calls, then a
        :class:`StreamEvent` with the result."""
        self._check(ctx)
        self.limiter.acquire()
        try:
            async with self._turn_of(ctx, inp):
                start = time.perf_counter()
                prep = await self._prepare(ctx, inp)
                hit = self._lookup(prep)
                if hit is not None:
                    result = await self._answer_from_cache(ctx, inp, prep, hit, start)
                    if result.text:
                        yield result.text
                    for call in result.tool_calls:
                        yield call
                    yield StreamEvent(result)
                    return
                request = prep.request
                if request.json_schema is not None:
                    request = dataclasses.replace(request, json_schema=None)
                request, reservation = await self._admit(prep, request, deadline)
                answered = False
                refused: Refused = []
                try:
                    stream = self._router.stream(prep.route, request, deadline, refused)
                    async for item in stream:
                        if isinstance(item, RoutedCompletion):
                            answered = True
                            result = await self._settle(
                                ctx, inp, prep, item, start, refused, reservation
                            )
                            yield StreamEvent(result)
                        else:
                            yield item
                finally:
                    if not answered:
                        await self._unanswered(prep, refused, reservation)
        finally:
            self.limiter.release()

    async def is_cached(self, ctx: UserExecutionContext, inp: AskInput) -> bool:
        """Whether this exact request would be answered from this user's cache."""
        self._check(ctx)
        prep = await self._prepare(ctx, inp)
        return prep.key is not None and self.cache.contains(prep.key)

    async def conversation(
        self, ctx: UserExecutionContext, session_id: str, thread_id: str
    ) -> list[ChatMessage]:
        """This user's history of one thread."""
        self._check(ctx)
        return await self.conversations.load(session_id, thread_id)

    async def end_session(self, ctx: UserExecutionContext, session_id: str) -> tuple[int, int]:
        """Forget one session's history and cache entries; (threads, entries) cleared."""
        self._check(ctx)
        threads = await self.conversations.end_session(session_id)
        entries = self.cache.remove_session(session_id)
        return threads, entries

    async def usage(
        self, ctx: UserExecutionContext, session_id: str | None = None
    ) -> list[UsageRow]:
        """This user's usage rows."""
        self._check(ctx)
        return await self.usage_ledger.rows(session_id)

    def trim(self, keep_fraction: float, keep_turns: int) -> None:
        """Shed memory under pressure (degraded mode)."""
        self.cache.trim(keep_fraction)
        self.conversations.trim_local(keep_turns)

    def close(self) -> int:
        """Free this user's cache and process-local state; return cache entries freed."""
        self.closed = True
        freed = self.cache.close()
        self.conversations.forget_local()
        self._thread_locks.clear()
        return freed
