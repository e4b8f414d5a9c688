-- write.lua -- every write ssegate makes to Redis: creating an account,
-- publishing an event, taking a snapshot. Each write is this one script
-- so an event is in history if and only if it was published, and an
-- account never exists without its first events. Run by store.c, whose
-- enum store_write_argv names the same slots in the same order.
--
-- Event ids come from one counter (last_id_key) rather than from XADD "*"
-- on each history stream: the firehose and every user's history then
-- share one increasing id space, so a firehose client and a user client
-- can both resume from the same ids, and pub/sub order equals id order.
-- The id follows Redis's own rule (ms time, then a sequence within the
-- same ms, never going back), and falls back to the firehose's newest
-- entry if the counter key was lost. The envelope is completed here
-- because only here is its id known: {"id":"<id>",<rest>.
--
-- History is capped with XDEL rather than XADD MAXLEN: Redis 7 records
-- the largest deleted id (max-deleted-entry-id) for XDEL but not for
-- trimming, and read.lua needs it to tell a gap from no gap. Trimming one
-- entry per event (XLEN, XRANGE, XDEL) more than doubled the script's
-- cost in Redis, so a history may run up to its slack over its cap before
-- it is cut back to the cap in one go. The slack is computed in C
-- (STORE_TRIM_SLACK in store.c), which also reads cap + slack entries on
-- replay so none is missed.
--
-- Every event is published on the gateways' own channel (ssegate:events,
-- passed in as channel), not on the REDIS_CHANNEL outside publishers use:
-- the subscribers trust an id only on this one, so the envelope goes out
-- exactly as history holds it. Who may publish here is Redis's to say
-- (ACL channel permissions, docs/API.md "The channel").
--
-- Returns, by op:
--   create:   {id of account.created, id of snapshot}
--   event:    the event's id
--   topic:    the event's id
--   snapshot: {id, balance recorded}
--   presence, alive: see below
-- event and snapshot return nil when the account does not exist. With an
-- Idempotency-Key (idem_key), every op returns {'first', answer} instead,
-- or {'replay', answer} when that key's write happened already.

local last_id_key = KEYS[1]     -- the last event id handed out
local firehose_key = KEYS[2]    -- firehose history (stream)
local history_key = KEYS[3]     -- the user's (or the topic's) history (stream)
local account_key = KEYS[4]     -- the account (hash; unused for a topic)

local op = ARGV[1]              -- 'create', 'event', 'snapshot' or 'topic'
local channel = ARGV[2]         -- the gateways' own channel: ssegate:events
                                -- (ssegate:events:<topic> for a topic)
local history_cap = ARGV[3]     -- user (or topic) history cap
local firehose_cap = ARGV[4]    -- firehose history cap
local history_slack = ARGV[5]   -- how far the user history may run over
local firehose_slack = ARGV[6]  -- how far the firehose may run over
local idem_key = ARGV[7]        -- the Idempotency-Key's key, or ''
local idem_ttl = ARGV[8]        -- seconds it keeps the answer
local idem_body = ARGV[9]       -- the answer: \1 stands for the event id,
                                -- \2 for the balance recorded
-- ARGV[10] on belong to the op; each branch below names them.

-- A write with an Idempotency-Key whose answer is kept happened already:
-- give that answer again and write nothing. The check and the write are
-- one script, so two tries of one write can never both write, whichever
-- reaches Redis first.
if idem_key ~= '' then
  local kept = redis.call('GET', idem_key)
  if kept then
    -- Written again, unchanged (KEEPTTL), so the replay propagates: the
    -- WAIT behind it (REDIS_WAIT_REPLICAS) then covers the first write too.
    redis.call('SET', idem_key, kept, 'KEEPTTL')
    return {'replay', kept}
  end
end

-- The op's result, or with an Idempotency-Key its answer, kept with the
-- write (plain find-and-replace: ids and balances hold no pattern chars).
local function answer(result, id, balance)
  if idem_key == '' then return result end
  local body = idem_body
  local i = string.find(body, '\1', 1, true)
  if i then body = string.sub(body, 1, i - 1) .. id .. string.sub(body, i + 1) end
  if balance then
    i = string.find(body, '\2', 1, true)
    if i then body = string.sub(body, 1, i - 1) .. balance .. string.sub(body, i + 1) end
  end
  redis.call('SET', idem_key, body, 'EX', idem_ttl)
  return {'first', body}
end

local function next_id()
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local seq = 0
  local last = redis.call('GET', last_id_key)
  if not last then
    local top = redis.call('XREVRANGE', firehose_key, '+', '-', 'COUNT', 1)
    if top[1] then last = top[1][1] end
  end
  if last then
    local lms, lseq = string.match(last, '^(%d+)-(%d+)$')
    if lms and ms <= tonumber(lms) then
      ms = tonumber(lms)
      seq = tonumber(lseq) + 1
    end
  end
  local id = string.format('%.0f-%.0f', ms, seq)
  redis.call('SET', last_id_key, id)
  return id
end

local function append(key, cap, slack, id, etype, env)
  redis.call('XADD', key, id, 't', etype, 'e', env)
  cap = tonumber(cap)
  local over = redis.call('XLEN', key) - cap
  if over > tonumber(slack) then
    local ids = {}
    for _, e in ipairs(redis.call('XRANGE', key, '-', '+', 'COUNT', over)) do
      ids[#ids + 1] = e[1]
    end
    redis.call('XDEL', key, unpack(ids))
  end
end

local function emit(etype, rest)
  local id = next_id()
  local env = '{"id":"' .. id .. '",' .. rest
  append(firehose_key, firehose_cap, firehose_slack, id, etype, env)
  append(history_key, history_cap, history_slack, id, etype, env)
  redis.call('PUBLISH', channel, env)
  return id
end

if op == 'create' then
  local name = ARGV[10]
  local balance = ARGV[11]
  local created_at = ARGV[12]
  local created_rest = ARGV[13]   -- account.created envelope after its id
  local snapshot_rest = ARGV[14]  -- snapshot envelope after its id
  if redis.call('EXISTS', account_key) == 1 then
    return redis.error_reply('ERR account exists')
  end
  redis.call('HSET', account_key, 'name', name, 'balance', balance,
             'createdAt', created_at)
  local ids = {emit('account.created', created_rest), emit('snapshot', snapshot_rest)}
  return answer(ids, ids[1])
end
-- A topic's event: no account, no firehose (the firehose carries users'
-- events); its own capped history (history_key, with the topic's cap and
-- slack) and the topic's own channel (channel: ssegate:events:<topic>),
-- the one whose ids the gateways trust for this topic. Same id counter,
-- so a stream on several sources sees one increasing sequence.
if op == 'topic' then
  local etype = ARGV[10]
  local rest = ARGV[11]           -- the envelope after its id
  local id = next_id()
  local env = '{"id":"' .. id .. '",' .. rest
  append(history_key, history_cap, history_slack, id, etype, env)
  redis.call('PUBLISH', channel, env)
  return answer(id, id)
end
-- Presence: who is on each topic, across the instances. Each instance
-- (a random id per process, so a restart under the same SERVER_ID never
-- inherits a dead process's streams) says how many streams it holds on a
-- topic, and of each member (a user), as absolute counts: sending one
-- again changes nothing, so a reply lost to a timeout is simply sent
-- again. A topic's hash (presence_key) holds
--   s|<instance>           streams that instance holds on the topic
--   m|<instance>|<member>  of them, the member's
--   u|<member>             the member's streams across live instances
-- and each instance's set (KEYS[2]) names its topics, so that when it
-- dies (its entry in the instances' sorted set, kept alive by 'alive',
-- runs out) any other instance can take its counts away. A member's u|
-- count going from 0 to more is presence.join, back to 0
-- presence.leave: decided here, atomically, so a user with tabs on two
-- instances joins once and leaves once. The events are ordinary topic
-- events (next_id, the topic's history and own channel); their envelope
-- comes from C (envelope.c's format) as a template: the type's kind is
-- the escaped \u0001 in "presence.\u0001", the member's JSON the raw
-- byte \2 in its data.
local function presence_event(tpl, kind, member, history, chan)
  local i, j = string.find(tpl, '\\u0001', 1, true)
  local rest = string.sub(tpl, 1, i - 1) .. kind .. string.sub(tpl, j + 1)
  i = string.find(rest, '\2', 1, true)
  rest = string.sub(rest, 1, i - 1) .. cjson.encode(member) .. string.sub(rest, i + 1)
  local id = next_id()
  local env = '{"id":"' .. id .. '",' .. rest
  append(history, history_cap, history_slack, id, 'presence.' .. kind, env)
  redis.call('PUBLISH', chan, env)
end

-- Moves member's count across instances by d; the event, if any.
local function presence_move(key, member, d, events, tpl, history, chan)
  if member == '' or d == 0 then return end
  local total = redis.call('HINCRBY', key, 'u|' .. member, d)
  if total <= 0 then redis.call('HDEL', key, 'u|' .. member) end
  if events ~= '1' then return end
  if total - d <= 0 and total > 0 then
    presence_event(tpl, 'join', member, history, chan)
  elseif total - d > 0 and total <= 0 then
    presence_event(tpl, 'leave', member, history, chan)
  end
end

if op == 'presence' then
  local inst = ARGV[10]
  local topic = ARGV[11]
  local events = ARGV[12]         -- '1': PRESENCE_EVENTS
  local tpl = ARGV[13]            -- the presence events' envelope template
  local streams = tonumber(ARGV[14])  -- the instance's streams on the topic
  local key = KEYS[4]             -- the topic's presence hash
  if streams > 0 then
    redis.call('HSET', key, 's|' .. inst, streams)
    redis.call('SADD', KEYS[2], topic)
  else
    redis.call('HDEL', key, 's|' .. inst)
  end
  -- ARGV[15] on: member, count pairs (absolute counts on this instance).
  for a = 15, #ARGV - 1, 2 do
    local member, n = ARGV[a], tonumber(ARGV[a + 1])
    local field = 'm|' .. inst .. '|' .. member
    local old = tonumber(redis.call('HGET', key, field) or '0')
    if n > 0 then redis.call('HSET', key, field, n) else redis.call('HDEL', key, field) end
    presence_move(key, member, n - old, events, tpl, history_key, channel)
  end
  if streams == 0 then
    redis.call('SREM', KEYS[2], topic)
    if redis.call('HLEN', key) == 0 then redis.call('DEL', key) end
  end
  return 1
end
-- 'alive': the instance (ARGV[10]) lives until now + ARGV[11] ms (0: it
-- is leaving now), and any instance past its time is taken away, at most
-- ARGV[17] topics a call so no call holds Redis long. Keys of other
-- topics and instances are built here from the prefixes C passes (our
-- keys live on one Redis, never a cluster). Returns {1 if the instance
-- was not known (new, or Redis lost its data: the caller sends all its
-- counts again), 1 if more is left to take away}.
if op == 'alive' then
  local inst = ARGV[10]
  local ttl = tonumber(ARGV[11])
  local events = ARGV[12]
  local tpl_prefix = ARGV[13]     -- the template of ARGV[13] in 'presence',
                                  -- with \u0003 where the topic goes (topic
                                  -- names need no escaping)
  local topic_prefix = ARGV[14]   -- presence hash of a topic
  local inst_prefix = ARGV[15]    -- an instance's topic set
  local history_prefix = ARGV[16] -- a topic's history
  local chan_prefix = ARGV[17]    -- a topic's own channel
  local budget = tonumber(ARGV[18])
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local fresh = redis.call('ZADD', KEYS[2], now + ttl, inst)
  local more = 0
  for _, dead in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 8)) do
    local set = inst_prefix .. dead
    for _, topic in ipairs(redis.call('SPOP', set, budget)) do
      budget = budget - 1
      local key = topic_prefix .. topic
      local i, j = string.find(tpl_prefix, '\\u0003', 1, true)
      local tpl = string.sub(tpl_prefix, 1, i - 1) .. topic .. string.sub(tpl_prefix, j + 1)
      local mine = 'm|' .. dead .. '|'
      redis.call('HDEL', key, 's|' .. dead)
      local h = redis.call('HGETALL', key)
      for f = 1, #h, 2 do
        if string.sub(h[f], 1, #mine) == mine then
          redis.call('HDEL', key, h[f])
          presence_move(key, string.sub(h[f], #mine + 1), -tonumber(h[f + 1]), events,
                        tpl, history_prefix .. topic, chan_prefix .. topic)
        end
      end
      if redis.call('HLEN', key) == 0 then redis.call('DEL', key) end
    end
    if redis.call('SCARD', set) == 0 then
      redis.call('ZREM', KEYS[2], dead)
    else
      more = 1
    end
    if budget <= 0 then more = 1; break end
  end
  return {fresh, more}
end
if redis.call('EXISTS', account_key) == 0 then return false end
if op == 'event' then
  local etype = ARGV[10]
  local rest = ARGV[11]           -- the envelope after its id
  local id = emit(etype, rest)
  return answer(id, id)
elseif op == 'snapshot' then
  local balance = ARGV[10]        -- the new balance, or '' to keep it
  local rest_before = ARGV[11]    -- the envelope up to the balance
  local rest_after = ARGV[12]     -- the envelope after the balance
  if balance == '' then
    balance = redis.call('HGET', account_key, 'balance') or '0'
  else
    redis.call('HSET', account_key, 'balance', balance)
  end
  local id = emit('snapshot', rest_before .. balance .. rest_after)
  return answer({id, balance}, id, balance)
end
return redis.error_reply('ERR unknown op')
