"""Redis adapters: conversation store and usage ledger behind the core interfaces.

Failure policy (``redis.durability``):

* ``required``: a call whose state cannot be read from or written to Redis
  fails with UNAVAILABLE. Nothing is served from process memory.
* ``best_effort`` (default): conversations keep a bounded copy in the user's
  manager; when Redis is down or slow, reads are served from it and writes are
  queued in order (bounded by ``pending_writes_max``) and replayed as soon as
  Redis answers again. Usage records are queued the same way, never dropped
  silently: if the queue overflows, the loss is counted, logged and shown in
  the admin status. Reading usage while Redis is down fails with UNAVAILABLE,
  because a bill must not be guessed.

Reconnection is redis-py's: every command takes a pooled connection and
reconnects when needed; a background task pings while writes are pending.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from llm_sidecar.config import RedisSettings
from llm_sidecar.core.errors import StoreUnavailableError
from llm_sidecar.core.models import ChatMessage, Role, Usage
from llm_sidecar.core.state.conversation import (
    ConversationStore,
    HistoryBounds,
    MemoryUserConversations,
    UserConversations,
)
from llm_sidecar.core.state.store_status import StoreState, StoreStatus
from llm_sidecar.core.state.turns import SeparateWrites, Turn, TurnWriter
from llm_sidecar.core.state.usage import UsageLedger, UsageRow, UserUsage, usage_delta
from llm_sidecar.stores.keys import UserKeys

log = logging.getLogger(__name__)

_FAULTS = (RedisError, OSError, asyncio.TimeoutError)

# How long an applied-record marker lives: longer than any outage whose
# queued writes are still replayed (the queue lives in this process).
_RECORD_MARKER_TTL_MS = 6 * 3600 * 1000

# One answer's writes, applied exactly once (KEYS[1] marks them applied, so a
# replay after a lost reply adds nothing): usage counters into the user's hash
# (KEYS[2]) and, when KEYS[3] is given, the exchange appended to a thread,
# whole turns dropped from the front until the count and byte bounds hold,
# TTLs refreshed and the thread remembered under its session (KEYS[4]).
# ARGV: marker TTL ms, number of usage pairs n, max messages, max bytes,
# history TTL ms, then n field/amount pairs, then the messages.
_COMMIT = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return -1 end
local i = 6
for _ = 1, tonumber(ARGV[2]) do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
if #KEYS < 3 then return 0 end
local thread = KEYS[3]
for j = i, #ARGV do redis.call('RPUSH', thread, ARGV[j]) end
local max_msgs = tonumber(ARGV[3])
local max_bytes = tonumber(ARGV[4])
local n = redis.call('LLEN', thread)
while n > max_msgs do
  redis.call('LTRIM', thread, 2, -1)
  n = n - 2
end
local items = redis.call('LRANGE', thread, 0, -1)
local total = 0
for _, v in ipairs(items) do total = total + string.len(v) end
local k = 1
while total > max_bytes and k <= #items do
  total = total - string.len(items[k])
  if items[k + 1] then total = total - string.len(items[k + 1]) end
  redis.call('LTRIM', thread, 2, -1)
  k = k + 2
end
redis.call('PEXPIRE', thread, ARGV[5])
redis.call('SADD', KEYS[4], thread)
redis.call('PEXPIRE', KEYS[4], ARGV[5])
return redis.call('LLEN', thread)
"""

# Delete every thread of a session; return how many there were.
_END_SESSION = """
local threads = redis.call('SMEMBERS', KEYS[1])
local n = 0
for _, key in ipairs(threads) do n = n + redis.call('DEL', key) end
redis.call('DEL', KEYS[1])
return n
"""

_FIELD_SEP = "\x1f"
_COUNTERS = (
    "requests",
    "cache_hits",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "estimated_requests",
)


class RedisBackend:
    """The shared connection, health state and replay queue."""

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self.prefix = settings.key_prefix
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.url,
            max_connections=settings.max_connections,
            timeout=settings.socket_timeout_seconds,
            socket_timeout=settings.socket_timeout_seconds,
            socket_connect_timeout=settings.connect_timeout_seconds,
            health_check_interval=settings.health_check_interval_seconds,
            client_name=settings.client_name,
        )
        self.client: aioredis.Redis = aioredis.Redis(connection_pool=pool)
        self.commit_script = self.client.register_script(_COMMIT)
        self.end_session_script = self.client.register_script(_END_SESSION)
        self.required = settings.durability == "required"
        self.up = True
        self.pending: deque[Callable[[], Awaitable[Any]]] = deque()
        self.dropped_writes = 0
        self.replayed_writes = 0
        self._replayer: asyncio.Task[None] | None = None

    # -- failure handling --------------------------------------------------------------

    def _down(self, exc: BaseException) -> None:
        if self.up:
            log.warning("redis unreachable", extra={"error_type": type(exc).__name__})
        self.up = False
        self._ensure_replayer()

    def unavailable(self) -> StoreUnavailableError:
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

    async def write(self, op: Callable[[], Awaitable[Any]]) -> None:
        """Run a write now, or queue it (best effort) / fail (required)."""
        if not self.clean:
            if self.required:
                raise self.unavailable()
            self.defer(op)
            return
        try:
            await op()
        except _FAULTS as exc:
            self._down(exc)
            if self.required:
                raise self.unavailable() from None
            self.defer(op)

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
            except _FAULTS:
                self.up = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if not self.up:
                log.info("redis reachable again", extra={"replayed": self.replayed_writes})
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
        except _FAULTS as exc:
            self._down(exc)
            return False
        return True

    async def aclose(self) -> None:
        if self._replayer is not None:
            self._replayer.cancel()
            await asyncio.gather(self._replayer, return_exceptions=True)
        if self.pending:
            log.error(
                "redis writes still pending at shutdown", extra={"pending": len(self.pending)}
            )
        await self.client.aclose()
        # A client given its own pool leaves the pool open on aclose().
        await self.client.connection_pool.disconnect()


# A stored message is one role letter followed by the content: decoding the
# history is on every turn's path, and this measured far cheaper than JSON.
# Any other role is stored as a JSON array, which starts with "[" (and is read back
# as written, for stores shared with newer versions).
_CODE_ROLES: dict[str, Role] = {"u": "user", "a": "assistant", "s": "system"}
_ROLE_CODES = {role: code for code, role in _CODE_ROLES.items()}


def _encode(message: ChatMessage) -> str:
    code = _ROLE_CODES.get(message.role)
    if code is None:
        return json.dumps([message.role, message.content], ensure_ascii=False)
    return code + message.content


def _decode(raw: bytes | str) -> ChatMessage:
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    role = _CODE_ROLES.get(text[:1])
    if role is None:
        role, content = json.loads(text)
        return ChatMessage(role, content)
    return ChatMessage(role, text[1:])


class RedisUserConversations:
    """One user's conversations in Redis, with a bounded local copy for outages."""

    def __init__(self, backend: RedisBackend, user_id: str, bounds: HistoryBounds) -> None:
        self._backend = backend
        self._keys = UserKeys(backend.prefix, user_id)
        self._bounds = bounds
        self._local = MemoryUserConversations(bounds)

    async def load(self, session_id: str, thread_id: str) -> list[ChatMessage]:
        backend = self._backend
        if backend.clean:
            try:
                raw = await backend.client.lrange(self._keys.thread(session_id, thread_id), 0, -1)
            except _FAULTS as exc:
                backend._down(exc)
            else:
                messages = [_decode(item) for item in raw]
                if not backend.required:
                    await self._local.mirror(session_id, thread_id, messages)
                return messages
        if backend.required:
            raise backend.unavailable()
        return await self._local.load(session_id, thread_id)

    async def append(
        self, session_id: str, thread_id: str, messages: Sequence[ChatMessage]
    ) -> None:
        await _commit(self._backend, self._keys, [], self, (session_id, thread_id), messages)

    async def remember_local(
        self, session_id: str, thread_id: str, messages: Sequence[ChatMessage]
    ) -> None:
        """Keep the bounded copy served while Redis is unreachable (best effort)."""
        if not self._backend.required:
            await self._local.append(session_id, thread_id, messages)

    def thread_keys(self, session_id: str, thread_id: str) -> list[str]:
        """The thread list and its session set."""
        return [self._keys.thread(session_id, thread_id), self._keys.session(session_id)]

    def bounds_args(self) -> list[str | int]:
        """Max messages, max bytes, TTL (ms): the script's history bounds."""
        b = self._bounds
        return [2 * b.max_turns, b.max_bytes, int(b.ttl_seconds * 1000)]

    async def end_session(self, session_id: str) -> int:
        local = await self._local.end_session(session_id)
        key = self._keys.session(session_id)
        backend = self._backend
        if backend.clean:
            try:
                return int(await backend.end_session_script(keys=[key]))
            except _FAULTS as exc:
                backend._down(exc)
        if backend.required:
            raise backend.unavailable()

        async def op() -> None:
            await backend.end_session_script(keys=[key])

        backend.defer(op)
        return local

    def trim_local(self, keep_turns: int) -> None:
        self._local.trim_local(keep_turns)

    def forget_local(self) -> None:
        self._local.forget_local()

    def local_bytes(self) -> int:
        return self._local.local_bytes()


async def _commit(
    backend: RedisBackend,
    keys: UserKeys,
    increments: list[str | int],
    conversations: RedisUserConversations | None = None,
    thread: tuple[str, str] | None = None,
    messages: Sequence[ChatMessage] = (),
) -> None:
    """One answer's usage and exchange in one script call (see ``_COMMIT``)."""
    script_keys = [keys.record(uuid.uuid4().hex), keys.usage]
    args: list[str | int] = [_RECORD_MARKER_TTL_MS, len(increments) // 2, 0, 0, 0, *increments]
    if conversations is not None and thread is not None:
        await conversations.remember_local(*thread, messages)
        script_keys += conversations.thread_keys(*thread)
        args[2:5] = conversations.bounds_args()
        args += [_encode(m) for m in messages]

    async def op() -> None:
        await backend.commit_script(keys=script_keys, args=args)

    await backend.write(op)


class RedisConversationStore:
    """Conversations shared by every sidecar using the same Redis."""

    def __init__(self, backend: RedisBackend, bounds: HistoryBounds) -> None:
        self.backend = backend
        self.bounds = bounds

    def for_user(self, user_id: str) -> RedisUserConversations:
        return RedisUserConversations(self.backend, user_id, self.bounds)

    async def aclose(self) -> None:
        await self.backend.aclose()


class RedisUserUsage:
    """One user's ledger: a Redis hash of counters per (session, model, provider)."""

    def __init__(self, backend: RedisBackend, user_id: str) -> None:
        self._backend = backend
        self._keys = UserKeys(backend.prefix, user_id)

    async def record(
        self, session_id: str, model: str, provider: str, usage: Usage, *, cached: bool
    ) -> None:
        increments = self.increments(session_id, model, provider, usage, cached)
        await _commit(self._backend, self._keys, increments)

    @property
    def backend(self) -> RedisBackend:
        return self._backend

    @property
    def keys(self) -> UserKeys:
        return self._keys

    @staticmethod
    def increments(
        session_id: str, model: str, provider: str, usage: Usage, cached: bool
    ) -> list[str | int]:
        """Field/amount pairs of one answer's counters."""
        delta = usage_delta(usage, cached=cached)
        label = json.dumps([session_id, model, provider])
        pairs: list[str | int] = []
        for name in _COUNTERS:
            amount = getattr(delta, name)
            if amount:
                pairs += [f"{label}{_FIELD_SEP}{name}", amount]
        return pairs

    async def rows(self, session_id: str | None = None) -> list[UsageRow]:
        backend = self._backend
        if not backend.clean:
            raise backend.unavailable()
        try:
            raw = await backend.client.hgetall(self._keys.usage)
        except _FAULTS as exc:
            backend._down(exc)
            raise backend.unavailable() from None
        rows: dict[str, UsageRow] = {}
        for field, value in raw.items():
            name = field.decode("utf-8") if isinstance(field, bytes) else field
            label, _, counter = name.rpartition(_FIELD_SEP)
            row = rows.get(label)
            if row is None:
                session, model, provider = json.loads(label)
                row = rows[label] = UsageRow(session, model, provider)
            setattr(row, counter, int(value))
        return [r for r in rows.values() if session_id is None or r.session_id == session_id]


class RedisUsageLedger:
    """Usage shared by every sidecar using the same Redis."""

    def __init__(self, backend: RedisBackend) -> None:
        self.backend = backend

    def for_user(self, user_id: str) -> RedisUserUsage:
        return RedisUserUsage(self.backend, user_id)

    async def aclose(self) -> None:
        await self.backend.aclose()


async def connect_redis_stores(
    settings: RedisSettings,
    bounds: HistoryBounds,
    memory_conversations: ConversationStore,
    memory_usage: UsageLedger,
) -> tuple[ConversationStore, UsageLedger, RedisBackend]:
    """The stores the settings ask for (memory ones where Redis is not enabled for
    a kind), and the backend they share, for health checks and shutdown."""
    backend = RedisBackend(settings)
    if not await backend.ping():
        log.warning("redis unreachable at start", extra={"durability": settings.durability})
    conversations = (
        RedisConversationStore(backend, bounds) if settings.conversations else memory_conversations
    )
    usage = RedisUsageLedger(backend) if settings.usage else memory_usage
    return conversations, usage, backend


class RedisTurnWriter:
    """A user's turns in one round trip: usage and exchange in one script call."""

    __slots__ = ("_conversations", "_usage")

    def __init__(self, conversations: RedisUserConversations, usage: RedisUserUsage) -> None:
        self._conversations = conversations
        self._usage = usage

    async def commit(self, turn: Turn) -> None:
        increments = self._usage.increments(
            turn.session_id, turn.model, turn.provider, turn.usage, turn.cached
        )
        await _commit(
            self._usage.backend,
            self._usage.keys,
            increments,
            self._conversations if turn.thread is not None else None,
            turn.thread,
            turn.messages,
        )


def turn_writers(conversations: UserConversations, usage: UserUsage) -> TurnWriter:
    """One script per answer when both kinds live in Redis; else separate writes."""
    if isinstance(conversations, RedisUserConversations) and isinstance(usage, RedisUserUsage):
        return RedisTurnWriter(conversations, usage)
    return SeparateWrites(conversations, usage)
