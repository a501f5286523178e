"""The shared Redis connection, its health, and the queue of writes to replay.

Failure policy (``redis.durability``):

* ``required``: a call whose state cannot be read from or written to Redis
  fails with UNAVAILABLE. Nothing is served from process memory.
* ``best_effort`` (default): reads are served from a bounded copy in the
  user's manager while Redis is down or slow, and writes are queued in order
  (bounded by ``pending_writes_max``) and replayed as soon as Redis answers
  again. A write lost to a full queue is counted, logged and shown in the
  admin status, never dropped silently.

Reconnection is redis-py's: every command takes a pooled connection and
reconnects when needed; a background task pings while writes are pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from llm_sidecar.config import RedisSettings
from llm_sidecar.core.background import cancel_and_wait
from llm_sidecar.core.state.store_status import StoreState, StoreStatus
from llm_sidecar.core.vocabulary.errors import StoreUnavailableError
from llm_sidecar.stores.redis import scripts
from llm_sidecar.stores.redis.clients import client, cluster_client

log = logging.getLogger(__name__)

#: What a failing Redis command raises. redis-py's cluster client raises
#: RedisClusterException (not a RedisError) when no node answers at all.
T = TypeVar("T")
FAULTS = (RedisError, RedisClusterException, OSError, asyncio.TimeoutError)


class RedisBackend:
    """The shared connection, health state and replay queue."""

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self.prefix = settings.key_prefix
        self.client: aioredis.Redis | RedisCluster = (
            cluster_client(settings) if settings.mode == "cluster" else client(settings)
        )
        self.commit_script = self.client.register_script(scripts.COMMIT)
        self.end_session_script = self.client.register_script(scripts.END_SESSION)
        self.quota_reserve_script = self.client.register_script(scripts.QUOTA_RESERVE)
        self.quota_settle_script = self.client.register_script(scripts.QUOTA_SETTLE)
        self.quota_figures_script = self.client.register_script(scripts.QUOTA_FIGURES)
        self.required = settings.durability == "required"
        self.up = True
        self.pending: deque[Callable[[], Awaitable[Any]]] = deque()
        self.dropped_writes = 0
        self.replayed_writes = 0
        self._replayer: asyncio.Task[None] | None = None

    # -- failure handling --------------------------------------------------------------

    def mark_down(self, exc: BaseException) -> None:
        """Record that a command failed: serve from memory (or refuse) and start replaying."""
        if self.up:
            log.warning("redis unreachable", extra={"error_type": type(exc).__name__})
        self.up = False
        self._ensure_replayer()

    def unavailable(self) -> StoreUnavailableError:
        """The error a caller gets when Redis is required and unreachable."""
        return StoreUnavailableError("the shared state store (Redis) is unreachable")

    def defer(self, op: Callable[[], Awaitable[Any]]) -> None:
        """Queue a write for replay (best effort mode)."""
        if len(self.pending) >= self.settings.pending_writes_max:
            self.dropped_writes += 1
            log.error(
                "redis replay queue full: a write was dropped",
                extra={"dropped": self.dropped_writes},
            )
            return
        self.pending.append(op)
        self._ensure_replayer()

    @property
    def clean(self) -> bool:
        """Up with nothing waiting: Redis is the whole truth."""
        return self.up and not self.pending

    async def write(self, op: Callable[[], Awaitable[Any]], *, replay: bool = False) -> None:
        """Run a write now, or queue it (best effort) / fail (required). With ``replay``
        the write is queued in every mode: one that settles what was already decided
        (a quota reservation) has nobody to fail to, and must still land once."""
        queue = replay or not self.required
        if not (self.up if replay else self.clean):
            if not queue:
                raise self.unavailable()
            self.defer(op)
            return
        try:
            await op()
        except FAULTS as exc:
            self.mark_down(exc)
            if not queue:
                raise self.unavailable() from None
            self.defer(op)

    async def remove(self, op: Callable[[], Awaitable[T]], local: T) -> T:
        """A deletion: run now while Redis is the whole truth; in an outage, refused
        (required) or queued for replay and answered with ``local``, what the local copy
        removed (best effort)."""
        if self.clean:
            try:
                return await op()
            except FAULTS as exc:
                self.mark_down(exc)
        if self.required:
            raise self.unavailable()
        self.defer(op)
        return local

    def _ensure_replayer(self) -> None:
        if self._replayer is None or self._replayer.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._replayer = loop.create_task(self._replay(), name="redis-replay")

    async def _replay(self) -> None:
        delay = 0.1
        while True:
            try:
                await self.client.ping()
                while self.pending:
                    await self.pending[0]()
                    self.pending.popleft()
                    self.replayed_writes += 1
            except FAULTS:
                self.up = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if not self.up:
                log.info("redis reachable again", extra={"replayed": self.replayed_writes})
                await self.retire_connections()
            self.up = True
            return

    def status(self) -> StoreStatus:
        """The backend's state for health, metrics and the admin RPC."""
        if self.clean:
            state: StoreState = "up"
        elif self.required:
            state = "down"
        else:
            state = "degraded"
        return StoreStatus(state, len(self.pending), self.dropped_writes, self.replayed_writes)

    async def check(self) -> StoreStatus:
        """Ping (which starts the replay when writes are waiting) and report."""
        if await self.ping() and self.pending:
            self._ensure_replayer()
        return self.status()

    async def ping(self) -> bool:
        """Whether Redis answers now."""
        try:
            await self.client.ping()
        except FAULTS as exc:
            self.mark_down(exc)
            return False
        return True

    async def retire_connections(self) -> None:
        """Close the idle pooled connections after an outage: they were opened to a
        Redis that is gone, and each would fail its next command. Connections in use
        are left to their calls (a failure there is retried on a fresh connection)."""
        if isinstance(self.client, aioredis.Redis):
            with contextlib.suppress(*FAULTS):
                await self.client.connection_pool.disconnect(inuse_connections=False)

    async def aclose(self) -> None:
        """Stop replaying and close every connection."""
        if self._replayer is not None:
            await cancel_and_wait([self._replayer])
        if self.pending:
            log.error(
                "redis writes still pending at shutdown", extra={"pending": len(self.pending)}
            )
        await self.client.aclose()
        if isinstance(self.client, aioredis.Redis):
            # A client given its own pool leaves the pool open on aclose().
            await self.client.connection_pool.disconnect()
