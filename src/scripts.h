/* scripts.h -- the Lua scripts store.c runs inside Redis. Each write is
 * one script so an event is in history if and only if it was published,
 * and an account never exists without its first events. */
#ifndef SSEGATE_SCRIPTS_H
#define SSEGATE_SCRIPTS_H

/* KEYS: 1 last event id, 2 firehose history, 3 user history, 4 account.
 * ARGV: 1 op, 2 channel, 3 user history cap, 4 firehose history cap, then
 *   create:   5 name, 6 balance, 7 createdAt, 8 account.created rest,
 *             9 snapshot rest                       -> {id1, id2}
 *   event:    5 type, 6 rest                         -> id
 *   snapshot: 5 balance or "", 6 rest before the balance,
 *             7 rest after it                        -> {id, balance}
 * event and snapshot return nil when the account does not exist.
 *
 * Event ids come from one counter (KEYS[1]) rather than from XADD "*" on
 * each history stream: the firehose and every user's history then share
 * one increasing id space, so a firehose client and a user client can
 * both resume from the same ids, and pub/sub order equals id order.
 * The id follows Redis's own rule (ms time, then a sequence within the
 * same ms, never going back), and falls back to the firehose's newest
 * entry if the counter key was lost. The envelope is completed here
 * because only here is its id known: {"id":"<id>",<rest>.
 *
 * History is capped with XDEL rather than XADD MAXLEN: Redis 7 records
 * the largest deleted id (max-deleted-entry-id) for XDEL but not for
 * trimming, and script_read needs it to tell a gap from no gap. Trimming
 * one entry per event (XLEN, XRANGE, XDEL) more than doubled the script's
 * cost in Redis, so a history may run up to its slack (cap / 16, at most
 * 63; STORE_TRIM_SLACK in store.c) over its cap before it is cut back to
 * the cap in one go. */
static const char script_write[] =
    "local function next_id()\n"
    "  local t = redis.call('TIME')\n"
    "  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "  local seq = 0\n"
    "  local last = redis.call('GET', KEYS[1])\n"
    "  if not last then\n"
    "    local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)\n"
    "    if top[1] then last = top[1][1] end\n"
    "  end\n"
    "  if last then\n"
    "    local lms, lseq = string.match(last, '^(%d+)-(%d+)$')\n"
    "    if lms and ms <= tonumber(lms) then\n"
    "      ms = tonumber(lms)\n"
    "      seq = tonumber(lseq) + 1\n"
    "    end\n"
    "  end\n"
    "  local id = string.format('%.0f-%.0f', ms, seq)\n"
    "  redis.call('SET', KEYS[1], id)\n"
    "  return id\n"
    "end\n"
    "local function append(key, cap, id, etype, env)\n"
    "  redis.call('XADD', key, id, 't', etype, 'e', env)\n"
    "  cap = tonumber(cap)\n"
    "  local over = redis.call('XLEN', key) - cap\n"
    "  if over > math.min(63, math.floor(cap / 16)) then\n"
    "    local ids = {}\n"
    "    for _, e in ipairs(redis.call('XRANGE', key, '-', '+', 'COUNT', over)) do\n"
    "      ids[#ids + 1] = e[1]\n"
    "    end\n"
    "    redis.call('XDEL', key, unpack(ids))\n"
    "  end\n"
    "end\n"
    "local function emit(etype, rest)\n"
    "  local id = next_id()\n"
    "  local env = '{\"id\":\"' .. id .. '\",' .. rest\n"
    "  append(KEYS[2], ARGV[4], id, etype, env)\n"
    "  append(KEYS[3], ARGV[3], id, etype, env)\n"
    "  redis.call('PUBLISH', ARGV[2], env)\n"
    "  return id\n"
    "end\n"
    "local op = ARGV[1]\n"
    "if op == 'create' then\n"
    "  if redis.call('EXISTS', KEYS[4]) == 1 then\n"
    "    return redis.error_reply('ERR account exists')\n"
    "  end\n"
    "  redis.call('HSET', KEYS[4], 'name', ARGV[5], 'balance', ARGV[6],\n"
    "             'createdAt', ARGV[7])\n"
    "  return {emit('account.created', ARGV[8]), emit('snapshot', ARGV[9])}\n"
    "end\n"
    "if redis.call('EXISTS', KEYS[4]) == 0 then return false end\n"
    "if op == 'event' then\n"
    "  return emit(ARGV[5], ARGV[6])\n"
    "elseif op == 'snapshot' then\n"
    "  local balance = ARGV[5]\n"
    "  if balance == '' then\n"
    "    balance = redis.call('HGET', KEYS[4], 'balance') or '0'\n"
    "  else\n"
    "    redis.call('HSET', KEYS[4], 'balance', balance)\n"
    "  end\n"
    "  return {emit('snapshot', ARGV[6] .. balance .. ARGV[7]), balance}\n"
    "end\n"
    "return redis.error_reply('ERR unknown op')\n";

/* KEYS: 1 history stream, 2 last event id, 3 account (unused for the
 * firehose). ARGV: 1 "1" if the account must exist, 2 the id to read
 * after or "", 3 the most entries to return.
 * Returns nil for a missing account, else {last id or "", gap, entries}.
 * gap is 1 when an entry after ARGV[2] was deleted to keep the cap: Redis
 * 7 keeps the largest deleted id (max-deleted-entry-id), so the test is
 * exact. Ids
 * are compared as decimal strings: Lua numbers are doubles. */
static const char script_read[] =
    "local function numcmp(a, b)\n"
    "  a = string.gsub(a, '^0+', '')\n"
    "  b = string.gsub(b, '^0+', '')\n"
    "  if #a ~= #b then return #a < #b and -1 or 1 end\n"
    "  if a == b then return 0 end\n"
    "  return a < b and -1 or 1\n"
    "end\n"
    "local function idcmp(x, y)\n"
    "  local xm, xs = string.match(x, '^(%d+)-?(%d*)$')\n"
    "  local ym, ys = string.match(y, '^(%d+)-?(%d*)$')\n"
    "  local c = numcmp(xm, ym)\n"
    "  if c ~= 0 then return c end\n"
    "  return numcmp(xs == '' and '0' or xs, ys == '' and '0' or ys)\n"
    "end\n"
    "if ARGV[1] == '1' and redis.call('EXISTS', KEYS[3]) == 0 then\n"
    "  return false\n"
    "end\n"
    "local cur = redis.call('GET', KEYS[2]) or ''\n"
    "if ARGV[2] == '' or redis.call('EXISTS', KEYS[1]) == 0 then\n"
    "  return {cur, 0, {}}\n"
    "end\n"
    "local gap = 0\n"
    "local info = redis.call('XINFO', 'STREAM', KEYS[1])\n"
    "for i = 1, #info - 1, 2 do\n"
    "  if info[i] == 'max-deleted-entry-id' and idcmp(info[i + 1], ARGV[2]) > 0 then\n"
    "    gap = 1\n"
    "  end\n"
    "end\n"
    "return {cur, gap, redis.call('XRANGE', KEYS[1], '(' .. ARGV[2], '+',\n"
    "                             'COUNT', ARGV[3])}\n";

#endif
