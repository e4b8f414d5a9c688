/* stream.c -- one SSE connection. Owns its queue of frame references until
 * stream_close(); borrows what it writes to: the MHD connection it resumes
 * (STREAM_HANDOFF=0) or the socket of its sink (hand-off mode), which it
 * writes directly while the socket takes data, or describes the write for
 * a fan-out to issue in a batch (stream_push_prepare, sender.c). Every
 * field is guarded by s->mu, which is always taken after the hub's shard
 * lock and before libmicrohttpd's and libevent's own locks. */
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sse.h"
#include "stream.h"

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
    char user_id[72];           /* "" for the firehose */
    struct MHD_Connection *conn;
    void (*conn_wake)(void *);  /* wakes the thread that runs conn's daemon */
    void *conn_wake_arg;
    struct stream_hub_link hub_link;

    struct frameq queue;        /* frames to send, oldest first */
    size_t head_off;            /* bytes of the head frame already sent */
    struct frameq held;         /* live frames held back during replay */
    size_t bytes;               /* unsent bytes in queue + held */
    size_t max_bytes;

    unsigned replays;           /* replays in progress */
    int has_last_id;
    struct event_id last_id;    /* id of the last frame queued */

    int suspended;              /* parked by stream_read, not yet resumed */
    void (*kick)(void *);       /* set after a hand-off: wakes the socket's writer */
    void *kick_arg;
    int fd;                     /* after a hand-off: the socket, else -1 */
    int chunked;                /* frames go out as HTTP chunks */
    int fd_ready;               /* head sent, socket not full: producers may write */
    int inflight;               /* a prepared write is pending (stream_send_done) */
    int ending;                 /* send what is queued, then end */
    int closed;                 /* the connection is gone */
    const char *end_reason;
};

static atomic_uint_fast64_t stream_next_serial = 1;

static int stream_enqueue_locked(struct stream *s, struct frameq *q,
                                 struct sse_frame *f);

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
frameq_peek(const struct frameq *q)
{
    return q->count ? q->slot[q->head] : NULL;
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
    if (strlen(user_id) >= sizeof(s->user_id))
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
    s->fd = -1;
    s->replays = 1;             /* the opening replay; see stream.h */
    if (hello != NULL && stream_enqueue_locked(s, &s->queue, hello) == -1) {
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
    if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    frameq_clear(&s->queue);
    frameq_clear(&s->held);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void
stream_attach(struct stream *s, struct MHD_Connection *conn,
              void (*wake)(void *), void *wake_arg)
{
    pthread_mutex_lock(&s->mu);
    s->conn = conn;
    s->conn_wake = wake;
    s->conn_wake_arg = wake_arg;
    pthread_mutex_unlock(&s->mu);
}

/* ------------------------------------------------------------- producers */

static enum stream_io stream_flush_locked(struct stream *s);

/* Caller holds s->mu. After a hand-off, writes what is queued straight to
 * the socket when it can take it (one thread hop less per delivery: the
 * writer loop is only woken when the socket is full or the stream ends).
 * Otherwise wakes the MHD worker if the reader parked. MHD documents
 * resume as thread-safe; calling it on a connection that is not suspended
 * is undefined, hence the flag. The daemon runs without an internal
 * thread, so resume only marks the connection: conn_wake tells the
 * thread that runs it (http.c). */
static void
stream_wake_locked(struct stream *s)
{
    if (s->kick != NULL) {
        if (s->closed || s->inflight)
            return;             /* inflight: stream_send_done carries on */
        if (s->fd_ready && stream_flush_locked(s) == STREAM_IO_IDLE)
            return;
        s->fd_ready = 0;
        s->kick(s->kick_arg);         /* thread-safe, coalesces */
        return;
    }
    if (s->suspended && !s->closed && s->conn != NULL) {
        s->suspended = 0;
        MHD_resume_connection(s->conn);
        s->conn_wake(s->conn_wake_arg);
    }
}

/* Caller holds s->mu. */
static void
stream_end_locked(struct stream *s, const char *reason)
{
    if (s->ending || s->closed)
        return;
    s->ending = 1;
    s->end_reason = reason;
    log_info("stream %llu user=%s ending: %s", (unsigned long long)s->serial,
             s->user_id[0] ? s->user_id : "*", reason);
    stream_wake_locked(s);
}

/* Caller holds s->mu. Appends to q within the byte bound; ends the
 * stream when the bound (or memory) runs out. Returns 0 if queued. */
static int
stream_enqueue_locked(struct stream *s, struct frameq *q, struct sse_frame *f)
{
    /* An empty queue always takes one frame, however large: otherwise an
     * event bigger than the bound would end every stream, and again on
     * every replay, and its clients would never get past it. */
    if (s->bytes > 0 && s->bytes + f->len > s->max_bytes) {
        stream_end_locked(s, "slow consumer");
        return -1;
    }
    if (frameq_push(q, sse_frame_ref(f)) == -1) {
        sse_frame_unref(f);
        stream_end_locked(s, "out of memory");
        return -1;
    }
    s->bytes += f->len;
    return 0;
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
stream_queue_locked(struct stream *s, struct sse_frame *f)
{
    if (!stream_is_new_locked(s, f))
        return;
    if (stream_enqueue_locked(s, &s->queue, f) == 0 && f->has_id) {
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
        if (s->replays > 0)
            stream_enqueue_locked(s, &s->held, f[i]);
        else
            stream_queue_locked(s, f[i]);
    }
}

void
stream_push_many(struct stream *s, struct sse_frame *const *f, size_t n)
{
    pthread_mutex_lock(&s->mu);
    if (!s->ending && !s->closed) {
        stream_queue_many_locked(s, f, n);
        stream_wake_locked(s);
    }
    pthread_mutex_unlock(&s->mu);
}

void
stream_push(struct stream *s, struct sse_frame *f)
{
    stream_push_many(s, &f, 1);
}

void
stream_push_heartbeat(struct stream *s, struct sse_frame *f)
{
    pthread_mutex_lock(&s->mu);
    if (!s->ending && !s->closed && s->queue.count == 0) {
        stream_enqueue_locked(s, &s->queue, f);
        stream_wake_locked(s);
    }
    pthread_mutex_unlock(&s->mu);
}

void
stream_begin_replay(struct stream *s, struct event_id *after)
{
    pthread_mutex_lock(&s->mu);
    s->replays++;
    if (s->has_last_id)
        *after = s->last_id;
    else
        memset(after, 0, sizeof(*after));
    pthread_mutex_unlock(&s->mu);
}

void
stream_finish_replay(struct stream *s, struct sse_frame *gap,
                     struct sse_frame *const *frames, size_t n,
                     const struct event_id *start)
{
    struct sse_frame *f;

    pthread_mutex_lock(&s->mu);
    if (s->replays > 0)
        s->replays--;
    if (s->ending || s->closed)
        goto out;
    if (gap != NULL)
        stream_enqueue_locked(s, &s->queue, gap);
    for (size_t i = 0; i < n && !s->ending; i++)
        stream_queue_locked(s, frames[i]);
    if (start != NULL &&
        (!s->has_last_id || eventid_cmp(start, &s->last_id) > 0)) {
        s->last_id = *start;
        s->has_last_id = 1;
    }
    /* Held frames were counted in s->bytes when held; release each
     * through the same dedup test, recounting it if it is queued. */
    while (s->replays == 0 && (f = frameq_pop(&s->held)) != NULL) {
        s->bytes -= f->len;
        if (!s->ending)
            stream_queue_locked(s, f);
        sse_frame_unref(f);
    }
    stream_wake_locked(s);
out:
    pthread_mutex_unlock(&s->mu);
}

void
stream_end(struct stream *s, const char *reason)
{
    pthread_mutex_lock(&s->mu);
    stream_end_locked(s, reason);
    pthread_mutex_unlock(&s->mu);
}

void
stream_close(struct stream *s)
{
    pthread_mutex_lock(&s->mu);
    s->closed = 1;
    s->suspended = 0;
    s->conn = NULL;
    frameq_clear(&s->queue);
    frameq_clear(&s->held);
    s->bytes = 0;
    pthread_mutex_unlock(&s->mu);
}

/* ---------------------------------------------------------------- reader */

ssize_t
stream_read(struct stream *s, char *buf, size_t max)
{
    size_t n = 0;
    struct sse_frame *f;

    pthread_mutex_lock(&s->mu);
    while (n < max && (f = frameq_peek(&s->queue)) != NULL) {
        size_t left = f->len - s->head_off;
        size_t take = left < max - n ? left : max - n;

        memcpy(buf + n, f->bytes + s->head_off, take);
        n += take;
        s->head_off += take;
        if (s->head_off == f->len) {
            frameq_pop(&s->queue);
            s->bytes -= f->len;
            s->head_off = 0;
            sse_frame_unref(f);
        }
    }
    if (n == 0) {
        if (s->ending || s->closed) {
            pthread_mutex_unlock(&s->mu);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        /* Returning 0 without suspending would make MHD spin on us. */
        s->suspended = 1;
        MHD_suspend_connection(s->conn);
    }
    pthread_mutex_unlock(&s->mu);
    return (ssize_t)n;
}

/* -------------------------------------------------------------- hand-off */

void
stream_attach_sink(struct stream *s, int fd, int chunked,
                   void (*kick)(void *), void *arg)
{
    pthread_mutex_lock(&s->mu);
    s->fd = fd;
    s->chunked = chunked;
    s->fd_ready = 0;
    s->kick = kick;
    s->kick_arg = arg;
    pthread_mutex_unlock(&s->mu);
}

/* Caller holds s->mu, s->fd is set and the queue is not empty. Describes
 * one sendmsg of up to STREAM_SEND_FRAMES frames from the head. Each frame
 * goes out as one HTTP chunk: "<hex len>\r\n" frame "\r\n", straight
 * from the shared frame (no copy); head_off counts bytes of the head
 * frame's whole chunk already sent. */
static void
stream_send_build_locked(struct stream *s, struct stream_send *w)
{
    size_t nf = s->queue.count < STREAM_SEND_FRAMES ? s->queue.count : STREAM_SEND_FRAMES;
    size_t skip = s->head_off;
    int chunked = s->chunked;
    size_t cnt = 0;

    w->s = s;
    w->fd = s->fd;
    w->frames = nf;
    w->total = 0;
    for (size_t i = 0; i < nf; i++) {
        struct sse_frame *f = s->queue.slot[(s->queue.head + i) & (s->queue.cap - 1)];
        const char *seg[3];
        size_t len[3];

        w->plen[i] = chunked ? (size_t)snprintf(w->prefix[i], sizeof(w->prefix[i]), "%zx\r\n", f->len) : 0;
        seg[0] = w->prefix[i];
        len[0] = w->plen[i];
        seg[1] = f->bytes;
        len[1] = f->len;
        seg[2] = "\r\n";
        len[2] = chunked ? 2 : 0;
        for (int k = 0; k < 3; k++) {
            if (skip >= len[k]) {
                skip -= len[k];
                continue;
            }
            w->iov[cnt].iov_base = (void *)(uintptr_t)(seg[k] + skip);
            w->iov[cnt].iov_len = len[k] - skip;
            w->total += len[k] - skip;
            skip = 0;
            cnt++;
        }
    }
    memset(&w->mh, 0, sizeof(w->mh));
    w->mh.msg_iov = w->iov;
    w->mh.msg_iovlen = cnt;
}

/* Caller holds s->mu. The write w sent n bytes: drops every frame whose
 * whole chunk is now sent. Returns 1 if all of w went out. */
static int
stream_send_apply_locked(struct stream *s, const struct stream_send *w, size_t n)
{
    size_t left = n + s->head_off;
    size_t extra = s->chunked ? 2 : 0;

    for (size_t i = 0; i < w->frames; i++) {
        struct sse_frame *f = frameq_peek(&s->queue);
        size_t clen = w->plen[i] + f->len + extra;

        if (left < clen) {
            s->head_off = left;
            break;
        }
        left -= clen;
        frameq_pop(&s->queue);
        s->bytes -= f->len;
        s->head_off = 0;
        sse_frame_unref(f);
    }
    return n == w->total;
}

/* Caller holds s->mu and s->fd is set. */
static enum stream_io
stream_flush_locked(struct stream *s)
{
    struct stream_send w;
    enum stream_io rc = STREAM_IO_IDLE;

    while (s->queue.count > 0 && !s->closed) {
        ssize_t n;

        stream_send_build_locked(s, &w);
        /* sendmsg, not writev: a socket call skips the file layer
         * (vfs_writev, fdget_pos: about 9% of a fan-out's CPU in perf)
         * and MSG_NOSIGNAL makes a gone client an error, not SIGPIPE. */
        n = sendmsg(w.fd, &w.mh, MSG_NOSIGNAL);
        if (n < 0) {
            rc = errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR
                     ? STREAM_IO_BLOCKED : STREAM_IO_ERROR;
            break;
        }
        if (!stream_send_apply_locked(s, &w, (size_t)n)) {
            rc = STREAM_IO_BLOCKED;     /* the socket buffer is full */
            break;
        }
    }
    if (rc == STREAM_IO_IDLE && (s->ending || s->closed))
        rc = STREAM_IO_END;
    return rc;
}

int
stream_push_prepare(struct stream *s, struct sse_frame *const *f, size_t n,
                    struct stream_send *w)
{
    int prepared = 0;

    pthread_mutex_lock(&s->mu);
    if (!s->ending && !s->closed) {
        stream_queue_many_locked(s, f, n);
        if (s->kick != NULL && s->fd_ready && !s->inflight && s->queue.count > 0) {
            stream_send_build_locked(s, w);
            s->inflight = 1;
            prepared = 1;
        } else {
            stream_wake_locked(s);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return prepared;
}

void
stream_send_done(struct stream_send *w, ssize_t res)
{
    struct stream *s = w->s;

    pthread_mutex_lock(&s->mu);
    s->inflight = 0;
    if (!s->closed) {
        if (res >= 0 && stream_send_apply_locked(s, w, (size_t)res)) {
            stream_wake_locked(s);      /* what came meanwhile, or the end */
        } else {
            /* Full or failed: the writer loop waits for room, or meets
             * the error itself and closes. */
            s->fd_ready = 0;
            s->kick(s->kick_arg);
        }
    }
    pthread_mutex_unlock(&s->mu);
}

enum stream_io
stream_flush_sink(struct stream *s)
{
    enum stream_io rc;

    pthread_mutex_lock(&s->mu);
    if (s->inflight) {
        /* A prepared write is pending; its stream_send_done carries on. */
        pthread_mutex_unlock(&s->mu);
        return STREAM_IO_IDLE;
    }
    rc = s->closed ? STREAM_IO_END : stream_flush_locked(s);
    s->fd_ready = rc == STREAM_IO_IDLE;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ------------------------------------------------------------- accessors */

const char *
stream_user_id(const struct stream *s)
{
    return s->user_id;
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
