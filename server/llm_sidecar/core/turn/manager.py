"""The per-user LLM manager.

One manager serves one user. It owns that user's response cache, limiter and
conversation view, holds the context it was created from, and refuses any
call made with another user's context. Its calls run through the one
pipeline (:mod:`llm_sidecar.core.turn.pipeline`); it shares only the router
(provider health, no user data) and the billing rules with other managers.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any, TypeVar

from llm_sidecar.core.admission.billing import Billing
from llm_sidecar.core.admission.limits import UserLimiter
from llm_sidecar.core.guard.policy import Guard
from llm_sidecar.core.observability import NOOP, Observability
from llm_sidecar.core.routing.router import Router
from llm_sidecar.core.state.cache import UserCache
from llm_sidecar.core.state.responses import DEFAULT_RESPONSE_BOUNDS, ResponseBounds
from llm_sidecar.core.state.store import UserState
from llm_sidecar.core.turn.chat import ChatCall
from llm_sidecar.core.turn.embedding import EmbedCall
from llm_sidecar.core.turn.pipeline import Delta, Pipeline
from llm_sidecar.core.turn.responses import ResponseCall
from llm_sidecar.core.vocabulary.context import UserExecutionContext
from llm_sidecar.core.vocabulary.errors import IsolationViolationError
from llm_sidecar.core.vocabulary.models import (
    AskInput,
    AskResult,
    EmbedInput,
    EmbedResult,
    ResponseInput,
)

R = TypeVar("R")


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
        response_bounds: ResponseBounds = DEFAULT_RESPONSE_BOUNDS,
        guard: Guard | None = None,
    ) -> None:
        self.context = context
        self.user_id = context.user_id
        self.cache = cache
        #: This user's stores, as the factory handed them over.
        self.state = state
        self.limiter = limiter
        self.billing = billing or Billing()
        self._router = router
        self._cache_enabled = cache_enabled
        self._obs = observability
        self.response_bounds = response_bounds
        self.pipeline = Pipeline(
            cache=cache,
            state=state,
            limiter=limiter,
            billing=self.billing,
            observability=observability,
            guard=guard,
        )
        self.last_used = time.monotonic()
        self.closed = False

    def _check(self, ctx: UserExecutionContext) -> None:
        if ctx.user_id != self.user_id:
            raise IsolationViolationError("a manager was handed another user's context")
        self.last_used = time.monotonic()

    @property
    def in_flight(self) -> int:
        """Requests of this user being answered now."""
        return self.limiter.in_flight

    def _chat_parts(self, stream: bool) -> dict[str, Any]:
        """What every chat turn of this user is built with."""
        return {
            "stream": stream,
            "router": self._router,
            "conversations": self.state.conversations,
            "billing": self.billing,
            "observability": self._obs,
            "cache_enabled": self._cache_enabled,
        }

    def _chat(
        self, ctx: UserExecutionContext, inp: AskInput, route: str, *, stream: bool
    ) -> ChatCall:
        return ChatCall(ctx, inp, route=route, **self._chat_parts(stream))

    async def ask(
        self,
        ctx: UserExecutionContext,
        inp: AskInput,
        deadline: float | None = None,
        route: str = "",
    ) -> AskResult:
        """Answer one prompt for this user, inside its conversation unless opted out.
        ``route``: the model's route when the caller resolved it already."""
        self._check(ctx)
        return await self._unary(self._chat(ctx, inp, route, stream=False), deadline, AskResult)

    async def _unary(self, call: Any, deadline: float | None, kind: type[R]) -> R:
        """A call's result: the pipeline consumed to its end, so its generator finishes
        here."""
        result = None
        async for item in self.pipeline.run(call, deadline):
            result = item
        assert isinstance(result, kind)
        return result

    def _respond(
        self, ctx: UserExecutionContext, response: ResponseInput, route: str, *, stream: bool
    ) -> ResponseCall:
        return ResponseCall(
            ctx,
            response,
            route=route,
            responses=self.state.responses,
            bounds=self.response_bounds,
            **self._chat_parts(stream),
        )

    async def respond(
        self,
        ctx: UserExecutionContext,
        response: ResponseInput,
        deadline: float | None = None,
        route: str = "",
    ) -> AskResult:
        """Answer one response-style call: after its stored chain, stored in turn."""
        self._check(ctx)
        call = self._respond(ctx, response, route, stream=False)
        return await self._unary(call, deadline, AskResult)

    def respond_stream(
        self,
        ctx: UserExecutionContext,
        response: ResponseInput,
        deadline: float | None = None,
        route: str = "",
    ) -> AsyncGenerator[Delta | AskResult, None]:
        """Stream one response-style call (see :meth:`ask_stream`)."""
        self._check(ctx)
        return self.pipeline.run(self._respond(ctx, response, route, stream=True), deadline)

    def ask_stream(
        self,
        ctx: UserExecutionContext,
        inp: AskInput,
        deadline: float | None = None,
        route: str = "",
    ) -> AsyncGenerator[Delta | AskResult, None]:
        """Stream one answer: text deltas and whole tool calls, then the
        :class:`AskResult`. The pipeline's own generator, handed back as it is."""
        self._check(ctx)
        return self.pipeline.run(self._chat(ctx, inp, route, stream=True), deadline)

    async def embed(
        self,
        ctx: UserExecutionContext,
        inp: EmbedInput,
        deadline: float | None = None,
        route: str = "",
    ) -> EmbedResult:
        """Embed texts for this user: from its cache where it can, the rest upstream."""
        self._check(ctx)
        call = EmbedCall(
            ctx,
            inp,
            route=route,
            router=self._router,
            observability=self._obs,
            cache_enabled=self._cache_enabled,
        )
        return await self._unary(call, deadline, EmbedResult)

    async def is_cached(self, ctx: UserExecutionContext, inp: AskInput, route: str = "") -> bool:
        """Whether this exact request would be answered from this user's cache."""
        self._check(ctx)
        call = self._chat(ctx, inp, route, stream=False)
        await call.prepare()
        key = call.prep.key
        return key is not None and self.cache.contains(key)

    async def end_session(self, ctx: UserExecutionContext, session_id: str) -> tuple[int, int]:
        """Forget one session's history, stored responses and cache entries; (threads,
        entries) cleared."""
        self._check(ctx)
        threads = await self.state.conversations.end_session(session_id)
        await self.state.responses.end_session(session_id)
        entries = self.cache.remove_session(session_id)
        return threads, entries

    def trim(self, keep_fraction: float, keep_turns: int) -> None:
        """Shed memory under pressure (degraded mode)."""
        self.cache.trim(keep_fraction)
        self.state.conversations.trim_local(keep_turns)

    def close(self) -> int:
        """Free this user's cache and process-local state; return cache entries freed."""
        self.closed = True
        freed = self.cache.close()
        self.state.conversations.forget_local()
        return freed
