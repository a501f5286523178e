"""The application service: what the transport calls, free of any wire format.

It validates requests against the configured limits, finds the caller's
manager through the registry, and keeps the process-wide figures (in-flight
requests) that the resource monitor reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, Callable

from llm_sidecar.core.admission.quotas import QuotaTotals, QuotaView
from llm_sidecar.core.routing.router import Router
from llm_sidecar.core.state.conversation import UserConversations
from llm_sidecar.core.state.responses import (
    ChainItem,
    StoredResponse,
    chain_items,
    is_response_id,
)
from llm_sidecar.core.state.store import UserState
from llm_sidecar.core.state.store_status import MEMORY_ONLY, StoreHealth, StoreStatus
from llm_sidecar.core.state.usage import UsageRow, total_of
from llm_sidecar.core.turn.checks import (
    check_agent_input,
    check_tool_results,
    unanswered_tool_results,
)
from llm_sidecar.core.turn.registry import LLMManagerFactory, ManagerRegistry
from llm_sidecar.core.turn.supervisor import ResourceMonitor, ResourceSnapshot
from llm_sidecar.core.vocabulary.context import SESSION_ID_KEY, UserExecutionContext, validate_id
from llm_sidecar.core.vocabulary.errors import (
    InvalidRequestError,
    NotFoundError,
    RequestTooLargeError,
)
from llm_sidecar.core.vocabulary.hosted import McpRecord
from llm_sidecar.core.vocabulary.models import (
    AskInput,
    AskResult,
    ChatMessage,
    EmbedInput,
    EmbedResult,
    ResponseInput,
)
from llm_sidecar.core.vocabulary.tools import ToolCall
from llm_sidecar.mcp_gateway.hosted import HostedLoop
from llm_sidecar.mcp_gateway.sessions import SessionTable
from llm_sidecar.views import ProviderView, provider_views

MAX_MODEL_NAME = 128
MAX_PROMPT_SETTING = "server.max_prompt_chars"
MAX_STOP_SEQUENCES = 8
MAX_STOP_LENGTH = 256
MAX_DIMENSIONS = 65536


#: When a call must end: a time (``time.monotonic()``), none, or how to work it out
#: from the call's route once it is resolved (an HTTP route's own timeout).
Deadline = float | None | Callable[[str], float]


def at(deadline: Deadline, route: str) -> float | None:
    """The deadline of a call on ``route``."""
    return deadline(route) if callable(deadline) else deadline


class LLMService:
    """Every operation the sidecar offers, for one caller context at a time."""

    def __init__(
        self,
        *,
        registry: ManagerRegistry,
        factory: LLMManagerFactory,
        router: Router,
        monitor: ResourceMonitor | None = None,
        max_prompt_chars: int,
        store: StoreHealth | None = None,
        embedding_limits: tuple[int, int] = (2048, 512 * 1024),
    ) -> None:
        self.store = store
        self.registry = registry
        self.factory = factory
        self.router = router
        self.monitor = monitor
        self.max_prompt_chars = max_prompt_chars
        #: An Embed call's most texts, and most characters over all of them.
        self.max_embed_inputs, self.max_embed_chars = embedding_limits
        #: The MCP gateway's upstream sessions, which end with the user's session.
        self.tool_sessions: SessionTable | None = None
        #: The tool loop of responses with hosted MCP tools (none: they are refused).
        self.hosted: HostedLoop | None = None

    # -- validation -----------------------------------------------------------------

    def validate(self, inp: AskInput) -> str:
        """Reject malformed or oversized requests with the field and limit named; the
        route the request names, resolved once for the whole call."""
        if not inp.prompt.strip() and not inp.messages:
            raise InvalidRequestError("prompt", "is empty (send a prompt, messages, or both)")
        size = len(inp.prompt) + len(inp.system_prompt)
        size += sum(len(m.content) for m in inp.messages)
        if size > self.max_prompt_chars:
            raise RequestTooLargeError(
                "prompt",
                size,
                self.max_prompt_chars,
                "characters",
                setting=MAX_PROMPT_SETTING,
            )
        if len(inp.model) > MAX_MODEL_NAME:
            raise InvalidRequestError("model", f"is longer than {MAX_MODEL_NAME} characters")
        check_agent_input(inp)
        # Before any manager exists: a refused call must leave nothing behind.
        route = self.router.resolve(inp.model)
        p = inp.params
        if p.temperature is not None and not 0.0 <= p.temperature <= 2.0:
            raise InvalidRequestError("params.temperature", "must be between 0 and 2")
        if p.top_p is not None and not 0.0 <= p.top_p <= 1.0:
            raise InvalidRequestError("params.top_p", "must be between 0 and 1")
        if p.max_tokens is not None and p.max_tokens < 1:
            raise InvalidRequestError("params.max_tokens", "must be at least 1")
        if len(p.stop) > MAX_STOP_SEQUENCES or any(len(s) > MAX_STOP_LENGTH for s in p.stop):
            raise InvalidRequestError(
                "params.stop",
                f"allows {MAX_STOP_SEQUENCES} sequences of {MAX_STOP_LENGTH} characters",
            )
        return route

    # -- asking ---------------------------------------------------------------------

    async def ask(self, ctx: UserExecutionContext, inp: AskInput, deadline: Deadline) -> AskResult:
        """Answer a prompt for the caller."""
        route = self.validate(inp)
        await self._check_tool_results(ctx, inp)
        return await self.registry.get_or_create(ctx).ask(ctx, inp, at(deadline, route), route)

    def ask_stream(
        self, ctx: UserExecutionContext, inp: AskInput, deadline: Deadline
    ) -> AsyncGenerator[str | ToolCall | AskResult, None]:
        """Stream an answer for the caller: text deltas and tool calls, then the result.

        Validates and finds the manager now; the manager's own stream is handed
        back as it is, so no layer here touches each delta.
        """
        route = self.validate(inp)
        when = at(deadline, route)
        if unanswered_tool_results(inp.messages):  # the rare path: history first
            return self._checked_stream(ctx, inp, when, route)
        return self.registry.get_or_create(ctx).ask_stream(ctx, inp, when, route)

    async def _checked_stream(
        self, ctx: UserExecutionContext, inp: AskInput, deadline: float | None, route: str
    ) -> AsyncGenerator[str | ToolCall | AskResult, None]:
        await self._check_tool_results(ctx, inp)
        async for item in self.registry.get_or_create(ctx).ask_stream(ctx, inp, deadline, route):
            yield item

    async def _check_tool_results(self, ctx: UserExecutionContext, inp: AskInput) -> None:
        """A tool turn must answer a call made earlier: in the request, or in the thread's
        history (read without creating a manager: a refused call leaves nothing behind)."""
        pending = unanswered_tool_results(inp.messages)
        if not pending:
            return
        history: list[ChatMessage] = []
        if ctx.session_id is not None and not inp.skip_history:
            history = await self._conversations(ctx).load(ctx.session_id, ctx.conversation_thread)
        check_tool_results(pending, history)

    def validate_embed(self, inp: EmbedInput, field: str = "inputs") -> str:
        """Reject an empty, oversized or malformed batch with the field and limit named
        (``field``: what the caller's API calls the texts); the embedding route."""
        if not inp.texts:
            raise InvalidRequestError(field, "is empty (send one or more texts)")
        if len(inp.texts) > self.max_embed_inputs:
            raise RequestTooLargeError(
                field,
                len(inp.texts),
                self.max_embed_inputs,
                "texts",
                setting="embeddings.max_inputs",
            )
        total = sum(len(text) for text in inp.texts)
        if total > self.max_embed_chars:
            raise RequestTooLargeError(
                field,
                total,
                self.max_embed_chars,
                "characters",
                setting="embeddings.max_total_chars",
            )
        for i, text in enumerate(inp.texts):
            if not text.strip():
                raise InvalidRequestError(f"{field}[{i}]", "is empty")
        if inp.dimensions is not None and not 1 <= inp.dimensions <= MAX_DIMENSIONS:
            raise InvalidRequestError("dimensions", f"must be between 1 and {MAX_DIMENSIONS}")
        if len(inp.model) > MAX_MODEL_NAME:
            raise InvalidRequestError("model", f"is longer than {MAX_MODEL_NAME} characters")
        return self.router.resolve(inp.model, embedding=True)

    async def embed(
        self,
        ctx: UserExecutionContext,
        inp: EmbedInput,
        deadline: Deadline,
        *,
        field: str = "inputs",
    ) -> EmbedResult:
        """Embed the caller's texts: one vector per text, in order."""
        route = self.validate_embed(inp, field)
        return await self.registry.get_or_create(ctx).embed(ctx, inp, at(deadline, route), route)

    async def is_cached(self, ctx: UserExecutionContext, inp: AskInput) -> bool:
        """Whether the caller's cache would answer this request."""
        route = self.validate(inp)
        manager = self.registry.get(ctx.user_id)
        return manager is not None and await manager.is_cached(ctx, inp, route)

    # -- responses --------------------------------------------------------------------

    async def respond(
        self, ctx: UserExecutionContext, response: ResponseInput, deadline: Deadline
    ) -> AskResult:
        """Answer a response-style call for the caller (stored unless it says not to)."""
        route = self._validate_response(response)
        manager = self.registry.get_or_create(ctx)
        return await manager.respond(ctx, response, at(deadline, route), route)

    async def respond_hosted(
        self, ctx: UserExecutionContext, response: ResponseInput, deadline: Deadline
    ) -> tuple[AskResult, tuple[McpRecord, ...]]:
        """A response with hosted MCP tools, once the sidecar has run their loop: the
        answer, and the loop's steps (each model call one turn of the pipeline)."""
        inp = response.inp
        if response.approvals and not inp.messages:
            # Approval answers alone are an input: the calls they run are its turns.
            inp = dataclasses.replace(inp, prompt="(approvals)")
        route = self._validate_response(dataclasses.replace(response, inp=inp))
        if self.hosted is None:
            raise InvalidRequestError("tools", "MCP tools are not available here")
        manager = self.registry.get_or_create(ctx)

        async def one_round(step: ResponseInput) -> AskResult:
            return await manager.respond(ctx, step, at(deadline, route), route)

        return await self.hosted.run(ctx, response, one_round, self.stored_chain)

    def respond_stream(
        self, ctx: UserExecutionContext, response: ResponseInput, deadline: Deadline
    ) -> AsyncGenerator[str | ToolCall | AskResult, None]:
        """Stream a response-style call: text deltas and tool calls, then the result."""
        route = self._validate_response(response)
        manager = self.registry.get_or_create(ctx)
        return manager.respond_stream(ctx, response, at(deadline, route), route)

    def _validate_response(self, response: ResponseInput) -> str:
        route = self.validate(response.inp)
        previous = response.previous_response_id
        if previous is not None and not is_response_id(previous):
            raise NotFoundError("previous_response_id", "response")
        return route

    async def stored_chain(
        self, ctx: UserExecutionContext, response_id: str
    ) -> list[StoredResponse]:
        """One of the caller's stored responses and its ancestors, oldest first; the
        same NotFoundError for an id that never existed and for another user's."""
        chain = None
        if is_response_id(response_id):
            chain = await self._state(ctx).responses.chain(response_id)
        if chain is None:
            raise NotFoundError("response_id", "response")
        return chain

    async def response_input(self, ctx: UserExecutionContext, response_id: str) -> list[ChainItem]:
        """What one of the caller's stored responses was made from: the context of the
        chain before it (as far as it still exists, within the bounds), then its own
        input (NotFoundError as above)."""
        chain = await self.stored_chain(ctx, response_id)
        last = chain[-1]
        bound = self.factory.state.memory.response_bounds.max_chain_bytes
        items = chain_items(chain[:-1], bound) if len(chain) > 1 else []
        return items + [ChainItem(last.id, False, i, m) for i, m in enumerate(last.input)]

    async def stored_response(self, ctx: UserExecutionContext, response_id: str) -> StoredResponse:
        """One of the caller's stored responses (NotFoundError as above)."""
        found = None
        if is_response_id(response_id):
            found = await self._state(ctx).responses.get(response_id)
        if found is None:
            raise NotFoundError("response_id", "response")
        return found

    async def delete_response(self, ctx: UserExecutionContext, response_id: str) -> None:
        """Delete one of the caller's stored responses (NotFoundError as above)."""
        if not (
            is_response_id(response_id) and await self._state(ctx).responses.delete(response_id)
        ):
            raise NotFoundError("response_id", "response")

    # -- conversations and usage ----------------------------------------------------

    def _state(self, ctx: UserExecutionContext) -> UserState:
        """The caller's stores: its manager's, or (no manager here) the store's own,
        still scoped to the caller."""
        manager = self.registry.get(ctx.user_id)
        if manager is not None:
            return manager.state
        return self.factory.state.for_user(ctx.user_id)

    def _conversations(self, ctx: UserExecutionContext) -> UserConversations:
        return self._state(ctx).conversations

    @staticmethod
    def _session(ctx: UserExecutionContext, requested: str, *, required: bool = True) -> str:
        if requested:
            validate_id("session_id", requested, required=True)
            return requested
        if ctx.session_id is None and required:
            raise InvalidRequestError(
                "session_id", f"is required, in the request or as '{SESSION_ID_KEY}' metadata"
            )
        return ctx.session_id or ""

    async def conversation(
        self, ctx: UserExecutionContext, session_id: str, thread_id: str
    ) -> tuple[str, str, list[ChatMessage]]:
        """The caller's history of one thread: (session, thread, messages)."""
        session = self._session(ctx, session_id)
        if thread_id:
            validate_id("thread_id", thread_id, required=True)
        thread = thread_id or ctx.conversation_thread
        return session, thread, await self._conversations(ctx).load(session, thread)

    async def end_session(self, ctx: UserExecutionContext, session_id: str) -> tuple[int, int]:
        """Clear one session of the caller: (threads, cache entries) cleared."""
        session = self._session(ctx, session_id)
        if self.tool_sessions is not None:
            await self.tool_sessions.end_session(ctx.user_id, session)
        manager = self.registry.get(ctx.user_id)
        if manager is not None:
            return await manager.end_session(ctx, session)
        state = self._state(ctx)
        await state.responses.end_session(session)
        return await state.conversations.end_session(session), 0

    async def release(self, ctx: UserExecutionContext) -> tuple[bool, int]:
        """Free the caller's manager: (released, cache entries freed)."""
        if self.tool_sessions is not None:
            await self.tool_sessions.release_user(ctx.user_id)
        freed = await self.registry.release(ctx.user_id)
        return freed is not None, freed or 0

    async def usage(
        self, ctx: UserExecutionContext, session_id: str
    ) -> tuple[UsageRow, list[UsageRow], list[QuotaView]]:
        """The caller's usage: (total, rows, active quotas)."""
        session = self._session(ctx, session_id, required=False) if session_id else None
        state = self._state(ctx)
        rows = await state.usage.rows(session)
        quotas = await self.factory.billing.quota_status(state.quotas)
        return total_of(rows), rows, quotas

    # -- operator views ------------------------------------------------------------

    def providers(self) -> list[ProviderView]:
        """Every provider with its circuit and recent figures."""
        return provider_views(self.router)

    def resources(self) -> ResourceSnapshot | None:
        """Current resource figures and mode; reading changes nothing."""
        return self.monitor.read() if self.monitor is not None else None

    def quota_totals(self) -> list[QuotaTotals]:
        """Each active quota's admissions and refusals here, over every user."""
        return list(self.factory.billing.gate.totals.values())

    def store_status(self) -> StoreStatus:
        """The shared state store's figures (``memory`` when there is none)."""
        return self.store.status() if self.store is not None else MEMORY_ONLY
