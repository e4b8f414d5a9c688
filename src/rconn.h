/* rconn.h -- the one Redis connection layer under pipeline.c (async:
 * one per HTTP thread, one for the replay reader) and subscriber.c
 * (async on libevent), with store.c's commands: where Redis is, connecting and
 * authenticating, the Lua scripts and their SHAs, what an error reply
 * means, and the back-off between failed attempts. Each user keeps only
 * what is its own (its context, its loop, its replies). */
#ifndef SSEGATE_RCONN_H
#define SSEGATE_RCONN_H

#include <stddef.h>
#include <stdint.h>

struct config;
struct redisAsyncContext;
struct redisReply;

/* A script's SHA1 in hex, as SCRIPT LOAD returns it. */
#define RCONN_SHA_LEN 40

#define RCONN_HOST_MAX 256
#define RCONN_USERNAME_MAX 256
#define RCONN_PASSWORD_MAX 256
/* Room for why a connect failed: "host:port: hiredis's errstr". */
#define RCONN_ERR_MAX (RCONN_HOST_MAX + 160)

/* Copies the Redis target (host, port, user, password, timeout) from cfg. Call
 * once, before any other rconn_* call and before other threads start
 * (store_setup does). */
void
rconn_setup(const struct config *cfg);

/* Starts (rconn_start: 0, or -1 when it cannot) and stops the Sentinel
 * lookup thread (sentinel.h) when REDIS_SENTINELS is set; nothing
 * otherwise. Start after rconn_setup; stop after every connection is
 * freed. */
int
rconn_start(void);
void
rconn_stop(void);

/* Where connections go now, as "host:port" text for a log line: REDIS_HOST,
 * or the master the sentinels named last. Any thread. */
void
rconn_target(char *out, size_t cap);

/* The master's generation: it changes each time the sentinels name a new
 * master (always 0 without sentinels). A connection made under an older
 * one talks to a server that may be a replica now: its owner drops it.
 * Any thread. */
unsigned
rconn_master_gen(void);

/* A connection lost the master (connect failed, the connection broke, or
 * a READONLY reply): the sentinels are asked again at once (nothing
 * without sentinels). Any thread, never waits. */
void
rconn_master_lost(void);

/* fn(arg) hears of each new master, on the lookup thread (hand it over,
 * e.g. event_active; NULL unregisters, after which fn is not running). */
void
rconn_on_master_change(void (*fn)(void *), void *arg);

/* Where Redis is, as copied by rconn_setup, for log lines; any thread. */
const char *
rconn_host(void);
uint16_t
rconn_port(void);

/* ------------------------------------------------------------ scripts */

/* The Lua scripts every write and every history read run, and the rate
 * limits' check (src/lua/). */
enum rconn_script {
    RCONN_SCRIPT_WRITE, RCONN_SCRIPT_READ, RCONN_SCRIPT_RATELIMIT, RCONN_SCRIPT_COUNT
};

/* A script command's argv starts "EVALSHA" sha numkeys (or "EVAL" text
 * numkeys); the script's keys and arguments follow from RCONN_ARGV_FIRST. */
enum rconn_argv { RCONN_ARGV_CMD, RCONN_ARGV_SCRIPT, RCONN_ARGV_NKEYS, RCONN_ARGV_FIRST };

/* The scripts' texts, NUL-terminated: generated from src/lua/ by
 * scripts/embed-lua (src/lua_scripts.c). Read them with
 * rconn_script_text. */
extern const unsigned char rconn_lua_write[];
extern const unsigned char rconn_lua_read[];
extern const unsigned char rconn_lua_ratelimit[];

const char *
rconn_script_text(enum rconn_script script);

/* Fills argv[0..1] (and lens[0..1]) for script: "EVALSHA" and its SHA,
 * or "EVAL" and its text when as_eval is set or the SHA is not known
 * yet. Returns 1 if it chose EVAL, else 0. The strings are static: they
 * outlive any command. Any thread. */
int
rconn_script_argv(enum rconn_script script, int as_eval, const char **argv,
                  size_t *lens);

/* 1 if r says Redis lost its script cache (SCRIPT FLUSH, a restart): the
 * caller sends the command once more with as_eval set, which caches the
 * script again. */
int
rconn_is_noscript(const struct redisReply *r);

/* 1 if the error reply r means "Redis cannot serve now, retry later"
 * (loading, busy, no master, read-only, out of memory, or a refusal:
 * rconn_is_refusal), 0 if it is a bug to report. */
int
rconn_is_unavailable(const struct redisReply *r);

/* 1 if r is READONLY: the server is a replica now (a failover demoted
 * it): the connection is dropped and the master looked up again. */
int
rconn_is_readonly(const struct redisReply *r);

/* The error code pipeline.c answers a write with when fewer than
 * REDIS_WAIT_REPLICAS replicas acknowledged it in time (the write itself
 * is done on the master), and its test. */
#define RCONN_NOT_REPLICATED "NOTREPLICATED"
/* 1 for Redis's "OOM" (maxmemory reached under noeviction): nothing
 * was written, and nothing will be until Redis has room. */
int
rconn_is_full(const struct redisReply *r);

int
rconn_is_not_replicated(const struct redisReply *r);

/* ------------------------------------------------------------ refusals */

/* 1 if the error reply r is Redis refusing us: wrong or missing
 * credentials (WRONGPASS, NOAUTH, and the protocol error Redis gives an
 * unauthenticated client that sends a long command) or an ACL that denies
 * a command, key or channel (NOPERM). Every connection keeps retrying
 * after one, with back-off, so it is logged through rconn_note_refused. */
int
rconn_is_refusal(const struct redisReply *r);

/* Logs a refusal (why: Redis's error text; cmd: what was refused) once
 * per change, process-wide, whichever connection saw it: the first
 * credentials refusal, then nothing until credentials are accepted again
 * (rconn_note_accepted); the same, apart, for an ACL's denials. The line
 * names no secret (Redis's own texts name none). Any thread. */
void
rconn_note_refused(const char *cmd, const char *why);

/* A connection's AUTH reply (NULL: the connection is going away): 0 when
 * accepted (credentials refused before are then said to work again), -1
 * when refused (noted). The caller drops a refused connection: its
 * later commands would only be refused too, and a fixed password or ACL
 * needs a new AUTH. Any thread. */
int
rconn_auth_result(const struct redisReply *r);

/* Redis serves us fully again (the subscription is up): a refusal of any
 * kind is over, said once. Any thread. */
void
rconn_note_accepted(void);

/* ---------------------------------------------------------- connecting */

/* Starts an asynchronous connect to the target; ac->data is set to data.
 * The caller owns the context and attaches its event loop. Returns NULL
 * when the connect cannot start, with why in err (the caller logs it, at
 * the level that suits it). */
struct redisAsyncContext *
rconn_async_connect(void *data, char *err, size_t err_cap);

/* Queues AUTH first on a freshly created async context when a user or
 * a password is set ("AUTH user password" with REDIS_USERNAME, else
 * "AUTH password"); fn (may be NULL) hears the reply and should pass it
 * to rconn_auth_result. Returns 0, or -1 when the command could not be
 * queued. */
int
rconn_async_auth(struct redisAsyncContext *ac,
                 void (*fn)(struct redisAsyncContext *, void *, void *),
                 void *privdata);

/* Queues SCRIPT LOAD of every script; the replies fill the SHAs that
 * rconn_script_argv hands out. Returns 0, or -1 when a command could
 * not be queued. */
int
rconn_async_load_scripts(struct redisAsyncContext *ac);

/* ------------------------------------------------------------ back-off */

#define RCONN_BACKOFF_MIN_MS 100
#define RCONN_BACKOFF_MAX_MS 5000

/* Capped exponential back-off with equal jitter, one per connection
 * (not shared between threads): after each failure the wait is a random
 * time in [b/2, b], and b doubles from RCONN_BACKOFF_MIN_MS up to
 * RCONN_BACKOFF_MAX_MS; a success resets it. Jitter keeps many
 * connections (threads, instances) from hitting a restarting Redis in
 * step. */
struct rconn_backoff {
    unsigned next_ms;               /* b: the longest next wait */
    int64_t retry_at_ms;            /* monotonic: no attempt before this... */
    unsigned back_gen;              /* ...unless the generation moved past this */
    unsigned master_gen;            /* ...or the sentinels named a new master */
    uint32_t seed;                  /* jitter's PRNG state */
};

void
rconn_backoff_init(struct rconn_backoff *b);

/* Records a failed attempt and returns how long to wait, in ms. */
unsigned
rconn_backoff_fail(struct rconn_backoff *b);

/* Records a success: the next failure waits the minimum again. */
void
rconn_backoff_reset(struct rconn_backoff *b);

/* 1 if an attempt may be made now: the wait is over, or Redis was said
 * to be back (rconn_redis_is_back) since the last failure. */
int
rconn_backoff_ready(const struct rconn_backoff *b);

/* Tells every connection that Redis answers again (the subscriber just
 * subscribed): one waiting out its back-off tries at once instead of
 * failing requests for the rest of its wait. Any thread. */
void
rconn_redis_is_back(void);

#endif
