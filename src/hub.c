/* hub.c -- userId -> streams, topic -> streams, and the firehose; and the
 * one teardown of a stream. A stream on N topics sits in N topic buckets
 * (a shard table of their own) besides its user's bucket (none for a
 * stream on topics only); a topic's event goes to its one bucket, so a
 * stream on 32 topics costs no more per event than one on a single topic.
 * The first stream of a topic here and its last call the topic hooks
 * (the subscriber subscribes and unsubscribes), under the topic's shard
 * lock, so they come in the order the bucket was made and dropped. Owns the buckets and the per-worker senders; borrows the
 * streams (their owners drop them through hub_drop_stream, which
 * unindexes them first). The index is split into shards, each with its
 * own mutex, so opening and closing streams on the HTTP threads rarely
 * contends with the subscriber fanning out. Lock order: shard, then
 * stream; the fan-out's helpers work under the caller's shard lock (see
 * bucket_push). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "fanout.h"
#include "hub.h"
#include "log.h"
#include "sender.h"
#include "stream.h"
#include "wire.h"

#define HUB_SHARDS 64           /* power of two */
#define HUB_FIREHOSE HUB_SHARDS /* the extra shard holding the firehose */
/* A shard is chosen by the hash's top bits, a bucket within a shard's
 * table by its low bits: with the same low bits for both, every user of
 * a shard fell into 1 of 64 table slots, and a lookup walked a chain of a
 * few dozen strcmp()s (13% of the gateway's CPU in unicast, perf). */
#define hub_shard_index(hash) (((hash) >> 26) & (HUB_SHARDS - 1))
_Static_assert(HUB_SHARDS == 64, "hub_shard_index takes the top 6 bits");

/* A user's streams sit in an array, not a list: a fan-out hands the
 * array to its workers as it is, where walking a list of 1,000 streams
 * (a cache miss each, one after the other) took 170-230 us before the
 * first send. Removal moves the last stream into the hole. */
struct bucket {
    struct bucket *next;        /* chain in the shard's table */
    struct stream **v;          /* v[0..count) */
    size_t count, cap;
    char user_id[];             /* its key: a user id, or a topic name */
};

struct shard {
    pthread_mutex_t mu;
    struct bucket **table;      /* power-of-two slots, chained */
    size_t slots;
    size_t buckets;
};

struct hub {
    struct shard shard[HUB_SHARDS + 1];
    struct shard tshard[HUB_SHARDS];    /* topic -> streams */
    /* Set before the first stream, read-only after. */
    struct hub_topic_hooks hooks[HUB_TOPIC_LISTENERS_MAX];
    void *hooks_arg[HUB_TOPIC_LISTENERS_MAX];
    size_t nhooks;
    atomic_size_t count;
    atomic_int closed;
    struct fanout *fanout;      /* borrowed; NULL: every send on the caller */
    /* One sender per fan-out worker (worker 0 is hub_publish's caller),
     * made on first use on the thread that uses it; NULL: plain sends. */
    int uring;
    unsigned nsenders;
    struct sender **senders;
    int *sender_tried;
    atomic_ulong ended[STREAM_END_COUNT];   /* streams dropped, by reason */
    atomic_ulong opened;                    /* streams indexed */
    atomic_size_t kind_count[HUB_KIND_COUNT];   /* streams indexed now */
};

static const char *const hub_kind_names[HUB_KIND_COUNT] = {
#define HUB_KIND_NAME(e, name) [e] = name,
    HUB_KINDS(HUB_KIND_NAME)
#undef HUB_KIND_NAME
};

/* A stream's kind: a user's (topics or not), topics only, or the firehose. */
static enum hub_kind
hub_kind_of(struct stream *s)
{
    if (stream_user_id(s)[0] != '\0')
        return HUB_KIND_USER;
    return stream_topic_count(s) > 0 ? HUB_KIND_TOPIC : HUB_KIND_FIREHOSE;
}

static uint32_t
hub_hash(const char *s)
{
    uint32_t h = 2166136261u;   /* FNV-1a: short keys, cheap, good spread */

    while (*s)
        h = (h ^ (uint8_t)*s++) * 16777619u;
    return h;
}

static struct shard *
hub_shard_for(struct hub *h, const char *user_id, uint32_t *hash)
{
    if (user_id[0] == '\0') {
        *hash = 0;
        return &h->shard[HUB_FIREHOSE];
    }
    *hash = hub_hash(user_id);
    return &h->shard[hub_shard_index(*hash)];
}

struct hub *
hub_new(struct fanout *fo, int uring)
{
    struct hub *h;
    int i;

    if ((h = calloc(1, sizeof(*h))) == NULL)
        return NULL;
    h->nsenders = fo != NULL ? fanout_workers(fo) : 1;
    if ((h->senders = calloc(h->nsenders, sizeof(*h->senders))) == NULL ||
        (h->sender_tried = calloc(h->nsenders, sizeof(*h->sender_tried))) == NULL) {
        free(h->senders);
        free(h);
        return NULL;
    }
    for (i = 0; i <= HUB_SHARDS; i++) {
        if (pthread_mutex_init(&h->shard[i].mu, NULL) != 0)
            goto err;
    }
    for (int t = 0; t < HUB_SHARDS; t++) {
        if (pthread_mutex_init(&h->tshard[t].mu, NULL) != 0) {
            while (--t >= 0)
                pthread_mutex_destroy(&h->tshard[t].mu);
            goto err;
        }
    }
    atomic_init(&h->count, 0);
    atomic_init(&h->closed, 0);
    for (int r = 0; r < STREAM_END_COUNT; r++)
        atomic_init(&h->ended[r], 0);
    for (int k = 0; k < HUB_KIND_COUNT; k++)
        atomic_init(&h->kind_count[k], 0);
    atomic_init(&h->opened, 0);
    h->fanout = fo;
    h->uring = uring;
    if (!uring)
        log_info("fan-outs send with sendmsg (FANOUT_URING=0)");
    return h;
err:
    while (--i >= 0)
        pthread_mutex_destroy(&h->shard[i].mu);
    free(h->sender_tried);
    free(h->senders);
    free(h);
    return NULL;
}

static void
shard_free(struct shard *sh);

void
hub_free(struct hub *h)
{
    if (h == NULL)
        return;
    for (int i = 0; i <= HUB_SHARDS; i++)
        shard_free(&h->shard[i]);
    for (int i = 0; i < HUB_SHARDS; i++)
        shard_free(&h->tshard[i]);
    for (unsigned i = 0; i < h->nsenders; i++)
        sender_free(h->senders[i]);
    free(h->senders);
    free(h->sender_tried);
    free(h);
}

int
hub_add_topic_hooks(struct hub *h, const struct hub_topic_hooks *hooks, void *arg)
{
    if (h->nhooks == HUB_TOPIC_LISTENERS_MAX)
        return -1;
    h->hooks[h->nhooks] = *hooks;
    h->hooks_arg[h->nhooks++] = arg;
    return 0;
}

void
hub_remove_topic_hooks(struct hub *h, void *arg)
{
    for (size_t i = 0; i < h->nhooks; i++) {
        if (h->hooks_arg[i] != arg)
            continue;
        for (size_t k = i + 1; k < h->nhooks; k++) {
            h->hooks[k - 1] = h->hooks[k];
            h->hooks_arg[k - 1] = h->hooks_arg[k];
        }
        h->nhooks--;
        return;
    }
}

/* Calls hook `name` of every listener that has one, with the topic (and
 * the member). */
#define HUB_TELL(h, name, ...)                                              \
    do {                                                                    \
        for (size_t i_ = 0; i_ < (h)->nhooks; i_++)                         \
            if ((h)->hooks[i_].name != NULL)                                \
                (h)->hooks[i_].name((h)->hooks_arg[i_], __VA_ARGS__);       \
    } while (0)

/* A stream's topics were all added or all dropped. */
static void
hub_tell_done(struct hub *h)
{
    for (size_t i = 0; i < h->nhooks; i++)
        if (h->hooks[i].on_done != NULL)
            h->hooks[i].on_done(h->hooks_arg[i]);
}

static void
shard_free(struct shard *sh)
{
    for (size_t j = 0; j < sh->slots; j++) {
        struct bucket *b = sh->table[j], *next;

        for (; b != NULL; b = next) {
            next = b->next;
            free(b->v);
            free(b);
        }
    }
    free(sh->table);
    pthread_mutex_destroy(&sh->mu);
}

/* ------------------------------------------------------------- buckets */

/* Caller holds sh->mu. Returns the bucket slot pointer for user_id. */
static struct bucket **
shard_find(struct shard *sh, uint32_t hash, const char *user_id)
{
    struct bucket **bp;

    if (sh->slots == 0)
        return NULL;
    bp = &sh->table[hash & (sh->slots - 1)];
    while (*bp != NULL && strcmp((*bp)->user_id, user_id) != 0)
        bp = &(*bp)->next;
    return bp;
}

/* Caller holds sh->mu. Doubles the table at load factor 1. */
static int
shard_grow(struct shard *sh)
{
    size_t nslots = sh->slots ? sh->slots * 2 : 16;
    struct bucket **nt = calloc(nslots, sizeof(*nt));

    if (nt == NULL)
        return -1;
    for (size_t i = 0; i < sh->slots; i++) {
        struct bucket *b = sh->table[i], *next;

        for (; b != NULL; b = next) {
            size_t j = hub_hash(b->user_id) & (nslots - 1);

            next = b->next;
            b->next = nt[j];
            nt[j] = b;
        }
    }
    free(sh->table);
    sh->table = nt;
    sh->slots = nslots;
    return 0;
}

/* Caller holds sh->mu. Finds or creates the bucket for user_id. */
static struct bucket *
shard_get_bucket(struct shard *sh, uint32_t hash, const char *user_id)
{
    struct bucket **bp = shard_find(sh, hash, user_id);
    struct bucket *b;
    size_t len;

    if (bp != NULL && *bp != NULL)
        return *bp;
    if (sh->buckets >= sh->slots && shard_grow(sh) == -1)
        return NULL;
    len = strlen(user_id);
    if ((b = malloc(sizeof(*b) + len + 1)) == NULL)
        return NULL;
    memcpy(b->user_id, user_id, len + 1);
    b->v = NULL;
    b->count = b->cap = 0;
    bp = shard_find(sh, hash, user_id);
    b->next = NULL;
    *bp = b;
    sh->buckets++;
    return b;
}

/* Caller holds sh->mu. Drops an empty bucket so the table tracks only
 * users with open streams. */
static void
shard_drop_bucket(struct shard *sh, uint32_t hash, struct bucket *b)
{
    struct bucket **bp = shard_find(sh, hash, b->user_id);

    if (bp == NULL || *bp != b)
        return;
    *bp = b->next;
    sh->buckets--;
    free(b->v);
    free(b);
}

/* Caller holds the bucket's shard lock. Room for one more stream. */
static int
bucket_reserve(struct bucket *b)
{
    size_t ncap;
    struct stream **nv;

    if (b->count < b->cap)
        return 0;
    ncap = b->cap ? b->cap * 2 : 4;
    if (ncap > ((size_t)-1) / sizeof(*nv) || (nv = realloc(b->v, ncap * sizeof(*nv))) == NULL)
        return -1;
    b->v = nv;
    b->cap = ncap;
    return 0;
}

/* ------------------------------------------------------------- streams */

int
hub_add(struct hub *h, struct stream *s)
{
    return hub_add_limited(h, s, 0);
}

static struct shard *
hub_topic_shard(struct hub *h, const char *topic, uint32_t *hash)
{
    *hash = hub_hash(topic);
    return &h->tshard[hub_shard_index(*hash)];
}

/* Caller holds sh->mu. Takes the stream at l out of its bucket (a
 * topic's when is_topic); 1 if the bucket went with it (it was the
 * last). */
static int
shard_unlink(struct shard *sh, uint32_t hash, struct stream_hub_link *l, int is_topic)
{
    struct bucket *b = l->bucket;
    struct stream *last = b->v[--b->count];
    struct stream_hub_link *ll = stream_hub_link(last);

    /* The moved stream's link for this bucket: found by the topic's name
     * (immutable), not by reading links other shards' locks guard. */
    if (is_topic) {
        for (size_t i = 0; i < stream_topic_count(last); i++) {
            if (strcmp(stream_topics(last)[i], b->user_id) == 0) {
                ll = stream_topic_link(last, i);
                break;
            }
        }
    }
    b->v[l->index] = last;
    ll->index = l->index;
    l->bucket = NULL;
    if (b->count == 0) {
        shard_drop_bucket(sh, hash, b);
        return 1;
    }
    return 0;
}

/* Takes s out of topic i's bucket if it is in; the topic's last stream
 * here calls the last hook. */
static void
hub_remove_topic(struct hub *h, struct stream *s, size_t i)
{
    const char *topic = stream_topics(s)[i];
    uint32_t hash;
    struct shard *sh = hub_topic_shard(h, topic, &hash);
    struct stream_hub_link *l = stream_topic_link(s, i);

    pthread_mutex_lock(&sh->mu);
    if (l->bucket != NULL) {
        HUB_TELL(h, on_leave, topic, stream_member(s));
        if (shard_unlink(sh, hash, l, 1))
            HUB_TELL(h, on_last, topic);
    }
    pthread_mutex_unlock(&sh->mu);
}

/* Appends s to bucket b (of shard sh, under its lock) and links it
 * there through l. Returns -1 when out of memory; a bucket left empty
 * by that goes. */
static int
bucket_insert(struct shard *sh, uint32_t hash, struct bucket *b,
              struct stream_hub_link *l, struct stream *s)
{
    if (bucket_reserve(b) == -1) {
        if (b->count == 0)
            shard_drop_bucket(sh, hash, b);
        return -1;
    }
    l->index = b->count;
    b->v[b->count++] = s;
    l->bucket = b;
    return 0;
}

/* Puts s in topic i's bucket; the topic's first stream here calls the
 * first hook. */
static int
hub_add_topic(struct hub *h, struct stream *s, size_t i)
{
    const char *topic = stream_topics(s)[i];
    uint32_t hash;
    struct shard *sh = hub_topic_shard(h, topic, &hash);
    struct stream_hub_link *l = stream_topic_link(s, i);
    struct bucket *b;
    int rc = -1;

    pthread_mutex_lock(&sh->mu);
    if ((b = shard_get_bucket(sh, hash, topic)) == NULL ||
        bucket_insert(sh, hash, b, l, s) == -1)
        goto out;
    if (b->count == 1)
        HUB_TELL(h, on_first, topic);
    HUB_TELL(h, on_join, topic, stream_member(s));
    rc = 0;
out:
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

/* A stream sits in its user's bucket (the firehose's for a stream of
 * neither a user nor a topic); a stream on topics only, in none. */
static int
hub_has_user_bucket(struct stream *s)
{
    return stream_user_id(s)[0] != '\0' || stream_topic_count(s) == 0;
}

static int
hub_unlink_all(struct hub *h, struct stream *s);

int
hub_add_limited(struct hub *h, struct stream *s, size_t max_per_user)
{
    uint32_t hash;
    struct shard *sh = hub_shard_for(h, stream_user_id(s), &hash);
    struct stream_hub_link *l = stream_hub_link(s);
    struct bucket *b;
    int rc = -1;

    if (!hub_has_user_bucket(s)) {
        if (atomic_load(&h->closed))
            return -1;
        goto topics;
    }
    pthread_mutex_lock(&sh->mu);
    if (atomic_load(&h->closed) || l->bucket != NULL)
        goto out;
    if ((b = shard_get_bucket(sh, hash, stream_user_id(s))) == NULL)
        goto out;
    if (max_per_user > 0 && sh != &h->shard[HUB_FIREHOSE] && b->count >= max_per_user) {
        rc = HUB_ADD_FULL;          /* b has streams: it stays */
        goto out;
    }
    if (bucket_insert(sh, hash, b, l, s) == -1)
        goto out;
    rc = 0;
out:
    pthread_mutex_unlock(&sh->mu);
    if (rc != 0)
        return rc;
topics:
    for (size_t i = 0; i < stream_topic_count(s); i++) {
        if (hub_add_topic(h, s, i) == -1) {
            /* Undone whole: the stream was never counted. */
            hub_unlink_all(h, s);
            return -1;
        }
    }
    atomic_fetch_add(&h->count, 1);
    atomic_fetch_add(&h->kind_count[hub_kind_of(s)], 1);
    atomic_fetch_add(&h->opened, 1);
    if (stream_topic_count(s) > 0)
        hub_tell_done(h);
    return 0;
}

/* Takes s out of every bucket it is in; 1 if it was in any. */
static int
hub_unlink_all(struct hub *h, struct stream *s)
{
    uint32_t hash;
    struct shard *sh = hub_shard_for(h, stream_user_id(s), &hash);
    struct stream_hub_link *l = stream_hub_link(s);
    int was = 0;

    if (hub_has_user_bucket(s)) {
        pthread_mutex_lock(&sh->mu);
        if (l->bucket != NULL) {
            shard_unlink(sh, hash, l, 0);
            was = 1;
        }
        pthread_mutex_unlock(&sh->mu);
    }
    /* Its own links change only here and in hub_add (its owner's calls);
     * other streams' moves touch only their index. */
    for (size_t i = 0; i < stream_topic_count(s); i++) {
        if (stream_topic_link(s, i)->bucket != NULL)
            was = 1;
        hub_remove_topic(h, s, i);
    }
    if (stream_topic_count(s) > 0)
        hub_tell_done(h);
    return was;
}

/* Takes s out of the index if it is in; safe to call more than once. */
static void
hub_remove(struct hub *h, struct stream *s)
{
    if (hub_unlink_all(h, s)) {
        atomic_fetch_sub(&h->count, 1);
        atomic_fetch_sub(&h->kind_count[hub_kind_of(s)], 1);
    }
}

void
hub_drop_stream(struct hub *h, struct stream *s, enum stream_end why)
{
    const char *uid = stream_user_id(s);
    struct stream_stats st;

    hub_remove(h, s);
    stream_close(s);
    atomic_fetch_add(&h->ended[why], 1);
    stream_stats(s, clock_coarse_ms(), &st);
    {
        const struct log_field f[] = {
            LOG_INT_JSON("stream", stream_serial(s)),
            LOG_STR_JSON("user", uid[0] ? uid : "*"),
            LOG_STR_JSON("reason", stream_end_name(why)),
            LOG_NUM("duration_s", (double)st.age_ms / 1000.0),
            LOG_INT("events", st.events),
            LOG_INT("bytes", st.bytes),
        };

        log_fields(LOG_LEVEL_INFO, f, sizeof(f) / sizeof(f[0]),
                   "stream %llu user=%s closed: %s", (unsigned long long)stream_serial(s),
                   uid[0] ? uid : "*", stream_end_name(why));
    }
    stream_unref(s);
}

const char *
hub_kind_name(enum hub_kind k)
{
    return (unsigned)k < HUB_KIND_COUNT ? hub_kind_names[k] : "unknown";
}

size_t
hub_count_kind(struct hub *h, enum hub_kind k)
{
    return atomic_load(&h->kind_count[k]);
}

unsigned long
hub_opened(struct hub *h)
{
    return atomic_load(&h->opened);
}

unsigned long
hub_ended(struct hub *h, enum stream_end why)
{
    return atomic_load(&h->ended[why]);
}

/* A run's frames, for the fan-out's callback. */
struct push_batch {
    struct hub *h;
    struct sse_frame *const *f;
    size_t n;
};

/* The sender of fan-out worker `worker`, made on its first use, on the
 * thread that will use it (each worker index has one thread). NULL when
 * io_uring is off or unavailable. */
static struct sender *
hub_sender(struct hub *h, unsigned worker)
{
    if (!h->uring || worker >= h->nsenders)
        return NULL;
    if (!h->sender_tried[worker]) {
        h->sender_tried[worker] = 1;
        h->senders[worker] = sender_new();
        if (worker == 0 && h->senders[0] == NULL)
            log_info("io_uring unavailable (%s): fan-outs send with sendmsg",
                     strerror(errno));
        else if (worker == 0)
            log_info("fan-outs send through io_uring");
    }
    return h->senders[worker];
}

/* Issues the writes queued in sd and hands each outcome back to the
 * stream that prepared it. */
static void
hub_flush_sender(struct sender *sd)
{
    size_t n = sender_flush(sd);

    for (size_t i = 0; i < n; i++)
        stream_push_complete(sender_written(sd, i));
    sender_reset(sd);
}

/* Pushes to n streams; with a sender, the writes each stream would make
 * now go to the kernel in batches rather than one system call each. */
static void
bucket_push_streams(void *const *streams, size_t n, unsigned worker, void *arg)
{
    const struct push_batch *b = arg;
    struct sender *sd = hub_sender(b->h, worker);

    if (sd == NULL) {
        for (size_t i = 0; i < n; i++)
            stream_push_many(streams[i], b->f, b->n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct wire_write *w = sender_slot(sd);

        if (!stream_push_prepare(streams[i], b->f, b->n, w))
            continue;
        switch (sender_queue(sd)) {
        case SENDER_ISSUED:
            stream_push_complete(w);
            break;
        case SENDER_FULL:
            hub_flush_sender(sd);
            break;
        case SENDER_QUEUED:
            break;
        }
    }
    hub_flush_sender(sd);
}

/* Caller holds the bucket's shard lock, which keeps the bucket's array
 * as it is (no stream joins or leaves it) until the run returns. Each
 * prepared write holds a reference to its stream, which keeps the
 * stream's socket open until the write is done. */
static void
bucket_push(struct hub *h, struct bucket *b, struct push_batch *batch)
{
    if (h->fanout != NULL)
        fanout_run(h->fanout, (void *const *)b->v, b->count, bucket_push_streams, batch);
    else
        bucket_push_streams((void *const *)b->v, b->count, 0, batch);
}

void
hub_publish(struct hub *h, const char *user_id, struct sse_frame *const *f, size_t n)
{
    struct push_batch batch = { h, f, n };
    uint32_t hash;
    struct shard *sh;
    struct bucket **bp;

    if (user_id[0] != '\0') {
        sh = hub_shard_for(h, user_id, &hash);
        pthread_mutex_lock(&sh->mu);
        if ((bp = shard_find(sh, hash, user_id)) != NULL && *bp != NULL)
            bucket_push(h, *bp, &batch);
        pthread_mutex_unlock(&sh->mu);
    }
    sh = &h->shard[HUB_FIREHOSE];
    pthread_mutex_lock(&sh->mu);
    if ((bp = shard_find(sh, 0, "")) != NULL && *bp != NULL)
        bucket_push(h, *bp, &batch);
    pthread_mutex_unlock(&sh->mu);
}

void
hub_publish_topic(struct hub *h, const char *topic, struct sse_frame *const *f, size_t n)
{
    struct push_batch batch = { h, f, n };
    uint32_t hash;
    struct shard *sh = hub_topic_shard(h, topic, &hash);
    struct bucket **bp;

    pthread_mutex_lock(&sh->mu);
    if ((bp = shard_find(sh, hash, topic)) != NULL && *bp != NULL)
        bucket_push(h, *bp, &batch);
    pthread_mutex_unlock(&sh->mu);
}

/* Calls fn on every stream of the shard's buckets, under its lock; only
 * is_topic: a stream on topics only, in its first topic's bucket (every
 * other stream is met in its user's). */
static void
hub_each_shard(struct shard *sh, int is_topic, void (*fn)(struct stream *, void *),
               void *arg)
{
    pthread_mutex_lock(&sh->mu);
    for (size_t j = 0; j < sh->slots; j++) {
        for (struct bucket *b = sh->table[j]; b != NULL; b = b->next) {
            for (size_t k = 0; k < b->count; k++) {
                struct stream *s = b->v[k];

                /* Topics and user ids are immutable: no stream lock. */
                if (is_topic && (hub_has_user_bucket(s) ||
                                 strcmp(stream_topics(s)[0], b->user_id) != 0))
                    continue;
                fn(s, arg);
            }
        }
    }
    pthread_mutex_unlock(&sh->mu);
}

/* Calls fn on every stream once, one shard at a time, under that shard's
 * lock: streams start writing while later shards are still walked. */
static void
hub_each(struct hub *h, void (*fn)(struct stream *, void *), void *arg)
{
    for (int i = 0; i <= HUB_SHARDS; i++)
        hub_each_shard(&h->shard[i], 0, fn, arg);
    for (int i = 0; i < HUB_SHARDS; i++)
        hub_each_shard(&h->tshard[i], 1, fn, arg);
}

struct snapshot_ctx {
    struct stream **v;
    size_t n, cap;
    int failed;
};

static void
hub_snapshot_one(struct stream *s, void *arg)
{
    struct snapshot_ctx *c = arg;

    if (c->failed)
        return;
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 64;
        struct stream **nv = realloc(c->v, ncap * sizeof(*nv));

        if (nv == NULL) {
            c->failed = 1;
            return;
        }
        c->v = nv;
        c->cap = ncap;
    }
    c->v[c->n++] = stream_ref(s);
}

struct stream **
hub_snapshot(struct hub *h, size_t *n)
{
    struct snapshot_ctx c = { NULL, 0, 0, 0 };

    hub_each(h, hub_snapshot_one, &c);
    if (c.failed) {
        for (size_t i = 0; i < c.n; i++)
            stream_unref(c.v[i]);
        free(c.v);
        *n = (size_t)-1;
        return NULL;
    }
    *n = c.n;
    return c.v;
}

static void
hub_close_one(struct stream *s, void *arg)
{
    stream_end(s, *(const enum stream_end *)arg);
}

void
hub_end_all(struct hub *h, enum stream_end why)
{
    hub_each(h, hub_close_one, &why);
}

struct hub_close_args {
    enum stream_end why;
    struct sse_frame *const *last;
    size_t nlast;
};

static void
hub_close_last(struct stream *s, void *arg)
{
    const struct hub_close_args *a = arg;

    stream_end_with(s, a->why, a->nlast > 0 ? a->last[(size_t)random() % a->nlast] : NULL);
}

void
hub_close(struct hub *h, enum stream_end why, struct sse_frame *const *last, size_t nlast)
{
    struct hub_close_args a = { why, last, nlast };

    atomic_store(&h->closed, 1);
    hub_each(h, hub_close_last, &a);
}

size_t
hub_count(struct hub *h)
{
    return atomic_load(&h->count);
}
