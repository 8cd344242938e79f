-- One decision of a token bucket, the arithmetic of gcra in throttle/throttle.go at
-- now = Redis TIME. Lua numbers are doubles, exact for integers below 2^53:
-- nanoseconds since the epoch are not, so times are kept relative to now
-- (rel = tat - now), which the Go side bounds by the burst span (at most 100
-- days, below 2^53 ns).
--
-- KEYS[1]  the bucket; its value is tat, ns since the Unix epoch, in decimal
-- ARGV[1]  interval: ns per token (Per/Rate)
-- ARGV[2]  span: interval * burst, ns
-- ARGV[3]  need: cost * interval, ns; -1 when cost > burst (never admitted)
--
-- Returns {allowed 0|1, remaining, retry_after ns (-1: never), reset_after ns}.
local interval = tonumber(ARGV[1])
local span = tonumber(ARGV[2])
local need = tonumber(ARGV[3])

local now = redis.call('TIME')
local now_s = tonumber(now[1])
local now_ns = tonumber(now[2]) * 1000

-- A bucket that is absent or full (tat <= now) has rel 0.
local rel = 0
local tat = redis.call('GET', KEYS[1])
if tat then
	rel = (tonumber(string.sub(tat, 1, -10)) - now_s) * 1e9 + (tonumber(string.sub(tat, -9)) - now_ns)
	if rel < 0 then
		rel = 0
	end
end

-- The whole tokens left when the bucket is full again in r ns; none when r
-- exceeds the span (the server's clock stepped back). fmod keeps the
-- quotient exact.
local function remaining(r)
	local x = span - r
	if x <= 0 then
		return 0
	end
	return (x - math.fmod(x, interval)) / interval
end

if need < 0 then
	return {0, remaining(rel), -1, rel}
end
local after = rel + need
if after > span then
	return {0, remaining(rel), after - span, rel}
end

-- The new tat, split into seconds and nanoseconds so both stay exact; the key
-- lives until the bucket is full again, rounded up to a millisecond.
local at = now_ns + after
local frac = math.fmod(at, 1e9)
redis.call('SET', KEYS[1], string.format('%d%09d', now_s + (at - frac) / 1e9, frac), 'PX', math.ceil(after / 1e6))
return {1, remaining(after), 0, after}
