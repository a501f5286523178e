"""The Lua scripts the Redis adapters run. Each touches one user's keys only,
which share one hash slot (see :mod:`.keys`), so they run on Redis Cluster too."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llm_sidecar.stores.redis.keys import MARKER_TTL_MS

# Quota windows are hashes with "c" (committed usage) and "r" (reserved by calls in
# flight). A reservation is remembered in a hash (id -> "<key> <amount> ...") and a
# sorted set of expiries, so one whose call never settles stops holding room when
# it expires. Amounts stay strings: Lua would print big numbers in exponent form,
# which HINCRBY refuses.

# Drops what reservation rid holds, if it is still held.
_RELEASE_FN = """
local function release(held_key, expiry_key, rid)
  local held = redis.call('HGET', held_key, rid)
  if held then
    for key, amount in string.gmatch(held, '(%S+) (%S+)') do
      redis.call('HINCRBY', key, 'r', '-' .. amount)
    end
    redis.call('HDEL', held_key, rid)
  end
  redis.call('ZREM', expiry_key, rid)
end
"""

# Ends a reservation: releases it, then commits q exact amounts into windows
# KEYS[k..k+q-1], reading amount / forget-at pairs from ARGV[a..].
_SETTLE_FN = (
    _RELEASE_FN
    + """
local function settle(held_key, expiry_key, rid, k, a, q)
  release(held_key, expiry_key, rid)
  for j = 0, q - 1 do
    local key = KEYS[k + j]
    local amount = ARGV[a + 2 * j]
    if amount ~= '0' then
      redis.call('HINCRBY', key, 'c', amount)
      if redis.call('PTTL', key) < 0 then redis.call('PEXPIREAT', key, ARGV[a + 2 * j + 1]) end
    end
  end
end
"""
)

# One answer's writes, applied exactly once (KEYS[1] marks them applied, so a
# replay after a lost reply adds nothing): usage counters into the user's hash
# (KEYS[2]); when q > 0, the end of the call's quota reservation (held hash,
# expiry set, then q windows: KEYS[3..4+q]); then the tail ARGV[8] names:
# 't', the exchange appended to a thread (the next two keys: the thread, its
# session's set), whole turns dropped from the front until the count and byte
# bounds hold, TTLs refreshed; or 'r', a stored response (the next key, and its
# session's set when one more key follows), with a TTL. ARGV: marker TTL ms,
# number of usage pairs n, max messages, max bytes, tail TTL ms, q, reservation
# id, tail, q amount / forget-at pairs, n field/amount pairs, then the messages or
# the response. commit_call() (below) lays them out.
COMMIT = (
    _SETTLE_FN
    + """
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return -1 end
local q = tonumber(ARGV[6])
local i = 9 + 2 * q
for _ = 1, tonumber(ARGV[2]) do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
local k = 3
if q > 0 then
  settle(KEYS[3], KEYS[4], ARGV[7], 5, 9, q)
  k = 5 + q
end
local ttl = tonumber(ARGV[5])
if ARGV[8] == 'r' then
  redis.call('SET', KEYS[k], ARGV[i], 'PX', ttl)
  if KEYS[k + 1] then
    redis.call('SADD', KEYS[k + 1], KEYS[k])
    if redis.call('PTTL', KEYS[k + 1]) < ttl then redis.call('PEXPIRE', KEYS[k + 1], ttl) end
  end
  return 1
end
if ARGV[8] ~= 't' then return 0 end
local thread = KEYS[k]
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
local m = 1
while total > max_bytes and m <= #items do
  total = total - string.len(items[m])
  if items[m + 1] then total = total - string.len(items[m + 1]) end
  redis.call('LTRIM', thread, 2, -1)
  m = m + 2
end
redis.call('PEXPIRE', thread, ttl)
redis.call('SADD', KEYS[k + 1], thread)
redis.call('PEXPIRE', KEYS[k + 1], ttl)
return redis.call('LLEN', thread)
"""
)

# Delete every member of a set of keys (a session's threads, or its stored
# responses), then the set; return how many existed.
END_SESSION = """
local threads = redis.call('SMEMBERS', KEYS[1])
local n = 0
for _, key in ipairs(threads) do n = n + redis.call('DEL', key) end
redis.call('DEL', KEYS[1])
return n
"""

# Releases every reservation that has expired (held hash KEYS[1], expiries KEYS[2]);
# ARGV[2] is now in ms.
_RELEASE_EXPIRED = (
    _RELEASE_FN
    + """
local now = tonumber(ARGV[2])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  release(KEYS[1], KEYS[2], id)
end
"""
)

# Reserve a call's worst case in every window (KEYS[3..]), all or none, once per id (a
# reservation retried after a lost reply is already held and is not held twice). ARGV:
# id, now ms, reservation expiry ms, then per window: amount, limit, forget-at ms.
# Returns {0} when held, or {i, used, reserved} for the first window without room.
QUOTA_RESERVE = (
    _RELEASE_EXPIRED
    + """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {0} end
local n = #KEYS - 2
for i = 1, n do
  local base = 4 + (i - 1) * 3
  local figures = redis.call('HMGET', KEYS[i + 2], 'c', 'r')
  local used = tonumber(figures[1] or '0')
  local held = tonumber(figures[2] or '0')
  if used + held + tonumber(ARGV[base]) > tonumber(ARGV[base + 1]) then
    return {i, used, held}
  end
end
local parts = {}
for i = 1, n do
  local base = 4 + (i - 1) * 3
  redis.call('HINCRBY', KEYS[i + 2], 'r', ARGV[base])
  redis.call('PEXPIREAT', KEYS[i + 2], ARGV[base + 2])
  parts[#parts + 1] = KEYS[i + 2] .. ' ' .. ARGV[base]
end
redis.call('HSET', KEYS[1], ARGV[1], table.concat(parts, ' '))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local keep = tonumber(ARGV[3]) - now + 60000
for k = 1, 2 do
  if redis.call('PTTL', KEYS[k]) < keep then redis.call('PEXPIRE', KEYS[k], keep) end
end
return {0}
"""
)

# Settle a reservation once (KEYS[3] marks it settled): drop what it holds, then
# commit the exact usage into the windows it was admitted in (KEYS[4..]). ARGV:
# id, marker TTL ms, then per window: amount, forget-at ms.
QUOTA_SETTLE = (
    _SETTLE_FN
    + """
if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[2]) then return -1 end
settle(KEYS[1], KEYS[2], ARGV[1], 4, 3, #KEYS - 3)
return 0
"""
)

# Figures of windows (KEYS[3..]) after dropping expired reservations: a flat list
# of used, reserved per window. ARGV: id (unused), now ms.
QUOTA_FIGURES = (
    _RELEASE_EXPIRED
    + """
local out = {}
for i = 3, #KEYS do
  local figures = redis.call('HMGET', KEYS[i], 'c', 'r')
  out[#out + 1] = tonumber(figures[1] or '0')
  out[#out + 1] = tonumber(figures[2] or '0')
end
return out
"""
)


@dataclass(frozen=True, slots=True)
class SettleParts:
    """The quota settle folded into a COMMIT: the reservation's bookkeeping keys (held
    hash, expiry set), its windows, and an amount / forget-at pair per window."""

    held: str
    expiry: str
    windows: Sequence[str]
    reservation_id: str
    window_args: Sequence[str | int]


@dataclass(frozen=True, slots=True)
class ThreadParts:
    """The exchange a COMMIT appends: the thread's list, its session's set, the bounds
    (messages, bytes, TTL ms) and the encoded messages."""

    thread: str
    session: str
    bounds: tuple[int, int, int]
    messages: Sequence[str]


@dataclass(frozen=True, slots=True)
class ResponseParts:
    """The response a COMMIT stores: its key, its session's set ("" for none), its TTL
    in ms and its encoded form."""

    key: str
    session: str
    ttl_ms: int
    encoded: bytes


def commit_call(
    marker: str,
    usage: str,
    increments: Sequence[str | int],
    *,
    settle: SettleParts | None = None,
    thread: ThreadParts | None = None,
    response: ResponseParts | None = None,
) -> tuple[list[str], list[str | int | bytes]]:
    """KEYS and ARGV of :data:`COMMIT`, laid out exactly as its comment says the script
    reads them: the one place that knows the positions."""
    keys = [marker, usage]
    max_messages = max_bytes = ttl_ms = 0
    windows, reservation_id, window_args = 0, "", list[str | int]()
    if settle is not None:
        keys += [settle.held, settle.expiry, *settle.windows]
        windows, reservation_id = len(settle.windows), settle.reservation_id
        window_args = list(settle.window_args)
    tail: list[str | bytes] = []
    kind = ""
    if thread is not None:
        keys += [thread.thread, thread.session]
        max_messages, max_bytes, ttl_ms = thread.bounds
        kind, tail = "t", list(thread.messages)
    elif response is not None:
        keys += [response.key, response.session] if response.session else [response.key]
        kind, ttl_ms, tail = "r", response.ttl_ms, [response.encoded]
    argv: list[str | int | bytes] = [
        MARKER_TTL_MS,
        len(increments) // 2,
        max_messages,
        max_bytes,
        ttl_ms,
        windows,
        reservation_id,
        kind,
        *window_args,
        *increments,
        *tail,
    ]
    return keys, argv
