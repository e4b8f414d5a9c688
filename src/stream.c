/* stream.c -- one SSE stream. Owns its queue of frame references until
 * stream_close() and, after the hand-off, its wire (the socket) until the
 * last reference goes. Decides what to write: producers write straight to
 * the socket while it takes data, or describe the write for a fan-out to
 * issue in a batch (stream_push_prepare); the writer loop takes over when
 * the socket is full, broken or the stream ends. Every field is guarded
 * by s->mu, which is taken after the hub's shard lock and before
 * libevent's own locks (wire_wake). */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "clients.h"
#include "clock.h"
#include "metrics.h"
#include "sse.h"
#include "stream.h"
#include "wire.h"

/* A growable ring of frame references. It starts small because most
 * streams hold nothing most of the time; the byte bound, not the ring,
 * limits how much a stream may hold. */
struct frameq {
    struct sse_frame **slot;
    size_t cap;                 /* power of two, or 0 before first push */
    size_t head;
    size_t count;
};

struct stream {
    pthread_mutex_t mu;
    atomic_uint refs;
    uint64_t serial;            /* for logs */
    char user_id[STREAM_USER_ID_MAX + 1];   /* "" for the firehose */
    struct stream_hub_link hub_link;
    /* Its topics (set once before it is indexed, immutable after) and
     * its place in each topic's bucket: NULL and 0 for most streams. */
    char **topics;
    size_t ntopics;
    char member[STREAM_MEMBER_MAX + 1];     /* "" for nobody */
    struct stream_hub_link *topic_links;

    struct frameq queue;        /* frames to send, oldest first */
    struct frameq held;         /* live frames held back during replay */
    size_t bytes;               /* unsent bytes in queue */
    size_t held_bytes;          /* bytes in held */
    size_t max_bytes;

    /* History is being read into the queue (replay.c, page by page):
     * live frames wait in held. replay_gen counts the times live frames
     * may have been missed meanwhile (held overflowed, or the
     * subscription was lost): a page read before such a time cannot be
     * the last one. */
    int replaying;
    unsigned replay_gen;
    int has_last_id;
    struct event_id last_id;    /* id of the last frame queued */

    struct wire wire;           /* the socket, after the hand-off */
    /* Its client's connection count, held until the socket closes. Set
     * once by the owner before the hand-off; read only at the free. */
    struct clients_slot client;
    int ready;                  /* head sent, socket not full: producers may write */
    int inflight;               /* a prepared write is pending (stream_push_complete) */
    int ending;                 /* send what is queued, then end */
    int closed;                 /* the connection is gone */
    enum stream_end reason;     /* why it is ending */
    /* clock_coarse_ms() when the socket last took a byte, or, if later,
     * when the stream began to have something to send: a heartbeat is
     * due HEARTBEAT_SECS after it, and a stream whose output still waits
     * STREAM_WRITE_TIMEOUT_SECS after it has a client that stopped
     * reading. */
    int64_t active_ms;
    /* When its token expires (clock_coarse_ms()); 0: never. */
    int64_t expires_ms;
    /* For its last log line: since when (clock_coarse_ms()), and what
     * its socket took (events wholly written, bytes). */
    int64_t opened_ms;
    uint64_t events_sent;
    uint64_t bytes_sent;
};

static const char *const stream_end_names[STREAM_END_COUNT] = {
    [STREAM_END_CLIENT] = "client",
    [STREAM_END_SLOW_CONSUMER] = "slow_consumer",
    [STREAM_END_SHUTDOWN] = "shutdown",
    [STREAM_END_OPEN_FAILED] = "open_failed",
    [STREAM_END_OUT_OF_MEMORY] = "out_of_memory",
    [STREAM_END_TOKEN_EXPIRED] = "token_expired",
};

static atomic_uint_fast64_t stream_next_serial = 1;

static int stream_enqueue_locked(struct stream *s, struct sse_frame *f, int bounded);

const char *
stream_end_name(enum stream_end why)
{
    return (unsigned)why < STREAM_END_COUNT ? stream_end_names[why] : "unknown";
}

/* ---------------------------------------------------------------- frameq */

static int
frameq_push(struct frameq *q, struct sse_frame *f)
{
    if (q->count == q->cap) {
        size_t ncap = q->cap ? q->cap * 2 : 4;
        struct sse_frame **ns = malloc(ncap * sizeof(*ns));

        if (ns == NULL)
            return -1;
        for (size_t i = 0; i < q->count; i++)
            ns[i] = q->slot[(q->head + i) & (q->cap - 1)];
        free(q->slot);
        q->slot = ns;
        q->cap = ncap;
        q->head = 0;
    }
    q->slot[(q->head + q->count) & (q->cap - 1)] = f;
    q->count++;
    return 0;
}

static struct sse_frame *
frameq_pop(struct frameq *q)
{
    struct sse_frame *f;

    if (q->count == 0)
        return NULL;
    f = q->slot[q->head];
    q->head = (q->head + 1) & (q->cap - 1);
    q->count--;
    return f;
}

/* Drops every reference and the ring itself. */
static void
frameq_clear(struct frameq *q)
{
    struct sse_frame *f;

    while ((f = frameq_pop(q)) != NULL)
        sse_frame_unref(f);
    free(q->slot);
    memset(q, 0, sizeof(*q));
}

/* ------------------------------------------------------------- lifecycle */

struct stream *
stream_new(const char *user_id, size_t max_bytes, struct sse_frame *hello)
{
    struct stream *s;

    if (user_id == NULL)
        user_id = "";
    if (strlen(user_id) > STREAM_USER_ID_MAX)
        return NULL;
    if ((s = calloc(1, sizeof(*s))) == NULL)
        return NULL;
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s);
        return NULL;
    }
    atomic_init(&s->refs, 1);
    s->serial = atomic_fetch_add(&stream_next_serial, 1);
    strcpy(s->user_id, user_id);
    s->max_bytes = max_bytes;
    wire_init(&s->wire);
    s->replaying = 1;           /* the opening read; see stream.h */
    s->reason = STREAM_END_CLIENT;
    s->active_ms = clock_coarse_ms();
    s->opened_ms = s->active_ms;
    if (hello != NULL && stream_enqueue_locked(s, hello, 0) == -1) {
        stream_unref(s);
        return NULL;
    }
    return s;
}

struct stream *
stream_ref(struct stream *s)
{
    atomic_fetch_add(&s->refs, 1);
    return s;
}

void
stream_unref(struct stream *s)
{
    unsigned old;

    if (s == NULL)
        return;
    old = atomic_fetch_sub(&s->refs, 1);
    assert(old > 0 && "stream reference count went below zero");
    if (old != 1)
        return;
    frameq_clear(&s->queue);
    frameq_clear(&s->held);
    wire_close(&s->wire);
    /* The socket is closed: the client may connect once more. */
    clients_release(&s->client);
    pthread_mutex_destroy(&s->mu);
    for (size_t i = 0; i < s->ntopics; i++)
        free(s->topics[i]);
    free(s->topics);
    free(s->topic_links);
    free(s);
}

int
stream_set_topics(struct stream *s, const char *const *topics, size_t n,
                  const char *member)
{
    if (member != NULL && strlen(member) <= STREAM_MEMBER_MAX)
        strcpy(s->member, member);
    if (n == 0)
        return 0;
    if ((s->topics = calloc(n, sizeof(*s->topics))) == NULL ||
        (s->topic_links = calloc(n, sizeof(*s->topic_links))) == NULL)
        return -1;
    for (; s->ntopics < n; s->ntopics++) {
        if ((s->topics[s->ntopics] = strdup(topics[s->ntopics])) == NULL)
            return -1;
    }
    return 0;
}

void
stream_hold_client(struct stream *s, struct clients_slot *slot)
{
    clients_release(&s->client);        /* never held twice */
    clients_move(&s->client, slot);
}

int
stream_attach(struct stream *s, int fd, int chunked, const char *head,
              size_t head_len, struct event *wake)
{
    int rc;

    pthread_mutex_lock(&s->mu);
    rc = wire_open(&s->wire, fd, chunked, head, head_len, wake);
    s->ready = 0;               /* the writer loop writes the head first */
    s->active_ms = clock_coarse_ms();   /* the head waits to be sent */
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ----------------------------------------------------------------- writes */

/* Caller holds s->mu; the wire is open and has something to write. Fills
 * w with the next write: the head's rest and up to WIRE_FRAMES frames. */
static void
stream_build_locked(struct stream *s, struct wire_write *w)
{
    size_t n = s->queue.count < WIRE_FRAMES ? s->queue.count : WIRE_FRAMES;

    w->owner = s;
    w->frames = n;
    for (size_t i = 0; i < n; i++)
        w->frame[i] = s->queue.slot[(s->queue.head + i) & (s->queue.cap - 1)];
    wire_prepare(&s->wire, w);
}

/* Caller holds s->mu. n bytes of w went out: drops the frames wholly
 * written. Returns 1 if all of w went out. */
static int
stream_apply_locked(struct stream *s, const struct wire_write *w, size_t n)
{
    size_t done = wire_apply(&s->wire, w, n);
    uint64_t events = 0;
    int64_t now_us = 0;

    if (n > 0)
        s->active_ms = clock_coarse_ms();
    for (size_t i = 0; i < done; i++) {
        struct sse_frame *f = frameq_pop(&s->queue);

        s->bytes -= f->len;
        if (f->event) {
            events++;
            /* A live event's delay, on one clock read per write. */
            if (f->ts_ms > 0) {
                if (now_us == 0)
                    now_us = clock_wall_us();
                metrics_observe_delivery_delay(now_us - f->ts_ms * 1000);
            }
        }
        sse_frame_unref(f);
    }
    /* This thread's own counters: no lock, no shared cache line. */
    s->events_sent += events;
    s->bytes_sent += n;
    metrics_note_write(n, events);
    return n == w->total;
}

/* Caller holds s->mu. 1 when there is something to write. */
static int
stream_has_output_locked(const struct stream *s)
{
    return wire_is_open(&s->wire) &&
           (s->queue.count > 0 || wire_head_pending(&s->wire));
}

/* Caller holds s->mu; no write is in flight. Writes until the queue is
 * empty or the socket full; finishes the body once an ending stream has
 * nothing left. */
static enum stream_io
stream_write_locked(struct stream *s)
{
    struct wire_write w;

    if (s->closed)
        return STREAM_IO_END;
    while (stream_has_output_locked(s)) {
        stream_build_locked(s, &w);
        wire_issue(&w);
        if (w.res < 0)
            return w.res == -EAGAIN || w.res == -EWOULDBLOCK || w.res == -EINTR
                       ? STREAM_IO_BLOCKED : STREAM_IO_ERROR;
        if (!stream_apply_locked(s, &w, (size_t)w.res))
            return STREAM_IO_BLOCKED;       /* the socket buffer is full */
    }
    if (s->ending && wire_is_open(&s->wire)) {
        wire_finish(&s->wire);
        return STREAM_IO_END;
    }
    return STREAM_IO_IDLE;
}

/* Caller holds s->mu. Something was queued, or the stream ends: write it
 * now if the socket takes it (one thread hop less per delivery), else
 * hand it to the writer loop. */
static void
stream_kick_locked(struct stream *s)
{
    if (s->closed || s->inflight || !wire_is_open(&s->wire))
        return;                 /* inflight: stream_push_complete carries on */
    if (s->ready && stream_write_locked(s) == STREAM_IO_IDLE)
        return;
    s->ready = 0;
    wire_wake(&s->wire);
}

/* ------------------------------------------------------------- producers */

/* Caller holds s->mu. */
static void
stream_end_locked(struct stream *s, enum stream_end why)
{
    if (s->ending || s->closed)
        return;
    s->ending = 1;
    s->reason = why;
    stream_kick_locked(s);
}

/* Caller holds s->mu. Appends to the queue; bounded: within the byte
 * bound, ending the stream (slow consumer) when it would pass it. Pages
 * of history are queued unbounded: replay.c reads one only while the
 * queue has room for it, so they are bounded where they are read. Ends
 * the stream when out of memory. Returns 0 if queued. */
static int
stream_enqueue_locked(struct stream *s, struct sse_frame *f, int bounded)
{
    /* An empty queue always takes one frame, however large: otherwise an
     * event bigger than the bound would end every stream, and its
     * clients would never get past it. */
    if (bounded && s->bytes > 0 && s->bytes + f->len > s->max_bytes) {
        stream_end_locked(s, STREAM_END_SLOW_CONSUMER);
        return -1;
    }
    if (frameq_push(&s->queue, sse_frame_ref(f)) == -1) {
        sse_frame_unref(f);
        stream_end_locked(s, STREAM_END_OUT_OF_MEMORY);
        return -1;
    }
    /* The wait for the socket starts when there is something to send. */
    if (s->queue.count == 1 && !wire_head_pending(&s->wire))
        s->active_ms = clock_coarse_ms();
    s->bytes += f->len;
    return 0;
}

/* Caller holds s->mu. Drops every held frame: each is in history, and
 * the replay reads on until it has them (replay_gen). */
static void
stream_drop_held_locked(struct stream *s)
{
    frameq_clear(&s->held);
    s->held_bytes = 0;
    s->replay_gen++;
}

/* Caller holds s->mu. Holds a live frame while history is read. Past
 * the byte bound (or out of memory) the held frames are dropped rather
 * than the stream ended: history has them. */
static void
stream_hold_locked(struct stream *s, struct sse_frame *f)
{
    if (s->held_bytes + f->len > s->max_bytes) {
        stream_drop_held_locked(s);
        return;
    }
    if (frameq_push(&s->held, sse_frame_ref(f)) == -1) {
        sse_frame_unref(f);
        stream_drop_held_locked(s);
        return;
    }
    s->held_bytes += f->len;
}

/* Caller holds s->mu. An id-less frame (a PUBLISH from outside) cannot be
 * deduplicated and is always new. */
static int
stream_is_new_locked(const struct stream *s, const struct sse_frame *f)
{
    return !f->has_id || !s->has_last_id ||
           eventid_cmp(&f->id, &s->last_id) > 0;
}

/* Caller holds s->mu. Queues f for sending if it is new. */
static void
stream_queue_locked(struct stream *s, struct sse_frame *f, int bounded)
{
    if (!stream_is_new_locked(s, f))
        return;
    if (stream_enqueue_locked(s, f, bounded) == 0 && f->has_id) {
        s->last_id = f->id;
        s->has_last_id = 1;
    }
}

/* Caller holds s->mu. Queues the frames, or holds them while a replay
 * runs. */
static void
stream_queue_many_locked(struct stream *s, struct sse_frame *const *f, size_t n)
{
    for (size_t i = 0; i < n && !s->ending; i++) {
        if (s->replaying)
            stream_hold_locked(s, f[i]);
        else
            stream_queue_locked(s, f[i], 1);
    }
}

void
stream_push_many(struct stream *s, struct sse_frame *const *f, size_t n)
{
    pthread_mutex_lock(&s->mu);
    if (!s->ending && !s->closed) {
        stream_queue_many_locked(s, f, n);
        stream_kick_locked(s);
    }
    pthread_mutex_unlock(&s->mu);
}

int
stream_push_prepare(struct stream *s, struct sse_frame *const *f, size_t n,
                    struct wire_write *w)
{
    int prepared = 0;

    pthread_mutex_lock(&s->mu);
    if (!s->ending && !s->closed) {
        stream_queue_many_locked(s, f, n);
        if (s->ready && !s->inflight && stream_has_output_locked(s)) {
            stream_build_locked(s, w);
            s->inflight = 1;
            stream_ref(s);
            prepared = 1;
        } else {
            stream_kick_locked(s);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return prepared;
}

void
stream_push_complete(struct wire_write *w)
{
    struct stream *s = w->owner;

    pthread_mutex_lock(&s->mu);
    s->inflight = 0;
    if (!s->closed) {
        if (w->res >= 0 && stream_apply_locked(s, w, (size_t)w->res)) {
            stream_kick_locked(s);      /* what came meanwhile, or the end */
        } else {
            /* Full or failed: the writer loop waits for room, or meets
             * the error itself and tears the stream down. */
            s->ready = 0;
            wire_wake(&s->wire);
        }
    }
    pthread_mutex_unlock(&s->mu);
    stream_unref(s);
}

unsigned
stream_heartbeat_wait(int64_t now_ms, int64_t active_ms, unsigned period_ms, int busy)
{
    int64_t idle = now_ms - active_ms;

    if (busy)
        return period_ms;       /* data waits: the socket's wait is the timeout's */
    if (idle < 0)
        idle = 0;               /* another thread's clock read came later */
    if (idle + STREAM_HEARTBEAT_SLACK_MS >= (int64_t)period_ms)
        return 0;
    return (unsigned)((int64_t)period_ms - idle);
}

unsigned
stream_heartbeat(struct stream *s, struct sse_frame *f, int64_t now_ms, unsigned period_ms)
{
    unsigned wait = 0;

    pthread_mutex_lock(&s->mu);
    if (s->ending || s->closed)
        goto out;
    wait = stream_heartbeat_wait(now_ms, s->active_ms, period_ms,
                                 s->queue.count > 0 || wire_head_pending(&s->wire));
    if (wait == 0) {
        if (stream_enqueue_locked(s, f, 1) == 0)
            stream_kick_locked(s);
        wait = period_ms;
    }
out:
    pthread_mutex_unlock(&s->mu);
    return wait;
}

void
stream_set_expiry(struct stream *s, int64_t at_ms)
{
    pthread_mutex_lock(&s->mu);
    s->expires_ms = at_ms > 0 ? at_ms : 1;     /* 0 means never */
    pthread_mutex_unlock(&s->mu);
}

unsigned
stream_expire(struct stream *s, struct sse_frame *f, int64_t now_ms, unsigned cap_ms)
{
    unsigned wait = 0;

    pthread_mutex_lock(&s->mu);
    if (s->ending || s->closed)
        goto out;
    if (s->expires_ms == 0) {
        wait = cap_ms;
    } else if (now_ms < s->expires_ms) {
        wait = s->expires_ms - now_ms < (int64_t)cap_ms ? (unsigned)(s->expires_ms - now_ms)
                                                        : cap_ms;
    } else {
        /* Past the bound: the client is told why its stream ends rather
         * than the stream ending as a slow consumer. One small frame. */
        stream_enqueue_locked(s, f, 0);
        stream_end_locked(s, STREAM_END_TOKEN_EXPIRED);
    }
out:
    pthread_mutex_unlock(&s->mu);
    return wait;
}

unsigned
stream_heartbeat_pace(struct stream_beat_pace *pace, int64_t now_ms)
{
    if (now_ms / STREAM_BEAT_SLOT_MS != pace->slot) {
        pace->slot = now_ms / STREAM_BEAT_SLOT_MS;
        pace->count = 0;
    }
    if (pace->count++ < STREAM_BEATS_PER_SLOT)
        return 0;
    return ((pace->count - 1) / STREAM_BEATS_PER_SLOT) * STREAM_BEAT_SLOT_MS;
}

int64_t
stream_stalled_ms(struct stream *s, int64_t now_ms)
{
    int64_t d;

    pthread_mutex_lock(&s->mu);
    d = now_ms - s->active_ms;
    pthread_mutex_unlock(&s->mu);
    return d > 0 ? d : 0;
}

void
stream_push_first(struct stream *s, struct sse_frame *f)
{
    pthread_mutex_lock(&s->mu);
    if (!s->ending && !s->closed && stream_enqueue_locked(s, f, 0) == 0)
        metrics_add(METRICS_GAPS, 1);
    pthread_mutex_unlock(&s->mu);
}

/* Caller holds s->mu. Where the next page starts: after the last id
 * queued, or (none yet) after 0-0, the whole history. */
static void
stream_replay_after_locked(const struct stream *s, struct event_id *after)
{
    if (s->has_last_id)
        *after = s->last_id;
    else
        memset(after, 0, sizeof(*after));
}

int
stream_begin_replay(struct stream *s, struct event_id *after)
{
    int started = 0;

    pthread_mutex_lock(&s->mu);
    if (s->replaying)
        s->replay_gen++;            /* the page in flight may miss events */
    else if (!s->ending && !s->closed)
        started = s->replaying = 1;
    stream_replay_after_locked(s, after);
    pthread_mutex_unlock(&s->mu);
    return started;
}

unsigned
stream_replay_gen(struct stream *s)
{
    unsigned gen;

    pthread_mutex_lock(&s->mu);
    gen = s->replay_gen;
    pthread_mutex_unlock(&s->mu);
    return gen;
}

int
stream_replay_room(struct stream *s, size_t page_bytes)
{
    int rc;

    pthread_mutex_lock(&s->mu);
    if (s->ending || s->closed || !s->replaying)
        rc = -1;
    else
        rc = s->bytes + page_bytes <= s->max_bytes;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

enum stream_replay
stream_replay_page(struct stream *s, struct sse_frame *gap,
                   struct sse_frame *const *frames, size_t n,
                   const struct event_id *start, int more, unsigned gen,
                   struct event_id *next)
{
    enum stream_replay rc = STREAM_REPLAY_MORE;
    struct sse_frame *f;
    size_t queued;

    memset(next, 0, sizeof(*next));
    pthread_mutex_lock(&s->mu);
    if (s->ending || s->closed || !s->replaying) {
        rc = STREAM_REPLAY_OVER;
        goto out;
    }
    if (gap != NULL && stream_enqueue_locked(s, gap, 0) == 0)
        metrics_add(METRICS_GAPS, 1);
    queued = s->queue.count;
    for (size_t i = 0; i < n && !s->ending; i++)
        stream_queue_locked(s, frames[i], 0);
    /* Nothing leaves the queue meanwhile: the mutex is held. */
    if (s->queue.count > queued)
        metrics_add(METRICS_REPLAYED_EVENTS, s->queue.count - queued);
    /* A page that reached history's end read up to the deployment's last
     * id: nothing of this stream's lies between its last entry and it. */
    if (!more && start != NULL &&
        (!s->has_last_id || eventid_cmp(start, &s->last_id) > 0)) {
        s->last_id = *start;
        s->has_last_id = 1;
    }
    /* Held frames released into a queue that cannot take them would end
     * the stream; dropped, they come in the following pages instead. */
    if (!more && gen == s->replay_gen && s->held.count > 0 &&
        s->bytes + s->held_bytes > s->max_bytes)
        stream_drop_held_locked(s);
    if (more || gen != s->replay_gen) {
        stream_replay_after_locked(s, next);
    } else {
        s->replaying = 0;
        rc = STREAM_REPLAY_DONE;
        /* Each held frame through the same dedup test as any other. */
        while ((f = frameq_pop(&s->held)) != NULL) {
            s->held_bytes -= f->len;
            if (!s->ending)
                stream_queue_locked(s, f, 1);
            sse_frame_unref(f);
        }
    }
    if (s->ending)
        rc = STREAM_REPLAY_OVER;
    stream_kick_locked(s);
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void
stream_end(struct stream *s, enum stream_end why)
{
    stream_end_with(s, why, NULL);
}

void
stream_end_with(struct stream *s, enum stream_end why, struct sse_frame *last)
{
    pthread_mutex_lock(&s->mu);
    /* Past the bound if need be: it is the last frame. */
    if (last != NULL && !s->ending && !s->closed)
        stream_enqueue_locked(s, last, 0);
    stream_end_locked(s, why);
    pthread_mutex_unlock(&s->mu);
}

enum stream_end
stream_end_reason(struct stream *s)
{
    enum stream_end why;

    pthread_mutex_lock(&s->mu);
    why = s->reason;
    pthread_mutex_unlock(&s->mu);
    return why;
}

void
stream_close(struct stream *s)
{
    pthread_mutex_lock(&s->mu);
    s->closed = 1;
    s->ready = 0;
    frameq_clear(&s->queue);
    frameq_clear(&s->held);
    s->bytes = 0;
    s->held_bytes = 0;
    pthread_mutex_unlock(&s->mu);
}

enum stream_io
stream_flush(struct stream *s)
{
    enum stream_io rc;

    pthread_mutex_lock(&s->mu);
    if (s->inflight) {
        /* A prepared write is pending; its completion carries on. */
        pthread_mutex_unlock(&s->mu);
        return STREAM_IO_IDLE;
    }
    rc = stream_write_locked(s);
    s->ready = rc == STREAM_IO_IDLE;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ------------------------------------------------------------- accessors */

void
stream_stats(struct stream *s, int64_t now_ms, struct stream_stats *out)
{
    pthread_mutex_lock(&s->mu);
    out->age_ms = now_ms > s->opened_ms ? now_ms - s->opened_ms : 0;
    out->events = s->events_sent;
    out->bytes = s->bytes_sent;
    pthread_mutex_unlock(&s->mu);
}

const char *
stream_user_id(const struct stream *s)
{
    return s->user_id;
}

const char *
stream_member(const struct stream *s)
{
    return s->member;
}

uint64_t
stream_serial(const struct stream *s)
{
    return s->serial;
}

struct stream_hub_link *
stream_hub_link(struct stream *s)
{
    return &s->hub_link;
}

size_t
stream_topic_count(const struct stream *s)
{
    return s->ntopics;
}

const char *const *
stream_topics(const struct stream *s)
{
    return (const char *const *)s->topics;
}

struct stream_hub_link *
stream_topic_link(struct stream *s, size_t i)
{
    return &s->topic_links[i];
}
