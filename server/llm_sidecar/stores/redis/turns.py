"""The one writer of a user's Redis state: usage and exchange of an answer in one script call."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from llm_sidecar.core.state.conversation import HistoryBounds, MemoryUserConversations
from llm_sidecar.core.state.quota_store import Settlement
from llm_sidecar.core.state.responses import (
    DEFAULT_RESPONSE_BOUNDS,
    MemoryUserResponses,
    ResponseBounds,
    StoredResponse,
)
from llm_sidecar.core.state.turns import Turn
from llm_sidecar.core.state.usage import UsageRow
from llm_sidecar.core.vocabulary.models import ChatMessage
from llm_sidecar.stores.redis.backend import RedisBackend
from llm_sidecar.stores.redis.codec import encode_message, encode_response, usage_increments
from llm_sidecar.stores.redis.keys import UserKeys
from llm_sidecar.stores.redis.quotas import RedisUserQuota
from llm_sidecar.stores.redis.scripts import (
    ResponseParts,
    SettleParts,
    ThreadParts,
    commit_call,
)


class RedisTurnWriter:
    """Writes one user's turns, exchanges and usage, each exactly once.

    It owns the script's keys and the history bounds. With ``local`` set (best
    effort), every exchange is also kept in that bounded copy, which the
    conversation view serves while Redis is unreachable.
    """

    __slots__ = (
        "_backend",
        "_bounds",
        "_keys",
        "_local",
        "_local_responses",
        "_quota",
        "_response_ttl_ms",
    )

    def __init__(
        self,
        backend: RedisBackend,
        keys: UserKeys,
        bounds: HistoryBounds,
        local: MemoryUserConversations | None,
        quota: RedisUserQuota | None = None,
        *,
        responses: ResponseBounds = DEFAULT_RESPONSE_BOUNDS,
        local_responses: MemoryUserResponses | None = None,
    ) -> None:
        self._backend = backend
        self._keys = keys
        self._bounds = (2 * bounds.max_turns, bounds.max_bytes, int(bounds.ttl_seconds * 1000))
        self._local = local
        self._response_ttl_ms = int(responses.ttl_seconds * 1000)
        #: Best effort: the stored responses this process wrote, served in an outage.
        self._local_responses = local_responses
        #: The user's quota windows, when they are in this Redis too: a turn's
        #: settlement is then written in the turn's own script call.
        self._quota = quota

    async def commit(self, turn: Turn) -> None:
        """Record the usage, append the exchange (when ``turn.thread`` is set) and apply
        the settlement: in the same script call when the reservation is held here.
        Raises StoreUnavailableError (required durability, Redis down) having applied
        nothing."""
        await self._commit(turn, replay=False)

    async def commit_undelivered(self, turn: Turn) -> None:
        """Record the usage and settle, in one script call queued until Redis takes it,
        in every durability mode: the spend happened, and is applied exactly once."""
        await self._commit(turn, replay=True)

    async def _commit(self, turn: Turn, *, replay: bool) -> None:
        settlement = turn.settlement
        fold = settlement is not None and settlement.foldable and settlement.store is self._quota
        await self._write(
            usage_increments(turn.usage),
            turn.thread,
            turn.messages,
            settlement if fold else None,
            replay=replay,
            stored=turn.stored,
            write_id=turn.write_id,
        )
        if settlement is not None and not fold:
            await settlement.apply()

    async def append(
        self, session_id: str, thread_id: str, messages: Sequence[ChatMessage]
    ) -> None:
        """Append an exchange alone."""
        await self._write([], (session_id, thread_id), messages)

    async def record(self, rows: Sequence[UsageRow]) -> None:
        """Record usage alone."""
        await self._write(usage_increments(rows))

    async def store(self, response: StoredResponse) -> None:
        """Store a response alone."""
        await self._write([], stored=response)

    async def _write(
        self,
        increments: list[str | int],
        thread: tuple[str, str] | None = None,
        messages: Sequence[ChatMessage] = (),
        settlement: Settlement | None = None,
        *,
        replay: bool = False,
        stored: StoredResponse | None = None,
        write_id: str = "",
    ) -> None:
        keys = self._keys
        settle = None
        if settlement is not None and self._quota is not None:
            windows, window_args = self._quota.window_parts(settlement.claims, settlement.amounts)
            held, expiry = self._quota.bookkeeping()
            settle = SettleParts(held, expiry, windows, settlement.reservation_id, window_args)
        appended = None
        if thread is not None:
            if self._local is not None:
                await self._local.append(*thread, messages)
            appended = ThreadParts(
                keys.thread(*thread),
                keys.session(thread[0]),
                self._bounds,
                [encode_message(m) for m in messages],
            )
        script_keys, args = commit_call(
            keys.record(write_id or uuid.uuid4().hex),
            keys.usage,
            increments,
            settle=settle,
            thread=appended,
            response=await self._response_parts(stored),
        )
        script = self._backend.commit_script

        async def op() -> None:
            await script(keys=script_keys, args=args)

        await self._backend.write(op, replay=replay)

    async def _response_parts(self, stored: StoredResponse | None) -> ResponseParts | None:
        if stored is None:
            return None
        if self._local_responses is not None:
            await self._local_responses.put(stored)
        session = self._keys.response_session(stored.session_id) if stored.session_id else ""
        key = self._keys.response(stored.id)
        return ResponseParts(key, session, self._response_ttl_ms, encode_response(stored))
