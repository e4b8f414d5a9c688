/* rconn.c -- the Redis connection layer shared by store.c, pipeline.c and
 * subscriber.c. Owns the copy of the Redis target, the script registry
 * (texts generated from src/lua/, SHAs learnt from SCRIPT LOAD), the
 * "Redis is back" generation, the refusals noted (one log line per
 * change for the whole process, not one per retry per connection), and
 * the rules written once: which error replies mean "unavailable" or
 * "refused", when to resend a script as EVAL, and how long to wait after
 * a failure. Owns no connection: each caller owns its
 * contexts and frees them. */
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "rconn.h"
#include "sentinel.h"

static struct {
    char host[RCONN_HOST_MAX];
    uint16_t port;
    char username[RCONN_USERNAME_MAX];
    char password[RCONN_PASSWORD_MAX];
    unsigned timeout_ms;
} rconn_cfg;

/* Refusals noted (rconn_note_refused), by kind: credentials, ACL. Under
 * rconn_refused_mu, which is only ever taken alone. */
enum rconn_refusal { RCONN_REFUSED_CREDENTIALS, RCONN_REFUSED_ACL, RCONN_REFUSED_KINDS };
static int rconn_refused[RCONN_REFUSED_KINDS];
static pthread_mutex_t rconn_refused_mu = PTHREAD_MUTEX_INITIALIZER;

/* Each script's SHA1: the same on every connection and server (it is the
 * hash of the text), so it is learnt once, from whichever SCRIPT LOAD
 * answers first, and never changes after. Written under rconn_sha_mu;
 * read without it once rconn_sha_known says so (release/acquire). */
static char rconn_sha[RCONN_SCRIPT_COUNT][RCONN_SHA_LEN + 1];
static atomic_int rconn_sha_known[RCONN_SCRIPT_COUNT];
static pthread_mutex_t rconn_sha_mu = PTHREAD_MUTEX_INITIALIZER;

/* Bumped by rconn_redis_is_back(): a connection waiting out its back-off
 * tries at once when it sees a new value. */
static atomic_uint rconn_back_gen;

void
rconn_setup(const struct config *cfg)
{
    snprintf(rconn_cfg.host, sizeof(rconn_cfg.host), "%s", cfg->redis_host);
    rconn_cfg.port = cfg->redis_port;
    snprintf(rconn_cfg.username, sizeof(rconn_cfg.username), "%s",
             cfg->redis_username);
    snprintf(rconn_cfg.password, sizeof(rconn_cfg.password), "%s",
             cfg->redis_password);
    rconn_cfg.timeout_ms = cfg->redis_timeout_ms;
    sentinel_setup(cfg);
}

int
rconn_start(void)
{
    return sentinel_start();
}

void
rconn_stop(void)
{
    sentinel_stop();
}

void
rconn_target(char *out, size_t cap)
{
    char host[RCONN_HOST_MAX];
    uint16_t port;
    unsigned gen;

    if (!sentinel_enabled())
        snprintf(out, cap, "%s:%u", rconn_cfg.host, rconn_cfg.port);
    else if (sentinel_master(host, sizeof(host), &port, &gen) == 0)
        snprintf(out, cap, "%s:%u (master from the sentinels)", host, port);
    else
        snprintf(out, cap, "(no master known yet from the sentinels)");
}

unsigned
rconn_master_gen(void)
{
    return sentinel_generation();
}

void
rconn_master_lost(void)
{
    sentinel_suspect();
}

void
rconn_on_master_change(void (*fn)(void *), void *arg)
{
    sentinel_on_change(fn, arg);
}

const char *
rconn_host(void)
{
    return rconn_cfg.host;
}

uint16_t
rconn_port(void)
{
    return rconn_cfg.port;
}

/* ------------------------------------------------------------ scripts */

const char *
rconn_script_text(enum rconn_script script)
{
    switch (script) {
    case RCONN_SCRIPT_WRITE:
        return (const char *)rconn_lua_write;
    case RCONN_SCRIPT_READ:
        return (const char *)rconn_lua_read;
    case RCONN_SCRIPT_RATELIMIT:
    case RCONN_SCRIPT_COUNT:
        break;
    }
    return (const char *)rconn_lua_ratelimit;
}

/* Remembers the SHA a SCRIPT LOAD answered; -1 if r is not one. */
static int
rconn_script_learn(enum rconn_script script, const redisReply *r)
{
    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len != RCONN_SHA_LEN)
        return -1;
    pthread_mutex_lock(&rconn_sha_mu);
    if (!atomic_load_explicit(&rconn_sha_known[script], memory_order_relaxed)) {
        memcpy(rconn_sha[script], r->str, RCONN_SHA_LEN);
        rconn_sha[script][RCONN_SHA_LEN] = '\0';
        atomic_store_explicit(&rconn_sha_known[script], 1, memory_order_release);
    }
    pthread_mutex_unlock(&rconn_sha_mu);
    return 0;
}

int
rconn_script_argv(enum rconn_script script, int as_eval, const char **argv,
                  size_t *lens)
{
    if (!as_eval &&
        atomic_load_explicit(&rconn_sha_known[script], memory_order_acquire)) {
        argv[RCONN_ARGV_CMD] = "EVALSHA";
        argv[RCONN_ARGV_SCRIPT] = rconn_sha[script];
        lens[RCONN_ARGV_CMD] = strlen("EVALSHA");
        lens[RCONN_ARGV_SCRIPT] = RCONN_SHA_LEN;
        return 0;
    }
    argv[RCONN_ARGV_CMD] = "EVAL";
    argv[RCONN_ARGV_SCRIPT] = rconn_script_text(script);
    lens[RCONN_ARGV_CMD] = strlen("EVAL");
    lens[RCONN_ARGV_SCRIPT] = strlen(argv[RCONN_ARGV_SCRIPT]);
    return 1;
}

/* Whether r is an error reply starting with the error code prefix. */
static int
rconn_is_error(const redisReply *r, const char *prefix)
{
    return r != NULL && r->type == REDIS_REPLY_ERROR &&
           strncmp(r->str, prefix, strlen(prefix)) == 0;
}

int
rconn_is_noscript(const struct redisReply *r)
{
    return rconn_is_error(r, "NOSCRIPT");
}

int
rconn_is_unavailable(const struct redisReply *r)
{
    /* Redis is starting, running a long script, has lost its master, is
     * a replica, or is full: all pass. So does a refusal, once someone
     * fixes the password or the ACL. */
    static const char *const codes[] = {
        "LOADING", "BUSY", "MASTERDOWN", "READONLY", "OOM", "NOREPLICAS"
    };

    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (rconn_is_error(r, codes[i]))
            return 1;
    return rconn_is_refusal(r);
}

int
rconn_is_readonly(const struct redisReply *r)
{
    return rconn_is_error(r, "READONLY");
}

int
rconn_is_full(const struct redisReply *r)
{
    return rconn_is_error(r, "OOM");
}

int
rconn_is_not_replicated(const struct redisReply *r)
{
    return rconn_is_error(r, RCONN_NOT_REPLICATED);
}

/* ------------------------------------------------------------ refusals */

/* Which kind of refusal an error text is; -1 for none. Redis 7 answers a
 * long command from an unauthenticated client with "ERR Protocol error:
 * unauthenticated multibulk length" (or bulk length) and closes. */
static int
rconn_refusal_kind(const char *why)
{
    if (strncmp(why, "NOPERM", 6) == 0)
        return RCONN_REFUSED_ACL;
    if (strncmp(why, "WRONGPASS", 9) == 0 || strncmp(why, "NOAUTH", 6) == 0 ||
        strncmp(why, "ERR Protocol error: unauthenticated", 35) == 0)
        return RCONN_REFUSED_CREDENTIALS;
    return -1;
}

int
rconn_is_refusal(const struct redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_ERROR && rconn_refusal_kind(r->str) >= 0;
}

void
rconn_note_refused(const char *cmd, const char *why)
{
    int kind = rconn_refusal_kind(why), news;

    if (kind < 0)
        kind = RCONN_REFUSED_CREDENTIALS;
    pthread_mutex_lock(&rconn_refused_mu);
    news = !rconn_refused[kind];
    rconn_refused[kind] = 1;
    pthread_mutex_unlock(&rconn_refused_mu);
    /* A wrong password makes every later command on that connection a
     * NOAUTH, and every connection retries: all one refusal, one line. */
    if (news)
        log_error("redis: %s refused at %s:%u: %.160s (check %s; every "
                  "connection retries, /health says down until then)",
                  cmd, rconn_cfg.host, rconn_cfg.port, why,
                  kind == RCONN_REFUSED_ACL ? "the ACL of REDIS_USERNAME"
                                            : "REDIS_USERNAME and REDIS_PASSWORD");
    else
        log_debug("redis: %s refused: %.160s", cmd, why);
}

/* Ends the refusals of the kinds set in which; says so once if any was
 * noted. */
static void
rconn_note_over(int credentials, int acl)
{
    int was = 0;

    pthread_mutex_lock(&rconn_refused_mu);
    if (credentials) {
        was |= rconn_refused[RCONN_REFUSED_CREDENTIALS];
        rconn_refused[RCONN_REFUSED_CREDENTIALS] = 0;
    }
    if (acl) {
        was |= rconn_refused[RCONN_REFUSED_ACL];
        rconn_refused[RCONN_REFUSED_ACL] = 0;
    }
    pthread_mutex_unlock(&rconn_refused_mu);
    if (was)
        log_info("redis: %s:%u accepts this gateway again", rconn_cfg.host,
                 rconn_cfg.port);
}

int
rconn_auth_result(const struct redisReply *r)
{
    if (r == NULL)
        return 0;
    if (r->type == REDIS_REPLY_ERROR) {
        rconn_note_refused("AUTH", r->str);
        return -1;
    }
    /* Accepted credentials say nothing of the ACL: only a working
     * subscription ends an ACL's refusal (rconn_note_accepted). */
    rconn_note_over(1, 0);
    return 0;
}

void
rconn_note_accepted(void)
{
    rconn_note_over(1, 1);
}

/* ---------------------------------------------------------- connecting */

struct redisAsyncContext *
rconn_async_connect(void *data, char *err, size_t err_cap)
{
    char host[RCONN_HOST_MAX];
    uint16_t port = rconn_cfg.port;
    unsigned gen;
    redisAsyncContext *ac;
    int e;

    snprintf(host, sizeof(host), "%s", rconn_cfg.host);
    /* The sentinels' answer is read, never awaited: the lookup thread
     * (sentinel.c) asks them. The master's address is an IP as Sentinel
     * announces it, so hiredis's getaddrinfo does not wait either. */
    if (sentinel_enabled() &&
        sentinel_master(host, sizeof(host), &port, &gen) == -1) {
        snprintf(err, err_cap, "the master: the sentinels have named none yet "
                 "(REDIS_SENTINELS, REDIS_MASTER_NAME)");
        return NULL;
    }
    ac = redisAsyncConnect(host, port);
    e = errno;

    /* hiredis 0.14.1 returns NULL only when out of memory; a failed
     * socket() (no descriptor left) is an error on the context. The two
     * have different cures, so each is named as what it is. */
    if (ac == NULL || ac->err) {
        snprintf(err, err_cap, "%s:%u: %s", host, port,
                 ac == NULL ? "out of memory"
                 : ac->err == REDIS_ERR_IO && (e == EMFILE || e == ENFILE)
                     ? "no file descriptor left" : ac->errstr);
        if (ac != NULL)
            redisAsyncFree(ac);
        return NULL;
    }
    ac->data = data;
    return ac;
}

int
rconn_async_auth(struct redisAsyncContext *ac,
                 void (*fn)(struct redisAsyncContext *, void *, void *),
                 void *privdata)
{
    /* Binary-safe arguments (%b): a password may hold any byte. */
    if (rconn_cfg.username[0] != '\0')
        return redisAsyncCommand(ac, fn, privdata, "AUTH %b %b",
                                 rconn_cfg.username, strlen(rconn_cfg.username),
                                 rconn_cfg.password,
                                 strlen(rconn_cfg.password)) == REDIS_OK ? 0 : -1;
    if (rconn_cfg.password[0] == '\0')
        return 0;
    return redisAsyncCommand(ac, fn, privdata, "AUTH %b", rconn_cfg.password,
                             strlen(rconn_cfg.password)) == REDIS_OK ? 0 : -1;
}

/* privdata: the script, as an enum value in the pointer. */
static void
rconn_on_script_load(redisAsyncContext *ac, void *reply, void *privdata)
{
    const redisReply *r = reply;
    enum rconn_script script = (enum rconn_script)(uintptr_t)privdata;

    (void)ac;
    /* NULL: the context is going away; its owner hears of that. */
    if (r == NULL || rconn_script_learn(script, r) == 0)
        return;
    if (rconn_is_refusal(r))
        rconn_note_refused("SCRIPT LOAD", r->str);
    else
        log_warn("redis: SCRIPT LOAD: %s",
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
}

int
rconn_async_load_scripts(struct redisAsyncContext *ac)
{
    for (int i = 0; i < RCONN_SCRIPT_COUNT; i++)
        if (redisAsyncCommand(ac, rconn_on_script_load, (void *)(uintptr_t)i,
                              "SCRIPT LOAD %s",
                              rconn_script_text((enum rconn_script)i)) != REDIS_OK)
            return -1;
    return 0;
}

/* ------------------------------------------------------------ back-off */

/* xorshift32: cheap, per back-off (no shared state, no lock), and good
 * enough to spread retries. */
static uint32_t
rconn_backoff_random(struct rconn_backoff *b)
{
    uint32_t x = b->seed;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return b->seed = x;
}

void
rconn_backoff_init(struct rconn_backoff *b)
{
    memset(b, 0, sizeof(*b));
    b->next_ms = RCONN_BACKOFF_MIN_MS;
    /* Different per connection and per process, never zero. */
    b->seed = (uint32_t)clock_wall_ms() ^ (uint32_t)(uintptr_t)b ^ 0x9e3779b9u;
    if (b->seed == 0)
        b->seed = 1;
}

unsigned
rconn_backoff_fail(struct rconn_backoff *b)
{
    unsigned cap = b->next_ms, delay;

    delay = cap / 2 + rconn_backoff_random(b) % (cap / 2 + 1);
    b->next_ms = cap * 2 > RCONN_BACKOFF_MAX_MS ? RCONN_BACKOFF_MAX_MS : cap * 2;
    b->retry_at_ms = clock_mono_ms() + delay;
    b->back_gen = atomic_load(&rconn_back_gen);
    b->master_gen = sentinel_generation();
    return delay;
}

void
rconn_backoff_reset(struct rconn_backoff *b)
{
    b->next_ms = RCONN_BACKOFF_MIN_MS;
    b->retry_at_ms = 0;
}

int
rconn_backoff_ready(const struct rconn_backoff *b)
{
    /* A new master (sentinel.c) is as good as "Redis is back". */
    return clock_mono_ms() >= b->retry_at_ms ||
           atomic_load(&rconn_back_gen) != b->back_gen ||
           sentinel_generation() != b->master_gen;
}

void
rconn_redis_is_back(void)
{
    atomic_fetch_add(&rconn_back_gen, 1);
}
