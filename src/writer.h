/* writer.h -- the loops that own handed-off streams: a few libevent
 * threads, each watching its streams' sockets for room to write and for
 * the client leaving, beating each stream's heartbeat, ending a stream
 * whose client stopped reading, and tearing each stream down when it
 * ends. */
#ifndef SSEGATE_WRITER_H
#define SSEGATE_WRITER_H

#include <stddef.h>

struct config;
struct hub;
struct stream;
struct writers;

/* Starts cfg->writer_threads writer loops, with cfg's heartbeat period
 * and write timeout. Borrows cfg and hub (for hub_drop_stream). Returns
 * NULL when out of memory or threads cannot start. */
struct writers *
writers_start(const struct config *cfg, struct hub *hub);

/* Stops the loops (joins them) and drops every stream they still own
 * (STREAM_END_SHUTDOWN). NULL is ignored. */
void
writers_stop(struct writers *ws);

/* Hands a started stream over: fd (taken, non-blocking), head (the HTTP
 * response head, copied; written before any frame), chunked (frames as
 * HTTP/1.1 chunks), and the caller's reference to s, which a loop owns
 * from now on. Returns 0; on failure returns -1 having closed fd and
 * dropped s (STREAM_END_OUT_OF_MEMORY). Any thread. */
int
writers_attach(struct writers *ws, struct stream *s, int fd, int chunked,
               const char *head, size_t head_len);

#endif
