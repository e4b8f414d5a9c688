-- read.lua -- one page of history, atomic with the account check and the
-- current last id: what a stream replays when it opens (Last-Event-ID),
-- while it catches up page by page, and after a lost subscription. Run
-- by store.c, whose enum store_read_argv names the same slots in the same
-- order.
--
-- A stream may have several sources (its user's history and each of its
-- topics' histories: KEYS[3] on); the page merges them by id, so the
-- stream sees one increasing sequence whatever its sources. The sources
-- are disjoint (an event is in one user's or one topic's history), and
-- ids come from one counter, so the merge never meets an id twice.
--
-- Returns nil for a missing account, else {last id or '', gap, entries,
-- more}. gap is 1 when an entry after after_id was deleted from any
-- source to keep its cap: Redis 7 keeps the largest deleted id
-- (max-deleted-entry-id), so the test is exact. more is 1 when the page
-- stopped at its count or its byte budget rather than at the end of every
-- source.
--
-- Each source is read in small XRANGE steps and the page stops once its
-- entries' values reach budget bytes (a page always holds at least one
-- entry), so no page costs Redis, the reply or the gateway more than
-- about budget bytes plus a step per source, however large the events
-- held are. Ids are compared as decimal strings: Lua numbers are doubles.

local last_id_key = KEYS[1]     -- the last event id handed out
local account_key = KEYS[2]     -- the account (unused unless must_exist)
-- KEYS[3..]: the history streams to read (at least one)

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
if after_id == '' then
  return {cur, 0, {}, 0}
end

-- One cursor per existing source: entries fetched and not yet taken
-- (buf from pos), where the next step starts (from), and whether the
-- source has nothing past its buffer (done).
local gap = 0
local src = {}
for k = 3, #KEYS do
  local key = KEYS[k]
  if redis.call('EXISTS', key) == 1 then
    local info = redis.call('XINFO', 'STREAM', key)
    for i = 1, #info - 1, 2 do
      if info[i] == 'max-deleted-entry-id' and idcmp(info[i + 1], after_id) > 0 then
        gap = 1
      end
    end
    src[#src + 1] = {key = key, buf = {}, pos = 1, from = after_id, done = false}
  end
end

-- The next entry of source s, fetching a step when its buffer is spent;
-- nil when it has no more.
local function head(s)
  if s.pos > #s.buf then
    if s.done then return nil end
    s.buf = redis.call('XRANGE', s.key, '(' .. s.from, '+', 'COUNT', STEP)
    s.pos = 1
    if #s.buf < STEP then s.done = true end
    if #s.buf == 0 then return nil end
    s.from = s.buf[#s.buf][1]
  end
  return s.buf[s.pos]
end

local out, bytes = {}, 0
while true do
  local best, e = nil, nil
  for _, s in ipairs(src) do
    local h = head(s)
    if h and (e == nil or idcmp(h[1], e[1]) < 0) then
      best, e = s, h
    end
  end
  if e == nil then
    return {cur, gap, out, 0}
  end
  if #out >= count then
    return {cur, gap, out, 1}
  end
  local size = 0
  for j = 2, #e[2], 2 do size = size + #e[2][j] end
  if #out > 0 and bytes + size > budget then
    return {cur, gap, out, 1}
  end
  out[#out + 1] = e
  bytes = bytes + size
  best.pos = best.pos + 1
end
