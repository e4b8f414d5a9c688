-- ratelimit.lua -- one rate-limit check for one client (RATE_LIMIT_WRITES,
-- RATE_LIMIT_STREAMS): counts the request if the client is within its
-- limit and says so, else says how long until it would be. Run by
-- store.c, whose enum store_ratelimit_argv names the same slots in the
-- same order. One script, so the check and the count are one atomic step
-- however many instances check the same client at once.
--
-- The limit "N per W" is a GCRA (a token bucket of N tokens refilled at
-- N per W) rather than a fixed window: one key per client holding one
-- number, no burst of 2N across a window's edge, and a client that was
-- refused may go on at the refill rate (Retry-After is the time to the
-- next token, not to the end of a window). Time is Redis's own (TIME),
-- so every instance measures against one clock.
--
-- The key holds the "theoretical arrival time" (tat, in ms): when the
-- client's bucket would be full again. A request at now is allowed while
-- tat - now <= (N - 1) * interval (at most N requests ahead of the
-- rate), and then moves tat one interval on; a refused request changes
-- nothing. The key expires when the bucket is full again.
--
-- Returns {1, 0} when allowed (and counted), {0, ms} when refused: ms
-- until a request would be allowed.

local key = KEYS[1]                     -- this client's bucket

local limit = tonumber(ARGV[1])         -- N
local interval = tonumber(ARGV[2])      -- W / N in ms, rounded up

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tat = tonumber(redis.call('GET', key)) or now
if tat < now then tat = now end

local ahead = (limit - 1) * interval
if tat - now > ahead then
  return {0, tat - ahead - now}
end
tat = tat + interval
redis.call('SET', key, string.format('%d', tat), 'PX', tat - now)
return {1, 0}
