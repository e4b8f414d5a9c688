/* evpipe.c -- a pipeline driven by a libevent loop (evpipe.h). Owns the
 * pipeline and the two events that drive it: one on its socket, one
 * timer for its deadlines and its owner's. */
#include <event2/event.h>
#include <poll.h>
#include <stdlib.h>

#include "evpipe.h"
#include "pipeline.h"

struct evpipe {
    struct event_base *base;
    struct pipeline *pipe;
    evpipe_pump_fn pump;
    void *arg;
    struct event *io_ev;            /* the pipeline's socket */
    struct event *timer_ev;         /* its deadlines, the owner's wake */
    int io_fd;                      /* what io_ev watches (-1: nothing) */
    short io_events;
    unsigned io_conn;               /* pipeline_conn_serial of io_fd */
};

static void
evpipe_on_io(evutil_socket_t fd, short what, void *arg)
{
    struct evpipe *ep = arg;
    short rev = (short)(((what & EV_READ) ? POLLIN : 0) | ((what & EV_WRITE) ? POLLOUT : 0));

    (void)fd;
    pipeline_handle(ep->pipe, rev);
    ep->pump(ep->arg);
}

static void
evpipe_on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct evpipe *ep = arg;

    (void)fd;
    (void)what;
    pipeline_handle(ep->pipe, 0);       /* deadlines, PING */
    ep->pump(ep->arg);
}

struct evpipe *
evpipe_new(struct event_base *base, const struct config *cfg, evpipe_pump_fn pump,
           void *arg)
{
    struct evpipe *ep = calloc(1, sizeof(*ep));

    if (ep == NULL)
        return NULL;
    ep->base = base;
    ep->pump = pump;
    ep->arg = arg;
    ep->io_fd = -1;
    if ((ep->pipe = pipeline_new(cfg)) == NULL ||
        (ep->io_ev = event_new(base, -1, 0, evpipe_on_io, ep)) == NULL ||
        (ep->timer_ev = evtimer_new(base, evpipe_on_timer, ep)) == NULL) {
        evpipe_free(ep);
        return NULL;
    }
    return ep;
}

void
evpipe_free(struct evpipe *ep)
{
    if (ep == NULL)
        return;
    pipeline_free(ep->pipe);
    if (ep->io_ev != NULL)
        event_free(ep->io_ev);
    if (ep->timer_ev != NULL)
        event_free(ep->timer_ev);
    free(ep);
}

struct pipeline *
evpipe_pipeline(struct evpipe *ep)
{
    return ep->pipe;
}

/* A new connection may reuse the number of a closed one, which epoll
 * forgot: the socket is registered again whenever the connection
 * changes, not only when the number does. */
void
evpipe_arm(struct evpipe *ep, int wake_ms)
{
    int fd, ms;
    short pev, ev;
    unsigned conn;

    pipeline_flush(ep->pipe);
    fd = pipeline_fd(ep->pipe);
    pev = pipeline_events(ep->pipe);
    ev = (short)(((pev & POLLIN) ? EV_READ : 0) | ((pev & POLLOUT) ? EV_WRITE : 0));
    conn = pipeline_conn_serial(ep->pipe);
    ms = pipeline_timeout_ms(ep->pipe);
    if (fd != ep->io_fd || ev != ep->io_events || conn != ep->io_conn) {
        event_del(ep->io_ev);
        ep->io_fd = -1;
        if (fd >= 0 && ev != 0 &&
            event_assign(ep->io_ev, ep->base, fd, (short)(ev | EV_PERSIST),
                         evpipe_on_io, ep) == 0 && event_add(ep->io_ev, NULL) == 0)
            ep->io_fd = fd;
        ep->io_events = ev;
        ep->io_conn = conn;
    }
    if (wake_ms >= 0 && (ms < 0 || wake_ms < ms))
        ms = wake_ms;
    if (ms < 0) {
        evtimer_del(ep->timer_ev);
    } else {
        struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

        evtimer_add(ep->timer_ev, &tv);
    }
}
