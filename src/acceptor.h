/* acceptor.h -- the listening socket, accepted on the main libevent loop so
 * that connections are spread evenly over the HTTP threads (see
 * acceptor.c for why libmicrohttpd does not accept itself). */
#ifndef SSEGATE_ACCEPTOR_H
#define SSEGATE_ACCEPTOR_H

#include <stddef.h>
#include <sys/socket.h>

struct acceptor;
struct event_base;

/* Gets each accepted socket (non-blocking, close-on-exec) and owns it
 * from then on. Runs on the loop's thread. */
typedef void (*acceptor_fn)(void *arg, int fd, struct sockaddr *sa,
                            socklen_t salen);

/* Listens on addr (IPv4) and port with SO_REUSEADDR. Returns NULL with a
 * reason in err. */
struct acceptor *
acceptor_start(struct event_base *base, const char *addr, unsigned port,
               int backlog, acceptor_fn fn, void *arg, char *err, size_t errlen);

/* Closes the listening socket; accepted sockets are not touched. NULL is
 * ignored. Loop thread only. */
void
acceptor_stop(struct acceptor *a);

#endif
