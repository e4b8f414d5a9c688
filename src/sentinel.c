/* sentinel.c -- the Redis master's address under Redis Sentinel
 * (REDIS_SENTINELS). Owns the lookup thread, its one connection to a
 * sentinel, the master last confirmed (host, port, generation) and the
 * change hook.
 *
 * Why a thread: hiredis 0.14.1 has no Sentinel support and no async
 * connect timeout, and the connections that need the address are made on
 * the HTTP threads and the main loop, which must never wait on the
 * network. So the lookups (blocking hiredis calls, each bounded by
 * REDIS_TIMEOUT_MS) happen here, and a connection only reads the last
 * answer under a mutex.
 *
 * A lookup asks the sentinels in turn (the last one that answered first)
 * for `SENTINEL get-master-addr-by-name`, and a server is taken as the
 * master only once it says so itself (`ROLE`): during a failover the
 * sentinels still name the old master until they switch, and a stale
 * sentinel may name a replica. It runs every SENTINEL_POLL_MS (a switch
 * seen while every connection still works: the old master was demoted,
 * not killed), and at once, then every SENTINEL_RETRY_MS until a master
 * is confirmed, after a connection reported the master lost
 * (sentinel_suspect). Subscribing to +switch-master would learn of a
 * switch a little sooner; the failing connections already tell us, so
 * the polls keep this simple. */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "sentinel.h"

/* How often the master is looked up while all is well. */
#define SENTINEL_POLL_MS 1000
/* How often while no master is confirmed or a connection lost it. */
#define SENTINEL_RETRY_MS 200
/* The least time between two lookups, however many connections report
 * the master lost at once. */
#define SENTINEL_MIN_GAP_MS 50
#define SENTINEL_HOST_MAX 256
/* Room for why a lookup failed: "host:port: text". */
#define SENTINEL_WHY_MAX 512

static struct {
    struct config_sentinels list;
    char name[256];
    char password[256];             /* the sentinels' */
    char username[256];             /* the master's (ROLE check) */
    char redis_password[256];
    unsigned timeout_ms;
} sentinel_cfg;

/* The master last confirmed, and the thread's orders: under sentinel_mu. */
static pthread_mutex_t sentinel_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sentinel_cond;
static char sentinel_host[SENTINEL_HOST_MAX];
static uint16_t sentinel_port;
static int sentinel_suspected, sentinel_stopping;
/* Read without the mutex too (sentinel_generation). */
static atomic_uint sentinel_gen;

static pthread_mutex_t sentinel_hook_mu = PTHREAD_MUTEX_INITIALIZER;
static void (*sentinel_hook)(void *);
static void *sentinel_hook_arg;

static pthread_t sentinel_thread;
static int sentinel_running;

/* The lookup thread's own: its connection to one sentinel, which one, and
 * whether it said the sentinels cannot be reached (said once a change). */
static redisContext *sentinel_ctx;
static unsigned sentinel_at;
static int sentinel_said_down;
/* ROLE was refused by an ACL (said once). */
static int sentinel_said_norole;
/* The lookup sentinel_start made: the thread's first is due after it. */
static int sentinel_first_ok;

void
sentinel_setup(const struct config *cfg)
{
    sentinel_cfg.list = cfg->redis_sentinels;
    snprintf(sentinel_cfg.name, sizeof(sentinel_cfg.name), "%s", cfg->redis_master_name);
    snprintf(sentinel_cfg.password, sizeof(sentinel_cfg.password), "%s",
             cfg->redis_sentinel_password);
    snprintf(sentinel_cfg.username, sizeof(sentinel_cfg.username), "%s",
             cfg->redis_username);
    snprintf(sentinel_cfg.redis_password, sizeof(sentinel_cfg.redis_password), "%s",
             cfg->redis_password);
    sentinel_cfg.timeout_ms = cfg->redis_timeout_ms;
}

int
sentinel_enabled(void)
{
    return sentinel_cfg.list.n > 0;
}

/* ---------------------------------------------------------- the master */

int
sentinel_master(char *host, size_t cap, uint16_t *port, unsigned *gen)
{
    int known;

    pthread_mutex_lock(&sentinel_mu);
    known = sentinel_host[0] != '\0';
    if (known) {
        snprintf(host, cap, "%s", sentinel_host);
        *port = sentinel_port;
        *gen = atomic_load(&sentinel_gen);
    }
    pthread_mutex_unlock(&sentinel_mu);
    return known ? 0 : -1;
}

unsigned
sentinel_generation(void)
{
    return atomic_load(&sentinel_gen);
}

void
sentinel_suspect(void)
{
    if (!sentinel_enabled())
        return;
    pthread_mutex_lock(&sentinel_mu);
    if (!sentinel_suspected) {
        sentinel_suspected = 1;
        pthread_cond_signal(&sentinel_cond);
    }
    pthread_mutex_unlock(&sentinel_mu);
}

void
sentinel_on_change(void (*fn)(void *), void *arg)
{
    pthread_mutex_lock(&sentinel_hook_mu);
    sentinel_hook = fn;
    sentinel_hook_arg = arg;
    pthread_mutex_unlock(&sentinel_hook_mu);
}

/* ------------------------------------------------------------ lookups */

/* A blocking connection to host:port, every call bounded by the timeout,
 * authenticated with user/password when set ("" user: AUTH password).
 * NULL on failure, with why in err. */
static redisContext *
sentinel_connect(const char *host, uint16_t port, const char *user,
                 const char *password, char *err, size_t errlen)
{
    struct timeval tv = { (time_t)(sentinel_cfg.timeout_ms / 1000),
                          (suseconds_t)(sentinel_cfg.timeout_ms % 1000) * 1000 };
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    redisReply *r = NULL;

    if (c == NULL || c->err) {
        snprintf(err, errlen, "%s:%u: %s", host, port,
                 c == NULL ? "out of memory" : c->errstr);
        redisFree(c);
        return NULL;
    }
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        snprintf(err, errlen, "%s:%u: cannot set a timeout", host, port);
        redisFree(c);
        return NULL;
    }
    if (user[0] != '\0')
        r = redisCommand(c, "AUTH %s %s", user, password);
    else if (password[0] != '\0')
        r = redisCommand(c, "AUTH %s", password);
    else
        return c;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "%s:%u: AUTH: %.120s", host, port,
                 r == NULL ? c->errstr : r->str);
        freeReplyObject(r);
        redisFree(c);
        return NULL;
    }
    freeReplyObject(r);
    return c;
}

/* Fills host/port from a get-master-addr-by-name reply; -1 if it is not
 * one (nil: this sentinel does not know the name). */
static int
sentinel_parse_addr(const redisReply *r, char *host, size_t cap, uint16_t *port)
{
    long p;
    char *end;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[1]->type != REDIS_REPLY_STRING ||
        r->element[0]->len == 0 || r->element[0]->len >= cap)
        return -1;
    p = strtol(r->element[1]->str, &end, 10);
    if (*end != '\0' || p < 1 || p > 65535)
        return -1;
    memcpy(host, r->element[0]->str, r->element[0]->len + 1);
    *port = (uint16_t)p;
    return 0;
}

/* Asks the sentinels in turn, the one that answered last first, where
 * the master is. Returns 0 with host/port filled, or -1 when none
 * answered (why: the last failure). */
static int
sentinel_ask(char *host, size_t cap, uint16_t *port, char *why, size_t whylen)
{
    const struct config_sentinels *l = &sentinel_cfg.list;

    snprintf(why, whylen, "no sentinel");
    for (unsigned k = 0; k < l->n; k++) {
        unsigned i = (sentinel_at + k) % l->n;
        redisReply *r;

        if (sentinel_ctx != NULL && i != sentinel_at) {
            redisFree(sentinel_ctx);
            sentinel_ctx = NULL;
        }
        sentinel_at = i;
        if (sentinel_ctx == NULL &&
            (sentinel_ctx = sentinel_connect(l->at[i].host, l->at[i].port, "",
                                             sentinel_cfg.password, why, whylen)) == NULL)
            continue;
        r = redisCommand(sentinel_ctx, "SENTINEL get-master-addr-by-name %s",
                         sentinel_cfg.name);
        if (sentinel_parse_addr(r, host, cap, port) == 0) {
            freeReplyObject(r);
            return 0;
        }
        snprintf(why, whylen, "%s:%u: %.120s", l->at[i].host, l->at[i].port,
                 r == NULL ? sentinel_ctx->errstr
                 : r->type == REDIS_REPLY_ERROR ? r->str
                 : "does not know REDIS_MASTER_NAME");
        freeReplyObject(r);
        /* A failed blocking context stays failed: drop it. */
        redisFree(sentinel_ctx);
        sentinel_ctx = NULL;
    }
    return -1;
}

/* 1 if the server at host:port answers ROLE with "master". */
static int
sentinel_is_master(const char *host, uint16_t port, char *why, size_t whylen)
{
    redisContext *c = sentinel_connect(host, port, sentinel_cfg.username,
                                       sentinel_cfg.redis_password, why, whylen);
    redisReply *r;
    int yes;

    if (c == NULL)
        return 0;
    r = redisCommand(c, "ROLE");
    yes = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
          r->element[0]->type == REDIS_REPLY_STRING &&
          strcmp(r->element[0]->str, "master") == 0;
    /* An ACL without +role: the sentinels' word has to do (a READONLY
     * reply still sends us back to them). Said once. */
    if (r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOPERM", 6) == 0) {
        if (!sentinel_said_norole)
            log_warn("redis: %s:%u: ROLE refused (%.120s): taking the sentinels' word "
                     "for the master; add +role to the ACL of REDIS_USERNAME", host, port,
                     r->str);
        sentinel_said_norole = 1;
        yes = 1;
    }
    if (!yes)
        snprintf(why, whylen, "%s:%u: ROLE %s", host, port,
                 r == NULL ? c->errstr
                 : r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                         r->element[0]->type == REDIS_REPLY_STRING
                     ? r->element[0]->str : "unexpected reply");
    freeReplyObject(r);
    redisFree(c);
    return yes;
}

/* Makes host:port the master: a new generation, then the hook. */
static void
sentinel_set_master(const char *host, uint16_t port)
{
    char was[SENTINEL_HOST_MAX + 8];

    pthread_mutex_lock(&sentinel_mu);
    if (sentinel_host[0] != '\0')
        snprintf(was, sizeof(was), "%s:%u", sentinel_host, sentinel_port);
    else
        snprintf(was, sizeof(was), "none");
    snprintf(sentinel_host, sizeof(sentinel_host), "%s", host);
    sentinel_port = port;
    atomic_fetch_add(&sentinel_gen, 1);
    pthread_mutex_unlock(&sentinel_mu);
    log_info("redis: sentinels name %s:%u master of %s (was %s)", host, port,
             sentinel_cfg.name, was);
    pthread_mutex_lock(&sentinel_hook_mu);
    if (sentinel_hook != NULL)
        sentinel_hook(sentinel_hook_arg);
    pthread_mutex_unlock(&sentinel_hook_mu);
}

/* Moves on to the next sentinel: the one asked named no master that says
 * so (it may lag behind the others after a failover). */
static void
sentinel_next(void)
{
    if (sentinel_ctx != NULL) {
        redisFree(sentinel_ctx);
        sentinel_ctx = NULL;
    }
    sentinel_at = (sentinel_at + 1) % sentinel_cfg.list.n;
}

/* One lookup. suspected: a connection lost the master since the last.
 * Returns 1 when a master is confirmed, 0 to look again soon. */
static int
sentinel_round(int suspected)
{
    char host[SENTINEL_HOST_MAX], why[SENTINEL_WHY_MAX];
    uint16_t port;

    for (unsigned k = 0; k < sentinel_cfg.list.n; k++) {
        int same;

        if (sentinel_ask(host, sizeof(host), &port, why, sizeof(why)) == -1) {
            if (!sentinel_said_down)
                log_warn("redis: no sentinel tells the master of %s (%s); asking again "
                         "every %d ms", sentinel_cfg.name, why, SENTINEL_RETRY_MS);
            sentinel_said_down = 1;
            return 0;
        }
        if (sentinel_said_down)
            log_info("redis: the sentinels answer again");
        sentinel_said_down = 0;
        pthread_mutex_lock(&sentinel_mu);
        same = strcmp(host, sentinel_host) == 0 && port == sentinel_port;
        pthread_mutex_unlock(&sentinel_mu);
        if (same && !suspected)
            return 1;
        /* New, or its connections fail: trust it only once it says master
         * (mid-failover the sentinels still name the old one). */
        if (sentinel_is_master(host, port, why, sizeof(why))) {
            if (!same)
                sentinel_set_master(host, port);
            return 1;
        }
        log_debug("redis: not the master (yet): %s", why);
        sentinel_next();
    }
    return 0;
}

/* Sleeps until the next lookup is due: next_ms, or sooner once a
 * connection reported the master lost (not before SENTINEL_MIN_GAP_MS
 * after the last). Returns -1 when stopping, else whether a connection
 * reported it. Called and returns with sentinel_mu held. */
static int
sentinel_wait(int64_t next_ms, int64_t last_ms)
{
    for (;;) {
        int64_t now = clock_mono_ms(), due = next_ms;
        struct timespec ts;

        if (sentinel_stopping)
            return -1;
        if (sentinel_suspected && last_ms + SENTINEL_MIN_GAP_MS < due)
            due = last_ms + SENTINEL_MIN_GAP_MS;
        if (now >= due) {
            int s = sentinel_suspected;

            sentinel_suspected = 0;
            return s;
        }
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)((due - now) / 1000);
        ts.tv_nsec += (long)((due - now) % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&sentinel_cond, &sentinel_mu, &ts);
    }
}

static void *
sentinel_main(void *arg)
{
    int64_t last = clock_mono_ms();
    int64_t next = last + (sentinel_first_ok ? SENTINEL_POLL_MS : SENTINEL_RETRY_MS);
    int suspected;

    (void)arg;
    pthread_mutex_lock(&sentinel_mu);
    while ((suspected = sentinel_wait(next, last)) >= 0) {
        int ok;

        pthread_mutex_unlock(&sentinel_mu);
        ok = sentinel_round(suspected);
        last = clock_mono_ms();
        next = last + (ok ? SENTINEL_POLL_MS : SENTINEL_RETRY_MS);
        pthread_mutex_lock(&sentinel_mu);
    }
    pthread_mutex_unlock(&sentinel_mu);
    if (sentinel_ctx != NULL) {
        redisFree(sentinel_ctx);
        sentinel_ctx = NULL;
    }
    return NULL;
}

int
sentinel_start(void)
{
    pthread_condattr_t ca;

    if (!sentinel_enabled())
        return 0;
    if (pthread_condattr_init(&ca) != 0)
        return -1;
    /* Deadlines are monotonic: a wall clock step must not stall lookups. */
    if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&sentinel_cond, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        return -1;
    }
    pthread_condattr_destroy(&ca);
    sentinel_stopping = 0;
    log_info("redis: asking %u sentinel%s for the master of %s", sentinel_cfg.list.n,
             sentinel_cfg.list.n == 1 ? "" : "s", sentinel_cfg.name);
    /* One lookup before anything connects (start-up waits at most each
     * sentinel's timeout): the first connections then go to the master
     * rather than fail and back off. Failing, the thread keeps asking. */
    sentinel_first_ok = sentinel_round(0);
    if (pthread_create(&sentinel_thread, NULL, sentinel_main, NULL) != 0) {
        pthread_cond_destroy(&sentinel_cond);
        return -1;
    }
    sentinel_running = 1;
    return 0;
}

void
sentinel_stop(void)
{
    if (!sentinel_running)
        return;
    pthread_mutex_lock(&sentinel_mu);
    sentinel_stopping = 1;
    pthread_cond_signal(&sentinel_cond);
    pthread_mutex_unlock(&sentinel_mu);
    pthread_join(sentinel_thread, NULL);
    pthread_cond_destroy(&sentinel_cond);
    sentinel_running = 0;
}
