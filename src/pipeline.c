/* pipeline.c -- one HTTP thread's pipelined Redis connection, for every
 * Redis call an HTTP thread makes (writes, stream opens, account reads)
 * and for its liveness PING. Owns the hiredis async context (none of
 * hiredis's event adapters: the thread's own poll loop drives it, see
 * http.c), the FIFO of commands in flight and the time of the last good
 * reply (/health); borrows each pipeline_req (and its command) from its
 * request until its done callback.
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
 * (REDIS_TIMEOUT_MS, as for the blocking connections).
 *
 * Connecting, AUTH, the scripts' SHAs, the NOSCRIPT retry and the
 * back-off after a failed connect are rconn.c's, as for every other
 * Redis connection.
 *
 * With REDIS_WAIT_REPLICAS=N, a write script is followed on the same
 * connection by "WAIT N REDIS_TIMEOUT_MS" (pipelined: no extra round trip
 * when the replicas keep up). The write's reply is kept (copied: hiredis
 * frees it after its callback) until WAIT answers, and only then handed
 * to the request, as it is or as RCONN_NOT_REPLICATED. WAIT blocks this
 * connection until it answers, so the commands behind it get their
 * REDIS_TIMEOUT_MS from WAIT's answer on.
 *
 * A connection made before the sentinels named a new master, or answered
 * READONLY, is dropped at the next loop pass (what is in flight on it
 * answers 503), and the next command connects to the master. */
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
#include "rconn.h"

/* The longest poll() sleep we ask for, so a clock oddity cannot park the
 * loop for long. */
#define PIPELINE_MAX_SLEEP_MS 60000
/* How long a connection may go without a good reply before it sends a
 * PING: /health says down once the last reply is older than
 * REDIS_TIMEOUT_MS plus this. */
#define PIPELINE_PING_MS 1000

struct pipeline {
    const struct config *cfg;
    redisAsyncContext *ac;          /* NULL while not connected */
    short events;                   /* what hiredis asked to wait for */
    struct pipeline_req *head, *tail;   /* in flight, oldest first */
    struct rconn_backoff backoff;   /* after a failed connect */
    int64_t last_reply_ms;          /* monotonic; 0: never */
    int64_t last_ping_ms;           /* when the last PING was tried */
    int ping_inflight;
    /* This connection's AUTH was refused: the replies to the commands
     * behind it are void (pipeline_on_reply), and it is being dropped. */
    int auth_refused;
    unsigned conn_serial;           /* counts connections made */
    unsigned master_gen;            /* rconn_master_gen() when connecting */
    int stale;                      /* answered READONLY: drop it */
    struct pipeline_req ping_q;
    struct store_cmd ping_cmd;
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
    freeReplyObject(q->held);
    q->held = NULL;
    q->done(q->arg, NULL);
}

/* Frees the connection (not from inside one of its callbacks): hiredis
 * fails what it holds, and whatever it no longer knew fails here. */
static void
pipeline_drop(struct pipeline *p)
{
    if (p->ac != NULL) {
        redisAsyncContext *ac = p->ac;

        p->ac = NULL;
        redisAsyncFree(ac);
    }
    while (p->head != NULL)
        pipeline_fail(p, p->head);
}

/* ---------------------------------------------------------- connection */

static void
pipeline_on_connect(const redisAsyncContext *ac, int status)
{
    struct pipeline *p = ac->data;

    if (status != REDIS_OK) {
        /* hiredis frees the context after this and fails what was sent. */
        char target[RCONN_ERR_MAX];

        rconn_target(target, sizeof(target));
        log_debug("redis connect %s: %s", target, ac->errstr);
        p->ac = NULL;
        rconn_backoff_fail(&p->backoff);
        rconn_master_lost();
        return;
    }
    rconn_backoff_reset(&p->backoff);
}

static void
pipeline_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct pipeline *p = ac->data;

    /* After a refused AUTH, Redis closing on us is that refusal again
     * (it drops an unauthenticated client that sends a long command). */
    if (status != REDIS_OK && !p->auth_refused) {
        log_warn("redis: pipelined connection lost: %s", ac->errstr);
        rconn_master_lost();
    }
    p->ac = NULL;
}

/* A refused AUTH (rconn logs it, once for every connection): drop the
 * connection. What was sent behind the AUTH fails (503: the commands went
 * out pipelined with the AUTH, so a Redis whose default user is open may
 * still have run them, as a 503 on a write allows), and the next command
 * connects again after the back-off and sends AUTH anew, so a password or
 * ACL fixed in Redis is picked up without a restart (AUTH is only ever
 * sent on connecting). */
static void
pipeline_on_auth(redisAsyncContext *ac, void *reply, void *arg)
{
    struct pipeline *p = arg;

    if (rconn_auth_result(reply) == 0)
        return;
    p->auth_refused = 1;
    rconn_backoff_fail(&p->backoff);
    redisAsyncDisconnect(ac);       /* flags only: hiredis ends it after the replies */
}

/* Starts connecting: commands sent now wait in hiredis's buffer until the
 * socket is up. Authenticates and loads every script first (pipelined,
 * so Redis runs them before any request's script). Returns -1 if Redis is known to be
 * down or cannot be reached. */
static int
pipeline_connect(struct pipeline *p)
{
    redisAsyncContext *ac;
    char err[RCONN_ERR_MAX];

    if (!rconn_backoff_ready(&p->backoff))
        return -1;
    /* Read before the address: a master named meanwhile makes this
     * connection look old, and it is made again, never the reverse. */
    p->master_gen = rconn_master_gen();
    if ((ac = rconn_async_connect(p, err, sizeof(err))) == NULL) {
        log_debug("redis connect %s", err);
        rconn_backoff_fail(&p->backoff);
        rconn_master_lost();
        return -1;
    }
    p->stale = 0;
    ac->ev.data = p;
    ac->ev.addRead = pipeline_add_read;
    ac->ev.delRead = pipeline_del_read;
    ac->ev.addWrite = pipeline_add_write;
    ac->ev.delWrite = pipeline_del_write;
    ac->ev.cleanup = pipeline_cleanup;
    redisAsyncSetConnectCallback(ac, pipeline_on_connect);
    redisAsyncSetDisconnectCallback(ac, pipeline_on_disconnect);
    p->ac = ac;
    p->conn_serial++;
    /* Until the connect completes, wait for the socket to be writable. */
    p->events = POLLOUT;
    /* Queued only in hiredis's buffer, so these cannot fail but for
     * memory; a request's script sent after them then fails too. */
    p->auth_refused = 0;
    rconn_async_auth(ac, pipeline_on_auth, p);
    rconn_async_load_scripts(ac);
    return 0;
}

struct pipeline *
pipeline_new(const struct config *cfg)
{
    struct pipeline *p = calloc(1, sizeof(*p));

    if (p != NULL) {
        p->cfg = cfg;
        rconn_backoff_init(&p->backoff);
    }
    return p;
}

void
pipeline_free(struct pipeline *p)
{
    if (p == NULL)
        return;
    /* Runs every pending callback with no reply: each request hears
     * STORE_UNAVAILABLE. */
    pipeline_drop(p);
    free(p);
}

/* ----------------------------------------------------------- scripts */

static int pipeline_transmit(struct pipeline *p, struct pipeline_req *q);

/* A deep copy of r that freeReplyObject frees (hiredis frees r itself
 * after its callback); NULL for NULL or when out of memory. */
static redisReply *
pipeline_reply_copy(const redisReply *r)
{
    redisReply *c;

    if (r == NULL || (c = calloc(1, sizeof(*c))) == NULL)
        return NULL;
    c->type = r->type;
    c->integer = r->integer;
    if (r->str != NULL) {
        if ((c->str = malloc(r->len + 1)) == NULL) {
            free(c);
            return NULL;
        }
        memcpy(c->str, r->str, r->len + 1);
        c->len = r->len;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
        if ((c->element = calloc(r->elements, sizeof(*c->element))) == NULL) {
            freeReplyObject(c);
            return NULL;
        }
        c->elements = r->elements;
        for (size_t i = 0; i < r->elements; i++) {
            if ((c->element[i] = pipeline_reply_copy(r->element[i])) == NULL) {
                freeReplyObject(c);     /* frees the copies made so far */
                return NULL;
            }
        }
    }
    return c;
}

/* Answers q's request that fewer than q->wait_n replicas acknowledged
 * its write (acked, or -1: WAIT failed), as the error reply
 * RCONN_NOT_REPLICATED. */
static void
pipeline_done_not_replicated(struct pipeline *p, struct pipeline_req *q, long long acked)
{
    char text[160];
    redisReply e;

    if (acked < 0)
        snprintf(text, sizeof(text), RCONN_NOT_REPLICATED " WAIT for %u replicas failed",
                 q->wait_n);
    else
        snprintf(text, sizeof(text), RCONN_NOT_REPLICATED " %lld of %u replicas "
                 "acknowledged the write within %u ms", acked, q->wait_n,
                 p->cfg->redis_timeout_ms);
    memset(&e, 0, sizeof(e));
    e.type = REDIS_REPLY_ERROR;
    e.str = text;
    e.len = strlen(text);
    q->done(q->arg, &e);
}

/* WAIT's answer for q: hands the write's kept reply over, or says it is
 * not replicated enough. */
static void
pipeline_on_wait(redisAsyncContext *ac, void *reply, void *arg)
{
    struct pipeline *p = ac->data;
    struct pipeline_req *q = arg;
    const redisReply *r = reply;
    redisReply *held;
    int64_t now = clock_mono_ms();

    /* The WAIT of a send that NOSCRIPT voided: the resend has its own. */
    if (q->wait_skip > 0) {
        q->wait_skip--;
        return;
    }
    pipeline_pop(p, q);
    held = q->held;
    q->held = NULL;
    if (p->auth_refused)
        r = NULL;
    /* The commands behind could not be answered while WAIT held the
     * connection: their time counts from now. */
    if (p->head != NULL && p->head->deadline_ms < now + (int64_t)p->cfg->redis_timeout_ms)
        p->head->deadline_ms = now + (int64_t)p->cfg->redis_timeout_ms;
    if (held == NULL || r == NULL)
        /* No answer to the write or to WAIT (or no memory to keep the
         * write's): it may have been written, not known where. */
        q->done(q->arg, NULL);
    else if (held->type == REDIS_REPLY_ERROR || held->type == REDIS_REPLY_NIL)
        /* The write did not happen (or the account is unknown): nothing
         * to replicate, the reply says what it is. */
        q->done(q->arg, held);
    else if (r->type == REDIS_REPLY_INTEGER && r->integer >= (long long)q->wait_n)
        q->done(q->arg, held);
    else {
        /* An ACL without +wait: said once, not per write. */
        if (rconn_is_refusal(r))
            rconn_note_refused("WAIT", r->str);
        else if (r->type == REDIS_REPLY_ERROR)
            log_warn("redis: WAIT: %s", r->str);
        pipeline_done_not_replicated(p, q, r->type == REDIS_REPLY_INTEGER ? r->integer : -1);
    }
    freeReplyObject(held);
}

static void
pipeline_on_reply(redisAsyncContext *ac, void *reply, void *arg)
{
    struct pipeline *p = ac->data;
    struct pipeline_req *q = arg;
    const redisReply *r = reply;

    /* Behind a refused AUTH every reply is void: an error is the refusal
     * again, and a success came from Redis's default user, not ours. */
    if (p->auth_refused)
        r = NULL;
    /* Any answer but "cannot serve now" (LOADING, BUSY...) shows Redis
     * alive: /health's clock. */
    if (r != NULL && !(r->type == REDIS_REPLY_ERROR && rconn_is_unavailable(r)))
        p->last_reply_ms = clock_mono_ms();
    /* A replica now (a failover demoted it): look the master up again,
     * and drop this connection at the loop's next pass. */
    if (rconn_is_readonly(r)) {
        p->stale = 1;
        rconn_master_lost();
    }
    /* Redis lost its script cache (SCRIPT FLUSH, a restart): send the
     * text once, which caches it again. NOSCRIPT means the script did
     * not run, so this cannot apply a write twice. q stays in the FIFO. */
    if (!q->cmd->plain && !q->as_eval && rconn_is_noscript(r)) {
        int had_wait = q->wait_sent;

        q->as_eval = 1;
        if (pipeline_transmit(p, q) == 0) {
            q->wait_skip += had_wait;
            return;
        }
        r = NULL;
    }
    if (q->wait_sent) {
        /* WAIT's answer, right behind, finishes q. */
        q->held = pipeline_reply_copy(r);
        q->deadline_ms = clock_mono_ms() + 2 * (int64_t)p->cfg->redis_timeout_ms;
        return;
    }
    pipeline_pop(p, q);
    if (q->wait_missing && r != NULL && r->type != REDIS_REPLY_ERROR &&
        r->type != REDIS_REPLY_NIL) {
        /* Written, but its WAIT could not be queued (out of memory). */
        pipeline_done_not_replicated(p, q, -1);
        return;
    }
    q->done(q->arg, r);
}

/* Sends q's command on the connection (connecting first if needed), and
 * its WAIT when it is a write that waits for replicas. */
static int
pipeline_transmit(struct pipeline *p, struct pipeline_req *q)
{
    struct store_cmd *c = q->cmd;

    if (p->ac == NULL && pipeline_connect(p) == -1)
        return -1;
    /* Until a SCRIPT LOAD has answered, the SHA is unknown: EVAL. */
    if (!c->plain)
        q->as_eval = rconn_script_argv(c->script, q->as_eval, c->argv, c->lens);
    if (redisAsyncCommandArgv(p->ac, pipeline_on_reply, q, c->argc, c->argv,
                              c->lens) != REDIS_OK)
        return -1;
    q->wait_sent = 0;
    q->wait_missing = 0;
    if (q->wait_n > 0) {
        q->wait_sent = redisAsyncCommand(p->ac, pipeline_on_wait, q, "WAIT %u %u",
                                         q->wait_n, p->cfg->redis_timeout_ms) == REDIS_OK;
        q->wait_missing = !q->wait_sent;
    }
    return 0;
}

/* Sends q's command and queues q in the FIFO. */
static int
pipeline_issue(struct pipeline *p, struct pipeline_req *q)
{
    if (pipeline_transmit(p, q) == -1)
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
    /* Every event write is the write script (write.lua). */
    if (!cmd->plain && cmd->script == RCONN_SCRIPT_WRITE)
        q->wait_n = p->cfg->redis_wait_replicas;
    return pipeline_issue(p, q);
}

/* ---------------------------------------------------------------- loop */

int
pipeline_fd(const struct pipeline *p)
{
    return p->ac != NULL ? p->ac->c.fd : -1;
}

unsigned
pipeline_conn_serial(const struct pipeline *p)
{
    return p->conn_serial;
}

short
pipeline_events(const struct pipeline *p)
{
    /* Always read while connected: a Redis that goes away is noticed at
     * once, not at the next publish (which would then fail). */
    return p->ac != NULL ? (short)(p->events | POLLIN) : 0;
}

/* When the next PING is due: a second after the last good reply or the
 * last attempt, whichever is later; -1 while one is in flight. */
static int64_t
pipeline_ping_due_ms(const struct pipeline *p)
{
    int64_t since = p->last_reply_ms > p->last_ping_ms ? p->last_reply_ms
                                                       : p->last_ping_ms;

    return p->ping_inflight ? -1 : since + PIPELINE_PING_MS;
}

static void
pipeline_on_ping(void *arg, const struct redisReply *r)
{
    struct pipeline *p = arg;

    (void)r;                        /* pipeline_on_reply noted the time */
    p->ping_inflight = 0;
}

/* Sends a PING if one is due. A failure to send (Redis known down, in its
 * back-off) waits for the next due time. */
static void
pipeline_ping(struct pipeline *p, int64_t now)
{
    int64_t due = pipeline_ping_due_ms(p);

    if (due < 0 || now < due)
        return;
    p->last_ping_ms = now;
    store_ping_command(&p->ping_cmd);
    if (pipeline_send(p, &p->ping_q, &p->ping_cmd, pipeline_on_ping, p) == 0)
        p->ping_inflight = 1;
}

int
pipeline_is_up(const struct pipeline *p)
{
    return p->last_reply_ms != 0 &&
           clock_mono_ms() - p->last_reply_ms <=
               (int64_t)p->cfg->redis_timeout_ms + PIPELINE_PING_MS;
}

int
pipeline_timeout_ms(const struct pipeline *p)
{
    int64_t now = clock_mono_ms(), next = pipeline_ping_due_ms(p), left;

    if (p->head != NULL && (next < 0 || p->head->deadline_ms < next))
        next = p->head->deadline_ms;
    if (next < 0)
        return -1;
    left = next - now;
    return left < 0 ? 0 : left > PIPELINE_MAX_SLEEP_MS ? PIPELINE_MAX_SLEEP_MS
                                                      : (int)left;
}

void
pipeline_handle(struct pipeline *p, short revents)
{
    if (p->ac != NULL && (p->stale || p->master_gen != rconn_master_gen())) {
        log_info("redis: pipelined connection to a former master: reconnecting");
        pipeline_drop(p);
        revents = 0;
    }
    if (p->ac != NULL && (revents & (POLLIN | POLLERR | POLLHUP)))
        redisAsyncHandleRead(p->ac);
    if (p->ac != NULL && (revents & POLLOUT))
        redisAsyncHandleWrite(p->ac);
    if (p->head != NULL && clock_mono_ms() >= p->head->deadline_ms) {
        /* Slow, not known down: the next publish connects afresh. */
        log_warn("redis: no answer to a pipelined command within %u ms",
                 p->cfg->redis_timeout_ms);
        pipeline_drop(p);               /* fails everything in flight */
        rconn_master_lost();
    }
    pipeline_ping(p, clock_mono_ms());
}

void
pipeline_flush(struct pipeline *p)
{
    if (p->ac != NULL && (p->ac->c.flags & REDIS_CONNECTED) && (p->events & POLLOUT))
        redisAsyncHandleWrite(p->ac);
}
