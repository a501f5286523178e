"""The Lua scripts the Redis adapters run. Each touches one user's keys only,
which share one hash slot (see :mod:`.keys`), so they run on Redis Cluster too."""

from __future__ import annotations

# One answer's writes, applied exactly once (KEYS[1] marks them applied, so a
# replay after a lost reply adds nothing): usage counters into the user's hash
# (KEYS[2]) and, when KEYS[3] is given, the exchange appended to a thread,
# whole turns dropped from the front until the count and byte bounds hold,
# TTLs refreshed and the thread remembered under its session (KEYS[4]).
# ARGV: marker TTL ms, number of usage pairs n, max messages, max bytes,
# history TTL ms, then n field/amount pairs, then the messages.
COMMIT = """
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
END_SESSION = """
local threads = redis.call('SMEMBERS', KEYS[1])
local n = 0
for _, key in ipairs(threads) do n = n + redis.call('DEL', key) end
redis.call('DEL', KEYS[1])
return n
"""
