"""One user's conversations in Redis, with a bounded local copy for outages."""

from __future__ import annotations

from collections.abc import Sequence

from llm_sidecar.core.state.conversation import MemoryUserConversations
from llm_sidecar.core.vocabulary.models import ChatMessage
from llm_sidecar.stores.redis.backend import FAULTS, RedisBackend
from llm_sidecar.stores.redis.codec import decode_message
from llm_sidecar.stores.redis.keys import UserKeys
from llm_sidecar.stores.redis.turns import RedisTurnWriter


class RedisUserConversations:
    """Reads a user's threads from Redis; writes go through the user's turn writer.

    ``local`` (best effort only) is the bounded copy the writer keeps; it is
    served while Redis is unreachable and refreshed from every good read.
    """

    def __init__(
        self,
        backend: RedisBackend,
        keys: UserKeys,
        writer: RedisTurnWriter,
        local: MemoryUserConversations | None,
    ) -> None:
        self._backend = backend
        self._keys = keys
        self._writer = writer
        self._local = local

    async def load(self, session_id: str, thread_id: str) -> list[ChatMessage]:
        backend = self._backend
        if backend.clean:
            try:
                raw = await backend.client.lrange(self._keys.thread(session_id, thread_id), 0, -1)
            except FAULTS as exc:
                backend.mark_down(exc)
            else:
                messages = [decode_message(item) for item in raw]
                if self._local is not None:
                    await self._local.mirror(session_id, thread_id, messages)
                return messages
        if self._local is None:
            raise backend.unavailable()
        return await self._local.load(session_id, thread_id)

    async def append(
        self, session_id: str, thread_id: str, messages: Sequence[ChatMessage]
    ) -> None:
        await self._writer.append(session_id, thread_id, messages)

    async def end_session(self, session_id: str) -> int:
        local = await self._local.end_session(session_id) if self._local is not None else 0
        script, key = self._backend.end_session_script, self._keys.session(session_id)

        async def op() -> int:
            return int(await script(keys=[key]))

        return await self._backend.remove(op, local)

    def trim_local(self, keep_turns: int) -> None:
        if self._local is not None:
            self._local.trim_local(keep_turns)

    def forget_local(self) -> None:
        if self._local is not None:
            self._local.forget_local()
