/* sink.h -- stream sockets after the hand-off from libmicrohttpd
 * (STREAM_HANDOFF=1): a few libevent writer loops that write each
 * stream's shared frames with sendmsg and notice disconnects at once. */
#ifndef SSEGATE_SINK_H
#define SSEGATE_SINK_H

#include <stddef.h>

struct hub;
struct sinks;
struct stream;

/* Starts nthreads writer loops. Borrows hub (to unindex closed streams).
 * Returns NULL when out of memory or threads cannot start. */
struct sinks *
sinks_start(unsigned nthreads, struct hub *hub);

/* Stops the loops (joins them) and closes any socket still open. NULL is
 * ignored. */
void
sinks_stop(struct sinks *ks);

/* Hands the stream's socket over: fd (owned from now on, non-blocking),
 * head (the HTTP response head, copied) and the caller's reference to s.
 * Returns 0; on failure returns -1 having closed fd and dropped the
 * reference. Any thread. */
int
sinks_attach(struct sinks *ks, struct stream *s, int fd, int chunked,
             const char *head, size_t head_len);

#endif
