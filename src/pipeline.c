/* pipeline.c -- one HTTP thread's pipelined Redis connection for
 * POST /events and stream opens. Owns the hiredis async context (none of
 * hiredis's event adapters: the thread's own poll loop drives it, see
 * http.c) and the FIFO of scripts in flight; borrows each pipeline_req
 * (and its command) from its request until its done callback.
 *
 * Why: with a blocking round trip per POST, each event cost its HTTP
 * thread two sleeps (for the request, then for Redis's reply), and on a
 * paravirtualised VM waking a thread costs more than the request itself
 * (docs/BENCHMARKS.md). Here a thread that sent a script goes on serving
 * whatever else is ready, and the scripts of several requests go out in
 * one write and come back in one read.
 *
 * Replies come back in the order the commands went out, so the FIFO's
 * head is always the oldest script: its deadline is the only one to watch
 * (REDIS_TIMEOUT_MS, as for the blocking connections). */
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "pipeline.h"

/* After a failed connect, wait this long before trying again (unless the
 * subscriber says Redis is back), as store.c does. */
#define PIPELINE_RETRY_MS 100

struct pipeline {
    const struct config *cfg;
    redisAsyncContext *ac;          /* NULL while not connected */
    short events;                   /* what hiredis asked to wait for */
    struct pipeline_req *head, *tail;   /* in flight, oldest first */
    char sha[STORE_SCRIPT_COUNT][41];   /* each script's SHA, once loaded; the
                                         * same on every server, so kept across
                                         * reconnects (NOSCRIPT resends the text) */
    int64_t retry_at_ms;
    unsigned back_gen;
};

/* ------------------------------------------------------ hiredis adapter */

static void
pipeline_add_read(void *arg)
{
    struct pipeline *p = arg;

    p->events = (short)(p->events | POLLIN);
}

static void
pipeline_del_read(void *arg)
{
    struct pipeline *p = arg;

    p->events = (short)(p->events & ~POLLIN);
}

static void
pipeline_add_write(void *arg)
{
    struct pipeline *p = arg;

    p->events = (short)(p->events | POLLOUT);
}

static void
pipeline_del_write(void *arg)
{
    struct pipeline *p = arg;

    p->events = (short)(p->events & ~POLLOUT);
}

static void
pipeline_cleanup(void *arg)
{
    ((struct pipeline *)arg)->events = 0;
}

/* ------------------------------------------------------------ the FIFO */

static void
pipeline_push(struct pipeline *p, struct pipeline_req *q)
{
    q->next = NULL;
    if (p->tail != NULL)
        p->tail->next = q;
    else
        p->head = q;
    p->tail = q;
}

/* Takes q out; it is the head unless hiredis broke its order. */
static void
pipeline_pop(struct pipeline *p, struct pipeline_req *q)
{
    struct pipeline_req **pp = &p->head, *prev = NULL;

    while (*pp != NULL && *pp != q) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp == NULL)
        return;
    *pp = q->next;
    if (p->tail == q)
        p->tail = prev;
}

/* Fails q, the FIFO's head: it leaves the FIFO and its request hears
 * that no answer came. */
static void
pipeline_fail(struct pipeline *p, struct pipeline_req *q)
{
    pipeline_pop(p, q);
    q->done(q->arg, NULL);
}

/* ---------------------------------------------------------- connection */

static void
pipeline_on_connect(const redisAsyncContext *ac, int status)
{
    struct pipeline *p = ac->data;

    if (status != REDIS_OK) {
        /* hiredis frees the context after this and fails what was sent. */
        log_debug("redis connect %s:%u: %s", p->cfg->redis_host,
                  p->cfg->redis_port, ac->errstr);
        p->ac = NULL;
        p->retry_at_ms = clock_mono_ms() + PIPELINE_RETRY_MS;
    }
}

static void
pipeline_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct pipeline *p = ac->data;

    if (status != REDIS_OK)
        log_warn("redis: pipelined connection lost: %s", ac->errstr);
    p->ac = NULL;
}

/* arg: where this script's SHA goes (a slot of p->sha). */
static void
pipeline_on_script_load(redisAsyncContext *ac, void *reply, void *arg)
{
    const redisReply *r = reply;
    char *sha = arg;

    (void)ac;
    if (r != NULL && r->type == REDIS_REPLY_STRING && r->len == 40)
        memcpy(sha, r->str, 41);
    else if (r != NULL)
        log_warn("redis: SCRIPT LOAD: %s",
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
}

/* Starts connecting: commands sent now wait in hiredis's buffer until the
 * socket is up. Authenticates and loads both scripts first (pipelined,
 * so Redis runs them before any request's script). Returns -1 if Redis is known to be
 * down or cannot be reached. */
static int
pipeline_connect(struct pipeline *p)
{
    redisAsyncContext *ac;

    if (clock_mono_ms() < p->retry_at_ms && store_back_generation() == p->back_gen)
        return -1;
    p->back_gen = store_back_generation();
    ac = redisAsyncConnect(p->cfg->redis_host, p->cfg->redis_port);
    if (ac == NULL || ac->err) {
        log_debug("redis connect %s:%u: %s", p->cfg->redis_host,
                  p->cfg->redis_port, ac ? ac->errstr : "out of memory");
        if (ac != NULL)
            redisAsyncFree(ac);
        p->retry_at_ms = clock_mono_ms() + PIPELINE_RETRY_MS;
        return -1;
    }
    ac->data = p;
    ac->ev.data = p;
    ac->ev.addRead = pipeline_add_read;
    ac->ev.delRead = pipeline_del_read;
    ac->ev.addWrite = pipeline_add_write;
    ac->ev.delWrite = pipeline_del_write;
    ac->ev.cleanup = pipeline_cleanup;
    redisAsyncSetConnectCallback(ac, pipeline_on_connect);
    redisAsyncSetDisconnectCallback(ac, pipeline_on_disconnect);
    p->ac = ac;
    /* Until the connect completes, wait for the socket to be writable. */
    p->events = POLLOUT;
    if (p->cfg->redis_password[0] != '\0')
        redisAsyncCommand(ac, NULL, NULL, "AUTH %s", p->cfg->redis_password);
    for (int i = 0; i < STORE_SCRIPT_COUNT; i++)
        redisAsyncCommand(ac, pipeline_on_script_load, p->sha[i], "SCRIPT LOAD %s",
                          store_script_text((enum store_script)i));
    return 0;
}

struct pipeline *
pipeline_new(const struct config *cfg)
{
    struct pipeline *p = calloc(1, sizeof(*p));

    if (p != NULL)
        p->cfg = cfg;
    return p;
}

void
pipeline_free(struct pipeline *p)
{
    if (p == NULL)
        return;
    /* Runs every pending callback with no reply: each request hears
     * STORE_UNAVAILABLE. */
    if (p->ac != NULL) {
        redisAsyncContext *ac = p->ac;

        p->ac = NULL;
        redisAsyncFree(ac);
    }
    while (p->head != NULL)
        pipeline_fail(p, p->head);
    free(p);
}

/* ----------------------------------------------------------- scripts */

static int pipeline_issue(struct pipeline *p, struct pipeline_req *q);

static void
pipeline_on_reply(redisAsyncContext *ac, void *reply, void *arg)
{
    struct pipeline *p = ac->data;
    struct pipeline_req *q = arg;
    const redisReply *r = reply;

    pipeline_pop(p, q);
    /* Redis lost its script cache (SCRIPT FLUSH, a restart): send the
     * text once, which caches it again. */
    if (r != NULL && r->type == REDIS_REPLY_ERROR && !q->as_eval &&
        strncmp(r->str, "NOSCRIPT", 8) == 0) {
        q->as_eval = 1;
        if (pipeline_issue(p, q) == 0)
            return;
        r = NULL;
    }
    q->done(q->arg, r);
}

/* Sends q's command on the connection (connecting first if needed) and
 * queues q in the FIFO. */
static int
pipeline_issue(struct pipeline *p, struct pipeline_req *q)
{
    struct store_cmd *c = q->cmd;
    const char *sha = p->sha[c->script];

    if (p->ac == NULL && pipeline_connect(p) == -1)
        return -1;
    if (q->as_eval || sha[0] == '\0') {
        q->as_eval = 1;
        c->argv[0] = "EVAL";
        c->argv[1] = store_script_text(c->script);
    } else {
        c->argv[0] = "EVALSHA";
        c->argv[1] = sha;
    }
    c->lens[0] = strlen(c->argv[0]);
    c->lens[1] = strlen(c->argv[1]);
    if (redisAsyncCommandArgv(p->ac, pipeline_on_reply, q, c->argc, c->argv,
                              c->lens) != REDIS_OK)
        return -1;
    q->deadline_ms = clock_mono_ms() + (int64_t)p->cfg->redis_timeout_ms;
    pipeline_push(p, q);
    return 0;
}

int
pipeline_send(struct pipeline *p, struct pipeline_req *q, struct store_cmd *cmd,
              pipeline_done_fn done, void *arg)
{
    memset(q, 0, sizeof(*q));
    q->cmd = cmd;
    q->done = done;
    q->arg = arg;
    return pipeline_issue(p, q);
}

/* ---------------------------------------------------------------- loop */

int
pipeline_fd(const struct pipeline *p)
{
    return p->ac != NULL ? p->ac->c.fd : -1;
}

short
pipeline_events(const struct pipeline *p)
{
    /* Always read while connected: a Redis that goes away is noticed at
     * once, not at the next publish (which would then fail). */
    return p->ac != NULL ? (short)(p->events | POLLIN) : 0;
}

int
pipeline_timeout_ms(const struct pipeline *p)
{
    int64_t left;

    if (p->head == NULL)
        return -1;
    left = p->head->deadline_ms - clock_mono_ms();
    return left < 0 ? 0 : left > 60000 ? 60000 : (int)left;
}

void
pipeline_handle(struct pipeline *p, short revents)
{
    if (p->ac != NULL && (revents & (POLLIN | POLLERR | POLLHUP)))
        redisAsyncHandleRead(p->ac);
    if (p->ac != NULL && (revents & POLLOUT))
        redisAsyncHandleWrite(p->ac);
    if (p->head != NULL && clock_mono_ms() >= p->head->deadline_ms) {
        /* Slow, not known down: the next publish connects afresh. */
        log_warn("redis: no answer to a pipelined script within %u ms",
                 p->cfg->redis_timeout_ms);
        if (p->ac != NULL) {
            redisAsyncContext *ac = p->ac;

            p->ac = NULL;
            redisAsyncFree(ac);         /* fails everything in flight */
        }
        /* Anything hiredis no longer knew of fails here. */
        while (p->head != NULL)
            pipeline_fail(p, p->head);
    }
}

void
pipeline_flush(struct pipeline *p)
{
    if (p->ac != NULL && (p->ac->c.flags & REDIS_CONNECTED) && (p->events & POLLOUT))
        redisAsyncHandleWrite(p->ac);
}
