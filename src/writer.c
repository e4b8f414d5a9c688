/* writer.c -- the writer loops. Each loop owns the streams attached to it
 * (one reference each, in a struct writer_conn with its events) from
 * writers_attach until it drops them through hub_drop_stream, the one
 * teardown. A loop writes a stream's response head; after that producers
 * write frames straight to the socket (stream.c) and the loop is woken
 * (wire_wake) only when the socket is full, broken or the stream ends.
 * It also sees a client disconnect at once (EV_READ). A torn-down conn is
 * freed later, by the loop's reaper, never inside its own callback. */
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hub.h"
#include "log.h"
#include "stream.h"
#include "writer.h"

struct writer {
    pthread_t thread;
    struct event_base *base;
    struct event *keepalive;    /* keeps the loop running with no streams */
    struct event *reap;         /* frees the conns on `dead` */
    struct writer_conn *conns;  /* this loop's live conns */
    struct writer_conn *dead;   /* torn down, waiting to be freed */
    struct hub *hub;
    int started;
};

struct writers {
    struct writer *w;
    unsigned n;
    unsigned next;              /* round robin; a race only skews balance */
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

/* Writer thread: the socket has room, or the stream needs its writer. */
static void
writer_on_write(evutil_socket_t fd, short what, void *arg)
{
    struct writer_conn *c = arg;

    (void)fd;
    (void)what;
    switch (stream_flush(c->s)) {
    case STREAM_IO_IDLE:
        return;
    case STREAM_IO_BLOCKED:
        event_add(c->wev, NULL);
        return;
    case STREAM_IO_END:
        writer_conn_close(c, stream_end_reason(c->s));
        return;
    case STREAM_IO_ERROR:
        writer_conn_close(c, STREAM_END_CLIENT);
        return;
    }
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
    if (c->rev == NULL || c->wev == NULL || c->wake == NULL)
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
writers_start(unsigned nthreads, struct hub *hub)
{
    struct writers *ws = calloc(1, sizeof(*ws));
    struct timeval hour = { 3600, 0 };

    if (ws == NULL || (ws->w = calloc(nthreads, sizeof(*ws->w))) == NULL) {
        free(ws);
        return NULL;
    }
    ws->n = nthreads;
    for (unsigned i = 0; i < nthreads; i++) {
        struct writer *w = &ws->w[i];

        w->hub = hub;
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
    free(ws);
}
