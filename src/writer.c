/* writer.c -- the writer loops. Each loop owns the streams attached to it
 * (one reference each, in a struct writer_conn with its events) from
 * writers_attach until it drops them through hub_drop_stream, the one
 * teardown. A loop writes a stream's response head; after that producers
 * write frames straight to the socket (stream.c) and the loop is woken
 * (wire_wake) only when the socket is full, broken or the stream ends.
 * It also sees a client disconnect at once (EV_READ), ends a stream whose
 * client stopped reading (no byte taken for STREAM_WRITE_TIMEOUT_SECS
 * while output waits), and beats each stream's heartbeat on the stream's
 * own timer, so heartbeats are spread over time and never hold up the
 * main loop's deliveries. A torn-down conn is freed later, by the loop's
 * reaper, never inside its own callback. Owns the heartbeat frame. */
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "hub.h"
#include "log.h"
#include "sse.h"
#include "stream.h"
#include "writer.h"

/* Heartbeats are SSE comment lines: EventSource ignores them, so they
 * keep proxies from closing an idle stream without moving Last-Event-ID,
 * and a client that vanished without a FIN is found when one fails. No
 * blank line follows: a comment needs none, and lenient clients
 * (@microsoft/fetch-event-source, extended-eventsource) dispatch a blank
 * line after a comment as a message with data "". Every event frame ends
 * with its own blank line, so a comment between two events is harmless. */
static const char writer_heartbeat_bytes[] = ": ping\n";
/* The last event of a stream whose token expired (secure mode). No id:
 * the client's Last-Event-ID stays the last event it got, so it reopens
 * with a fresh token from there and misses nothing. */
static const char writer_expired_type[] = "token-expired";
static const char writer_expired_data[] = "{\"type\":\"token-expired\"}";

struct writer {
    pthread_t thread;
    struct event_base *base;
    struct event *keepalive;    /* keeps the loop running with no streams */
    struct event *reap;         /* frees the conns on `dead` */
    struct writer_conn *conns;  /* this loop's live conns */
    struct writer_conn *dead;   /* torn down, waiting to be freed */
    struct hub *hub;
    struct sse_frame *heartbeat;    /* borrowed from struct writers */
    struct sse_frame *expired;      /* borrowed from struct writers */
    unsigned heartbeat_ms;
    unsigned write_timeout_ms;
    struct stream_beat_pace pace;   /* spreads heartbeats due together */
    int started;
};

struct writers {
    struct writer *w;
    unsigned n;
    unsigned next;              /* round robin; a race only skews balance */
    struct sse_frame *heartbeat;    /* owned; shared by every stream */
    struct sse_frame *expired;      /* owned; the token-expired event */
};

struct writer_conn {
    struct writer *w;
    struct writer_conn *prev, *next;    /* in w->conns, or next in w->dead */
    struct stream *s;           /* owned reference, until torn down */
    int fd;                     /* until attached: owned; then the stream's */
    int chunked;
    char *head;                 /* owned until attached */
    size_t head_len;
    struct event *rev;          /* EOF or reset from the client */
    struct event *wev;          /* the socket has room again */
    struct event *wake;         /* the stream needs its writer */
    struct event *beat;         /* this stream's heartbeat is due */
};

static void
writer_conn_free(struct writer_conn *c)
{
    if (c->rev != NULL)
        event_free(c->rev);
    if (c->wev != NULL)
        event_free(c->wev);
    if (c->wake != NULL)
        event_free(c->wake);
    if (c->beat != NULL)
        event_free(c->beat);
    free(c->head);
    free(c);
}

/* Writer thread. Tears the stream down and queues c for the reaper: the
 * stream is closed first, so no producer wakes c again, and then every
 * event of c is made inactive, so none runs before the reaper frees c. */
static void
writer_conn_close(struct writer_conn *c, enum stream_end why)
{
    struct writer *w = c->w;

    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    /* Before the socket can close (with the stream's last reference). */
    event_del(c->rev);
    event_del(c->wev);
    event_del(c->beat);
    hub_drop_stream(w->hub, c->s, why);
    c->s = NULL;
    event_del(c->wake);
    c->prev = NULL;
    c->next = w->dead;
    w->dead = c;
    event_active(w->reap, EV_TIMEOUT, 0);
}

static void
writer_on_reap(evutil_socket_t fd, short what, void *arg)
{
    struct writer *w = arg;

    (void)fd;
    (void)what;
    while (w->dead != NULL) {
        struct writer_conn *c = w->dead;

        w->dead = c->next;
        writer_conn_free(c);
    }
}

static struct timeval
writer_tv(int64_t ms)
{
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

    return tv;
}

/* Writer thread: the socket has room, or the stream needs its writer, or
 * (EV_TIMEOUT) the socket took nothing for the write timeout. The
 * deadline runs from the stream's own record of progress, not from this
 * call, so wake-ups by producers while the socket is full do not push it
 * back. */
static void
writer_on_write(evutil_socket_t fd, short what, void *arg)
{
    struct writer_conn *c = arg;
    int64_t stalled;
    struct timeval tv;

    (void)fd;
    (void)what;
    switch (stream_flush(c->s)) {
    case STREAM_IO_IDLE:
        return;
    case STREAM_IO_BLOCKED:
        stalled = stream_stalled_ms(c->s, clock_coarse_ms());
        if (stalled >= (int64_t)c->w->write_timeout_ms) {
            writer_conn_close(c, STREAM_END_SLOW_CONSUMER);
            return;
        }
        tv = writer_tv((int64_t)c->w->write_timeout_ms - stalled);
        event_add(c->wev, &tv);
        return;
    case STREAM_IO_END:
        writer_conn_close(c, stream_end_reason(c->s));
        return;
    case STREAM_IO_ERROR:
        writer_conn_close(c, STREAM_END_CLIENT);
        return;
    }
}

/* Writer thread: the stream's heartbeat timer, which is also its token's
 * expiry timer (one timer per stream, not two). The stream decides
 * whether it is due (it carried nothing for a period) and when to ask
 * again; each stream is due at its own time, so a loop sends heartbeats
 * a few at a time rather than to every stream at once. An expiry is not
 * paced: it is due at one moment for one stream. */
static void
writer_on_beat(evutil_socket_t fd, short what, void *arg)
{
    struct writer_conn *c = arg;
    struct writer *w = c->w;
    int64_t now = clock_coarse_ms();
    unsigned wait, expiry;
    struct timeval tv;

    (void)fd;
    (void)what;
    if ((expiry = stream_expire(c->s, w->expired, now, w->heartbeat_ms)) == 0)
        return;                 /* ending: its writer tears it down */
    /* Over this loop's budget for now: put off, not skipped. */
    if ((wait = stream_heartbeat_pace(&w->pace, now)) == 0 &&
        (wait = stream_heartbeat(c->s, w->heartbeat, now, w->heartbeat_ms)) == 0)
        return;
    tv = writer_tv(wait < expiry ? wait : expiry);
    evtimer_add(c->beat, &tv);
}

/* Clients send nothing on a stream; a read of 0 or an error means it is
 * gone, found at once rather than at the next heartbeat. */
static void
writer_on_read(evutil_socket_t fd, short what, void *arg)
{
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);

    (void)what;
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        writer_conn_close(arg, STREAM_END_CLIENT);
}

/* Writer thread: c joins this loop; the stream takes the socket over and
 * its first write (the head) happens here too. */
static void
writer_on_attach(evutil_socket_t fd, short what, void *arg)
{
    struct writer_conn *c = arg;
    struct writer *w = c->w;
    struct timeval beat;
    unsigned first;

    (void)fd;
    (void)what;
    c->next = w->conns;
    if (w->conns != NULL)
        w->conns->prev = c;
    w->conns = c;
    if (stream_attach(c->s, c->fd, c->chunked, c->head, c->head_len, c->wake) == -1) {
        close(c->fd);
        writer_conn_close(c, STREAM_END_OUT_OF_MEMORY);
        return;
    }
    free(c->head);
    c->head = NULL;
    event_add(c->rev, NULL);
    /* A token that expired meanwhile ends the stream after its hello. */
    if ((first = stream_expire(c->s, w->expired, clock_coarse_ms(), w->heartbeat_ms)) > 0) {
        beat = writer_tv(first);
        evtimer_add(c->beat, &beat);
    }
    writer_on_write(-1, 0, c);
}

int
writers_attach(struct writers *ws, struct stream *s, int fd, int chunked,
               const char *head, size_t head_len)
{
    struct writer *w = &ws->w[__atomic_fetch_add(&ws->next, 1, __ATOMIC_RELAXED) % ws->n];
    struct writer_conn *c = calloc(1, sizeof(*c));

    if (c == NULL || (c->head = malloc(head_len)) == NULL)
        goto err;
    memcpy(c->head, head, head_len);
    c->head_len = head_len;
    c->w = w;
    c->s = s;
    c->fd = fd;
    c->chunked = chunked;
    c->rev = event_new(w->base, fd, EV_READ | EV_PERSIST, writer_on_read, c);
    c->wev = event_new(w->base, fd, EV_WRITE, writer_on_write, c);
    c->wake = event_new(w->base, -1, 0, writer_on_write, c);
    c->beat = evtimer_new(w->base, writer_on_beat, c);
    if (c->rev == NULL || c->wev == NULL || c->wake == NULL || c->beat == NULL)
        goto err;
    /* Joins on the writer's own thread: one owner for w->conns. */
    if (event_base_once(w->base, -1, EV_TIMEOUT, writer_on_attach, c, NULL) != 0)
        goto err;
    return 0;
err:
    if (c != NULL)
        writer_conn_free(c);
    close(fd);
    hub_drop_stream(w->hub, s, STREAM_END_OUT_OF_MEMORY);
    return -1;
}

static void
writer_on_keepalive(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static void *
writer_main(void *arg)
{
    struct writer *w = arg;

    event_base_dispatch(w->base);
    return NULL;
}

struct writers *
writers_start(const struct config *cfg, struct hub *hub)
{
    unsigned nthreads = cfg->writer_threads;
    struct writers *ws = calloc(1, sizeof(*ws));
    struct timeval hour = { 3600, 0 };

    if (ws == NULL || (ws->w = calloc(nthreads, sizeof(*ws->w))) == NULL) {
        free(ws);
        return NULL;
    }
    ws->n = nthreads;
    if ((ws->heartbeat = sse_frame_new_raw(writer_heartbeat_bytes,
                                           sizeof(writer_heartbeat_bytes) - 1)) == NULL ||
        (ws->expired = sse_frame_new_event(NULL, writer_expired_type, writer_expired_data,
                                           sizeof(writer_expired_data) - 1)) == NULL) {
        writers_stop(ws);
        return NULL;
    }
    for (unsigned i = 0; i < nthreads; i++) {
        struct writer *w = &ws->w[i];

        w->hub = hub;
        w->heartbeat = ws->heartbeat;
        w->expired = ws->expired;
        w->heartbeat_ms = cfg->heartbeat_secs * 1000u;
        w->write_timeout_ms = cfg->stream_write_timeout_secs * 1000u;
        if ((w->base = event_base_new()) == NULL ||
            (w->keepalive = event_new(w->base, -1, EV_PERSIST, writer_on_keepalive, NULL)) == NULL ||
            (w->reap = event_new(w->base, -1, 0, writer_on_reap, w)) == NULL ||
            event_add(w->keepalive, &hour) == -1 ||
            pthread_create(&w->thread, NULL, writer_main, w) != 0) {
            writers_stop(ws);
            return NULL;
        }
        w->started = 1;
    }
    return ws;
}

void
writers_stop(struct writers *ws)
{
    if (ws == NULL)
        return;
    for (unsigned i = 0; i < ws->n; i++) {
        struct writer *w = &ws->w[i];

        if (w->started) {
            event_base_loopexit(w->base, NULL);
            pthread_join(w->thread, NULL);
            /* The loop is gone and this thread owns its conns now; a
             * pass here runs the attaches still scheduled, so that
             * their streams are dropped below rather than leaked. */
            event_base_loop(w->base, EVLOOP_NONBLOCK);
        }
        while (w->conns != NULL)
            writer_conn_close(w->conns, STREAM_END_SHUTDOWN);
        writer_on_reap(-1, 0, w);
        if (w->reap != NULL)
            event_free(w->reap);
        if (w->keepalive != NULL)
            event_free(w->keepalive);
        if (w->base != NULL)
            event_base_free(w->base);
    }
    free(ws->w);
    sse_frame_unref(ws->heartbeat);
    sse_frame_unref(ws->expired);
    free(ws);
}
