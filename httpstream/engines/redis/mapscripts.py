# -*- test-case-name: tests.engines.test_redis_maps -*-
"""
A map channel in Redis: its keys and the Lua scripts that change and read them, each in one step (after
centrifuge's ``map_broker_redis.go``; the layout is this engine's own).

Keys of map channel C{<channel>} (named by L{httpstream.engines.redis.routing.keyName}: C{{<channel>}} in a
Cluster, so all of them and the PUB/SUB name share one slot):

  - C{<prefix>.map.meta.<channel>}, a hash: C{e} the epoch, C{s} the top offset, C{z} and C{t} the stream's size
    and TTL (ms) of the last write (what a sweep, which is given no settings, appends removals with), C{m} the
    meta TTL (ms, 0: none) of the last call given settings (what a sweep or C{stats} renews the channel with).
  - C{<prefix>.map.state.<channel>}, a hash: key -> C{<offset>:<publication>}, its latest write.
  - C{<prefix>.map.keys.<channel>}, a sorted set: every key at score 0, so C{ZRANGEBYLEX} pages in key order (byte
    order of UTF-8: code point order, as Python sorts).
  - C{<prefix>.map.expire.<channel>}, a sorted set: key -> its deadline (ms since the epoch, the nodes' clock),
    for keys with a TTL.
  - C{<prefix>.map.stream.<channel>}, a stream of every write (entry id C{<offset>-0}, field C{d}), trimmed to the
    size exactly, expiring the stream TTL after the last write.

The first four live together (all renewed to the meta TTL by every script, or made persistent when it is 0): a
meta hash that is gone (Redis restarted, evicted, or the channel unused for the meta TTL) means a new epoch, and
every script then drops what is left of the others first, so a state never outlives its epoch.

Every script first removes the keys whose deadline has passed, a removal appended and published for each, so what
a script reads is never older than the TTLs; the broker's sweep (a script of its own) tells live subscribers in
time. Each write is published on C{<prefix>.map.client.<channel>} as C{<offset>:<epoch>:<deadline>:<publication>}
(deadline 0 when the key has none): the subscribers' nodes learn when to sweep from it.

KEYS of every script: meta, state, keys, expire, stream. ARGV 1-6 of every script: now (ms), the meta TTL (ms, 0:
none; or C{~<ms>}: the channel's own, stored in C{m}, else C{<ms>}: a call given no settings), the epoch if a new
one is needed, the PUB/SUB name, the publish command (PUBLISH, or SPUBLISH in a Cluster), how many
expired keys to remove at most. Each replies C{{top, epoch, next deadline (ms, 0: none), ...}}.
"""

from __future__ import annotations

__all__ = ["KINDS", "READ_STATE_SCRIPT", "READ_STREAM_SCRIPT", "TOUCH_SCRIPT", "WRITE_SCRIPT"]

# The keyName kinds of a channel's keys, in the scripts' KEYS order; and of its PUB/SUB name.
KINDS = ("map.meta", "map.state", "map.keys", "map.expire", "map.stream")
PUBSUB_KIND = "map.client"

_PRELUDE = b"""
local meta, state, order, expiry, stream = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = tonumber(ARGV[1])
local found = redis.call("hmget", meta, "e", "s", "z", "t", "m")
local epoch, top, size, streamTTL = found[1], tonumber(found[2]) or 0, found[3] or "100", found[4] or "0"
if not epoch then
  -- A new epoch: nothing of the old one may show through it.
  epoch, top = ARGV[3], 0
  redis.call("del", state, order, expiry, stream)
  redis.call("hset", meta, "e", epoch, "s", 0)
end
local metaTTL = ARGV[2]
if string.sub(metaTTL, 1, 1) == "~" then
  metaTTL = found[5] or string.sub(metaTTL, 2)
elseif found[5] ~= metaTTL then
  redis.call("hset", meta, "m", metaTTL)
end

local function append(payload, deadline)
  top = redis.call("hincrby", meta, "s", 1)
  local offset = string.format("%d", top)
  redis.call("xadd", stream, "MAXLEN", size, offset .. "-0", "d", payload)
  if tonumber(streamTTL) > 0 then
    redis.call("pexpire", stream, streamTTL)
  else
    redis.call("persist", stream)
  end
  redis.call(ARGV[5], ARGV[4], offset .. ":" .. epoch .. ":" .. string.format("%d", deadline) .. ":" .. payload)
  return offset
end

-- A removal of key, with the tags of its latest write (stored as "<offset>:<publication>").
local function removal(key, stored)
  local tags = ""
  local ok, publication = pcall(cjson.decode, string.sub(stored, (string.find(stored, ":", 1, true) or 0) + 1))
  if ok and type(publication) == "table" and type(publication.tags) == "table" and next(publication.tags) then
    tags = ',"tags":' .. cjson.encode(publication.tags)
  end
  return '{"data":""' .. tags .. ',"key":' .. cjson.encode(key) .. ',"removed":true}'
end

local function drop(key)
  redis.call("hdel", state, key)
  redis.call("zrem", order, key)
  redis.call("zrem", expiry, key)
end

local function nextDeadline()
  local first = redis.call("zrange", expiry, 0, 0, "WITHSCORES")
  return first[2] or "0"
end

local function keep()
  local ttl = tonumber(metaTTL)
  for i = 1, 4 do
    if ttl > 0 then
      redis.call("pexpire", KEYS[i], ttl)
    else
      redis.call("persist", KEYS[i])
    end
  end
end

local function expire()
  for _, key in ipairs(redis.call("zrangebyscore", expiry, "-inf", now, "LIMIT", 0, tonumber(ARGV[6]))) do
    local stored = redis.call("hget", state, key)
    drop(key)
    if stored then
      append(removal(key, stored), 0)
    end
  end
end
"""

WRITE_SCRIPT = _PRELUDE + b"""
-- ARGV 7-14: "s" (set) or "r" (remove), key, publication ("" for a removal: one with the key's tags), key mode,
-- key TTL ms (0: none), stream size, stream TTL ms, the result TTL ms of an idempotency key. KEYS[6], when given:
-- the hash keeping that key's result (the position), answered again, suppressed "idempotency", instead of writing.
-- Reply: {top, epoch, next deadline, suppress reason}.
local result = KEYS[6]
if result then
  local known = redis.call("hmget", result, "s", "e")
  if known[1] then
    return {tonumber(known[1]), known[2], nextDeadline(), "idempotency"}
  end
end
local op, key, payload, mode, keyTTL = ARGV[7], ARGV[8], ARGV[9], ARGV[10], tonumber(ARGV[11])
if size ~= ARGV[12] or streamTTL ~= ARGV[13] then
  size, streamTTL = ARGV[12], ARGV[13]
  redis.call("hset", meta, "z", size, "t", streamTTL)
end
expire()
local reason = ""
if op == "s" then
  local exists = redis.call("hexists", state, key) == 1
  if mode == "if_new" and exists then
    -- Suppressed, but the key lives on (presence keep-alive).
    reason = "key_exists"
    if keyTTL > 0 then
      redis.call("zadd", expiry, now + keyTTL, key)
    else
      redis.call("zrem", expiry, key)
    end
  elseif mode == "if_exists" and not exists then
    reason = "key_not_found"
  else
    local deadline = 0
    if keyTTL > 0 then
      deadline = now + keyTTL
      redis.call("zadd", expiry, deadline, key)
    else
      redis.call("zrem", expiry, key)
    end
    redis.call("hset", state, key, append(payload, deadline) .. ":" .. payload)
    redis.call("zadd", order, 0, key)
  end
else
  local stored = redis.call("hget", state, key)
  if not stored then
    reason = "key_not_found"
  else
    if payload == "" then
      payload = removal(key, stored)
    end
    drop(key)
    append(payload, 0)
  end
end
keep()
if result then
  redis.call("hset", result, "s", top, "e", epoch)
  redis.call("pexpire", result, ARGV[14])
end
return {top, epoch, nextDeadline(), reason}
"""

READ_STATE_SCRIPT = _PRELUDE + b"""
-- ARGV 7-9: the lowest key ("-", or "(" .. cursor), how many keys (-1: all), one key alone ("": a page). Reply:
-- {top, epoch, next deadline, keys, their stored values}.
expire()
keep()
local limit = tonumber(ARGV[8])
local keys = {}
if ARGV[9] ~= "" then
  if redis.call("hexists", state, ARGV[9]) == 1 then
    keys = {ARGV[9]}
  end
elseif limit < 0 then
  keys = redis.call("zrangebylex", order, ARGV[7], "+")
elseif limit > 0 then
  keys = redis.call("zrangebylex", order, ARGV[7], "+", "LIMIT", 0, limit)
end
local values = {}
for i = 1, #keys, 1000 do
  -- In slices: unpack has a stack limit.
  local slice = redis.call("hmget", state, unpack(keys, i, math.min(i + 999, #keys)))
  for _, value in ipairs(slice) do
    values[#values + 1] = value
  end
end
return {top, epoch, nextDeadline(), keys, values}
"""

READ_STREAM_SCRIPT = _PRELUDE + b"""
-- ARGV 7-10: the lowest entry id (the highest when reversed), how many (-1: all, 0: none), the epoch asked for
-- ("": any), "1" for newest first. Reply: {top, epoch, next deadline, the oldest entry kept (a list of none or
-- one), the entries}.
expire()
keep()
local count = tonumber(ARGV[8])
local entries = {}
local oldest = redis.call("xrange", stream, "-", "+", "COUNT", 1)
if count ~= 0 and (ARGV[9] == "" or ARGV[9] == epoch) then
  if ARGV[10] == "1" then
    if count > 0 then
      entries = redis.call("xrevrange", stream, ARGV[7], "-", "COUNT", count)
    else
      entries = redis.call("xrevrange", stream, ARGV[7], "-")
    end
  elseif count > 0 then
    entries = redis.call("xrange", stream, ARGV[7], "+", "COUNT", count)
  else
    entries = redis.call("xrange", stream, ARGV[7], "+")
  end
end
return {top, epoch, nextDeadline(), oldest, entries}
"""

TOUCH_SCRIPT = _PRELUDE + b"""
-- Expiry only (a sweep, stats). Reply: {top, epoch, next deadline, number of keys}.
expire()
keep()
return {top, epoch, nextDeadline(), redis.call("hlen", state)}
"""
