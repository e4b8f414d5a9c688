/* subscriber.c -- the one SUBSCRIBE per instance, on the main libevent
 * loop. Owns the async hiredis context (only this loop's thread touches
 * it) and the reconnect timers. Each
 * channel message is parsed once into one frame that every recipient
 * shares. When Redis comes back the replay reader (replay.c) catches
 * every open stream up from history, so nothing published while we were
 * away is lost; the newest id seen is kept for streams opened while Redis
 * cannot answer (subscriber_last_id). It also owns
 * the publish backlog: how many of this instance's accepted events have
 * not yet come back through the channel and been fanned out. A publish
 * waits while that is over PUBLISH_BACKLOG, so an overload slows the
 * publishers down instead of growing Redis's buffer for this subscriber
 * until Redis drops the subscription (and with it whatever no longer fits
 * in the capped history). The waiting is the caller's (a suspended
 * request, api.c): this module only counts the waiters and, when room
 * comes while some wait, calls the room hook (http_wake: it wakes the
 * HTTP loops, which resume their waiting requests). Connecting, AUTH and the back-off between
 * attempts are rconn.c's, shared with every other Redis connection.
 *
 * One SUBSCRIBE takes two channels, and the channel a message comes on
 * says whose it is. The gateways' own events come on STORE_EVENTS_CHANNEL,
 * where only write.lua publishes (with Redis ACLs, no one else may): their
 * ids are trusted. Anybody allowed to PUBLISH on REDIS_CHANNEL reaches
 * streams too, but an id there would move streams' places (a far-future
 * one made every later real event a duplicate), so such a message is
 * framed verbatim without an id, whatever it claims, and is never counted
 * as one of ours in the backlog. No secret, so nothing to read before
 * subscribing: a Redis still loading accepts the SUBSCRIBE and ids flow
 * at once. */
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "envelope.h"
#include "hub.h"
#include "log.h"
#include "metrics.h"
#include "rconn.h"
#include "replay.h"
#include "sse.h"
#include "store.h"
#include "stream.h"
#include "subscriber.h"

/* hiredis 0.14 has no async connect timeout: we arm our own. */
#define CONNECT_TIMEOUT_MS 3000
/* Messages parsed from one read of the subscription wait for the end of
 * that read, up to this many, and then go out together: a run of events
 * for one user reaches each of its sockets in one write (one sendmsg for
 * up to this many events instead of one each, when events come faster
 * than one fan-out takes). */
#define SUB_BATCH_MAX 64
/* Room for why a channel message was refused (envelope_parse). */
#define SUB_ERR_MAX 128
/* How much of a malformed channel message its log line shows. */
#define SUB_SHOWN_MAX 80
/* The two channels of the one SUBSCRIBE, as bits of what Redis has
 * confirmed on the current connection. */
#define SUB_CH_OURS 1u          /* STORE_EVENTS_CHANNEL: write.lua's events */
#define SUB_CH_OUTSIDE 2u       /* REDIS_CHANNEL: anybody's messages */
#define SUB_CH_BOTH (SUB_CH_OURS | SUB_CH_OUTSIDE)

/* A message taken from Redis, framed, waiting for the end of its read. */
struct sub_pending {
    struct sse_frame *f;                    /* owned */
    char user_id[ENVELOPE_USER_MAX + 1];
    int own;                                /* published by this instance */
};

struct subscriber {
    struct event_base *base;
    const struct config *cfg;
    struct hub *hub;
    struct replay *replay;          /* catches streams up after a resubscribe */
    redisAsyncContext *ac;          /* NULL while disconnected */
    struct event *retry_ev;         /* back-off before the next connect */
    struct event *deadline_ev;      /* connect + subscribe must finish by then */
    struct rconn_backoff backoff;   /* between connect attempts */
    /* This connection's AUTH was refused (rconn logged it) and it is
     * being dropped: what Redis answers behind it is void, a refusal being
     * the same one again and a success its default user's, not ours. */
    int auth_refused;
    /* The channels Redis confirmed on this connection (SUB_CH_*): the
     * subscription is up, and recovery runs, once both are. */
    unsigned confirmed;
    int freeing;
    atomic_int up;
    /* Publish backpressure: atomics, no lock. A waiter registers before
     * it tests for room, and the loop frees room before it reads the
     * waiters (both sequentially consistent), so either the waiter sees
     * the room or the loop sees the waiter and calls the hook. */
    atomic_long backlog;
    atomic_int waiters;
    void (*room_fn)(void *);        /* the room hook; loop thread only */
    void *room_arg;
    /* Messages of the read being parsed; flush_ev fans them out once
     * hiredis has handed over every reply of that read. */
    struct sub_pending batch[SUB_BATCH_MAX];
    size_t nbatch;
    struct event *flush_ev;
    /* The newest event id fanned out: where a stream opened while Redis
     * cannot answer starts. Written by the loop, read by HTTP threads. */
    pthread_mutex_t last_mu;
    int has_last_id;
    struct event_id last_id;
};

static void subscriber_connect(struct subscriber *sub);

/* ------------------------------------------------------- backpressure */

static void
subscriber_wake_publishers(struct subscriber *sub)
{
    if (atomic_load(&sub->waiters) > 0 && sub->room_fn != NULL && !sub->freeing)
        sub->room_fn(sub->room_arg);
}

/* A new subscription starts with nothing of ours in flight: whatever was
 * published before it reaches streams through the replay. */
static void
subscriber_reset_backlog(struct subscriber *sub)
{
    atomic_store(&sub->backlog, 0);
    subscriber_wake_publishers(sub);
}

int
subscriber_has_room(struct subscriber *sub)
{
    return !atomic_load(&sub->up) ||
           atomic_load(&sub->backlog) < (long)sub->cfg->publish_backlog;
}

void
subscriber_wait_begin(struct subscriber *sub)
{
    atomic_fetch_add(&sub->waiters, 1);
}

void
subscriber_wait_end(struct subscriber *sub)
{
    atomic_fetch_sub(&sub->waiters, 1);
}

void
subscriber_on_room(struct subscriber *sub, void (*fn)(void *), void *arg)
{
    if (sub == NULL)
        return;
    sub->room_fn = fn;
    sub->room_arg = arg;
}

void
subscriber_note_published(struct subscriber *sub, unsigned events)
{
    if (atomic_load(&sub->up))
        atomic_fetch_add(&sub->backlog, (long)events);
}

long
subscriber_backlog(const struct subscriber *sub)
{
    return atomic_load(&sub->backlog);
}

/* Loop thread: n of our events have been fanned out. The count may dip
 * below zero for a moment (the message can overtake the publisher's
 * increment); that only makes room a little early. */
static void
subscriber_note_fanned_out(struct subscriber *sub, long n)
{
    long left = atomic_fetch_sub(&sub->backlog, n) - n;

    if (left < (long)sub->cfg->publish_backlog)
        subscriber_wake_publishers(sub);
}

/* ------------------------------------------------------------ back-off */

/* Arms the next attempt after rconn's jittered, capped back-off: many
 * instances restarting together must not hit a loading Redis in step. */
static void
subscriber_schedule_retry(struct subscriber *sub)
{
    unsigned delay;
    struct timeval tv;

    if (sub->freeing || evtimer_pending(sub->retry_ev, NULL))
        return;
    delay = rconn_backoff_fail(&sub->backoff);
    tv.tv_sec = delay / 1000;
    tv.tv_usec = (delay % 1000) * 1000;
    evtimer_add(sub->retry_ev, &tv);
    log_debug("redis: next subscribe attempt in %u ms", delay);
}

static void
subscriber_on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    subscriber_connect(arg);
}

/* The connection did not become a subscription in time: drop it. Not a
 * hiredis callback, so freeing the context here is safe. */
static void
subscriber_on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct subscriber *sub = arg;
    redisAsyncContext *ac = sub->ac;

    (void)fd;
    (void)what;
    if (ac == NULL)
        return;
    log_warn("redis: no subscription after %d ms, reconnecting",
             CONNECT_TIMEOUT_MS);
    sub->ac = NULL;
    redisAsyncFree(ac);     /* may call on_disconnect, which retries */
    subscriber_schedule_retry(sub);
}

/* ------------------------------------------------------------ messages */

/* Fans out the pending messages in order, each run of consecutive
 * messages for one user with one hub_publish, and drops our references. */
static void
subscriber_flush(struct subscriber *sub)
{
    struct sse_frame *run[SUB_BATCH_MAX];
    size_t i = 0, j, own = 0;

    while (i < sub->nbatch) {
        const char *user = sub->batch[i].user_id;

        for (j = i; j < sub->nbatch && strcmp(sub->batch[j].user_id, user) == 0; j++)
            run[j - i] = sub->batch[j].f;
        hub_publish(sub->hub, user, run, j - i);
        i = j;
    }
    pthread_mutex_lock(&sub->last_mu);
    for (i = 0; i < sub->nbatch; i++) {
        const struct sse_frame *f = sub->batch[i].f;

        if (f->has_id && (!sub->has_last_id || eventid_cmp(&f->id, &sub->last_id) > 0)) {
            sub->last_id = f->id;
            sub->has_last_id = 1;
        }
    }
    pthread_mutex_unlock(&sub->last_mu);
    for (i = 0; i < sub->nbatch; i++) {
        own += (size_t)sub->batch[i].own;
        sse_frame_unref(sub->batch[i].f);
    }
    sub->nbatch = 0;
    if (own > 0)
        subscriber_note_fanned_out(sub, (long)own);
}

static void
subscriber_on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    subscriber_flush(arg);
}

/* Which of our channels (SUB_CH_*) name (len bytes) is; 0 for neither. */
static unsigned
subscriber_channel(const struct subscriber *sub, const char *name, size_t len)
{
    if (len == sizeof(STORE_EVENTS_CHANNEL) - 1 &&
        memcmp(name, STORE_EVENTS_CHANNEL, len) == 0)
        return SUB_CH_OURS;
    if (len == strlen(sub->cfg->redis_channel) &&
        memcmp(name, sub->cfg->redis_channel, len) == 0)
        return SUB_CH_OUTSIDE;
    return 0;
}

/* The reply is borrowed: hiredis frees it when we return. The frame is
 * built from the message bytes once and waits in the batch until the end
 * of this read (flush_ev runs after the read callback, in the same loop
 * pass); hub_publish then gives each recipient a reference. ours: the
 * message came on STORE_EVENTS_CHANNEL, so it is write.lua's envelope,
 * exactly as history holds it, and its id is the event's. */
static void
subscriber_deliver(struct subscriber *sub, int ours, const char *msg, size_t len)
{
    struct envelope_view v;
    struct sub_pending *p;
    char err[SUB_ERR_MAX], shown[LOG_EXCERPT_SIZE(SUB_SHOWN_MAX)];

    metrics_add(METRICS_EVENTS_RECEIVED, 1);
    if (envelope_parse(msg, len, &v, err, sizeof(err)) == -1) {
        /* The message may be anything (invalid UTF-8, control bytes):
         * shown escaped, so the log stays one line of text; and it is a
         * payload, shown at debug only. */
        log_warn("channel %s: skipping a malformed message (%s, %zu bytes)",
                 ours ? STORE_EVENTS_CHANNEL : sub->cfg->redis_channel, err, len);
        if (log_enabled(LOG_LEVEL_DEBUG))
            log_debug("channel %s: the malformed message: %s",
                      ours ? STORE_EVENTS_CHANNEL : sub->cfg->redis_channel,
                      log_excerpt(shown, sizeof(shown), msg, len, SUB_SHOWN_MAX));
        return;
    }
    if (sub->nbatch == SUB_BATCH_MAX)
        subscriber_flush(sub);
    p = &sub->batch[sub->nbatch];
    p->f = sse_frame_new_event(ours && v.has_id ? &v.id : NULL, v.type, msg, len);
    if (p->f == NULL) {
        log_error("out of memory framing an event for user %s", v.user_id);
        return;
    }
    if (ours)
        p->f->ts_ms = v.ts_ms;      /* write.lua's: for the delivery delay */
    memcpy(p->user_id, v.user_id, sizeof(p->user_id));
    /* Only our own channel counts: a copy of our event someone published
     * on REDIS_CHANNEL would free room its original still takes. */
    p->own = ours && strcmp(v.server_id, sub->cfg->server_id) == 0;
    if (sub->nbatch++ == 0)
        event_active(sub->flush_ev, EV_TIMEOUT, 1);
}

/* Redis confirmed one channel of the SUBSCRIBE. Both are confirmed before
 * any message comes (Redis runs the command whole), and the subscription
 * counts as up only then: once per connection. */
static void
subscriber_on_confirmed(struct subscriber *sub, unsigned channel)
{
    sub->confirmed |= channel;
    if (sub->confirmed != SUB_CH_BOTH || atomic_load(&sub->up))
        return;
    subscriber_flush(sub);
    evtimer_del(sub->deadline_ev);
    rconn_backoff_reset(&sub->backoff);
    subscriber_reset_backlog(sub);
    atomic_store(&sub->up, 1);
    metrics_add(METRICS_SUBSCRIPTIONS, 1);
    rconn_redis_is_back();
    log_info("redis: subscribed to %s and %s at %s:%u", STORE_EVENTS_CHANNEL,
             sub->cfg->redis_channel, sub->cfg->redis_host, sub->cfg->redis_port);
    rconn_note_accepted();
    /* Every open stream missed whatever was published while we were
     * not subscribed: each reads it from history after its last id,
     * asynchronously; live messages flow meanwhile, and each stream's
     * dedup drops whatever arrives twice. */
    replay_recover(sub->replay, sub->hub);
}

static void
subscriber_on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct subscriber *sub = privdata;
    redisReply *reply = r;
    const redisReply *kind, *name;
    unsigned channel;

    (void)ac;
    /* NULL: the context is going away; on_disconnect handles it. (Behind
     * a refused AUTH, Redis's default user may subscribe: not us, and the
     * connection is on its way out.) */
    if (reply == NULL || sub->auth_refused || reply->type != REDIS_REPLY_ARRAY ||
        reply->elements < 3 || reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING)
        return;
    kind = reply->element[0];
    name = reply->element[1];
    if ((channel = subscriber_channel(sub, name->str, name->len)) == 0)
        return;
    if (strcmp(kind->str, "message") == 0 &&
        reply->element[2]->type == REDIS_REPLY_STRING)
        subscriber_deliver(sub, channel == SUB_CH_OURS, reply->element[2]->str,
                           reply->element[2]->len);
    else if (strcmp(kind->str, "subscribe") == 0)
        subscriber_on_confirmed(sub, channel);
}

static void
subscriber_on_auth(redisAsyncContext *ac, void *r, void *privdata)
{
    struct subscriber *sub = privdata;

    if (rconn_auth_result(r) == 0)
        return;
    sub->auth_refused = 1;
    redisAsyncDisconnect(ac);       /* flags only; hiredis frees later */
}

/* ---------------------------------------------------------- connection */

/* hiredis frees ac after both callbacks return: drop our pointer. */
static void
subscriber_on_connect(const redisAsyncContext *ac, int status)
{
    struct subscriber *sub = ac->data;

    if (status != REDIS_OK) {
        log_warn("redis: cannot connect to %s:%u: %s", sub->cfg->redis_host,
                 sub->cfg->redis_port, ac->errstr);
        sub->ac = NULL;
        evtimer_del(sub->deadline_ev);
        subscriber_schedule_retry(sub);
        return;
    }
    /* PING cannot be used while subscribed with hiredis 0.14 (its reply
     * goes to the wrong callback); TCP keepalive finds a dead peer. */
    redisEnableKeepAlive((redisContext *)&ac->c);
}

static void
subscriber_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct subscriber *sub = ac->data;

    if (sub->ac == ac)
        sub->ac = NULL;
    if (!sub->freeing)
        subscriber_flush(sub);      /* what was read is delivered */
    evtimer_del(sub->deadline_ev);
    if (atomic_exchange(&sub->up, 0) && !sub->freeing)
        log_warn("redis: subscription lost: %s",
                 status == REDIS_OK ? "closed" : ac->errstr);
    else if (status != REDIS_OK && ac->err == REDIS_ERR_OTHER && !sub->freeing &&
             !sub->auth_refused)
        /* hiredis 0.14 keeps no callback for SUBSCRIBE's reply: an error
         * reply to it (NOAUTH, NOPERM) ends the connection with the reply
         * as errstr, and lands here. */
        rconn_note_refused("SUBSCRIBE", ac->errstr);
    subscriber_reset_backlog(sub);
    subscriber_schedule_retry(sub);
}

static void
subscriber_connect(struct subscriber *sub)
{
    redisAsyncContext *ac;
    struct timeval deadline = { CONNECT_TIMEOUT_MS / 1000,
                                (CONNECT_TIMEOUT_MS % 1000) * 1000 };
    char err[RCONN_ERR_MAX];

    if ((ac = rconn_async_connect(sub, err, sizeof(err))) == NULL) {
        log_warn("redis: cannot connect to %s", err);
        subscriber_schedule_retry(sub);
        return;
    }
    if (redisLibeventAttach(ac, sub->base) != REDIS_OK) {
        redisAsyncFree(ac);
        subscriber_schedule_retry(sub);
        return;
    }
    redisAsyncSetConnectCallback(ac, subscriber_on_connect);
    redisAsyncSetDisconnectCallback(ac, subscriber_on_disconnect);
    /* Commands queue until the connection is up; failing to queue them
     * (out of memory) shows as no subscription by the deadline. One
     * SUBSCRIBE for both channels: Redis takes or refuses it whole (an ACL
     * denying either channel refuses both). */
    sub->auth_refused = 0;
    sub->confirmed = 0;
    rconn_async_auth(ac, subscriber_on_auth, sub);
    redisAsyncCommand(ac, subscriber_on_reply, sub, "SUBSCRIBE %s %s",
                      STORE_EVENTS_CHANNEL, sub->cfg->redis_channel);
    sub->ac = ac;
    evtimer_add(sub->deadline_ev, &deadline);
}

/* ------------------------------------------------------------ lifetime */

struct subscriber *
subscriber_new(struct event_base *base, const struct config *cfg,
               struct hub *hub, struct replay *replay)
{
    struct subscriber *sub;

    if ((sub = calloc(1, sizeof(*sub))) == NULL)
        return NULL;
    if (pthread_mutex_init(&sub->last_mu, NULL) != 0) {
        free(sub);
        return NULL;
    }
    sub->base = base;
    sub->cfg = cfg;
    sub->hub = hub;
    sub->replay = replay;
    rconn_backoff_init(&sub->backoff);
    atomic_init(&sub->up, 0);
    atomic_init(&sub->backlog, 0);
    atomic_init(&sub->waiters, 0);
    sub->retry_ev = evtimer_new(base, subscriber_on_retry, sub);
    sub->deadline_ev = evtimer_new(base, subscriber_on_deadline, sub);
    sub->flush_ev = event_new(base, -1, 0, subscriber_on_flush, sub);
    if (sub->retry_ev == NULL || sub->deadline_ev == NULL ||
        sub->flush_ev == NULL) {
        subscriber_free(sub);
        return NULL;
    }
    subscriber_connect(sub);
    return sub;
}

void
subscriber_free(struct subscriber *sub)
{
    if (sub == NULL)
        return;
    sub->freeing = 1;
    if (sub->ac != NULL) {
        redisAsyncContext *ac = sub->ac;

        sub->ac = NULL;
        redisAsyncFree(ac);
    }
    if (sub->retry_ev != NULL)
        event_free(sub->retry_ev);
    if (sub->deadline_ev != NULL)
        event_free(sub->deadline_ev);
    if (sub->flush_ev != NULL)
        event_free(sub->flush_ev);
    /* Shutting down: what is still pending goes nowhere. */
    for (size_t i = 0; i < sub->nbatch; i++)
        sse_frame_unref(sub->batch[i].f);
    pthread_mutex_destroy(&sub->last_mu);
    free(sub);
}

int
subscriber_last_id(struct subscriber *sub, struct event_id *out)
{
    int has;

    pthread_mutex_lock(&sub->last_mu);
    has = sub->has_last_id;
    *out = sub->last_id;
    pthread_mutex_unlock(&sub->last_mu);
    return has;
}

int
subscriber_is_up(const struct subscriber *sub)
{
    return atomic_load(&sub->up);
}
