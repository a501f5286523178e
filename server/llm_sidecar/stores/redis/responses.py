"""One user's stored responses in Redis, with the local copy the writer keeps (best
effort) served while Redis is unreachable or has not yet taken a queued write."""

from __future__ import annotations

from collections.abc import Sequence

from llm_sidecar.core.state.responses import MemoryUserResponses, StoredResponse, after_gaps
from llm_sidecar.stores.redis.backend import FAULTS, RedisBackend
from llm_sidecar.stores.redis.codec import decode_response
from llm_sidecar.stores.redis.keys import UserKeys
from llm_sidecar.stores.redis.turns import RedisTurnWriter


class RedisUserResponses:
    """Reads a user's stored responses from Redis; writes go through the turn writer."""

    __slots__ = ("_backend", "_keys", "_local", "_writer")

    def __init__(
        self,
        backend: RedisBackend,
        keys: UserKeys,
        writer: RedisTurnWriter,
        local: MemoryUserResponses | None,
    ) -> None:
        self._backend = backend
        self._keys = keys
        self._writer = writer
        self._local = local

    async def get(self, response_id: str) -> StoredResponse | None:
        (found,) = await self._read([response_id])
        return found

    async def chain(self, response_id: str) -> list[StoredResponse] | None:
        last = await self.get(response_id)
        if last is None:
            return None
        # One round trip for every ancestor: the user's keys share one slot.
        found = await self._read(last.ancestors) if last.ancestors else []
        return [*after_gaps(found), last]

    async def _read(self, ids: Sequence[str]) -> list[StoredResponse | None]:
        backend = self._backend
        if backend.clean:
            try:
                raw = await backend.client.mget([self._keys.response(i) for i in ids])
            except FAULTS as exc:
                backend.mark_down(exc)
            else:
                return [None if item is None else decode_response(item) for item in raw]
        if self._local is None:
            raise backend.unavailable()
        return [await self._local.get(i) for i in ids]

    async def put(self, response: StoredResponse) -> None:
        await self._writer.store(response)

    async def delete(self, response_id: str) -> bool:
        local = await self._local.delete(response_id) if self._local is not None else False
        client, key = self._backend.client, self._keys.response(response_id)

        async def op() -> bool:
            return bool(await client.delete(key))

        return await self._backend.remove(op, local)

    async def end_session(self, session_id: str) -> int:
        local = await self._local.end_session(session_id) if self._local is not None else 0
        script, key = self._backend.end_session_script, self._keys.response_session(session_id)

        async def op() -> int:
            return int(await script(keys=[key]))

        return await self._backend.remove(op, local)
