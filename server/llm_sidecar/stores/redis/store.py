"""Per-user state in Redis, shared by every sidecar using the same server."""

from __future__ import annotations

from llm_sidecar.core.state.conversation import (
    HistoryBounds,
    MemoryUserConversations,
    UserConversations,
)
from llm_sidecar.core.state.quota_store import UserQuota, UserQuotas
from llm_sidecar.core.state.responses import MemoryUserResponses, UserResponses
from llm_sidecar.core.state.store import MemoryStateStore, UserState
from llm_sidecar.core.state.turns import SeparateWrites, TurnWriter
from llm_sidecar.core.state.usage import UserUsage
from llm_sidecar.stores.redis.backend import RedisBackend
from llm_sidecar.stores.redis.conversations import RedisUserConversations
from llm_sidecar.stores.redis.keys import UserKeys
from llm_sidecar.stores.redis.quotas import RedisUserQuota
from llm_sidecar.stores.redis.responses import RedisUserResponses
from llm_sidecar.stores.redis.turns import RedisTurnWriter
from llm_sidecar.stores.redis.usage import RedisUserUsage


class RedisStateStore:
    """Conversations, usage and/or quota windows in Redis (``redis.conversations`` /
    ``redis.usage`` / ``redis.quotas``); whatever is not in Redis comes from ``memory``."""

    def __init__(
        self,
        backend: RedisBackend,
        bounds: HistoryBounds,
        memory: MemoryStateStore,
        *,
        conversations: bool = True,
        usage: bool = True,
        quotas: bool = True,
    ) -> None:
        self.backend = backend
        self.bounds = bounds
        self._memory = memory
        self._conversations = conversations
        self._usage = usage
        self._quotas = quotas

    def for_user(self, user_id: str) -> UserState:
        backend = self.backend
        keys = UserKeys(backend.prefix, user_id)
        memory_quotas = self._memory.quotas
        shared_quota = (
            RedisUserQuota(backend, keys, memory_quotas.keep_seconds) if self._quotas else None
        )
        local_quota = memory_quotas.for_user(user_id)
        quota: UserQuota = shared_quota or local_quota
        local = None if backend.required else MemoryUserConversations(self.bounds)
        bounds = self._memory.response_bounds
        local_responses = None if backend.required else MemoryUserResponses(bounds)
        writer = RedisTurnWriter(
            backend,
            keys,
            self.bounds,
            local,
            shared_quota,
            responses=bounds,
            local_responses=local_responses,
        )
        conversations: UserConversations = (
            RedisUserConversations(backend, keys, writer, local)
            if self._conversations
            else MemoryUserConversations(self.bounds)
        )
        # Stored responses are conversation state: they live where conversations do.
        responses: UserResponses = (
            RedisUserResponses(backend, keys, writer, local_responses)
            if self._conversations
            else MemoryUserResponses(bounds)
        )
        usage: UserUsage = (
            RedisUserUsage(backend, keys, writer)
            if self._usage
            else self._memory.usage.for_user(user_id)
        )
        # Both in Redis: one script call per answer. Otherwise each kind writes its own.
        both = self._conversations and self._usage
        turns: TurnWriter = writer if both else SeparateWrites(conversations, usage, responses)
        return UserState(conversations, usage, turns, UserQuotas(quota, local_quota), responses)

    @property
    def memory(self) -> MemoryStateStore:
        return self._memory

    async def aclose(self) -> None:
        await self.backend.aclose()
