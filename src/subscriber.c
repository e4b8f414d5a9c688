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
 * at once.
 *
 * Topics: each topic has two channels of its own, the gateways'
 * (ssegate:events:<topic>, ids trusted) and the outsiders'
 * (TOPIC_CHANNEL_PREFIX + topic, framed without ids), and this instance
 * is subscribed to both exactly while it holds a stream on the topic.
 * The hub tells (its topic hooks, on any thread, through the topic inbox
 * and topic_ev); this loop keeps a table of what is wanted and what Redis
 * has, and sends one SUBSCRIBE and one UNSUBSCRIBE per pass with every
 * channel that changed, never a second command for a topic while one is
 * in flight (hiredis 0.14 drops a channel's callback on an UNSUBSCRIBE
 * reply, so a SUBSCRIBE sent behind it would be deaf). A topic is ready
 * (subscriber_topics_ready: its streams' history may be read without
 * missing what comes live) once Redis confirmed both of its channels.
 * After a reconnect every wanted topic goes in the connecting SUBSCRIBE;
 * recovery's reads of topic streams wait for their topics to be ready.
 *
 * Each connection also reads Redis's persistence settings, once, ahead of
 * its SUBSCRIBE (CONFIG GET appendonly, CONFIG GET save): a Redis that
 * keeps neither an append-only file nor snapshots loses every history
 * and counter when it restarts, and account ids start again at 1 (ids a
 * client may still hold). That is logged as one warning; a CONFIG that
 * is renamed away or denied by an ACL is skipped quietly (debug). As a
 * REDIS_USERNAME it is not asked at all (subscriber_check_persistence). */
#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
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
#include "topic.h"

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
/* The two persistence settings read at connect, as bits of those read. */
#define SUB_PERSIST_AOF 1u          /* CONFIG GET appendonly */
#define SUB_PERSIST_RDB 2u          /* CONFIG GET save */
#define SUB_PERSIST_BOTH (SUB_PERSIST_AOF | SUB_PERSIST_RDB)

/* Most channels one SUBSCRIBE or UNSUBSCRIBE names: a reconnect with
 * thousands of topics goes out in a few commands, not one huge one. */
#define SUB_CHANNELS_PER_CMD 512
/* A channel name: the longer of our topic channel and an outsiders' one. */
#define SUB_CHANNEL_MAX (CONFIG_CHANNEL_MAX + TOPIC_NAME_MAX + 1)

/* A message taken from Redis, framed, waiting for the end of its read. */
struct sub_pending {
    struct sse_frame *f;                    /* owned */
    int is_topic;                           /* key is a topic, else a user id */
    char key[TOPIC_NAME_MAX + 1];
    int own;                                /* published by this instance */
};
_Static_assert(TOPIC_NAME_MAX >= ENVELOPE_USER_MAX, "a user id fits a key");

/* A change the hub told (on any thread): a topic's first stream came, or
 * its last went. */
struct sub_change {
    struct sub_change *next;
    int want;
    char topic[];
};

/* One topic this loop knows of: wanted (a local stream holds it), and
 * what Redis has of it. */
struct sub_topic {
    struct sub_topic *next;         /* chain in the table */
    struct sub_topic *dirty_next;   /* in the dirty list, if dirty */
    int dirty;
    int want;                       /* the hub's last word */
    int subscribed;                 /* the last command sent was SUBSCRIBE */
    unsigned inflight;              /* channel replies still to come */
    char name[];
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
    /* Redis's persistence on this connection: which of the two CONFIG
     * GET replies came (SUB_PERSIST_*), and what they said. */
    unsigned persist_seen;
    int persist_on;                 /* appendonly yes, or a save schedule */
    int persist_unknown;            /* a reply we cannot read: say nothing */
    int persist_warned;             /* warned, and not found on since */
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
    /* Topics (loop thread), and the hub's news of them (any thread, under
     * topic_mu, a leaf: the hub's hooks push here under a shard lock). */
    struct sub_topic **topics;      /* power-of-two slots, chained */
    size_t topic_slots, ntopics;
    struct sub_topic *dirty;        /* topics to look at in the next sync */
    pthread_mutex_t topic_mu;
    struct sub_change *inbox, **inbox_tail;
    struct event *topic_ev;
    size_t own_prefix_len, out_prefix_len;
    /* Redis Sentinel: the master's generation this connection was made
     * under (rconn_master_gen), and the event the lookup thread activates
     * when the sentinels name a new master. */
    unsigned master_gen;
    struct event *master_ev;
};

static void subscriber_connect(struct subscriber *sub);
static void subscriber_topic_answered(struct subscriber *sub, const char *topic);
static void subscriber_on_reply(redisAsyncContext *ac, void *r, void *privdata);
static void subscriber_topic_sync(struct subscriber *sub);

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
        const char *key = sub->batch[i].key;
        int is_topic = sub->batch[i].is_topic;

        for (j = i; j < sub->nbatch && sub->batch[j].is_topic == is_topic &&
                    strcmp(sub->batch[j].key, key) == 0; j++)
            run[j - i] = sub->batch[j].f;
        if (is_topic)
            hub_publish_topic(sub->hub, key, run, j - i);
        else
            hub_publish(sub->hub, key, run, j - i);
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

/* If name (len bytes) is a topic's channel: SUB_CH_OURS or
 * SUB_CH_OUTSIDE, with the topic (NUL-terminated) in out; else 0. */
static unsigned
subscriber_topic_channel(const struct subscriber *sub, const char *name, size_t len,
                         char out[TOPIC_NAME_MAX + 1])
{
    size_t p;
    unsigned which;

    if (len > sub->own_prefix_len &&
        memcmp(name, TOPIC_OWN_CHANNEL_PREFIX, sub->own_prefix_len) == 0) {
        p = sub->own_prefix_len;
        which = SUB_CH_OURS;
    } else if (len > sub->out_prefix_len &&
               memcmp(name, sub->cfg->topic_channel_prefix, sub->out_prefix_len) == 0) {
        p = sub->out_prefix_len;
        which = SUB_CH_OUTSIDE;
    } else {
        return 0;
    }
    if (!topic_name_valid(name + p, len - p))
        return 0;
    memcpy(out, name + p, len - p);
    out[len - p] = '\0';
    return which;
}

/* The reply is borrowed: hiredis frees it when we return. The frame is
 * built from the message bytes once and waits in the batch until the end
 * of this read (flush_ev runs after the read callback, in the same loop
 * pass); hub_publish then gives each recipient a reference. ours: the
 * message came on STORE_EVENTS_CHANNEL, so it is write.lua's envelope,
 * exactly as history holds it, and its id is the event's. */
static void
subscriber_deliver(struct subscriber *sub, int ours, const char *topic, const char *msg,
                   size_t len)
{
    struct envelope_view v;
    struct sub_pending *p;
    char err[SUB_ERR_MAX], shown[LOG_EXCERPT_SIZE(SUB_SHOWN_MAX)];
    int rc = topic != NULL ? envelope_parse_topic(msg, len, &v, err, sizeof(err))
                           : envelope_parse(msg, len, &v, err, sizeof(err));

    metrics_add(METRICS_EVENTS_RECEIVED, 1);
    if (rc == -1) {
        /* The message may be anything (invalid UTF-8, control bytes):
         * shown escaped, so the log stays one line of text; and it is a
         * payload, shown at debug only. */
        log_warn("channel %s%s: skipping a malformed message (%s, %zu bytes)",
                 topic != NULL ? (ours ? TOPIC_OWN_CHANNEL_PREFIX
                                       : sub->cfg->topic_channel_prefix)
                 : ours ? STORE_EVENTS_CHANNEL : sub->cfg->redis_channel,
                 topic != NULL ? topic : "", err, len);
        if (log_enabled(LOG_LEVEL_DEBUG))
            log_debug("channel %s%s: the malformed message: %s",
                      topic != NULL ? (ours ? TOPIC_OWN_CHANNEL_PREFIX
                                            : sub->cfg->topic_channel_prefix)
                      : ours ? STORE_EVENTS_CHANNEL : sub->cfg->redis_channel,
                      topic != NULL ? topic : "",
                      log_excerpt(shown, sizeof(shown), msg, len, SUB_SHOWN_MAX));
        return;
    }
    if (sub->nbatch == SUB_BATCH_MAX)
        subscriber_flush(sub);
    p = &sub->batch[sub->nbatch];
    p->f = sse_frame_new_event(ours && v.has_id ? &v.id : NULL, v.type, msg, len);
    if (p->f == NULL) {
        log_error("out of memory framing an event for %s", topic != NULL ? topic : v.user_id);
        return;
    }
    if (ours)
        p->f->ts_ms = v.ts_ms;      /* write.lua's: for the delivery delay */
    p->is_topic = topic != NULL;
    snprintf(p->key, sizeof(p->key), "%s", topic != NULL ? topic : v.user_id);
    /* Only our own channel counts: a copy of our event someone published
     * on REDIS_CHANNEL would free room its original still takes. A
     * topic's events are not counted at all (api.c): they come back only
     * while this instance holds the topic. */
    p->own = ours && topic == NULL && strcmp(v.server_id, sub->cfg->server_id) == 0;
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
    {
        char target[RCONN_ERR_MAX];

        rconn_target(target, sizeof(target));
        log_info("redis: subscribed to %s and %s at %s", STORE_EVENTS_CHANNEL,
                 sub->cfg->redis_channel, target);
    }
    rconn_note_accepted();
    /* Topics that changed while the subscription came up. */
    subscriber_topic_sync(sub);
    /* Every open stream missed whatever was published while we were
     * not subscribed: each reads it from history after its last id,
     * asynchronously; live messages flow meanwhile, and each stream's
     * dedup drops whatever arrives twice. A stream on topics reads once
     * its topics are subscribed again (replay_set_ready). */
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
    if ((channel = subscriber_channel(sub, name->str, name->len)) == 0) {
        char topic[TOPIC_NAME_MAX + 1];

        if ((channel = subscriber_topic_channel(sub, name->str, name->len, topic)) == 0)
            return;
        if (strcmp(kind->str, "message") == 0 &&
            reply->element[2]->type == REDIS_REPLY_STRING)
            subscriber_deliver(sub, channel == SUB_CH_OURS, topic, reply->element[2]->str,
                               reply->element[2]->len);
        else if (strcmp(kind->str, "subscribe") == 0 ||
                 strcmp(kind->str, "unsubscribe") == 0)
            subscriber_topic_answered(sub, topic);
        return;
    }
    if (strcmp(kind->str, "message") == 0 &&
        reply->element[2]->type == REDIS_REPLY_STRING)
        subscriber_deliver(sub, channel == SUB_CH_OURS, NULL, reply->element[2]->str,
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


/* ---------------------------------------------------------- persistence */

/* One CONFIG GET reply: ["appendonly", "yes"|"no"] or ["save", schedule];
 * privdata says which was asked (as a SUB_PERSIST_* value in the
 * pointer). An error (CONFIG renamed, or denied by an ACL), or an empty
 * array (a Redis-compatible server without the setting), leaves the
 * answer unknown: nothing is said. When both have come, a Redis that
 * persists nothing is warned of, once until it is found persisting. */
static void
subscriber_on_persistence(redisAsyncContext *ac, void *r, void *privdata)
{
    struct subscriber *sub = ac->data;
    const redisReply *reply = r;
    unsigned which = (unsigned)(uintptr_t)privdata;

    /* NULL: the connection is going away; its next one asks again. After
     * a refused AUTH the answer is the default user's, not ours. */
    if (reply == NULL || sub == NULL || sub->auth_refused)
        return;
    sub->persist_seen |= which;
    if (reply->type == REDIS_REPLY_ERROR) {
        log_debug("redis: cannot read its persistence settings (%s): not checked",
                  reply->str);
        sub->persist_unknown = 1;
    } else if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
               reply->element[1]->type != REDIS_REPLY_STRING) {
        sub->persist_unknown = 1;
    } else if (which == SUB_PERSIST_AOF) {
        if (strcmp(reply->element[1]->str, "yes") == 0)
            sub->persist_on = 1;
    } else if (reply->element[1]->len > 0) {
        sub->persist_on = 1;            /* a snapshot schedule */
    }
    if (sub->persist_seen != SUB_PERSIST_BOTH || sub->persist_unknown)
        return;
    if (sub->persist_on) {
        sub->persist_warned = 0;
        return;
    }
    if (sub->persist_warned)
        return;
    sub->persist_warned = 1;
    log_warn("redis: %s:%u persists nothing (appendonly no, save \"\"): if it restarts, "
             "every history is lost and account ids start again at 1; turn on "
             "appendonly (docs/OPERATIONS.md)", sub->cfg->redis_host, sub->cfg->redis_port);
}

/* Queues both reads on a new connection, behind its AUTH and ahead of its
 * SUBSCRIBE (hiredis answers a plain command's callback before pub/sub
 * replies). Failing to queue them (out of memory) only skips the check.
 * Not as a REDIS_USERNAME: the least-privilege user docs/API.md gives the
 * gateways has no CONFIG (CONFIG GET reads every setting, requirepass
 * included), and each refusal would land in Redis's ACL LOG, which is
 * where an operator looks for what was denied. */
static void
subscriber_check_persistence(struct subscriber *sub, redisAsyncContext *ac)
{
    sub->persist_seen = 0;
    sub->persist_on = 0;
    sub->persist_unknown = 0;
    if (sub->cfg->redis_username[0] != '\0')
        return;
    if (redisAsyncCommand(ac, subscriber_on_persistence, (void *)(uintptr_t)SUB_PERSIST_AOF,
                          "CONFIG GET appendonly") != REDIS_OK ||
        redisAsyncCommand(ac, subscriber_on_persistence, (void *)(uintptr_t)SUB_PERSIST_RDB,
                          "CONFIG GET save") != REDIS_OK)
        log_debug("redis: persistence settings not checked (out of memory)");
}

/* -------------------------------------------------------------- topics */

static struct sub_topic **
subscriber_topic_slot(struct subscriber *sub, const char *name)
{
    struct sub_topic **tp;
    uint32_t h = 2166136261u;       /* FNV-1a, as the hub's */

    if (sub->topic_slots == 0)
        return NULL;
    for (const char *c = name; *c; c++)
        h = (h ^ (uint8_t)*c) * 16777619u;
    tp = &sub->topics[h & (sub->topic_slots - 1)];
    while (*tp != NULL && strcmp((*tp)->name, name) != 0)
        tp = &(*tp)->next;
    return tp;
}

static struct sub_topic *
subscriber_topic_find(struct subscriber *sub, const char *name)
{
    struct sub_topic **tp = subscriber_topic_slot(sub, name);

    return tp != NULL ? *tp : NULL;
}

/* Doubles the table at load factor 1. */
static int
subscriber_topic_grow(struct subscriber *sub)
{
    size_t n = sub->topic_slots ? sub->topic_slots * 2 : 64, old = sub->topic_slots;
    struct sub_topic **ot = sub->topics, *t, *next;

    if ((sub->topics = calloc(n, sizeof(*sub->topics))) == NULL) {
        sub->topics = ot;
        return -1;
    }
    sub->topic_slots = n;
    for (size_t i = 0; i < old; i++) {
        for (t = ot[i]; t != NULL; t = next) {
            struct sub_topic **tp = subscriber_topic_slot(sub, t->name);

            next = t->next;
            t->next = NULL;
            *tp = t;
        }
    }
    free(ot);
    return 0;
}

static struct sub_topic *
subscriber_topic_get(struct subscriber *sub, const char *name)
{
    struct sub_topic *t = subscriber_topic_find(sub, name), **tp;
    size_t len = strlen(name);

    if (t != NULL)
        return t;
    if (sub->ntopics >= sub->topic_slots && subscriber_topic_grow(sub) == -1)
        return NULL;
    if ((t = calloc(1, sizeof(*t) + len + 1)) == NULL)
        return NULL;
    memcpy(t->name, name, len + 1);
    tp = subscriber_topic_slot(sub, name);
    *tp = t;
    sub->ntopics++;
    return t;
}

static void
subscriber_topic_mark(struct subscriber *sub, struct sub_topic *t)
{
    if (t->dirty)
        return;
    t->dirty = 1;
    t->dirty_next = sub->dirty;
    sub->dirty = t;
}

/* A topic neither wanted nor held nor waited on is forgotten. */
static void
subscriber_topic_forget(struct subscriber *sub, struct sub_topic *t)
{
    struct sub_topic **tp = subscriber_topic_slot(sub, t->name);

    if (tp == NULL || *tp != t)
        return;
    *tp = t->next;
    sub->ntopics--;
    free(t);
}

/* Sends cmd ("SUBSCRIBE" or "UNSUBSCRIBE") for the n topics' two channels
 * each, in commands of at most SUB_CHANNELS_PER_CMD channels. Returns -1
 * when out of memory (then nothing more is sent: the connection is
 * dropped and the next one subscribes everything wanted). */
static int
subscriber_topic_command(struct subscriber *sub, const char *cmd, struct sub_topic **v,
                         size_t n)
{
    const char *argv[1 + SUB_CHANNELS_PER_CMD];
    size_t lens[1 + SUB_CHANNELS_PER_CMD];
    char (*names)[SUB_CHANNEL_MAX + 1];
    size_t i = 0;

    if (n == 0)
        return 0;
    if ((names = malloc(SUB_CHANNELS_PER_CMD * sizeof(*names))) == NULL)
        return -1;
    while (i < n) {
        int argc = 1;

        argv[0] = cmd;
        lens[0] = strlen(cmd);
        for (; i < n && argc + 2 <= 1 + SUB_CHANNELS_PER_CMD; i++) {
            int a = snprintf(names[argc - 1], SUB_CHANNEL_MAX + 1,
                             TOPIC_OWN_CHANNEL_PREFIX "%s", v[i]->name);
            int b = snprintf(names[argc], SUB_CHANNEL_MAX + 1, "%s%s",
                             sub->cfg->topic_channel_prefix, v[i]->name);

            argv[argc] = names[argc - 1];
            lens[argc] = (size_t)a;
            argv[argc + 1] = names[argc];
            lens[argc + 1] = (size_t)b;
            argc += 2;
            v[i]->inflight += 2;
        }
        /* hiredis copies the command; every channel gets this callback. */
        if (redisAsyncCommandArgv(sub->ac, subscriber_on_reply, sub, argc, argv,
                                  lens) != REDIS_OK) {
            free(names);
            return -1;
        }
    }
    free(names);
    return 0;
}

/* What the dirty topics need from Redis, sent: one SUBSCRIBE for those
 * wanted and not held, one UNSUBSCRIBE for those held and no longer
 * wanted (each in commands of SUB_CHANNELS_PER_CMD channels at most). A
 * topic with a command in flight waits for its replies (it is marked
 * dirty again then). Only on a live subscription: a connect subscribes
 * whatever is wanted then. */
static void
subscriber_topic_sync(struct subscriber *sub)
{
    struct sub_topic *t, *next, **subv = NULL, **unsubv = NULL;
    size_t nsub = 0, nunsub = 0, n = 0;

    if (sub->ac == NULL || !atomic_load(&sub->up) || sub->dirty == NULL)
        return;
    for (t = sub->dirty; t != NULL; t = t->dirty_next)
        n++;
    if ((subv = malloc(n * sizeof(*subv))) == NULL ||
        (unsubv = malloc(n * sizeof(*unsubv))) == NULL)
        goto oom;
    for (t = sub->dirty, sub->dirty = NULL; t != NULL; t = next) {
        next = t->dirty_next;
        t->dirty = 0;
        if (t->inflight > 0)
            continue;               /* its replies mark it again */
        if (t->want && !t->subscribed) {
            t->subscribed = 1;
            subv[nsub++] = t;
        } else if (!t->want && t->subscribed) {
            t->subscribed = 0;
            unsubv[nunsub++] = t;
        } else if (!t->want) {
            subscriber_topic_forget(sub, t);
        }
    }
    if (subscriber_topic_command(sub, "SUBSCRIBE", subv, nsub) == -1 ||
        subscriber_topic_command(sub, "UNSUBSCRIBE", unsubv, nunsub) == -1)
        goto oom;
    if (nsub + nunsub > 0)
        log_debug("redis: %zu topics subscribed, %zu unsubscribed", nsub, nunsub);
    free(subv);
    free(unsubv);
    return;
oom:
    free(subv);
    free(unsubv);
    /* What Redis has is no longer known: start over on a new connection,
     * which subscribes whatever is wanted then. */
    log_error("out of memory (un)subscribing topics; reconnecting");
    redisAsyncDisconnect(sub->ac);
}

/* Redis answered one channel of a topic's (UN)SUBSCRIBE. */
static void
subscriber_topic_answered(struct subscriber *sub, const char *topic)
{
    struct sub_topic *t = subscriber_topic_find(sub, topic);

    if (t == NULL || t->inflight == 0)
        return;
    if (--t->inflight > 0)
        return;
    subscriber_topic_mark(sub, t);
    event_active(sub->topic_ev, EV_READ, 1);
    /* Both channels are Redis's now: streams waiting to read this topic's
     * history may go. */
    if (t->subscribed)
        replay_kick(sub->replay);
}

/* The hub's news, on the loop: wants updated, then what changed sent. */
static void
subscriber_on_topics(evutil_socket_t fd, short what, void *arg)
{
    struct subscriber *sub = arg;
    struct sub_change *c, *next;

    (void)fd;
    (void)what;
    pthread_mutex_lock(&sub->topic_mu);
    c = sub->inbox;
    sub->inbox = NULL;
    sub->inbox_tail = &sub->inbox;
    pthread_mutex_unlock(&sub->topic_mu);
    for (; c != NULL; c = next) {
        struct sub_topic *t = subscriber_topic_get(sub, c->topic);

        next = c->next;
        if (t != NULL) {
            t->want = c->want;
            subscriber_topic_mark(sub, t);
        } else {
            log_error("out of memory: topic %s left as it was", c->topic);
        }
        free(c);
    }
    subscriber_topic_sync(sub);
}

/* The hub's hook, on any thread, under the topic's shard lock: only
 * queue the news (on_done wakes the loop). */
static void
subscriber_topic_change(struct subscriber *sub, const char *topic, int want)
{
    size_t len = strlen(topic);
    struct sub_change *c = malloc(sizeof(*c) + len + 1);

    if (c == NULL) {
        log_error("out of memory: topic %s not %s", topic,
                  want ? "subscribed" : "unsubscribed");
        return;
    }
    c->next = NULL;
    c->want = want;
    memcpy(c->topic, topic, len + 1);
    pthread_mutex_lock(&sub->topic_mu);
    *sub->inbox_tail = c;
    sub->inbox_tail = &c->next;
    pthread_mutex_unlock(&sub->topic_mu);
}

/* After a stream's topics (the hub's on_done, outside its locks): one
 * wake-up for all of them, so they go to Redis in one command. */
static void
subscriber_on_topics_done(void *arg)
{
    struct subscriber *sub = arg;

    event_active(sub->topic_ev, EV_READ, 0);
}

static void
subscriber_on_topic_first(void *arg, const char *topic)
{
    subscriber_topic_change(arg, topic, 1);
}

static void
subscriber_on_topic_last(void *arg, const char *topic)
{
    subscriber_topic_change(arg, topic, 0);
}

/* The connection went: Redis holds nothing of ours any more. */
static void
subscriber_topics_lost(struct subscriber *sub)
{
    for (size_t i = 0; i < sub->topic_slots; i++) {
        for (struct sub_topic *t = sub->topics[i]; t != NULL; t = t->next) {
            t->subscribed = 0;
            t->inflight = 0;
            subscriber_topic_mark(sub, t);
        }
    }
}

/* A new connection's SUBSCRIBE: every wanted topic with the two base
 * channels; the rest forgotten. */
static int
subscriber_topics_resubscribe(struct subscriber *sub)
{
    struct sub_topic *t, *next, **v;
    size_t n = 0;
    int rc;

    for (t = sub->dirty, sub->dirty = NULL; t != NULL; t = next) {
        next = t->dirty_next;
        t->dirty = 0;
        if (!t->want)
            subscriber_topic_forget(sub, t);
    }
    if (sub->ntopics == 0)
        return 0;
    if ((v = malloc(sub->ntopics * sizeof(*v))) == NULL)
        return -1;
    for (size_t i = 0; i < sub->topic_slots; i++) {
        for (t = sub->topics[i]; t != NULL; t = t->next) {
            t->subscribed = 1;
            t->inflight = 0;        /* a connection that never came up sent nothing */
            v[n++] = t;
        }
    }
    rc = subscriber_topic_command(sub, "SUBSCRIBE", v, n);
    free(v);
    if (n > 0)
        log_info("redis: resubscribing %zu topics", n);
    return rc;
}

int
subscriber_topics_ready(struct subscriber *sub, const char *const *topics, size_t n)
{
    if (!atomic_load(&sub->up))
        return 0;
    for (size_t i = 0; i < n; i++) {
        struct sub_topic *t = subscriber_topic_find(sub, topics[i]);

        if (t == NULL || !t->want || !t->subscribed || t->inflight > 0)
            return 0;
    }
    return 1;
}

/* The replay reader's check (replay_set_ready): a stream's history may
 * be read once every topic it names is subscribed. */
static int
subscriber_stream_ready(void *arg, struct stream *s)
{
    return subscriber_topics_ready(arg, stream_topics(s), stream_topic_count(s));
}

/* ---------------------------------------------------------- connection */

/* hiredis frees ac after both callbacks return: drop our pointer. */
static void
subscriber_on_connect(const redisAsyncContext *ac, int status)
{
    struct subscriber *sub = ac->data;

    if (status != REDIS_OK) {
        char target[RCONN_ERR_MAX];

        rconn_target(target, sizeof(target));
        log_warn("redis: cannot connect to %s: %s", target, ac->errstr);
        rconn_master_lost();
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
    if (status != REDIS_OK && !sub->freeing)
        rconn_master_lost();
    if (atomic_exchange(&sub->up, 0) && !sub->freeing)
        log_warn("redis: subscription lost: %s",
                 status == REDIS_OK ? "closed" : ac->errstr);
    else if (status != REDIS_OK && ac->err == REDIS_ERR_OTHER && !sub->freeing &&
             !sub->auth_refused)
        /* hiredis 0.14 keeps no callback for SUBSCRIBE's reply: an error
         * reply to it (NOAUTH, NOPERM) ends the connection with the reply
         * as errstr, and lands here. */
        rconn_note_refused("SUBSCRIBE", ac->errstr);
    subscriber_topics_lost(sub);
    subscriber_reset_backlog(sub);
    subscriber_schedule_retry(sub);
}

/* hiredis's own libevent adapter, with two differences: the read event
 * is persistent (the adapter's is not, so every message cost an
 * EPOLL_CTL_DEL and an EPOLL_CTL_ADD on this one busy socket: two system
 * calls per event delivered), and its allocations are checked. hiredis
 * frees it through ev.cleanup with the context. */
struct subscriber_io {
    redisAsyncContext *ac;
    struct event *rev, *wev;
};

static void
subscriber_io_on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    redisAsyncHandleRead(((struct subscriber_io *)arg)->ac);
}

static void
subscriber_io_on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    redisAsyncHandleWrite(((struct subscriber_io *)arg)->ac);
}

/* hiredis asks again after every read: adding a pending persistent event
 * changes nothing and makes no system call. */
static void
subscriber_io_add_read(void *data)
{
    event_add(((struct subscriber_io *)data)->rev, NULL);
}

static void
subscriber_io_del_read(void *data)
{
    event_del(((struct subscriber_io *)data)->rev);
}

static void
subscriber_io_add_write(void *data)
{
    event_add(((struct subscriber_io *)data)->wev, NULL);
}

static void
subscriber_io_del_write(void *data)
{
    event_del(((struct subscriber_io *)data)->wev);
}

static void
subscriber_io_cleanup(void *data)
{
    struct subscriber_io *io = data;

    if (io->rev != NULL)
        event_free(io->rev);
    if (io->wev != NULL)
        event_free(io->wev);
    free(io);
}

static int
subscriber_io_attach(redisAsyncContext *ac, struct event_base *base)
{
    struct subscriber_io *io = calloc(1, sizeof(*io));

    if (io == NULL)
        return -1;
    io->ac = ac;
    if ((io->rev = event_new(base, ac->c.fd, EV_READ | EV_PERSIST,
                             subscriber_io_on_read, io)) == NULL ||
        (io->wev = event_new(base, ac->c.fd, EV_WRITE | EV_PERSIST,
                             subscriber_io_on_write, io)) == NULL ||
        event_add(io->rev, NULL) == -1 || event_add(io->wev, NULL) == -1) {
        subscriber_io_cleanup(io);
        return -1;
    }
    ac->ev.addRead = subscriber_io_add_read;
    ac->ev.delRead = subscriber_io_del_read;
    ac->ev.addWrite = subscriber_io_add_write;
    ac->ev.delWrite = subscriber_io_del_write;
    ac->ev.cleanup = subscriber_io_cleanup;
    ac->ev.data = io;
    return 0;
}

static void
subscriber_connect(struct subscriber *sub)
{
    redisAsyncContext *ac;
    struct timeval deadline = { CONNECT_TIMEOUT_MS / 1000,
                                (CONNECT_TIMEOUT_MS % 1000) * 1000 };
    char err[RCONN_ERR_MAX];

    sub->master_gen = rconn_master_gen();
    if ((ac = rconn_async_connect(sub, err, sizeof(err))) == NULL) {
        log_warn("redis: cannot connect to %s", err);
        rconn_master_lost();
        subscriber_schedule_retry(sub);
        return;
    }
    if (subscriber_io_attach(ac, sub->base) == -1) {
        log_warn("redis: out of memory attaching the subscription");
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
    subscriber_check_persistence(sub, ac);
    redisAsyncCommand(ac, subscriber_on_reply, sub, "SUBSCRIBE %s %s",
                      STORE_EVENTS_CHANNEL, sub->cfg->redis_channel);
    sub->ac = ac;
    /* Every topic still held, right behind, in the same write: the
     * subscription counts as up with the two base channels, and recovery's
     * reads of topic streams wait for their topics (replay_set_ready). */
    if (subscriber_topics_resubscribe(sub) == -1)
        log_error("out of memory resubscribing topics");
    evtimer_add(sub->deadline_ev, &deadline);
}

/* The sentinels named a new master (main loop): a subscription to the
 * former one is dropped (it may live on as a replica, where our writes no
 * longer go first), and a connect waiting out its back-off is made now.
 * The resubscribe then recovers every stream from history, as after any
 * reconnect. */
static void
subscriber_on_master(evutil_socket_t fd, short what, void *arg)
{
    struct subscriber *sub = arg;

    (void)fd;
    (void)what;
    if (sub->freeing)
        return;
    if (sub->ac != NULL) {
        redisAsyncContext *ac = sub->ac;

        if (sub->master_gen == rconn_master_gen())
            return;
        log_info("redis: the sentinels named a new master: subscribing there");
        sub->ac = NULL;
        redisAsyncFree(ac);         /* on_disconnect arms a retry */
    }
    evtimer_del(sub->retry_ev);
    subscriber_connect(sub);
}

/* The lookup thread's hook: hand the news to the loop. */
static void
subscriber_master_news(void *arg)
{
    struct subscriber *sub = arg;

    event_active(sub->master_ev, 0, 0);
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
    if (pthread_mutex_init(&sub->topic_mu, NULL) != 0) {
        pthread_mutex_destroy(&sub->last_mu);
        free(sub);
        return NULL;
    }
    sub->inbox_tail = &sub->inbox;
    sub->own_prefix_len = strlen(TOPIC_OWN_CHANNEL_PREFIX);
    sub->out_prefix_len = strlen(cfg->topic_channel_prefix);
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
    sub->topic_ev = event_new(base, -1, 0, subscriber_on_topics, sub);
    sub->master_ev = event_new(base, -1, 0, subscriber_on_master, sub);
    if (sub->retry_ev == NULL || sub->deadline_ev == NULL ||
        sub->flush_ev == NULL || sub->topic_ev == NULL || sub->master_ev == NULL) {
        subscriber_free(sub);
        return NULL;
    }
    {
        static const struct hub_topic_hooks hooks = {
            subscriber_on_topic_first, subscriber_on_topic_last, NULL, NULL,
            subscriber_on_topics_done
        };

        /* Presence (on_join, on_leave) is not ours: left NULL. */
        if (hub_add_topic_hooks(hub, &hooks, sub) == -1) {
            subscriber_free(sub);
            return NULL;
        }
    }
    replay_set_ready(replay, subscriber_stream_ready, sub);
    rconn_on_master_change(subscriber_master_news, sub);
    subscriber_connect(sub);
    return sub;
}

void
subscriber_free(struct subscriber *sub)
{
    if (sub == NULL)
        return;
    sub->freeing = 1;
    /* First: after this the lookup thread cannot touch master_ev. */
    if (sub->master_ev != NULL) {
        rconn_on_master_change(NULL, NULL);
        event_free(sub->master_ev);
    }
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
    if (sub->topic_ev != NULL) {
        hub_remove_topic_hooks(sub->hub, sub);
        replay_set_ready(sub->replay, NULL, NULL);
        event_free(sub->topic_ev);
    }
    /* Shutting down: what is still pending goes nowhere. */
    for (size_t i = 0; i < sub->nbatch; i++)
        sse_frame_unref(sub->batch[i].f);
    for (struct sub_change *c = sub->inbox, *next; c != NULL; c = next) {
        next = c->next;
        free(c);
    }
    for (size_t i = 0; i < sub->topic_slots; i++) {
        for (struct sub_topic *t = sub->topics[i], *next; t != NULL; t = next) {
            next = t->next;
            free(t);
        }
    }
    free(sub->topics);
    pthread_mutex_destroy(&sub->topic_mu);
    pthread_mutex_destroy(&sub->last_mu);
    free(sub);
}

void
subscriber_note_id(struct subscriber *sub, const struct event_id *id)
{
    pthread_mutex_lock(&sub->last_mu);
    if (!sub->has_last_id || eventid_cmp(id, &sub->last_id) > 0) {
        sub->last_id = *id;
        sub->has_last_id = 1;
    }
    pthread_mutex_unlock(&sub->last_mu);
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
