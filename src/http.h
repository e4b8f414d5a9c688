/* http.h -- the libmicrohttpd daemon: listening, routing, request bodies
 * and responses. Handlers live in api.c. */
#ifndef SSEGATE_HTTP_H
#define SSEGATE_HTTP_H

#include <stddef.h>

struct app;
struct http;
struct MHD_Connection;
struct stream;

/* Starts HTTP_THREADS epoll threads, each listening on cfg's address and
 * port. Returns NULL with a reason in err. Borrows app. */
struct http *
http_start(struct app *app, char *err, size_t errlen);

/* Stops accepting connections; open ones carry on. */
void
http_quiesce(struct http *h);

/* Stops the daemon and frees h. Every stream must have ended first:
 * libmicrohttpd aborts on a connection still suspended. NULL is ignored. */
void
http_stop(struct http *h);

/* Response helpers for api.c; each returns MHD_YES or MHD_NO (as int so
 * this header needs no libmicrohttpd include). body is copied. */
int
http_send_json(struct MHD_Connection *conn, unsigned status,
               const char *body, size_t len, const char *location);

/* {"error":code,"message":message}; a 405 also gets Allow: allow, a 503
 * Retry-After: 1. */
int
http_send_error(struct MHD_Connection *conn, unsigned status,
                const char *code, const char *message, const char *allow);

/* Answers with the event stream s: 200 and the SSE headers, the body read
 * from s. Always takes the caller's reference to s: the response releases
 * it (unindexing s from its hub) when MHD is done, or at once on failure. */
int
http_send_stream(struct MHD_Connection *conn, struct stream *s);

#endif
