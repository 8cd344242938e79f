-- Records one revocation, atomically: merges it into the set, records its
-- expiry, prunes expired entries, and appends it to the feed followers
-- read. Every key shares one hash tag, so the script is Redis Cluster safe.
--
-- KEYS[1]  the set: a hash, field KIND:VALUE, value BEFORE/EXPIRES (each
--          19 decimal digits, ns since the Unix epoch; BEFORE
--          9223372036854775807 means every token)
-- KEYS[2]  the expiries: a sorted set, member = field, score = EXPIRES in
--          ms, rounded up
-- KEYS[3]  the feed: a stream of entries {f = field, v = value, s = seq}
-- KEYS[4]  the sequence: the s of the feed's last entry
-- ARGV[1]  field
-- ARGV[2]  value
-- ARGV[3]  the feed's length bound (MAXLEN ~)
-- ARGV[4]  the most expired entries one call prunes
--
-- Returns {1, seq} when the entry changed the set, {0, 0} when the set
-- already held it (or more), {-1, 0} when it has already expired by the
-- server's clock.
--
-- Lua numbers are doubles: exact for milliseconds since the epoch, not for
-- nanoseconds, so the 19-digit times are compared as two exact halves.
-- ms rounds a 19-digit time up to whole milliseconds.
local function ms(v)
	return tonumber(string.sub(v, 1, 10)) * 1000 + math.ceil(tonumber(string.sub(v, 11)) / 1e6)
end

local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ms(string.sub(ARGV[2], 21, 39)) <= now_ms then
	return {-1, 0}
end

-- Prune what has expired, a bounded number per call.
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[4]))
if #old > 0 then
	redis.call('HDEL', KEYS[1], unpack(old))
	redis.call('ZREM', KEYS[2], unpack(old))
end

local function wellformed(v)
	return v and #v == 39 and string.match(v, '^%d+/%d+$') ~= nil and string.sub(v, 20, 20) == '/'
end
-- later reports whether the 19-digit time a is after b.
local function later(a, b)
	local ah, bh = tonumber(string.sub(a, 1, 10)), tonumber(string.sub(b, 1, 10))
	if ah ~= bh then
		return ah > bh
	end
	return tonumber(string.sub(a, 11)) > tonumber(string.sub(b, 11))
end

local before, expires = string.sub(ARGV[2], 1, 19), string.sub(ARGV[2], 21, 39)
local prev = redis.call('HGET', KEYS[1], ARGV[1])
if wellformed(prev) then
	local pb, pe = string.sub(prev, 1, 19), string.sub(prev, 21, 39)
	if later(pb, before) then
		before = pb
	end
	if later(pe, expires) then
		expires = pe
	end
end
local value = before .. '/' .. expires
local changed, seq = 0, 0
if value ~= prev then
	redis.call('HSET', KEYS[1], ARGV[1], value)
	redis.call('ZADD', KEYS[2], 'GT', ms(expires), ARGV[1])
	seq = redis.call('INCR', KEYS[4])
	redis.call('XADD', KEYS[3], 'MAXLEN', '~', tonumber(ARGV[3]), '*', 'f', ARGV[1], 'v', value, 's', seq)
	changed = 1
end

-- Every key lives until the last entry expires: a set nobody writes to
-- any more leaves Redis on its own.
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if last[2] then
	local at = tonumber(last[2]) + 1000
	for i = 1, 4 do
		redis.call('PEXPIREAT', KEYS[i], at)
	end
end
return {changed, seq}
