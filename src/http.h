/* http.h -- the HTTP server: libmicrohttpd daemons on threads of ours,
 * routing by a table the caller gives, bounded request bodies, responses,
 * and the narrow interface a handler needs to wait on Redis (suspend,
 * resume) or to take a stream's socket over. Knows nothing of the
 * endpoints; no other module calls libmicrohttpd. */
#ifndef SSEGATE_HTTP_H
#define SSEGATE_HTTP_H

#include <stddef.h>
#include <stdint.h>

struct clients;
struct clients_slot;
struct config;
struct http;
struct http_req;
struct pipeline;

/* What a handler (and every http_send_*) returns. */
enum http_ret {
    HTTP_CLOSE = 0,         /* close the connection (or it was taken over) */
    HTTP_DONE = 1           /* answered, or suspended to answer later */
};

typedef enum http_ret (*http_handler_fn)(struct http_req *r, void *arg);

/* One route. A request's path matches when it equals path, where a "{id}"
 * segment in path matches one segment that the table's id_ok accepts
 * (http_req_param gives it); or, when path is NULL, when match accepts
 * it. A path no route matches is 404; a matched path asked with another
 * method is 405 with Allow. A GET route also answers HEAD (libmicrohttpd
 * drops the body), except with HTTP_ROUTE_NO_HEAD. A POST's body is read
 * whole (at most BODY_MAX_BYTES) before the handler runs; a POST with a
 * body must say Content-Type: application/json (else 415).
 *
 * head, when set, runs as soon as the request's head has arrived, before
 * the body is read or any other check of the route: it either answers
 * (http_send_*: a refusal, after which the body is not read and the
 * connection closes) or returns HTTP_DONE without answering, and the
 * request goes on. For what must be refused before it costs anything
 * (credentials). */
#define HTTP_ROUTE_NO_HEAD 1u
struct http_route {
    const char *path;
    int (*match)(const char *path);
    const char *method;         /* "GET" or "POST" */
    unsigned flags;
    http_handler_fn handler;
    http_handler_fn head;       /* NULL: none */
};

struct http_routes {
    const struct http_route *v;
    size_t n;
    int (*id_ok)(const char *seg, size_t len);
    void *arg;                  /* every handler's arg */
};

/* Starts cfg's HTTP_THREADS threads, each listening on cfg's address and
 * port and each with its pipelined Redis connection. Counts connections
 * per client in clients (MAX_CONNECTIONS_PER_CLIENT). Borrows cfg, routes
 * and clients. Returns NULL with a reason in err. */
struct http *
http_start(const struct config *cfg, const struct http_routes *routes,
           struct clients *clients, char *err, size_t errlen);

/* Stops accepting connections; open ones carry on. */
void
http_quiesce(struct http *h);

/* From now on every answer says Connection: close, so a proxy's pool
 * of kept-alive connections to this instance empties while it drains
 * (a pooled connection closed under a proxy's next request is a 502).
 * Any thread. */
void
http_drain(struct http *h);

/* Connections libmicrohttpd holds on every HTTP thread (a stream's
 * leaves it once taken over). Shutdown waits for them: a request in
 * progress (a write) is answered, and a proxy's idle kept-alive
 * connection is closed by the proxy (which then never sends a request on
 * it), not by us (which could meet a request just sent: a 502). Any
 * thread. */
unsigned
http_connections(struct http *h);

/* Stops the threads and the daemons and frees h: scripts in flight fail,
 * their requests are answered, and every request's state is freed. NULL
 * is ignored. */
void
http_stop(struct http *h);

/* ------------------------------------------------------------ requests */

/* The path, the {id} segment ("" when the route has none), a query
 * parameter, a header or a cookie (NULL when absent; a query parameter
 * given twice, without "=" or with a %00 in its value reads as "", see
 * query.h), the body (NUL-terminated, "" when none), the protocol
 * ("HTTP/1.1"). Valid for the request's life. */
const char *
http_req_path(struct http_req *r);
const char *
http_req_param(struct http_req *r);
const char *
http_req_query(struct http_req *r, const char *name);
/* Every value of a repeatable query parameter (topic), in order:
 * query_each's rules and result. */
int
http_req_query_each(struct http_req *r, const char *name,
                    int (*fn)(const char *value, size_t len, void *arg), void *arg);
const char *
http_req_header(struct http_req *r, const char *name);
const char *
http_req_cookie(struct http_req *r, const char *name);
const char *
http_req_body(struct http_req *r, size_t *len);
int
http_req_is_http10(struct http_req *r);

/* Bytes all request bodies being received hold now, every HTTP thread
 * together (at most MAX_PENDING_BODY_KIB): a gauge for /metrics. */
size_t
http_req_bodies_pending(struct http_req *r);

/* The client's address as text, the key of its limits: the TCP peer, or
 * the address X-Forwarded-For names when the peer is a trusted proxy; an
 * IPv6 client as its /64 ("2001:db8:1:2::/64"); "unknown" if there is
 * none. Valid for the request's life. */
const char *
http_req_client(struct http_req *r);

/* After a successful http_req_take_over: moves the connection's place in
 * its client's count (MAX_CONNECTIONS_PER_CLIENT) into *out (empty when
 * it holds none), so the taken-over socket counts until whoever owns it
 * then gives the place back (stream_hold_client). */
void
http_req_take_client(struct http_req *r, struct clients_slot *out);

/* The request's own state, for a handler that answers later: set once;
 * free_fn(state) runs when the request ends, however it ends. */
void *
http_req_state(struct http_req *r);
void
http_req_set_state(struct http_req *r, void *state, void (*free_fn)(void *));

/* The pipelined Redis connection of the thread running the handler. */
struct pipeline *
http_req_pipeline(struct http_req *r);

/* Parks the request (call from its handler, then return HTTP_DONE): it
 * holds no thread until http_req_resume, after which the handler runs
 * again. Resume on the request's own thread (a pipeline callback). */
void
http_req_suspend(struct http_req *r);
void
http_req_resume(struct http_req *r);

/* Parks the request like http_req_suspend until http_wake is called (from
 * any thread) or deadline_ms (monotonic, clock.h) passes, whichever is
 * first; then the handler runs again (and may wait again). Returns 0, or
 * -1 when the thread is stopping (answer at once). */
int
http_req_wait(struct http_req *r, int64_t deadline_ms);

/* Any thread: resumes every request parked by http_req_wait, on its own
 * thread (writes each HTTP loop's eventfd; nothing else). arg is the
 * struct http. */
void
http_wake(void *arg);

/* Takes the connection over for an event stream ssegate writes itself:
 * *fd gets a non-blocking duplicate of the socket (TCP_NODELAY set),
 * head the response head (200, the event-stream headers and, with
 * CORS_ORIGINS, the same CORS headers as any response; chunked on
 * HTTP/1.1, close-delimited on 1.0), *chunked which of the two. Returns
 * 0, after which the handler must return HTTP_CLOSE (libmicrohttpd then
 * forgets the connection without shutting the socket down), or a
 * negative errno: -EMFILE or -ENFILE when no descriptor is left (the
 * answer then closes the connection, freeing its descriptor). */
#define HTTP_STREAM_HEAD_MAX 512
int
http_req_take_over(struct http_req *r, int *fd, char *head, size_t *head_len,
                   int *chunked);

/* ----------------------------------------------------------- responses */

/* A JSON body (copied), with Location when location is not NULL. */
enum http_ret
http_send_json(struct http_req *r, unsigned status, const char *body,
               size_t len, const char *location);

/* {"error":code,"message":message}; a 405 also gets Allow: allow, a 503
 * Retry-After: 1, a 401 WWW-Authenticate: Bearer realm="ssegate". */
enum http_ret
http_send_error(struct http_req *r, unsigned status, const char *code,
                const char *message, const char *allow);

/* A 401 (RFC 6750 3): http_send_error's body, with WWW-Authenticate:
 * challenge (copied by libmicrohttpd). */
enum http_ret
http_send_challenge(struct http_req *r, const char *challenge, const char *code,
                    const char *message);
/* Like http_send_error, with Retry-After: retry_after_s (at least 1):
 * the 429 of a rate limit. */
enum http_ret
http_send_error_retry(struct http_req *r, unsigned status, const char *code,
                      const char *message, unsigned retry_after_s);

/* A text body (copied) of content_type, not cached. */
enum http_ret
http_send_text(struct http_req *r, unsigned status, const char *content_type,
               const char *body, size_t len);

/* A static file (not copied: data must outlive the server). */
/* A stream that ends at once, for an instance that is stopping: 200
 * text/event-stream with body (a "retry:" line) and Connection: close.
 * EventSource reads it as a stream that ended, and reconnects after the
 * retry (behind a proxy, to another instance); a 503 would stop it for
 * good. */
enum http_ret
http_send_stream_end(struct http_req *r, const char *body, size_t len);

enum http_ret
http_send_static(struct http_req *r, const char *content_type,
                 const void *data, size_t len);

#endif
