"""One user's usage ledger in Redis: a hash of counters per (session, model, provider)."""

from __future__ import annotations

from collections.abc import Sequence

from llm_sidecar.core.state.usage import UsageRow
from llm_sidecar.stores.redis.backend import FAULTS, RedisBackend
from llm_sidecar.stores.redis.codec import usage_rows
from llm_sidecar.stores.redis.keys import UserKeys
from llm_sidecar.stores.redis.turns import RedisTurnWriter


class RedisUserUsage:
    """Reads a user's usage from Redis; records go through the user's turn writer.

    Reading while Redis is unreachable or replaying fails with UNAVAILABLE in
    every durability mode: a bill must not be guessed.
    """

    def __init__(self, backend: RedisBackend, keys: UserKeys, writer: RedisTurnWriter) -> None:
        self._backend = backend
        self._keys = keys
        self._writer = writer

    async def record(self, rows: Sequence[UsageRow]) -> None:
        await self._writer.record(rows)

    async def rows(self, session_id: str | None = None) -> list[UsageRow]:
        backend = self._backend
        if not backend.clean:
            raise backend.unavailable()
        try:
            raw = await backend.client.hgetall(self._keys.usage)
        except FAULTS as exc:
            backend.mark_down(exc)
            raise backend.unavailable() from None
        return [r for r in usage_rows(raw) if session_id is None or r.session_id == session_id]
