"""The chat kind of call (Ask, AskFull, AskStructured, AskStream; the HTTP chat APIs):
what the pipeline's steps mean for a chat turn."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from llm_sidecar.core.admission.billing import Billing, Worst
from llm_sidecar.core.guard.messages import guard_messages, restore_completion
from llm_sidecar.core.guard.shield import Shield
from llm_sidecar.core.observability import Observability
from llm_sidecar.core.routing.router import STREAMING, UNARY, Refused, Router
from llm_sidecar.core.state.cache import UserCache
from llm_sidecar.core.state.conversation import UserConversations
from llm_sidecar.core.turn.assembly import Prepared, estimate_usage, exchange, prepare
from llm_sidecar.core.turn.pipeline import Answer, Billed, Delta, record_lookup
from llm_sidecar.core.turn.structured import canonical_json, validate_output
from llm_sidecar.core.vocabulary.context import UserExecutionContext
from llm_sidecar.core.vocabulary.models import (
    AskInput,
    AskResult,
    CachedAnswer,
    ChatMessage,
    Completion,
    RoutedCompletion,
    Usage,
)


class ChatCall:
    """One chat turn of one user: unary (validated against a schema when one is given)
    or streamed."""

    __slots__ = (
        "_billing",
        "_conversations",
        "_obs",
        "_prep",
        "_router",
        "cache_enabled",
        "ctx",
        "inp",
        "route",
        "session_id",
        "stream",
    )

    def __init__(
        self,
        ctx: UserExecutionContext,
        inp: AskInput,
        *,
        route: str = "",
        stream: bool,
        router: Router,
        conversations: UserConversations,
        billing: Billing,
        observability: Observability,
        cache_enabled: bool,
    ) -> None:
        self.ctx = ctx
        self.inp = inp
        self.stream = stream
        self.cache_enabled = cache_enabled
        self._router = router
        self._conversations = conversations
        self._billing = billing
        self._obs = observability
        #: The model's route: resolved by the caller already, or at :meth:`prepare`.
        self.route = route
        self.session_id = ctx.session_id or ""
        self._prep: Prepared | None = None

    @property
    def prep(self) -> Prepared:
        """The prepared call (after :meth:`prepare`)."""
        assert self._prep is not None
        return self._prep

    def thread(self) -> tuple[str, str] | None:
        if self.ctx.session_id is None or self.inp.skip_history:
            return None
        return self.ctx.session_id, self.ctx.conversation_thread

    async def prepare(self) -> None:
        """The thread's history, then the request in order; the output capped when a
        quota needs a bound on the call (a visible step, not a rewrite in admission)."""
        ctx, inp = self.ctx, self.inp
        if not self.route:
            self.route = self._router.resolve(inp.model)
        history: list[ChatMessage] = []
        thread = self.thread()
        if thread is not None:
            history = await self._conversations.load(*thread)
        hint = ""
        if ctx.session_id is not None:
            hint = self._obs.keyed(ctx.user_id, ctx.session_id, ctx.conversation_thread)
        prep = prepare(ctx, inp, self.route, history, cache=self.cache_enabled, cache_hint=hint)
        cap = self._billing.output_cap()
        if cap is not None and prep.request.params.max_tokens is None:
            params = dataclasses.replace(prep.request.params, max_tokens=cap)
            prep.request = dataclasses.replace(prep.request, params=params)
        if self.stream and prep.request.json_schema is not None:
            prep.request = dataclasses.replace(prep.request, json_schema=None)
        self._prep = prep

    def guard(self, shield: Shield) -> None:
        """Every turn as sent upstream, guarded (the cache key and the history keep the
        caller's own text: both are the user's, and only the user's)."""
        request = self.prep.request
        messages = guard_messages(shield, request.messages)
        if messages is not request.messages:
            self.prep.request = dataclasses.replace(request, messages=messages)

    def restored(self, routed: RoutedCompletion, shield: Shield) -> RoutedCompletion:
        """The answer's text, tool calls and parsed document, restored."""
        structured = self.prep.validator is not None and not self.stream
        completion = restore_completion(shield, routed.answer, structured)
        document = routed.document
        if structured and document is not None:
            document = shield.names.restore_tree(document)
        return dataclasses.replace(routed, answer=completion, document=document)

    def cached(self, cache: UserCache, started: float) -> tuple[str, Answer[AskResult]] | None:
        key = self.prep.key
        if key is None:
            return None
        hit = cache.get(key)
        if not isinstance(hit, CachedAnswer):
            hit = None  # (embedding keys live apart: never a vector here)
        record_lookup(self._obs, hit is not None)
        if hit is None:
            return None
        return hit.provider, self._from_cache(hit, started)

    def _from_cache(self, hit: CachedAnswer, started: float) -> Answer[AskResult]:
        completion = hit.completion
        text = hit.structured_json if hit.structured_json is not None else completion.text
        structured = None if hit.structured_json is None else json.loads(hit.structured_json)
        result = self._result(
            text, hit.provider, completion, Usage(), 0, (), started, structured, cached=True
        )
        answer = self._answer(result, completion)
        if not self.stream:
            return answer
        replay = ((text,) if text else ()) + completion.tool_calls
        return dataclasses.replace(answer, replay=replay)

    def worst_case(self) -> Worst:
        request = self.prep.request
        return Worst(
            self.route,
            self._billing.input_bound(request),
            request.params.max_tokens or self._billing.default_output_cap,
        )

    def attempts(
        self, deadline: float | None, refused: Refused
    ) -> AsyncIterator[Delta | RoutedCompletion]:
        validate = None if self.stream else self._validator()
        opener = STREAMING if self.stream else UNARY
        return self._router.route(
            self.route, self.prep.request, deadline, validate, refused, opener=opener
        )

    def _validator(self) -> Any:
        validator = self.prep.validator
        if validator is None:
            return None

        def validate(completion: Completion) -> Any:
            if completion.tool_calls:
                return None  # the model called tools instead of answering
            return validate_output(completion.text, validator)

        return validate

    def billed(self, routed: RoutedCompletion) -> Billed:
        completion = routed.answer
        usage = completion.usage or estimate_usage(self.prep.request.messages, completion.text)
        return Billed(routed.provider, usage)

    def answered(
        self,
        routed: RoutedCompletion,
        billed: Billed,
        cost: int | None,
        started: float,
        cache: UserCache,
    ) -> Answer[AskResult]:
        """The result; the answer cached (a structured one as its canonical JSON)."""
        prep, completion = self.prep, routed.answer
        structured_json = None
        if prep.validator is not None and not completion.tool_calls and not self.stream:
            structured_json = canonical_json(routed.document)
        if prep.key is not None:
            entry = CachedAnswer(completion, routed.provider, self.session_id, structured_json)
            cache.put(prep.key, entry)
        text = structured_json if structured_json is not None else completion.text
        result = self._result(
            text,
            routed.provider,
            completion,
            billed.usage,
            cost,
            routed.attempts,
            started,
            routed.document,
        )
        return self._answer(result, completion)

    def _answer(self, result: AskResult, completion: Completion) -> Answer[AskResult]:
        thread, messages = exchange(self.prep, self.inp, result.text, completion)
        return Answer(result, thread, messages)

    def _result(
        self,
        text: str,
        provider: str,
        completion: Completion,
        usage: Usage,
        cost: int | None,
        attempts: tuple[Any, ...],
        started: float,
        structured: Any,
        *,
        cached: bool = False,
    ) -> AskResult:
        return AskResult(
            text=text,
            provider=provider,
            model=completion.model,
            response_id=completion.response_id,
            usage=usage,
            cached=cached,
            latency_ms=(time.perf_counter() - started) * 1000,
            finish_reason=completion.finish_reason,
            attempts=attempts,
            request_id=self.ctx.request_id or "",
            structured=structured,
            tool_calls=completion.tool_calls,
            cost_micro_usd=cost,
            route=self.route,
        )
