/* presence.c -- this instance's part of presence (presence.h). Owns the
 * counts (a table of topics, each with its members), the inbox the hub's
 * hooks fill from any thread, the commands in flight, and the main
 * loop's presence connection (evpipe.h).
 *
 * Why absolute counts: a command that timed out may or may not have run;
 * "this instance holds 3 streams of user 7 on room-1" can be sent again
 * whatever happened, a "+1" could not. For the same reason a topic has
 * at most one command in flight (a retry can never overtake a later
 * count), and what changes meanwhile is sent after its reply: a join
 * storm on one topic costs a round trip per STORE_PRESENCE_MEMBERS_MAX
 * members, not one per stream.
 *
 * Why an instance id of its own, not SERVER_ID: a backend restarted
 * under the same name must not inherit the counts of the process that
 * died; those are taken away when its time runs out. */
#include <event2/event.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>

#include "clock.h"
#include "config.h"
#include "evpipe.h"
#include "hub.h"
#include "log.h"
#include "pipeline.h"
#include "presence.h"
#include "rconn.h"
#include "store.h"

/* Commands in flight at once (each a topic's, plus the beat's). */
#define PRESENCE_INFLIGHT_MAX 32
/* After an 'alive' that left dead instances to take away. */
#define PRESENCE_MORE_MS 100
#define PRESENCE_BUCKETS_MIN 256

/* One hook call, queued for the loop. */
struct pres_change {
    struct pres_change *next;
    int delta;                      /* +1 joined, -1 left */
    char *member;                   /* in the same allocation */
    char topic[];
};

struct pres_member {
    struct pres_member *next;
    unsigned count;                 /* its streams on the topic here */
    int dirty;                      /* changed since last sent */
    int sending;                    /* in the topic's command in flight */
    char name[];
};

struct pres_cmd;

struct pres_topic {
    struct pres_topic *next;        /* hash chain */
    TAILQ_ENTRY(pres_topic) link;   /* in the queue to send */
    uint32_t hash;
    unsigned streams;               /* its streams here */
    int dirty;                      /* something changed since last sent */
    int queued;                     /* in p->queue */
    struct pres_cmd *inflight;      /* its command, NULL if none */
    struct pres_member *members;
    char name[];
};
TAILQ_HEAD(pres_queue, pres_topic);

/* A command in flight: a topic's counts, or the beat (t NULL). */
struct pres_cmd {
    struct pipeline_req q;
    struct store_cmd cmd;
    struct presence *p;
    struct pres_topic *t;
    struct pres_member *sent[STORE_PRESENCE_MEMBERS_MAX];
    size_t nsent;
};

struct presence {
    const struct config *cfg;
    struct hub *hub;
    struct evpipe *ep;
    struct pipeline *pipe;          /* evpipe_pipeline(ep) */
    char instance[17];              /* 16 hex digits */
    int events;                     /* PRESENCE_EVENTS */
    unsigned ttl_ms;                /* an instance lives this long after a beat */
    unsigned beat_ms;               /* between beats */
    pthread_mutex_t mu;             /* a leaf: guards the inbox only */
    struct pres_change *inbox, **inbox_tail;
    struct event *inbox_ev;         /* activated by the hub's on_done */
    struct pres_topic **table;
    size_t nbuckets, ntopics;
    struct pres_queue queue;        /* topics to send, oldest first */
    unsigned inflight;              /* commands in flight */
    int beat_inflight;
    int registered;                 /* an 'alive' was answered */
    int leaving;                    /* presence_leave was called */
    int left;                       /* ...and Redis took the instance away */
    int freeing;                    /* presence_free: replies are failures */
    int64_t next_beat_ms;           /* monotonic */
    int64_t retry_ms;               /* no topic sent before (monotonic), 0: none */
    struct rconn_backoff backoff;
};

static void presence_pump(void *arg);

/* -------------------------------------------------------------- counts */

static uint32_t
presence_hash(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s != '\0'; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static struct pres_topic **
presence_slot(struct presence *p, const char *name, uint32_t hash)
{
    struct pres_topic **t = &p->table[hash & (p->nbuckets - 1)];

    while (*t != NULL && ((*t)->hash != hash || strcmp((*t)->name, name) != 0))
        t = &(*t)->next;
    return t;
}

/* Doubles the table when it holds more topics than buckets; stays as it
 * is when out of memory (chains only grow longer). */
static void
presence_grow(struct presence *p)
{
    size_t n = p->nbuckets * 2;
    struct pres_topic **v;

    if (p->ntopics < p->nbuckets || (v = calloc(n, sizeof(*v))) == NULL)
        return;
    for (size_t i = 0; i < p->nbuckets; i++) {
        struct pres_topic *t, *next;

        for (t = p->table[i]; t != NULL; t = next) {
            next = t->next;
            t->next = v[t->hash & (n - 1)];
            v[t->hash & (n - 1)] = t;
        }
    }
    free(p->table);
    p->table = v;
    p->nbuckets = n;
}

static struct pres_topic *
presence_topic_get(struct presence *p, const char *name)
{
    uint32_t hash = presence_hash(name);
    struct pres_topic **slot = presence_slot(p, name, hash), *t;
    size_t len = strlen(name);

    if (*slot != NULL)
        return *slot;
    if ((t = calloc(1, sizeof(*t) + len + 1)) == NULL)
        return NULL;
    t->hash = hash;
    memcpy(t->name, name, len + 1);
    *slot = t;
    p->ntopics++;
    presence_grow(p);
    return t;
}

static void
presence_member_free_all(struct pres_topic *t)
{
    struct pres_member *m, *next;

    for (m = t->members; m != NULL; m = next) {
        next = m->next;
        free(m);
    }
    t->members = NULL;
}

/* A topic with nothing here and nothing to tell goes. */
static void
presence_topic_maybe_drop(struct presence *p, struct pres_topic *t)
{
    struct pres_topic **slot;

    if (t->streams > 0 || t->members != NULL || t->dirty || t->queued || t->inflight)
        return;
    slot = presence_slot(p, t->name, t->hash);
    *slot = t->next;
    p->ntopics--;
    free(t);
}

/* Members per topic here are few (a room's members spread over the
 * instances): a list searched in order. */
static struct pres_member *
presence_member_get(struct pres_topic *t, const char *name)
{
    struct pres_member *m;
    size_t len = strlen(name);

    for (m = t->members; m != NULL; m = m->next)
        if (strcmp(m->name, name) == 0)
            return m;
    if ((m = calloc(1, sizeof(*m) + len + 1)) == NULL)
        return NULL;
    memcpy(m->name, name, len + 1);
    m->next = t->members;
    t->members = m;
    return m;
}

/* A member sent at 0 and not changed since is gone from Redis too. */
static void
presence_member_prune(struct pres_topic *t)
{
    struct pres_member **m = &t->members, *gone;

    while (*m != NULL) {
        if ((*m)->count == 0 && !(*m)->dirty && !(*m)->sending) {
            gone = *m;
            *m = gone->next;
            free(gone);
        } else {
            m = &(*m)->next;
        }
    }
}

static void
presence_queue(struct presence *p, struct pres_topic *t)
{
    t->dirty = 1;
    if (!t->queued && t->inflight == NULL) {
        TAILQ_INSERT_TAIL(&p->queue, t, link);
        t->queued = 1;
    }
}

static void
presence_apply(struct presence *p, const struct pres_change *c)
{
    struct pres_topic *t = presence_topic_get(p, c->topic);
    struct pres_member *m = NULL;

    if (t == NULL || (c->member[0] != '\0' && (m = presence_member_get(t, c->member)) == NULL)) {
        log_error("out of memory: presence of %s left as it was", c->topic);
        if (t != NULL)
            presence_topic_maybe_drop(p, t);
        return;
    }
    if (c->delta > 0) {
        t->streams++;
        if (m != NULL)
            m->count++;
    } else {
        if (t->streams > 0)
            t->streams--;
        if (m != NULL && m->count > 0)
            m->count--;
    }
    if (m != NULL)
        m->dirty = 1;
    presence_queue(p, t);
}

/* Redis lost what we told it (or never had it): everything again. */
static void
presence_mark_all(struct presence *p)
{
    for (size_t i = 0; i < p->nbuckets; i++) {
        for (struct pres_topic *t = p->table[i]; t != NULL; t = t->next) {
            for (struct pres_member *m = t->members; m != NULL; m = m->next)
                m->dirty = 1;
            presence_queue(p, t);
        }
    }
}

/* ------------------------------------------------------------ the inbox */

/* The hub's hooks: on whatever thread adds or drops a stream, under its
 * topic's shard lock. Only queue the news; on_done wakes the loop. */
static void
presence_tell(struct presence *p, const char *topic, const char *member, int delta)
{
    size_t tl = strlen(topic), ml = strlen(member);
    struct pres_change *c = malloc(sizeof(*c) + tl + 1 + ml + 1);

    if (c == NULL) {
        log_error("out of memory: a stream on %s is not counted in its presence", topic);
        return;
    }
    c->next = NULL;
    c->delta = delta;
    memcpy(c->topic, topic, tl + 1);
    c->member = c->topic + tl + 1;
    memcpy(c->member, member, ml + 1);
    pthread_mutex_lock(&p->mu);
    *p->inbox_tail = c;
    p->inbox_tail = &c->next;
    pthread_mutex_unlock(&p->mu);
}

static void
presence_on_join(void *arg, const char *topic, const char *member)
{
    presence_tell(arg, topic, member, 1);
}

static void
presence_on_leave(void *arg, const char *topic, const char *member)
{
    presence_tell(arg, topic, member, -1);
}

static void
presence_on_done(void *arg)
{
    struct presence *p = arg;

    event_active(p->inbox_ev, EV_READ, 0);
}

static void
presence_on_inbox(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    presence_pump(arg);
}

static void
presence_take_inbox(struct presence *p)
{
    struct pres_change *c, *next;

    pthread_mutex_lock(&p->mu);
    c = p->inbox;
    p->inbox = NULL;
    p->inbox_tail = &p->inbox;
    pthread_mutex_unlock(&p->mu);
    for (; c != NULL; c = next) {
        next = c->next;
        /* Once leaving, Redis has been told the instance is gone. */
        if (!p->leaving)
            presence_apply(p, c);
        free(c);
    }
}

/* ------------------------------------------------------------ commands */

static void
presence_cmd_free(struct pres_cmd *pc)
{
    store_command_clear(&pc->cmd);
    free(pc);
}

static void
presence_on_topic_reply(void *arg, const struct redisReply *r)
{
    struct pres_cmd *pc = arg;
    struct presence *p = pc->p;
    struct pres_topic *t = pc->t;
    int ok = !p->freeing && store_script_ok(r) == STORE_OK;

    p->inflight--;
    t->inflight = NULL;
    for (size_t i = 0; i < pc->nsent; i++) {
        pc->sent[i]->sending = 0;
        if (!ok)
            pc->sent[i]->dirty = 1;
    }
    presence_cmd_free(pc);
    if (p->freeing)
        return;
    if (!ok) {
        unsigned wait = rconn_backoff_fail(&p->backoff);

        p->retry_ms = clock_mono_ms() + wait;
        t->dirty = 1;
    } else {
        rconn_backoff_reset(&p->backoff);
    }
    presence_member_prune(t);
    if (t->dirty)
        presence_queue(p, t);
    else
        presence_topic_maybe_drop(p, t);
}

/* Sends t's counts: its streams and up to STORE_PRESENCE_MEMBERS_MAX of
 * its changed members; the others go in the next command, after this
 * one's reply. Returns -1 when nothing was sent. */
static int
presence_send_topic(struct presence *p, struct pres_topic *t)
{
    struct store_presence_member mv[STORE_PRESENCE_MEMBERS_MAX];
    struct pres_cmd *pc = calloc(1, sizeof(*pc));
    struct pres_member *m;
    int more = 0;

    if (pc == NULL)
        return -1;
    pc->p = p;
    pc->t = t;
    for (m = t->members; m != NULL; m = m->next) {
        if (!m->dirty)
            continue;
        if (pc->nsent == STORE_PRESENCE_MEMBERS_MAX) {
            more = 1;
            break;
        }
        mv[pc->nsent] = (struct store_presence_member){ m->name, m->count };
        pc->sent[pc->nsent++] = m;
    }
    if (store_presence_command(&pc->cmd, p->instance, t->name, p->events, t->streams,
                               mv, pc->nsent) == -1 ||
        pipeline_send(p->pipe, &pc->q, &pc->cmd, presence_on_topic_reply, pc) == -1) {
        presence_cmd_free(pc);
        return -1;
    }
    for (size_t i = 0; i < pc->nsent; i++) {
        pc->sent[i]->dirty = 0;
        pc->sent[i]->sending = 1;
    }
    t->dirty = more;
    t->inflight = pc;
    p->inflight++;
    return 0;
}

static void
presence_on_beat_reply(void *arg, const struct redisReply *r)
{
    struct pres_cmd *pc = arg;
    struct presence *p = pc->p;
    int fresh = 0, more = 0;
    enum store_result rc = p->freeing ? STORE_UNAVAILABLE
                                      : store_alive_result(r, &fresh, &more);
    int64_t now = clock_mono_ms();

    p->inflight--;
    p->beat_inflight = 0;
    presence_cmd_free(pc);
    if (p->freeing)
        return;
    if (rc != STORE_OK) {
        /* Never later than the next beat: the instance must not expire. */
        unsigned wait = rconn_backoff_fail(&p->backoff);

        p->next_beat_ms = now + (wait < p->beat_ms ? wait : p->beat_ms);
        if (p->leaving)
            p->left = 1;            /* Redis is away: nothing more to say */
        return;
    }
    rconn_backoff_reset(&p->backoff);
    if (p->leaving && !more) {
        p->left = 1;
        return;
    }
    if (fresh && !p->leaving) {
        if (p->registered)
            log_warn("presence: Redis did not know this instance (restarted "
                     "without its data?): telling it every count again");
        presence_mark_all(p);
    }
    p->registered = 1;
    p->next_beat_ms = now + (more ? PRESENCE_MORE_MS : p->beat_ms);
}

static void
presence_send_beat(struct presence *p)
{
    struct pres_cmd *pc = calloc(1, sizeof(*pc));

    if (pc == NULL)
        return;
    pc->p = p;
    if (store_alive_command(&pc->cmd, p->instance, p->leaving ? 0 : p->ttl_ms,
                            p->events) == -1 ||
        pipeline_send(p->pipe, &pc->q, &pc->cmd, presence_on_beat_reply, pc) == -1) {
        presence_cmd_free(pc);
        /* Redis is known to be down: try at the next beat; leaving, give up. */
        p->next_beat_ms = clock_mono_ms() + p->beat_ms;
        if (p->leaving)
            p->left = 1;
        return;
    }
    p->beat_inflight = 1;
    p->inflight++;
}

/* What the loop does whenever anything happened: takes the news, beats
 * when due, sends what changed (after the first beat: a dead instance
 * can be taken away only once Redis knows it), then sleeps until the
 * next beat or retry. */
static void
presence_pump(void *arg)
{
    struct presence *p = arg;
    int64_t now = clock_mono_ms(), wake;
    struct pres_topic *t;

    presence_take_inbox(p);
    if (!p->beat_inflight && !p->left && now >= p->next_beat_ms)
        presence_send_beat(p);
    if (p->retry_ms != 0 && now >= p->retry_ms)
        p->retry_ms = 0;
    while (p->registered && !p->leaving && p->retry_ms == 0 &&
           p->inflight < PRESENCE_INFLIGHT_MAX && (t = TAILQ_FIRST(&p->queue)) != NULL) {
        TAILQ_REMOVE(&p->queue, t, link);
        t->queued = 0;
        if (presence_send_topic(p, t) == -1) {
            TAILQ_INSERT_HEAD(&p->queue, t, link);
            t->queued = 1;
            p->retry_ms = now + rconn_backoff_fail(&p->backoff);
            break;
        }
    }
    /* The next beat once the one in flight is answered; a retry only
     * with something to send. */
    wake = -1;
    if (!p->left && !p->beat_inflight)
        wake = p->next_beat_ms > now ? p->next_beat_ms - now : 0;
    if (p->retry_ms != 0 && !TAILQ_EMPTY(&p->queue)) {
        int64_t w = p->retry_ms > now ? p->retry_ms - now : 0;

        if (wake < 0 || w < wake)
            wake = w;
    }
    evpipe_arm(p->ep, (int)wake);
}

/* ----------------------------------------------------------- lifecycle */

struct presence *
presence_new(struct event_base *base, const struct config *cfg, struct hub *hub)
{
    static const struct hub_topic_hooks hooks = {
        NULL, NULL, presence_on_join, presence_on_leave, presence_on_done
    };
    struct presence *p = calloc(1, sizeof(*p));
    uint8_t rnd[8];

    if (p == NULL)
        return NULL;
    p->cfg = cfg;
    p->events = cfg->presence_events != 0;
    p->ttl_ms = cfg->presence_ttl_secs * 1000 / 2;
    p->beat_ms = cfg->presence_ttl_secs * 1000 / 6;
    p->inbox_tail = &p->inbox;
    TAILQ_INIT(&p->queue);
    rconn_backoff_init(&p->backoff);
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        uint64_t v = ((uint64_t)random() << 32) ^ (uint64_t)random() ^ (uint64_t)clock_wall_ms();

        memcpy(rnd, &v, sizeof(rnd));
    }
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(p->instance + 2 * i, 3, "%02x", rnd[i]);
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        return NULL;
    }
    p->nbuckets = PRESENCE_BUCKETS_MIN;
    if ((p->table = calloc(p->nbuckets, sizeof(*p->table))) == NULL ||
        (p->ep = evpipe_new(base, cfg, presence_pump, p)) == NULL ||
        (p->inbox_ev = event_new(base, -1, 0, presence_on_inbox, p)) == NULL ||
        hub_add_topic_hooks(hub, &hooks, p) == -1) {
        presence_free(p);
        return NULL;
    }
    p->hub = hub;
    p->pipe = evpipe_pipeline(p->ep);
    log_debug("presence: instance %s", p->instance);
    event_active(p->inbox_ev, EV_READ, 0);      /* the first beat */
    return p;
}

void
presence_leave(struct presence *p)
{
    if (p->leaving)
        return;
    p->leaving = 1;
    p->next_beat_ms = 0;
    if (!p->registered)
        p->left = !p->beat_inflight;    /* Redis never knew it */
    event_active(p->inbox_ev, EV_READ, 0);
}

int
presence_settled(const struct presence *p)
{
    return p->left;
}

void
presence_free(struct presence *p)
{
    struct pres_change *c, *next;

    if (p == NULL)
        return;
    if (p->hub != NULL)
        hub_remove_topic_hooks(p->hub, p);
    p->freeing = 1;
    evpipe_free(p->ep);             /* fails what is in flight */
    for (size_t i = 0; p->table != NULL && i < p->nbuckets; i++) {
        struct pres_topic *t, *tn;

        for (t = p->table[i]; t != NULL; t = tn) {
            tn = t->next;
            presence_member_free_all(t);
            free(t);
        }
    }
    free(p->table);
    for (c = p->inbox; c != NULL; c = next) {
        next = c->next;
        free(c);
    }
    if (p->inbox_ev != NULL)
        event_free(p->inbox_ev);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
