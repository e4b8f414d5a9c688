/* acceptor.c -- the listening socket. Owns it and its libevent listener on
 * the main loop; every accepted socket goes to the callback (http.c hands
 * it to the HTTP thread pool, which then owns it).
 *
 * Why not let libmicrohttpd accept: with a thread pool, 0.9.75's workers
 * share the listening socket and whichever wakes first accepts up to ten
 * connections in a row, so a client that opens its few keep-alive
 * connections at once often lands all of them on one worker, and every
 * request on them then waits for that one thread (measured: all eight
 * publisher connections of bench/run on one of eight workers). Accepting
 * here and adding each connection with MHD_add_connection spreads them:
 * libmicrohttpd picks the worker from the socket number. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "acceptor.h"
#include "log.h"

/* Out of file descriptors: stop accepting this long rather than spin on a
 * listening socket that stays readable. */
#define ACCEPTOR_PAUSE_MS 100

struct acceptor {
    struct evconnlistener *lev;
    struct event *resume_ev;
    acceptor_fn fn;
    void *arg;
};

static void
acceptor_on_accept(struct evconnlistener *lev, evutil_socket_t fd,
                   struct sockaddr *sa, int salen, void *arg)
{
    struct acceptor *a = arg;

    (void)lev;
    a->fn(a->arg, fd, sa, (socklen_t)salen);
}

static void
acceptor_on_resume(evutil_socket_t fd, short what, void *arg)
{
    struct acceptor *a = arg;

    (void)fd;
    (void)what;
    evconnlistener_enable(a->lev);
}

static void
acceptor_on_error(struct evconnlistener *lev, void *arg)
{
    struct acceptor *a = arg;
    int err = EVUTIL_SOCKET_ERROR();
    struct timeval pause = { 0, ACCEPTOR_PAUSE_MS * 1000 };

    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        log_warn("accept: %s; pausing %d ms", strerror(err), ACCEPTOR_PAUSE_MS);
        evconnlistener_disable(lev);
        event_add(a->resume_ev, &pause);
        return;
    }
    /* ECONNABORTED and the like: that one client is gone; carry on. */
    log_debug("accept: %s", strerror(err));
}

struct acceptor *
acceptor_start(struct event_base *base, const char *addr, unsigned port,
               int backlog, acceptor_fn fn, void *arg, char *err, size_t errlen)
{
    struct acceptor *a;
    struct sockaddr_in sin;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, addr, &sin.sin_addr) != 1) {
        snprintf(err, errlen, "LISTEN_ADDR: '%s' is not an IPv4 address", addr);
        return NULL;
    }
    if ((a = calloc(1, sizeof(*a))) == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->fn = fn;
    a->arg = arg;
    if ((a->resume_ev = evtimer_new(base, acceptor_on_resume, a)) == NULL) {
        snprintf(err, errlen, "out of memory");
        free(a);
        return NULL;
    }
    a->lev = evconnlistener_new_bind(base, acceptor_on_accept, a,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                         LEV_OPT_CLOSE_ON_EXEC,
                                     backlog, (struct sockaddr *)&sin, sizeof(sin));
    if (a->lev == NULL) {
        snprintf(err, errlen, "cannot listen on %s:%u: %s", addr, port,
                 strerror(errno));
        event_free(a->resume_ev);
        free(a);
        return NULL;
    }
    evconnlistener_set_error_cb(a->lev, acceptor_on_error);
    return a;
}

void
acceptor_stop(struct acceptor *a)
{
    if (a == NULL)
        return;
    evconnlistener_free(a->lev);
    event_free(a->resume_ev);
    free(a);
}
