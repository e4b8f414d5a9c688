/* sink.c -- the writer loops of hand-off mode. Each loop owns the sinks
 * attached to it: their socket, their events and one stream reference,
 * until sink_close(). A loop writes a stream's response head; after that
 * producers write frames straight to the socket (stream.c) and the loop is
 * woken through the stream's kick only when the socket is full, broken or
 * the stream ends (libevent coalesces wake-ups). It also sees a client
 * disconnect at once (EV_READ). */
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hub.h"
#include "log.h"
#include "sink.h"
#include "stream.h"

struct writer {
    pthread_t thread;
    struct event_base *base;
    struct event *keepalive;    /* keeps the loop running with no sinks */
    struct sink *sinks;         /* this loop's sinks, for sinks_stop */
    int started;
};

struct sinks {
    struct hub *hub;
    struct writer *w;
    unsigned n;
    unsigned next;              /* round robin; a race only skews balance */
};

struct sink {
    struct sinks *ks;
    struct writer *w;
    struct sink *prev, *next;   /* in w->sinks; writer thread only */
    struct stream *s;
    int fd;
    int chunked;
    struct event *rev;          /* EOF or reset from the client */
    struct event *wev;          /* the socket has room again */
    struct event *kick;         /* a producer queued something */
    char *head;                 /* the response head not yet written */
    size_t head_len, head_off;
};

/* Writer thread. Releases everything the sink owns. */
static void
sink_close(struct sink *k, const char *reason)
{
    struct writer *w = k->w;

    hub_remove(k->ks->hub, k->s);
    stream_close(k->s);         /* no producer reaches the kick after this */
    log_info("stream %llu user=%s closed: %s",
             (unsigned long long)stream_serial(k->s),
             stream_user_id(k->s)[0] ? stream_user_id(k->s) : "*", reason);
    if (k->prev != NULL)
        k->prev->next = k->next;
    else
        w->sinks = k->next;
    if (k->next != NULL)
        k->next->prev = k->prev;
    event_free(k->rev);
    event_free(k->wev);
    event_free(k->kick);
    close(k->fd);
    stream_unref(k->s);
    free(k->head);
    free(k);
}

/* Writer thread: the head first, then frames, then the end. */
static void
sink_flush(struct sink *k)
{
    while (k->head_off < k->head_len) {
        ssize_t n = send(k->fd, k->head + k->head_off, k->head_len - k->head_off,
                         MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                event_add(k->wev, NULL);
                return;
            }
            sink_close(k, "write failed");
            return;
        }
        k->head_off += (size_t)n;
    }
    switch (stream_flush_sink(k->s)) {
    case STREAM_IO_IDLE:
        return;
    case STREAM_IO_BLOCKED:
        event_add(k->wev, NULL);
        return;
    case STREAM_IO_END:
        /* Best effort: a clean end of the chunked body, then FIN. */
        if (k->chunked)
            (void)!send(k->fd, "0\r\n\r\n", 5, MSG_NOSIGNAL);
        shutdown(k->fd, SHUT_WR);
        sink_close(k, "ended");
        return;
    case STREAM_IO_ERROR:
        sink_close(k, "client gone");
        return;
    }
}

static void
sink_on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sink_flush(arg);
}

/* Clients send nothing on a stream; a read of 0 or an error means it is
 * gone, found at once rather than at the next heartbeat. */
static void
sink_on_read(evutil_socket_t fd, short what, void *arg)
{
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);

    (void)what;
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        sink_close(arg, "client closed");
}

/* Any thread, under the stream's lock. */
static void
sink_kick(void *arg)
{
    struct sink *k = arg;

    event_active(k->kick, EV_WRITE, 0);
}

/* The first flush happens on the writer thread too. */
static void
sink_on_attach(evutil_socket_t fd, short what, void *arg)
{
    struct sink *k = arg;
    struct writer *w = k->w;

    (void)fd;
    (void)what;
    k->next = w->sinks;
    if (w->sinks != NULL)
        w->sinks->prev = k;
    w->sinks = k;
    event_add(k->rev, NULL);
    stream_attach_sink(k->s, k->fd, k->chunked, sink_kick, k);
    sink_flush(k);
}

int
sinks_attach(struct sinks *ks, struct stream *s, int fd, int chunked,
             const char *head, size_t head_len)
{
    struct writer *w = &ks->w[__atomic_fetch_add(&ks->next, 1, __ATOMIC_RELAXED) % ks->n];
    struct sink *k = calloc(1, sizeof(*k));

    if (k == NULL || (k->head = malloc(head_len)) == NULL)
        goto err;
    memcpy(k->head, head, head_len);
    k->head_len = head_len;
    k->ks = ks;
    k->w = w;
    k->s = s;
    k->fd = fd;
    k->chunked = chunked;
    k->rev = event_new(w->base, fd, EV_READ | EV_PERSIST, sink_on_read, k);
    k->wev = event_new(w->base, fd, EV_WRITE, sink_on_write, k);
    k->kick = event_new(w->base, -1, 0, sink_on_write, k);
    if (k->rev == NULL || k->wev == NULL || k->kick == NULL)
        goto err;
    /* Register on the writer's own thread: one owner for w->sinks. */
    if (event_base_once(w->base, -1, EV_TIMEOUT, sink_on_attach, k, NULL) != 0)
        goto err;
    return 0;
err:
    if (k != NULL) {
        if (k->rev != NULL)
            event_free(k->rev);
        if (k->wev != NULL)
            event_free(k->wev);
        if (k->kick != NULL)
            event_free(k->kick);
        free(k->head);
        free(k);
    }
    hub_remove(ks->hub, s);
    stream_close(s);
    stream_unref(s);
    close(fd);
    return -1;
}

static void
sink_on_keepalive(evutil_socket_t fd, short what, void *arg)
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
    while (w->sinks != NULL)
        sink_close(w->sinks, "server stopped");
    return NULL;
}

struct sinks *
sinks_start(unsigned nthreads, struct hub *hub)
{
    struct sinks *ks = calloc(1, sizeof(*ks));
    struct timeval hour = { 3600, 0 };

    if (ks == NULL || (ks->w = calloc(nthreads, sizeof(*ks->w))) == NULL) {
        free(ks);
        return NULL;
    }
    ks->hub = hub;
    ks->n = nthreads;
    for (unsigned i = 0; i < nthreads; i++) {
        struct writer *w = &ks->w[i];

        if ((w->base = event_base_new()) == NULL ||
            (w->keepalive = event_new(w->base, -1, EV_PERSIST, sink_on_keepalive, NULL)) == NULL ||
            event_add(w->keepalive, &hour) == -1 ||
            pthread_create(&w->thread, NULL, writer_main, w) != 0) {
            sinks_stop(ks);
            return NULL;
        }
        w->started = 1;
    }
    return ks;
}

void
sinks_stop(struct sinks *ks)
{
    if (ks == NULL)
        return;
    for (unsigned i = 0; i < ks->n; i++) {
        struct writer *w = &ks->w[i];

        if (w->started) {
            event_base_loopexit(w->base, NULL);
            pthread_join(w->thread, NULL);
        }
        if (w->keepalive != NULL)
            event_free(w->keepalive);
        if (w->base != NULL)
            event_base_free(w->base);
    }
    free(ks->w);
    free(ks);
}
