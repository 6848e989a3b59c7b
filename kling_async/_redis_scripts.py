"""The Lua scripts behind the Redis store: each runs atomically on the server, on Redis's clock.

KEYS and ARGV are listed above each script; the callers in ``_redis_rate`` and ``_redis_slots``
pass them in that order.
"""

from __future__ import annotations

__all__ = [
    "RATE_ACQUIRE",
    "RATE_LIMITED",
    "RATE_PAUSE_LEFT",
    "RATE_SUCCESS",
    "SLOT_ACQUIRE",
    "SLOT_BIND",
    "SLOT_LIMITED",
    "SLOT_RELEASE",
    "SLOT_RELEASE_TASK",
    "SLOT_RENEW",
]

# Every script reads Redis's own clock, so that processes on several hosts agree on "now".
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
"""

# KEYS: state. ARGV: max rate (per second), burst.
# Returns {wait_ms, rate, paused}: with paused == 1 nothing was reserved and the caller waits
# wait_ms for the cool-down to end; otherwise one send is reserved wait_ms from now.
RATE_ACQUIRE = (
    _NOW
    + """
local max_rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local st = redis.call('HMGET', KEYS[1], 'tat', 'rate', 'paused_until')
local rate = math.min(tonumber(st[2]) or max_rate, max_rate)
local paused = tonumber(st[3]) or 0
if now < paused then
  return {tostring(paused - now), tostring(rate), 1}
end
local interval = 1000 / rate
local tat = math.max(tonumber(st[1]) or now, now)
local wait = math.max(0, tat - (burst - 1) * interval - now)
redis.call('HSET', KEYS[1], 'tat', tostring(tat + interval))
return {tostring(wait), tostring(rate), 0}
"""
)

# KEYS: state. Returns the milliseconds left of the current cool-down (0: none).
RATE_PAUSE_LEFT = (
    _NOW
    + """
local paused = tonumber(redis.call('HGET', KEYS[1], 'paused_until')) or 0
return tostring(math.max(0, paused - now))
"""
)

# KEYS: state. ARGV: delay ms, min rate, max rate, burst.
# Returns {started (1: this report started the cool-down), rate}.
RATE_LIMITED = (
    _NOW
    + """
local delay = tonumber(ARGV[1])
local min_rate = tonumber(ARGV[2])
local max_rate = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])
local st = redis.call('HMGET', KEYS[1], 'tat', 'rate', 'paused_until')
local rate = math.min(tonumber(st[2]) or max_rate, max_rate)
local paused = tonumber(st[3]) or 0
local pause_end = now + delay
if now < paused then
  -- Answers to requests already in flight: the same event, seen again.
  if pause_end > paused then redis.call('HSET', KEYS[1], 'paused_until', tostring(pause_end)) end
  return {0, tostring(rate)}
end
rate = math.max(min_rate, rate * 0.5)
-- One token when the pause ends: one request probes the server before the lowered rate applies.
local tat = math.max(tonumber(st[1]) or now, pause_end + (burst - 1) * 1000 / rate)
redis.call('HSET', KEYS[1], 'rate', tostring(rate), 'paused_until', tostring(pause_end),
           'tat', tostring(tat))
return {1, tostring(rate)}
"""
)

# KEYS: state. ARGV: recovery per success, max rate. Returns the rate now.
RATE_SUCCESS = (
    _NOW
    + """
local max_rate = tonumber(ARGV[2])
local st = redis.call('HMGET', KEYS[1], 'rate', 'paused_until')
local rate = math.min(tonumber(st[1]) or max_rate, max_rate)
if rate >= max_rate or now < (tonumber(st[2]) or 0) then return tostring(rate) end
rate = math.min(max_rate, rate + tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'rate', tostring(rate))
return tostring(rate)
"""
)

# Drops expired leases and the queue places of waiters that stopped asking.
_REAP = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for _, w in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do
  redis.call('ZREM', KEYS[2], w)
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
"""

# KEYS: leases, queue, waiter expiry, state, ticket counter.
# ARGV: lease id, waiter id, lease ttl ms, waiter ttl ms, max active (0: none).
# Returns {granted, leases held on the account, usable limit (-1: none)}.
SLOT_ACQUIRE = (
    _NOW
    + _REAP
    + """
local limit = tonumber(redis.call('HGET', KEYS[4], 'limit'))
if not limit and tonumber(ARGV[5]) > 0 then limit = tonumber(ARGV[5]) end
local used = redis.call('ZCARD', KEYS[1])
if not redis.call('ZSCORE', KEYS[2], ARGV[2]) then
  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[5]), ARGV[2])
end
local ahead = redis.call('ZRANK', KEYS[2], ARGV[2])
if (not limit) or used + ahead < limit then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
  return {1, used + 1, limit or -1}
end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[2])
return {0, used, limit or -1}
"""
)

# KEYS: leases, released. ARGV: lease ttl ms, lease ids...
# Adds or extends every lease given (a Redis that restarted empty learns them again), except
# those another process released; returns those, for the holder to forget.
SLOT_RENEW = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local gone = {}
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[2], ARGV[i]) then
    gone[#gone + 1] = ARGV[i]
  else
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i])
  end
end
return gone
"""
)

# KEYS: leases, state, released, tasks, lease tasks.
# ARGV: lease id, max active (0: none), recovery ms, lease ttl ms.
# Returns {removed, usable limit (-1: none)}. The id is remembered for a lease ttl, so that its
# holder (maybe another process) does not renew it back to life.
SLOT_RELEASE = (
    _NOW
    + """
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], now + 2 * tonumber(ARGV[4]), ARGV[1])
local task = redis.call('HGET', KEYS[5], ARGV[1])
if task then
  redis.call('HDEL', KEYS[5], ARGV[1])
  -- A task may hold several leases (n images): forget only this one.
  local rest = {}
  local bound = redis.call('HGET', KEYS[4], task)
  if bound then
    for other in string.gmatch(bound, '%S+') do
      if other ~= ARGV[1] then table.insert(rest, other) end
    end
  end
  if #rest > 0 then
    redis.call('HSET', KEYS[4], task, table.concat(rest, ' '))
  else
    redis.call('HDEL', KEYS[4], task)
  end
end
local limit = tonumber(redis.call('HGET', KEYS[2], 'limit'))
if removed == 1 and limit then
  local at = tonumber(redis.call('HGET', KEYS[2], 'limited_at')) or 0
  if now - at >= tonumber(ARGV[3]) then
    local max_active = tonumber(ARGV[2])
    if max_active > 0 and limit + 1 < max_active then
      limit = limit + 1
      redis.call('HSET', KEYS[2], 'limit', limit)
    else
      limit = nil
      redis.call('HDEL', KEYS[2], 'limit')
    end
  end
end
if not limit and tonumber(ARGV[2]) > 0 then limit = tonumber(ARGV[2]) end
return {removed, limit or -1}
"""
)

# KEYS: tasks, lease tasks. ARGV: task id, lease id. Binds the lease to its task (both ways,
# so that either release can forget the binding). A task may hold several leases (n images):
# the task's entry lists them, space-separated.
SLOT_BIND = """
local bound = redis.call('HGET', KEYS[1], ARGV[1])
if bound then
  redis.call('HSET', KEYS[1], ARGV[1], bound .. ' ' .. ARGV[2])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
return 1
"""

# KEYS: leases, released, tasks, lease tasks. ARGV: lease ttl ms, task id.
# Releases every lease bound to the task (remembered as released, like SLOT_RELEASE) and
# forgets the bindings. Returns how many were still held.
SLOT_RELEASE_TASK = (
    _NOW
    + """
local bound = redis.call('HGET', KEYS[3], ARGV[2])
if not bound then return 0 end
redis.call('HDEL', KEYS[3], ARGV[2])
local removed = 0
for lease in string.gmatch(bound, '%S+') do
  redis.call('HDEL', KEYS[4], lease)
  redis.call('ZADD', KEYS[2], now + 2 * tonumber(ARGV[1]), lease)
  removed = removed + redis.call('ZREM', KEYS[1], lease)
end
return removed
"""
)

# KEYS: leases, queue, waiter expiry, state. ARGV: max active (0: none), leases the caller holds.
# Shrinks the usable limit to the leases held now, less the caller's own. Returns the limit.
SLOT_LIMITED = (
    _NOW
    + _REAP
    + """
local limit = math.max(1, redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[2]))
local current = tonumber(redis.call('HGET', KEYS[4], 'limit'))
if not current and tonumber(ARGV[1]) > 0 then current = tonumber(ARGV[1]) end
if current and current <= limit then limit = current end
redis.call('HSET', KEYS[4], 'limit', limit, 'limited_at', tostring(now))
return limit
"""
)
