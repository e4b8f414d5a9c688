-- read.lua -- one page of history, atomic with the account check and the
-- current last id: what a stream replays when it opens (Last-Event-ID),
-- while it catches up page by page, and after a lost subscription. Run
-- by store.c, whose enum store_read_argv names the same slots in the same
-- order.
--
-- Returns nil for a missing account, else {last id or '', gap, entries,
-- more}. gap is 1 when an entry after after_id was deleted to keep the
-- cap: Redis 7 keeps the largest deleted id (max-deleted-entry-id), so
-- the test is exact. more is 1 when the page stopped at its count or its
-- byte budget rather than at the end of history.
--
-- A page is read in small XRANGE steps and stops once its entries'
-- values reach budget bytes (a page always holds at least one entry), so
-- no page costs Redis, the reply or the gateway more than about budget
-- bytes plus one event, however large the events held are. Ids are
-- compared as decimal strings: Lua numbers are doubles.

local history_key = KEYS[1]     -- the history stream to read
local last_id_key = KEYS[2]     -- the last event id handed out
local account_key = KEYS[3]     -- the account (unused for the firehose)

local must_exist = ARGV[1]      -- '1' if the account must exist
local after_id = ARGV[2]        -- the id to read after, or ''
local count = tonumber(ARGV[3]) -- the most entries to return
local budget = tonumber(ARGV[4]) -- the most bytes of values to return

local STEP = 32                 -- entries per XRANGE step

local function numcmp(a, b)
  a = string.gsub(a, '^0+', '')
  b = string.gsub(b, '^0+', '')
  if #a ~= #b then return #a < #b and -1 or 1 end
  if a == b then return 0 end
  return a < b and -1 or 1
end

local function idcmp(x, y)
  local xm, xs = string.match(x, '^(%d+)-?(%d*)$')
  local ym, ys = string.match(y, '^(%d+)-?(%d*)$')
  local c = numcmp(xm, ym)
  if c ~= 0 then return c end
  return numcmp(xs == '' and '0' or xs, ys == '' and '0' or ys)
end

if must_exist == '1' and redis.call('EXISTS', account_key) == 0 then
  return false
end
local cur = redis.call('GET', last_id_key) or ''
if after_id == '' or redis.call('EXISTS', history_key) == 0 then
  return {cur, 0, {}, 0}
end
local gap = 0
local info = redis.call('XINFO', 'STREAM', history_key)
for i = 1, #info - 1, 2 do
  if info[i] == 'max-deleted-entry-id' and idcmp(info[i + 1], after_id) > 0 then
    gap = 1
  end
end

local out, bytes, from = {}, 0, after_id
while #out < count do
  local step = math.min(STEP, count - #out)
  local batch = redis.call('XRANGE', history_key, '(' .. from, '+', 'COUNT', step)
  for _, e in ipairs(batch) do
    local size = 0
    for j = 2, #e[2], 2 do size = size + #e[2][j] end
    if #out > 0 and bytes + size > budget then
      return {cur, gap, out, 1}
    end
    out[#out + 1] = e
    bytes = bytes + size
    from = e[1]
  end
  if #batch < step then
    return {cur, gap, out, 0}
  end
end
return {cur, gap, out, 1}
