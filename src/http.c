/* http.c -- the HTTP server. Owns the libmicrohttpd daemons, the threads
 * that run them, each thread's pipelined Redis connection, and each
 * request (struct http_req: route, bounded body buffer, the handler's
 * state) from its first access-handler call to MHD's completion callback.
 * Routes by the caller's table and builds every response, the event
 * stream's head included; knows nothing of the endpoints.
 *
 * Threading: HTTP_THREADS daemons, each with its own listening socket on
 * the shared address (SO_REUSEPORT), its own epoll set and one thread of
 * ours that runs it (http_loop_main), which also drives the thread's
 * pipelined Redis connection (pipeline.c): a handler that waits on Redis
 * suspends its request, and the reply, read on the same thread, resumes
 * it. A handler may also suspend its request until woken or a deadline
 * (http_req_wait: a publish waiting for room): any thread wakes the
 * loops through their eventfds (http_wake), and each loop resumes its
 * own waiting requests. Every call on a request happens on that
 * request's own thread.
 *
 * Each connection (struct http_conn, from libmicrohttpd's accept to its
 * close) carries the deadline by which its request must have arrived
 * (REQUEST_TIMEOUT_MS): libmicrohttpd 0.9.75 only has an idle timeout,
 * which every trickled byte resets.
 *
 * Clients: each request knows its client's address (the TCP peer, or what
 * X-Forwarded-For names when the peer is in TRUSTED_PROXIES) for the
 * handlers' rate limits, and holds a place in that client's count of
 * connections (MAX_CONNECTIONS_PER_CLIENT, clients.c): a direct client's
 * connection from its accept (refused there when the count is full), a
 * proxied client's request from its head (refused 429). A handler that
 * takes a stream's socket over takes its place too (http_req_take_client).
 *
 * CORS (CORS_ORIGINS): every response to an allowed Origin carries its
 * Access-Control-* headers, the event stream's head included, and an
 * OPTIONS request on a known path is a preflight (204); the methods it
 * allows come from the route table, as a 405's Allow does. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "body.h"
#include "clients.h"
#include "clock.h"
#include "config.h"
#include "cors.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"
#include "pipeline.h"
#include "query.h"
#include "strictjson.h"

/* The largest request head (request line and headers) we serve; a
 * larger one is answered 431. Browsers send 1-3 KiB, cookies can make it
 * several times that, and 16 KiB is what Node.js accepts. */
#define HTTP_HEAD_MAX 16384
/* Per-connection memory, libmicrohttpd's pool: its read buffer (which
 * holds the whole head, parsed in place), a record of 56 bytes per header
 * and query parameter, and the reply's head. Room for an HTTP_HEAD_MAX
 * head with two hundred headers; a head that fills it (or some three
 * hundred header lines) is refused by libmicrohttpd itself, with its own
 * 431 (an HTML body) and the connection closed. Past 32 KiB 0.9.75 maps
 * a pool with mmap rather than malloc (memorypool.c, MHD_pool_create):
 * pages never touched cost nothing, and a closed connection's go back to
 * the kernel at once instead of staying in the heap. Bodies are buffered
 * outside it (up to BODY_MAX_BYTES, all of them within
 * MAX_PENDING_BODY_KIB). */
#define HTTP_CONN_MEMORY (2 * HTTP_HEAD_MAX + 4096)
/* Reaps slowloris requests and keep-alive clients that went quiet;
 * a stream leaves libmicrohttpd once its socket is taken over. */
#define HTTP_CONN_TIMEOUT_S 60
#define HTTP_LISTEN_BACKLOG 4096
/* Longest path segment a route's {id} may match. */
#define HTTP_PARAM_MAX 64
/* "GET, HEAD, POST" and the like. */
#define HTTP_ALLOW_MAX 64
/* Most query parameters a request may carry. libmicrohttpd keeps each in
 * the connection's HTTP_CONN_MEMORY (56 bytes a record): about 150 of
 * them exhausted it, and 0.9.75 then answered nothing at all. A stream
 * takes up to MAX_TOPICS_PER_STREAM (32 by default) topics besides its
 * userId, token and lastEventId, so 33 topics get their 400 rather than
 * a 414. */
#define HTTP_QUERY_PARAMS_MAX 48
/* While libmicrohttpd has stopped accepting for want of descriptors, how
 * often the loop runs it again to see whether some are free. */
#define HTTP_ACCEPT_RETRY_MS 100
/* Every X-Forwarded-For line of a request, joined: they all sit in the
 * connection's HTTP_CONN_MEMORY, so they cannot be longer together. */
#define HTTP_XFF_MAX HTTP_CONN_MEMORY
/* How much of a request's target (path and query) its access log line
 * shows. */
#define HTTP_LOG_TARGET_MAX 512

/* One connection, from libmicrohttpd's accept to its close (its socket
 * context): the deadline by which its request must have arrived. Owned
 * by libmicrohttpd's connection; made and freed in http_on_connection. */
struct http_conn {
    TAILQ_ENTRY(http_conn) link;    /* in its loop's arriving list, while armed */
    struct MHD_Connection *conn;
    struct http_loop *loop;
    int64_t deadline_ms;            /* monotonic; 0: not arriving */
    int in_body;                    /* head read, body arriving: 408 possible */
    /* A direct client's place in its count, from the accept to the close
     * (or until a stream takes it). Empty for a trusted proxy's
     * connection, whose requests each hold their own. */
    struct clients_slot slot;
};
TAILQ_HEAD(http_conn_list, http_conn);
TAILQ_HEAD(http_req_list, http_req);

/* Every X-Forwarded-For line of a request, joined with commas. Past the
 * buffer the oldest bytes go: the client is read from the right. */
struct http_xff {
    char buf[HTTP_XFF_MAX];
    size_t len;
};

/* One HTTP thread and the daemon it runs. */
struct http_loop {
    struct http *http;
    struct MHD_Daemon *daemon;
    struct pipeline *pipe;          /* this thread's pipelined Redis scripts */
    pthread_t thread;
    int running;                    /* thread was started: join it */
    /* Requests suspended by http_req_wait, this thread's only. wake_fd
     * (eventfd) is written by any thread (http_wake) while nwaiting > 0;
     * the loop drains it and resumes them all. */
    struct http_req_list waiting;
    atomic_int nwaiting;
    int wake_fd;
    int stopping;                   /* no more waits: the loop is ending */
    /* Connections whose request is still arriving, by deadline (every
     * deadline is now + REQUEST_TIMEOUT_MS, so appending keeps order). */
    struct http_conn_list arriving;
    /* libmicrohttpd said accept() failed for want of descriptors (EMFILE,
     * ENFILE...) and stopped listening; until a connection is accepted
     * again the loop wakes every HTTP_ACCEPT_RETRY_MS to retry. */
    int accept_paused;
    /* The place the accept policy took for the connection libmicrohttpd
     * is starting; its start (http_on_connection) moves it into the
     * connection. Still held after MHD_run returns, the connection failed
     * to start (0.9.75 calls nobody then): given back. */
    struct clients_slot pending;
    struct http_xff xff;            /* the request being identified's */
    /* The connections this daemon holds, counted by http_on_connection
     * (this thread's alone): MHD_get_daemon_info's count takes the
     * daemon's cleanup lock, twice a pass. */
    unsigned nconns;
};

struct http {
    struct http_loop *loop;         /* HTTP_THREADS of them */
    unsigned nloops;
    int stop_fd;                    /* eventfd: readable once http_stop begins */
    int quiesce_fd;                 /* eventfd: readable once http_quiesce ran */
    const struct config *cfg;
    const struct http_routes *routes;
    struct clients *clients;        /* borrowed: connections per client */
    /* Bytes the bodies of requests in progress hold (their buffers, or a
     * Content-Length reserved before its body came), across every HTTP
     * thread; at most body_max. A request adds before it allocates and
     * subtracts when it is freed. */
    atomic_size_t body_bytes;
    size_t body_max;
    /* Connections libmicrohttpd holds, every thread (a stream's leaves
     * it once taken over): shutdown waits for them (http_connections). */
    atomic_uint nconns;
    atomic_int closing;             /* http_drain: every answer closes its connection */
};

struct http_req {
    struct MHD_Connection *conn;
    struct http_loop *loop;
    const struct http_route *route;
    const char *path;               /* MHD's strings, live as long as the request */
    const char *version;
    char param[HTTP_PARAM_MAX + 1];
    char *body;             /* owned; NUL-terminated for convenience */
    size_t len;
    size_t cap;
    size_t reserved;        /* of http.body_bytes; >= cap */
    int too_large;
    int over_budget;        /* its body would pass MAX_PENDING_BODY_KIB */
    int no_fd;              /* a take-over found no descriptor: answer, close */
    const char *challenge;  /* WWW-Authenticate of a 401, when not NULL */
    int answered;           /* a response was queued */
    int close;              /* the answer closes the connection */
    struct http_conn *hc;   /* its connection's deadline; NULL if none */
    void *state;            /* the handler's, freed by state_free */
    void (*state_free)(void *);
    TAILQ_ENTRY(http_req) wait_link;    /* in loop->waiting, while waiting */
    int64_t wait_deadline_ms;       /* monotonic */
    int waiting;
    /* The client: its address as text (the limits' key), and, through a
     * trusted proxy, this request's place in its count. */
    char client[NETADDR_STR_MAX];
    struct clients_slot slot;
    /* CORS: Access-Control-Allow-Origin for this request's Origin (NULL:
     * none), and whether credentials are allowed with it. */
    const char *cors_origin;
    int cors_credentials;
    /* A preflight, answered once the request has wholly arrived (an
     * answer queued with the head would close the connection, and the
     * browser sends its real request next): the path's methods. */
    char preflight[HTTP_ALLOW_MAX];
    /* For its metrics and its access log line (http_req_done). */
    int started;                    /* the access handler has run */
    int query_too_long;             /* http_on_uri cut its query: 414 */
    const char *method;             /* MHD's, live as long as the request */
    unsigned status;                /* the answer's; 0 until answered */
    int64_t start_us;               /* monotonic: when its head was in */
    char target[HTTP_LOG_TARGET_MAX];   /* as sent, its token left out */
    char addr[NETADDR_STR_MAX];     /* the client's own address (not its /64) */
};

/* ------------------------------------------------------------ deadlines */

/* The request on c must arrive (its head, or its body after the head)
 * within REQUEST_TIMEOUT_MS from now. */
static void
http_conn_arm(struct http_conn *c, int in_body)
{
    struct http_loop *l;

    if (c == NULL)
        return;
    l = c->loop;
    if (c->deadline_ms != 0)
        TAILQ_REMOVE(&l->arriving, c, link);
    c->deadline_ms = clock_mono_ms() + (int64_t)l->http->cfg->request_timeout_ms;
    c->in_body = in_body;
    TAILQ_INSERT_TAIL(&l->arriving, c, link);
}

/* The request has arrived (or is answered): no deadline until the next. */
static void
http_conn_disarm(struct http_conn *c)
{
    if (c == NULL || c->deadline_ms == 0)
        return;
    TAILQ_REMOVE(&c->loop->arriving, c, link);
    c->deadline_ms = 0;
}

/* Ends the connections whose request did not arrive in time. There is no
 * libmicrohttpd call to close a connection from outside its callbacks, so
 * we shut its socket down: libmicrohttpd sees the hang-up in this loop's
 * next MHD_run and closes and frees the connection itself. A body that
 * was still arriving is first answered 408 (nothing has been written on
 * that connection yet, so the answer cannot mix with another); a head
 * that never completed gets no answer (there is no request to answer,
 * and it may be an idle keep-alive connection). */
static void
http_loop_expire(struct http_loop *l)
{
    static const char body408[] =
        "{\"error\":\"request_timeout\",\"message\":\"the request did not "
        "arrive within REQUEST_TIMEOUT_MS\"}";
    char resp[512];
    int64_t now = clock_mono_ms();
    struct http_conn *c;

    while ((c = TAILQ_FIRST(&l->arriving)) != NULL && c->deadline_ms <= now) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        int in_body = c->in_body;

        http_conn_disarm(c);
        if (ci == NULL)
            continue;
        if (in_body) {
            int n = snprintf(resp, sizeof(resp),
                             "HTTP/1.1 408 Request Timeout\r\n"
                             "Content-Type: application/json; charset=utf-8\r\n"
                             "Cache-Control: no-store\r\nConnection: close\r\n"
                             "Content-Length: %zu\r\n\r\n%s",
                             sizeof(body408) - 1, body408);

            /* Best effort: a client too slow to send is too slow to
             * deserve a wait for room in its socket. */
            if (n > 0 && (size_t)n < sizeof(resp))
                (void)send(ci->connect_fd, resp, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        (void)shutdown(ci->connect_fd, SHUT_RDWR);
        log_info("http: a request %s did not arrive within %u ms: closed",
                 in_body ? "body" : "head", l->http->cfg->request_timeout_ms);
    }
}

/* How long until the first deadline: -1 when none is armed. */
static int
http_loop_deadline_ms(struct http_loop *l)
{
    struct http_conn *c = TAILQ_FIRST(&l->arriving);
    int64_t left;

    if (c == NULL)
        return -1;
    left = c->deadline_ms - clock_mono_ms();
    return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

/* ------------------------------------------------------------ responses */

/* The CORS headers of every response: with CORS on, each varies on
 * Origin (a cache must not hand one origin's answer to another); an
 * allowed origin gets Access-Control-Allow-Origin, credentials with an
 * exact origin, and the headers a page's script may read. */
static void
http_add_cors(struct http_req *r, struct MHD_Response *resp)
{
    if (!cors_enabled(&r->loop->http->cfg->cors_origins))
        return;
    MHD_add_response_header(resp, "Vary", "Origin");
    if (r->cors_origin == NULL)
        return;
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", r->cors_origin);
    if (r->cors_credentials)
        MHD_add_response_header(resp, "Access-Control-Allow-Credentials", "true");
    MHD_add_response_header(resp, "Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS);
}

static enum http_ret
http_queue(struct http_req *r, unsigned status, struct MHD_Response *resp)
{
    enum MHD_Result ret;

    if (resp == NULL)
        return HTTP_CLOSE;  /* out of memory: MHD closes the connection */
    http_add_cors(r, resp);
    if (atomic_load(&r->loop->http->closing) &&
        MHD_get_response_header(resp, MHD_HTTP_HEADER_CONNECTION) == NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    if (ret == MHD_YES) {
        r->answered = 1;
        r->status = status;
        http_conn_disarm(r->hc);    /* answered: nothing more to wait for */
    }
    return ret == MHD_YES ? HTTP_DONE : HTTP_CLOSE;
}

/* Every JSON answer goes through here: one place for its headers.
 * retry_after: Retry-After in seconds; 0: 1 for a 503, none otherwise. */
static enum http_ret
http_json_response(struct http_req *r, unsigned status, const char *body,
                   size_t len, const char *location, const char *allow,
                   unsigned retry_after)
{
    struct MHD_Response *resp;
    char secs[16];

    resp = MHD_create_response_from_buffer(len, (void *)(uintptr_t)body,
                                           MHD_RESPMEM_MUST_COPY);
    if (resp == NULL)
        return HTTP_CLOSE;
    MHD_add_response_header(resp, "Content-Type",
                            "application/json; charset=utf-8");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (location != NULL)
        MHD_add_response_header(resp, "Location", location);
    if (allow != NULL)
        MHD_add_response_header(resp, "Allow", allow);
    /* RFC 9110 11.6.1: a 401 names the scheme that would be accepted. */
    if (r->challenge != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, r->challenge);
    else if (status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer realm=\"ssegate\"");
    if (retry_after == 0 && status == MHD_HTTP_SERVICE_UNAVAILABLE)
        retry_after = 1;
    if (retry_after > 0) {
        snprintf(secs, sizeof(secs), "%u", retry_after);
        MHD_add_response_header(resp, "Retry-After", secs);
    }
    /* Out of descriptors, a kept-alive connection holds one that a
     * waiting client could use. */
    if (r->no_fd || r->close)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    return http_queue(r, status, resp);
}

enum http_ret
http_send_json(struct http_req *r, unsigned status, const char *body,
               size_t len, const char *location)
{
    return http_json_response(r, status, body, len, location, NULL, 0);
}

/* The body of every error: {"error":code,"message":message}. */
static enum http_ret
http_error_response(struct http_req *r, unsigned status, const char *code,
                    const char *message, const char *allow, unsigned retry_after)
{
    json_object *o = json_object_new_object();
    const char *s = NULL;
    size_t len = 0;
    enum http_ret ret = HTTP_CLOSE;

    if (o == NULL)
        return HTTP_CLOSE;
    if (json_object_object_add(o, "error", json_object_new_string(code)) == 0 &&
        json_object_object_add(o, "message", json_object_new_string(message)) == 0)
        s = json_object_to_json_string_length(
            o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (s != NULL)
        ret = http_json_response(r, status, s, len, NULL, allow, retry_after);
    json_object_put(o);
    return ret;
}

enum http_ret
http_send_challenge(struct http_req *r, const char *challenge, const char *code,
                    const char *message)
{
    enum http_ret ret;

    r->challenge = challenge;
    ret = http_send_error(r, MHD_HTTP_UNAUTHORIZED, code, message, NULL);
    r->challenge = NULL;
    return ret;
}

enum http_ret
http_send_error(struct http_req *r, unsigned status, const char *code,
                const char *message, const char *allow)
{
    return http_error_response(r, status, code, message, allow, 0);
}

enum http_ret
http_send_error_retry(struct http_req *r, unsigned status, const char *code,
                      const char *message, unsigned retry_after_s)
{
    return http_error_response(r, status, code, message, NULL,
                               retry_after_s > 0 ? retry_after_s : 1);
}

/* A CORS preflight (OPTIONS on a known path, CORS on): 204, the path's
 * methods, and for an allowed origin what it may send and for how long
 * the browser may remember the answer. An origin not allowed gets the
 * 204 and Allow alone: no Access-Control-* header at all. */
static enum http_ret
http_send_preflight(struct http_req *r, const char *methods)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(0, (void *)(uintptr_t)"", MHD_RESPMEM_PERSISTENT);

    if (resp == NULL)
        return HTTP_CLOSE;
    MHD_add_response_header(resp, "Allow", methods);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (r->cors_origin != NULL) {
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", methods);
        MHD_add_response_header(resp, "Access-Control-Allow-Headers", CORS_ALLOW_HEADERS);
        MHD_add_response_header(resp, "Access-Control-Max-Age", CORS_MAX_AGE);
    }
    return http_queue(r, MHD_HTTP_NO_CONTENT, resp);
}

enum http_ret
http_send_text(struct http_req *r, unsigned status, const char *content_type,
               const char *body, size_t len)
{
    struct MHD_Response *resp;

    resp = MHD_create_response_from_buffer(len, (void *)(uintptr_t)body,
                                           MHD_RESPMEM_MUST_COPY);
    if (resp == NULL)
        return HTTP_CLOSE;
    MHD_add_response_header(resp, "Content-Type", content_type);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    return http_queue(r, status, resp);
}

enum http_ret
http_send_stream_end(struct http_req *r, const char *body, size_t len)
{
    struct MHD_Response *resp;

    resp = MHD_create_response_from_buffer(len, (void *)(uintptr_t)body,
                                           MHD_RESPMEM_MUST_COPY);
    if (resp == NULL)
        return HTTP_CLOSE;
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    return http_queue(r, 200, resp);
}

enum http_ret
http_send_static(struct http_req *r, const char *content_type,
                 const void *data, size_t len)
{
    struct MHD_Response *resp;

    /* Static arrays: MHD sends them without a copy. */
    resp = MHD_create_response_from_buffer(len, (void *)(uintptr_t)data,
                                           MHD_RESPMEM_PERSISTENT);
    if (resp == NULL)
        return HTTP_CLOSE;
    MHD_add_response_header(resp, "Content-Type", content_type);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    return http_queue(r, MHD_HTTP_OK, resp);
}

/* ------------------------------------------------------------- requests */

const char *
http_req_path(struct http_req *r)
{
    return r->path;
}

const char *
http_req_param(struct http_req *r)
{
    return r->param;
}

/* The query's arguments, for query_value. */
struct http_query {
    struct query_arg v[HTTP_QUERY_PARAMS_MAX];
    size_t n;
    int over;                       /* more than fit: cannot happen past http_on_uri */
};

static enum MHD_Result
http_query_add(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_len,
               const char *value, size_t value_len)
{
    struct http_query *q = cls;

    (void)kind;
    if (q->n == HTTP_QUERY_PARAMS_MAX) {
        q->over = 1;
        return MHD_NO;
    }
    q->v[q->n++] = (struct query_arg){ key, key_len, value, value_len };
    return MHD_YES;
}

/* Not MHD_lookup_connection_value: it returns the first of several and
 * a value cut at a decoded %00 (query.c). */
const char *
http_req_query(struct http_req *r, const char *name)
{
    struct http_query q = { .n = 0 };

    MHD_get_connection_values_n(r->conn, MHD_GET_ARGUMENT_KIND, http_query_add, &q);
    if (q.over)
        return "";
    return query_value(q.v, q.n, name);
}

int
http_req_query_each(struct http_req *r, const char *name,
                    int (*fn)(const char *value, size_t len, void *arg), void *arg)
{
    struct http_query q = { .n = 0 };

    MHD_get_connection_values_n(r->conn, MHD_GET_ARGUMENT_KIND, http_query_add, &q);
    if (q.over)
        return -1;
    return query_each(q.v, q.n, name, fn, arg);
}

/* Counts the headers named cls->name, in any case, as libmicrohttpd's
 * lookups match names. */
struct http_count {
    const char *name;
    unsigned n;
};

static enum MHD_Result
http_count_one(void *cls, enum MHD_ValueKind kind, const char *key,
               const char *value)
{
    struct http_count *c = cls;

    (void)kind;
    (void)value;
    if (key != NULL && strcasecmp(key, c->name) == 0)
        c->n++;
    return MHD_YES;
}

static unsigned
http_count_values(struct http_req *r, enum MHD_ValueKind kind, const char *name)
{
    struct http_count c = { name, 0 };

    MHD_get_connection_values(r->conn, kind, http_count_one, &c);
    return c.n;
}

const char *
http_req_header(struct http_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *
http_req_cookie(struct http_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_COOKIE_KIND, name);
}

const char *
http_req_body(struct http_req *r, size_t *len)
{
    *len = r->len;
    return r->body != NULL ? r->body : "";
}

int
http_req_is_http10(struct http_req *r)
{
    return r->version != NULL && strcmp(r->version, MHD_HTTP_VERSION_1_0) == 0;
}

size_t
http_req_bodies_pending(struct http_req *r)
{
    return atomic_load(&r->loop->http->body_bytes);
}

const char *
http_req_client(struct http_req *r)
{
    return r->client;
}

void
http_req_take_client(struct http_req *r, struct clients_slot *out)
{
    out->c = NULL;
    if (r->slot.c != NULL)
        clients_move(out, &r->slot);
    else if (r->hc != NULL)
        clients_move(out, &r->hc->slot);
}

void *
http_req_state(struct http_req *r)
{
    return r->state;
}

void
http_req_set_state(struct http_req *r, void *state, void (*free_fn)(void *))
{
    r->state = state;
    r->state_free = free_fn;
}

struct pipeline *
http_req_pipeline(struct http_req *r)
{
    return r->loop->pipe;
}

void
http_req_suspend(struct http_req *r)
{
    MHD_suspend_connection(r->conn);
}

void
http_req_resume(struct http_req *r)
{
    /* Same thread: the loop's next MHD_run, right after the pipeline's
     * replies, runs the handler again (http_loop_main). */
    MHD_resume_connection(r->conn);
}

int
http_req_wait(struct http_req *r, int64_t deadline_ms)
{
    struct http_loop *l = r->loop;

    if (l->stopping)
        return -1;
    r->wait_deadline_ms = deadline_ms;
    TAILQ_INSERT_TAIL(&l->waiting, r, wait_link);
    r->waiting = 1;
    atomic_fetch_add(&l->nwaiting, 1);
    MHD_suspend_connection(r->conn);
    return 0;
}

static void
http_wait_unlink(struct http_req *r)
{
    struct http_loop *l = r->loop;

    if (!r->waiting)
        return;
    TAILQ_REMOVE(&l->waiting, r, wait_link);
    r->waiting = 0;
    atomic_fetch_sub(&l->nwaiting, 1);
}

/* Resumes this loop's waiting requests: all of them (woken, or the loop
 * ends), or those past their deadline. Their handlers run in the next
 * MHD_run. */
static void
http_loop_resume_waiting(struct http_loop *l, int all)
{
    int64_t now = clock_mono_ms();
    struct http_req *r, *next;

    for (r = TAILQ_FIRST(&l->waiting); r != NULL; r = next) {
        next = TAILQ_NEXT(r, wait_link);
        if (all || now >= r->wait_deadline_ms) {
            http_wait_unlink(r);
            MHD_resume_connection(r->conn);
        }
    }
}

/* The loop's sleep bound for its waiting requests (-1: none waits). */
static int
http_loop_wait_timeout_ms(const struct http_loop *l)
{
    int64_t first = INT64_MAX, left;
    const struct http_req *r;

    TAILQ_FOREACH(r, &l->waiting, wait_link)
        if (r->wait_deadline_ms < first)
            first = r->wait_deadline_ms;
    if (first == INT64_MAX)
        return -1;
    left = first - clock_mono_ms();
    return left < 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

void
http_wake(void *arg)
{
    struct http *h = arg;
    uint64_t one = 1;

    for (unsigned i = 0; i < h->nloops; i++) {
        struct http_loop *l = &h->loop[i];

        /* A failed write leaves the counter full: still readable. */
        if (atomic_load(&l->nwaiting) > 0 && l->wake_fd >= 0 &&
            write(l->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
            log_error("http: cannot wake an HTTP thread: %s", strerror(errno));
    }
}

int
http_req_take_over(struct http_req *r, int *fd, char *head, size_t *head_len,
                   int *chunked)
{
    static const char head11[] =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n";
    static const char head10[] =
        "HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n"
        "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"
        "Connection: close\r\n";
    /* The CORS lines at their longest, and the blank line. */
    _Static_assert(sizeof(head11) + sizeof("Vary: Origin\r\nAccess-Control-Allow-Origin: \r\n"
                                           "Access-Control-Allow-Credentials: true\r\n\r\n") +
                   CORS_ORIGIN_MAX <= HTTP_STREAM_HEAD_MAX, "the stream head fits");
    _Static_assert(sizeof(head10) <= sizeof(head11), "head10 fits where head11 does");
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    const char *base;
    int d, e, n;

    /* MHD closes its own copy when the handler returns MHD_NO, without
     * shutdown() (MHD_USE_TURBO): the duplicate keeps the connection. */
    if (ci == NULL)
        return -EBADF;
    if ((d = fcntl(ci->connect_fd, F_DUPFD_CLOEXEC, 0)) < 0) {
        e = errno;                  /* EMFILE: no descriptor left */
        r->no_fd = e == EMFILE || e == ENFILE;
        return -e;
    }
    if (fcntl(d, F_SETFL, fcntl(d, F_GETFL) | O_NONBLOCK) == -1) {
        e = errno;
        close(d);
        return -e;
    }
    /* An event must not wait behind the client's delayed ACK of the one
     * before (Nagle): SSE frames are small and each should go at once. */
    (void)setsockopt(d, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
    *chunked = !http_req_is_http10(r);
    base = *chunked ? head11 : head10;
    /* The same CORS headers as any other response (http_add_cors). */
    if (!cors_enabled(&r->loop->http->cfg->cors_origins))
        n = snprintf(head, HTTP_STREAM_HEAD_MAX, "%s\r\n", base);
    else if (r->cors_origin == NULL)
        n = snprintf(head, HTTP_STREAM_HEAD_MAX, "%sVary: Origin\r\n\r\n", base);
    else
        n = snprintf(head, HTTP_STREAM_HEAD_MAX,
                     "%sVary: Origin\r\nAccess-Control-Allow-Origin: %s\r\n%s\r\n", base,
                     r->cors_origin,
                     r->cors_credentials ? "Access-Control-Allow-Credentials: true\r\n" : "");
    if (n < 0 || n >= HTTP_STREAM_HEAD_MAX) {
        close(d);
        return -EOVERFLOW;
    }
    *head_len = (size_t)n;
    *fd = d;
    r->status = MHD_HTTP_OK;        /* the head goes out on the stream */
    return 0;
}

/* ---------------------------------------------------------------- routing */

/* Does url match the route's path? Fills r->param from a "{id}" segment. */
static int
http_path_match(const struct http_routes *rt, const struct http_route *ro,
                const char *url, struct http_req *r)
{
    const char *p = ro->path, *brace;
    size_t n;

    if (p == NULL)
        return ro->match(url);
    if ((brace = strstr(p, "{id}")) == NULL)
        return strcmp(p, url) == 0;
    if (strncmp(p, url, (size_t)(brace - p)) != 0)
        return 0;
    url += brace - p;
    n = strcspn(url, "/");
    if (n > HTTP_PARAM_MAX || !rt->id_ok(url, n))
        return 0;
    if (strcmp(brace + 4, url + n) != 0)
        return 0;
    memcpy(r->param, url, n);
    r->param[n] = '\0';
    return 1;
}

static int
http_method_ok(const struct http_route *ro, const char *method)
{
    /* HEAD is GET without a body (MHD drops the body itself). */
    return strcmp(ro->method, method) == 0 ||
           (!(ro->flags & HTTP_ROUTE_NO_HEAD) &&
            strcmp(ro->method, MHD_HTTP_METHOD_GET) == 0 &&
            strcmp(method, MHD_HTTP_METHOD_HEAD) == 0);
}

/* Finds r's route: returns it, or NULL with *status 404, or 405 with the
 * methods the path allows in allow. */
static const struct http_route *
http_route_find(const struct http_routes *rt, const char *url, const char *method,
                struct http_req *r, char *allow, size_t cap, unsigned *status)
{
    size_t used = 0;

    allow[0] = '\0';
    *status = MHD_HTTP_NOT_FOUND;
    for (size_t i = 0; i < rt->n; i++) {
        const struct http_route *ro = &rt->v[i];
        int n;

        if (!http_path_match(rt, ro, url, r))
            continue;
        if (http_method_ok(ro, method))
            return ro;
        *status = MHD_HTTP_METHOD_NOT_ALLOWED;
        n = snprintf(allow + used, cap - used, "%s%s%s", used ? ", " : "", ro->method,
                     strcmp(ro->method, MHD_HTTP_METHOD_GET) == 0 &&
                             !(ro->flags & HTTP_ROUTE_NO_HEAD) ? ", HEAD" : "");
        if (n > 0 && (size_t)n < cap - used)
            used += (size_t)n;
    }
    return NULL;
}

/* How a request's body is framed must be beyond doubt: behind a proxy
 * that reads it one way while we read it another (two Content-Lengths,
 * the first or the last; Content-Length beside Transfer-Encoding), the
 * rest of the body is taken for a second request: request smuggling.
 * libmicrohttpd 0.9.75 takes the first Content-Length and lets chunked
 * win over Content-Length without a word, and waits for a body that
 * never ends under a transfer coding it does not know ("gzip, chunked").
 * So a request may carry one Content-Length, or one Transfer-Encoding
 * that is exactly "chunked" on HTTP/1.1 (RFC 9112 6.1: HTTP/1.0 has no
 * transfer codings), and nothing else. Returns 0, or 1 when refused
 * (*ret set). */
static int
http_check_framing(struct http_req *r, enum http_ret *ret)
{
    unsigned ncl = http_count_values(r, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    unsigned nte = http_count_values(r, MHD_HEADER_KIND,
                                     MHD_HTTP_HEADER_TRANSFER_ENCODING);
    const char *te = http_req_header(r, MHD_HTTP_HEADER_TRANSFER_ENCODING);

    if (ncl <= 1 && nte == 0)
        return 0;
    if (ncl > 1 || nte > 1 || (ncl > 0 && nte > 0))
        *ret = http_send_error(r, MHD_HTTP_BAD_REQUEST, "invalid_framing",
                               "a request carries one Content-Length or one "
                               "Transfer-Encoding, not two of them", NULL);
    else if (http_req_is_http10(r) || te == NULL || strcasecmp(te, "chunked") != 0)
        *ret = http_send_error(r, MHD_HTTP_BAD_REQUEST, "invalid_framing",
                               "the only Transfer-Encoding taken is chunked, "
                               "on HTTP/1.1", NULL);
    else
        return 0;
    return 1;
}

/* Takes n more bytes of the budget all bodies in progress share
 * (MAX_PENDING_BODY_KIB) for r, or returns -1 when they would pass it.
 * The add comes first, so two threads can never both take the last
 * room; one that finds itself over undoes its add. */
static int
http_body_reserve(struct http_req *r, size_t n)
{
    struct http *h = r->loop->http;
    size_t before = atomic_fetch_add(&h->body_bytes, n);

    if (before + n > h->body_max) {
        atomic_fetch_sub(&h->body_bytes, n);
        return -1;
    }
    r->reserved += n;
    return 0;
}

/* Gives r's body and its share of the budget back. */
static void
http_body_release(struct http_req *r)
{
    free(r->body);
    r->body = NULL;
    r->len = r->cap = 0;
    if (r->reserved > 0)
        atomic_fetch_sub(&r->loop->http->body_bytes, r->reserved);
    r->reserved = 0;
}

static enum http_ret
http_send_over_budget(struct http_req *r)
{
    r->close = 1;
    return http_send_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "overloaded",
                           "the server holds as many request bodies as it may "
                           "(MAX_PENDING_BODY_KIB); retry", NULL);
}

/* First call of a POST: reject by headers alone, before reading the body.
 * Returns 0 to go on, or 1 when a response was queued (*ret set). */
static int
http_check_upload(struct http_req *r, enum http_ret *ret)
{
    const char *cl = http_req_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *ct = http_req_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    unsigned long long n = cl != NULL ? strtoull(cl, NULL, 10) : 0;
    /* Framing is settled by now: a body is chunked, or has a length. */
    int has_body = http_req_header(r, MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL || n > 0;

    if (n > BODY_MAX_BYTES) {
        *ret = http_send_error(r, MHD_HTTP_CONTENT_TOO_LARGE, "payload_too_large",
                               "the body is larger than 65536 bytes", NULL);
        return 1;
    }
    /* A body's room is taken before any of it is read, so the refusal
     * comes now, as an answer (libmicrohttpd then closes the connection
     * without reading the body), rather than once memory is spent. */
    if (n > 0 && http_body_reserve(r, (size_t)n + 1) == -1) {
        *ret = http_send_over_budget(r);
        return 1;
    }
    /* A body must say it is JSON: one sent as a form (curl -d) or as
     * text is refused rather than guessed at. A POST without a body
     * (a snapshot of the current balance) needs no type. */
    if (has_body && (ct == NULL || !body_content_type_is_json(ct))) {
        *ret = http_send_error(r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                               "unsupported_media_type",
                               "send the body as Content-Type: application/json", NULL);
        return 1;
    }
    return 0;
}

/* Appends an upload chunk within BODY_MAX_BYTES and the budget of all
 * bodies; past either, remembers it, lets the body go and discards the
 * rest (MHD must still be told it was read): the answer (413, 503) waits
 * for the body's end, or REQUEST_TIMEOUT_MS. A body with a Content-Length
 * gets one buffer of its size, reserved at its head; one without
 * (chunked) grows, each growth reserved first. */
static int
http_body_append(struct http_req *r, const char *data, size_t n)
{
    if (r->too_large || r->over_budget)
        return 0;
    if (r->len + n > BODY_MAX_BYTES) {
        r->too_large = 1;
        http_body_release(r);
        return 0;
    }
    if (r->len + n + 1 > r->cap) {
        size_t need = r->len + n + 1, ncap = r->cap ? r->cap : 1024;
        char *nb;

        while (ncap < need)
            ncap *= 2;
        if (ncap > BODY_MAX_BYTES + 1)
            ncap = BODY_MAX_BYTES + 1;
        if (r->reserved >= need)
            ncap = r->reserved;         /* its Content-Length: exactly */
        if (ncap > r->reserved && http_body_reserve(r, ncap - r->reserved) == -1) {
            r->over_budget = 1;
            http_body_release(r);
            return 0;
        }
        if ((nb = realloc(r->body, ncap)) == NULL)
            return -1;
        r->body = nb;
        r->cap = ncap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = '\0';
    return 0;
}

/* The first call: the request's head. Finds its route, or answers. */
static enum http_ret
http_on_head(struct http_loop *l, struct http_req *r, const char *url,
             const char *method)
{
    const struct http_routes *rt = l->http->routes;
    char allow[HTTP_ALLOW_MAX];
    unsigned status;
    enum http_ret ret;

    if (http_check_framing(r, &ret))
        return ret;
    /* RFC 9112 3.2: an HTTP/1.1 request without Host is 400. */
    if (!http_req_is_http10(r) && http_req_header(r, MHD_HTTP_HEADER_HOST) == NULL)
        return http_send_error(r, MHD_HTTP_BAD_REQUEST, "missing_host",
                               "an HTTP/1.1 request needs a Host header", NULL);
    r->route = http_route_find(rt, url, method, r, allow, sizeof(allow), &status);
    /* No route takes OPTIONS: with CORS on, on a path that exists it is
     * a preflight; with CORS off, a 405 as before. */
    if (r->route == NULL && status == MHD_HTTP_METHOD_NOT_ALLOWED &&
        strcmp(method, MHD_HTTP_METHOD_OPTIONS) == 0 &&
        cors_enabled(&l->http->cfg->cors_origins)) {
        memcpy(r->preflight, allow, sizeof(r->preflight));
        return HTTP_DONE;
    }
    if (r->route == NULL && status == MHD_HTTP_METHOD_NOT_ALLOWED)
        return http_send_error(r, status, "method_not_allowed",
                               "this resource does not support that method", allow);
    if (r->route == NULL)
        return http_send_error(r, status, "not_found", "no such resource", NULL);
    if (r->route->head != NULL) {
        ret = r->route->head(r, rt->arg);
        if (ret == HTTP_CLOSE || r->answered)
            return ret;
    }
    if (strcmp(r->route->method, MHD_HTTP_METHOD_POST) == 0 &&
        http_check_upload(r, &ret))
        return ret;
    return HTTP_DONE;
}

/* The request's *con_cls when http_on_uri refused its query. */
static char http_query_too_long_mark;
#define HTTP_QUERY_TOO_LONG ((struct http_req *)(void *)&http_query_too_long_mark)

/* libmicrohttpd calls this with the raw request target before it parses
 * the query into records in the connection's memory; past
 * HTTP_QUERY_PARAMS_MAX parameters that memory would run out and 0.9.75
 * would answer nothing. So a query with too many is cut here (the target
 * is MHD's own writable copy in its read buffer, which 0.9.75 parses
 * after this call: connection.c, parse_initial_message_line), and what we
 * return becomes the request's *con_cls, which tells http_on_request to
 * answer 414. */
static void *
http_on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct http_loop *l = cls;
    char *q = strchr(uri, '?');
    unsigned n = 1;
    /* The request starts here (the access handler takes it over): the
     * only place that sees the query as sent, for the access log. */
    struct http_req *r = calloc(1, sizeof(*r));

    (void)conn;
    if (r != NULL && l->http->cfg->access_log)
        query_redact(uri, "token", r->target, sizeof(r->target));
    if (q == NULL)
        return r;
    for (const char *p = q + 1; *p != '\0'; p++)
        n += *p == '&';            /* MHD's only separator */
    if (n <= HTTP_QUERY_PARAMS_MAX)
        return r;
    q[1] = '\0';
    if (r == NULL)
        return HTTP_QUERY_TOO_LONG;
    r->query_too_long = 1;
    return r;
}

/* The address of a socket address libmicrohttpd gives (it keeps the
 * length accept() returned, but does not pass it on). */
static int
http_peer(const struct sockaddr *sa, struct netaddr *out)
{
    if (sa == NULL)
        return -1;
    return netaddr_from_sockaddr(sa, sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                               : sizeof(struct sockaddr_in),
                                 out);
}

/* libmicrohttpd's accept policy, called for each accepted socket before
 * the connection is made: a direct client whose count is full is refused
 * here, its socket closed at once (nothing is read or answered; a browser
 * sees a network error and retries later). A trusted proxy's connections
 * are not counted here: one carries many clients' requests, each counted
 * on its own (http_req_identify). */
static enum MHD_Result
http_on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    struct http_loop *l = cls;
    struct http *h = l->http;
    struct netaddr a;
    char text[NETADDR_STR_MAX];

    /* Held still, the connection it was taken for never started. */
    clients_release(&l->pending);
    if (netaddr_from_sockaddr(addr, addrlen, &a) == -1 ||
        netaddr_cidrs_match(&h->cfg->trusted_proxies, &a))
        return MHD_YES;
    netaddr_client_key(&a);
    switch (clients_acquire(h->clients, &a, &l->pending)) {
    case CLIENTS_OK:
        return MHD_YES;
    case CLIENTS_FULL:
        netaddr_format(&a, 64, text, sizeof(text));
        log_debug("http: %s holds MAX_CONNECTIONS_PER_CLIENT (%u) connections: "
                  "refused", text, h->cfg->max_connections_per_client);
        return MHD_NO;
    case CLIENTS_NO_MEMORY:
        break;
    }
    log_warn("http: out of memory counting a client's connections: refused");
    return MHD_NO;
}

/* A connection was accepted or closed. Accepted: its request head must
 * arrive within REQUEST_TIMEOUT_MS, accept() works again, and it takes
 * the place in its client's count the accept policy took. Without memory
 * for its state it keeps only libmicrohttpd's idle timeout and is not
 * counted (better than a place never given back). Closed: the place goes
 * back, unless a stream took it. */
static void
http_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                   enum MHD_ConnectionNotificationCode toe)
{
    struct http_loop *l = cls;
    struct http_conn *c = *socket_context;

    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        atomic_fetch_add(&l->http->nconns, 1);
        l->nconns++;
        l->accept_paused = 0;
        if ((c = calloc(1, sizeof(*c))) == NULL) {
            log_warn("http: out of memory for a connection's deadline");
            clients_release(&l->pending);
            return;
        }
        c->conn = conn;
        c->loop = l;
        clients_move(&c->slot, &l->pending);
        *socket_context = c;
        http_conn_arm(c, 0);
        return;
    }
    atomic_fetch_sub(&l->http->nconns, 1);
    l->nconns--;
    if (c != NULL) {
        http_conn_disarm(c);
        clients_release(&c->slot);
    }
    free(c);
    *socket_context = NULL;
}

/* libmicrohttpd's header iterator: appends each X-Forwarded-For line
 * (a proxy may add its own line rather than extend the last) to cls, a
 * struct http_xff. */
static enum MHD_Result
http_xff_collect(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct http_xff *x = cls;
    size_t n = strlen(value), cap = sizeof(x->buf);

    (void)kind;
    if (strcasecmp(key, "X-Forwarded-For") != 0)
        return MHD_YES;
    if (n >= cap) {
        value += n - cap;
        n = cap;
        x->len = 0;
    } else if (x->len > 0 && x->len + 1 + n > cap) {
        size_t keep = cap - 1 - n;

        memmove(x->buf, x->buf + (x->len - keep), keep);
        x->len = keep;
    }
    if (x->len > 0)
        x->buf[x->len++] = ',';
    memcpy(x->buf + x->len, value, n);
    x->len += n;
    return MHD_YES;
}

/* Who sent r: its TCP peer, or, when the peer is a trusted proxy, the
 * client X-Forwarded-For names (netaddr.h); never a header from a peer
 * we do not trust, so a client cannot choose its own address. A client
 * through a trusted proxy takes a place in its count for the request
 * (its connection was not counted at accept). Returns 0, or -1 with the
 * refusal queued in *ret. */
static int
http_req_identify(struct http_loop *l, struct http_req *r, enum http_ret *ret)
{
    const struct config *cfg = l->http->cfg;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    struct netaddr client;
    int proxied;

    if (ci == NULL || http_peer(ci->client_addr, &client) == -1) {
        snprintf(r->client, sizeof(r->client), "unknown");
        return 0;
    }
    proxied = netaddr_cidrs_match(&cfg->trusted_proxies, &client);
    if (proxied) {
        l->xff.len = 0;
        MHD_get_connection_values(r->conn, MHD_HEADER_KIND, http_xff_collect, &l->xff);
        (void)netaddr_client_from_xff(l->xff.buf, l->xff.len, &cfg->trusted_proxies, &client);
    }
    netaddr_format(&client, 128, r->addr, sizeof(r->addr));
    netaddr_client_key(&client);
    netaddr_format(&client, 64, r->client, sizeof(r->client));
    if (!proxied)
        return 0;
    switch (clients_acquire(l->http->clients, &client, &r->slot)) {
    case CLIENTS_OK:
        return 0;
    case CLIENTS_FULL:
        log_debug("http: %s holds MAX_CONNECTIONS_PER_CLIENT (%u) requests and "
                  "streams: refused", r->client, cfg->max_connections_per_client);
        *ret = http_send_error(r, MHD_HTTP_TOO_MANY_REQUESTS, "too_many_connections",
                               "this client address holds MAX_CONNECTIONS_PER_CLIENT "
                               "connections already", NULL);
        return -1;
    case CLIENTS_NO_MEMORY:
        break;
    }
    *ret = http_send_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "out_of_memory",
                           "the server is out of memory", NULL);
    return -1;
}

/* MHD calls this once with the headers, then once per body chunk, then
 * once more with no data (and again after each resume). Answers go out
 * on the last call, except rejections decided from the headers: a
 * response queued on the first call makes MHD close the connection,
 * which is what an unread body needs anyway. */
static enum MHD_Result
http_on_request(void *cls, struct MHD_Connection *conn, const char *url,
                const char *method, const char *version,
                const char *upload_data, size_t *upload_data_size,
                void **con_cls)
{
    struct http_loop *l = cls;
    struct http_req *r = *con_cls;
    enum http_ret ret;

    if (r == NULL || r == HTTP_QUERY_TOO_LONG || !r->started) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        int query_too_long = r == HTTP_QUERY_TOO_LONG || (r != NULL && r->query_too_long);

        if (r == NULL || r == HTTP_QUERY_TOO_LONG) {
            *con_cls = NULL;
            if ((r = calloc(1, sizeof(*r))) == NULL)
                return MHD_NO;
            *con_cls = r;
        }
        r->started = 1;
        r->method = method;
        r->start_us = clock_mono_us();
        r->conn = conn;
        r->loop = l;
        r->path = url;
        r->version = version;
        r->hc = ci != NULL ? ci->socket_context : NULL;
        /* The head is in; the body, if any, gets its own deadline. */
        http_conn_arm(r->hc, 1);
        if (cors_enabled(&l->http->cfg->cors_origins)) {
            const char *origin = http_req_header(r, "Origin");

            r->cors_origin = cors_allow(&l->http->cfg->cors_origins, origin,
                                        origin != NULL ? strlen(origin) : 0,
                                        &r->cors_credentials);
        }
        if (http_req_identify(l, r, &ret) == -1)
            return (enum MHD_Result)ret;
        if (query_too_long)
            return (enum MHD_Result)http_send_error(
                r, MHD_HTTP_URI_TOO_LONG, "uri_too_long",
                "the query has more than 48 parameters", NULL);
        if ((ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE)) != NULL &&
            ci->header_size > HTTP_HEAD_MAX)
            return (enum MHD_Result)http_send_error(
                r, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large",
                "the request head is larger than 16384 bytes", NULL);
        return (enum MHD_Result)http_on_head(l, r, url, method);
    }
    if (*upload_data_size > 0) {
        if (http_body_append(r, upload_data, *upload_data_size) == -1)
            return (enum MHD_Result)http_send_error(
                r, MHD_HTTP_SERVICE_UNAVAILABLE, "out_of_memory",
                "the server is out of memory", NULL);
        *upload_data_size = 0;
        return MHD_YES;
    }
    /* The whole request has arrived. */
    http_conn_disarm(r->hc);
    if (r->too_large)
        return (enum MHD_Result)http_send_error(
            r, MHD_HTTP_CONTENT_TOO_LARGE, "payload_too_large",
            "the body is larger than 65536 bytes", NULL);
    if (r->over_budget)
        return (enum MHD_Result)http_send_over_budget(r);
    if (r->preflight[0] != '\0')
        return (enum MHD_Result)http_send_preflight(r, r->preflight);
    return (enum MHD_Result)r->route->handler(r, l->http->routes->arg);
}

/* A request ended: counted (metrics.c) and, with ACCESS_LOG, logged in
 * one line; never its token (query_redact) nor any header. One the
 * client left before its answer counts as 499, as nginx says. */
static void
http_req_done(struct http_loop *l, struct http_req *r)
{
    const struct http_routes *rt = l->http->routes;
    unsigned status = r->status != 0 ? r->status : 499;
    int64_t us = clock_mono_us() - r->start_us;
    size_t route = r->route != NULL ? (size_t)(r->route - rt->v) : rt->n;

    metrics_observe_request(route, status, us);
    if (!l->http->cfg->access_log || !log_enabled(LOG_LEVEL_INFO))
        return;
    {
        const struct log_field f[] = {
            LOG_STR("method", r->method),
            LOG_STR("path", r->target[0] != '\0' ? r->target : r->path),
            LOG_INT("status", status),
            LOG_NUM("duration_ms", (double)us / 1000.0),
            LOG_STR("client", r->addr[0] != '\0' ? r->addr : r->client),
        };

        log_fields(LOG_LEVEL_INFO, f, sizeof(f) / sizeof(f[0]), "request");
    }
}

/* A request ended, however it ended. A connection kept alive waits for
 * its next request's head, which gets its own REQUEST_TIMEOUT_MS. */
static void
http_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                  enum MHD_RequestTerminationCode toe)
{
    struct http_req *r = *con_cls;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    (void)toe;
    if (ci != NULL)
        http_conn_arm(ci->socket_context, 0);
    if (r == NULL || r == HTTP_QUERY_TOO_LONG) {
        *con_cls = NULL;
        return;
    }
    if (r->started)
        http_req_done(cls, r);
    http_wait_unlink(r);
    if (r->state_free != NULL)
        r->state_free(r->state);
    clients_release(&r->slot);
    http_body_release(r);
    free(r);
    *con_cls = NULL;
}

static void
http_on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct http_loop *l = cls;
    char line[512];
    size_t n;
    unsigned code;

    vsnprintf(line, sizeof(line), fmt, ap);
    n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    /* A client that went away is routine (it is how dead streams are
     * found); anything else from MHD deserves a warning. */
    if (strstr(line, "Failed to send") != NULL ||
        strstr(line, "Application reported internal error") != NULL ||
        strstr(line, "no longer available") != NULL ||
        strstr(line, "reset by") != NULL ||
        strstr(line, "Not enough memory in pool") != NULL)
        log_debug("http: %s", line);
    else if (sscanf(line, "Error processing request (HTTP response code is %u", &code) == 1)
        /* A client's mistake (a head that fills the connection's memory:
         * 431 or 414; a malformed one: 400), answered by MHD with its own
         * HTML body: one short line, not its whole page. */
        log_info("http: libmicrohttpd answered a request %u and closed its "
                 "connection (its head did not fit %d bytes, or was malformed)",
                 code, HTTP_CONN_MEMORY);
    else if (l->accept_paused && strstr(line, "accepting connection") != NULL)
        log_debug("http: %s", line);    /* once per pause is enough */
    else
        log_warn("http: %s", line);
    /* 0.9.75 says so (daemon.c, MHD_accept_connection) when accept() fails
     * for want of descriptors, and then stops listening until one of its
     * own connections closes, or, with none, retries at every call: the
     * loop must run it again once descriptors may be free. */
    if (strstr(line, "Hit process or system resource limit") != NULL)
        l->accept_paused = 1;
}

/* ---------------------------------------------------------------- daemon */

/* One HTTP thread: a daemon with its own epoll set and its own listening
 * socket on the shared address (SO_REUSEPORT), so the kernel spreads new
 * connections over the threads. (libmicrohttpd's thread pool shares one
 * listening socket, and whichever worker wakes first accepts up to ten
 * connections in a row: all eight publisher connections of bench/run
 * often landed on one worker, capping publishes/s at one thread's Redis
 * round trips. Accepting on our own loop and handing sockets over with
 * MHD_add_connection spread them evenly, but with MHD_USE_TURBO 0.9.75
 * sometimes never read a request added that way: a few hundred of 4,000
 * streams opened at once waited until their clients gave up.)
 *
 * The daemon has no internal thread: http_loop_main runs it. */
static struct MHD_Daemon *
http_start_daemon(struct http_loop *l, const struct sockaddr_in *sin, unsigned conn_limit)
{
    return MHD_start_daemon(
        /* No MHD_USE_ITC: without an internal thread MHD drops it; every
         * resume happens on the loop's own thread. TURBO: closing MHD's
         * copy of a taken-over socket must not shutdown() it
         * (connection.c, MHD_connection_mark_closed_). */
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_TURBO,
        0, http_on_accept, l, http_on_request, l,
        /* First, so MHD's own start-up messages use it too. */
        MHD_OPTION_EXTERNAL_LOGGER, http_on_mhd_log, l,
        MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)sin,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int)1,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)HTTP_LISTEN_BACKLOG,
        /* The default is FD_SETSIZE - 4 = 1020, even with epoll. */
        MHD_OPTION_CONNECTION_LIMIT, conn_limit,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEMORY,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)HTTP_CONN_TIMEOUT_S,
        MHD_OPTION_NOTIFY_COMPLETED, http_on_completed, l,
        MHD_OPTION_NOTIFY_CONNECTION, http_on_connection, l,
        MHD_OPTION_URI_LOG_CALLBACK, http_on_uri, l,
        /* Not MHD_OPTION_STRICT_FOR_CLIENT: 0.9.75 answers a request
         * without Host with its 400's head written twice (the body then
         * starts with the second head); http_on_head checks Host itself. */
        MHD_OPTION_END);
}

/* The smaller of two poll timeouts, where -1 is forever. */
static int
http_timeout_min(int a, int b)
{
    return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

/* How long the loop may sleep: until MHD's next connection timeout (0
 * when it already holds ready connections), the first request deadline,
 * the first deadline of a waiting request, or the next accept retry
 * while accepting is paused; forever with none. */
static int
http_loop_timeout_ms(struct http_loop *l)
{
    MHD_UNSIGNED_LONG_LONG ms;
    int t = -1;

    if (MHD_get_timeout(l->daemon, &ms) == MHD_YES)
        t = ms > INT_MAX ? INT_MAX : (int)ms;
    t = http_timeout_min(t, http_loop_deadline_ms(l));
    t = http_timeout_min(t, http_loop_wait_timeout_ms(l));
    if (l->accept_paused)
        t = http_timeout_min(t, HTTP_ACCEPT_RETRY_MS);
    return t;
}

/* How many connections MHD holds: started and not yet closed. */
static unsigned
http_loop_connections(struct http_loop *l)
{
    return l->nconns;
}

/* One pass of MHD. It frees closed connections at the end of MHD_run,
 * but puts its listening socket back into its epoll set (after
 * MHD_OPTION_CONNECTION_LIMIT was reached, or accept() failed for want
 * of descriptors) only at the start of the next (0.9.75 daemon.c,
 * MHD_epoll): when this pass closed any, run it once more, or new
 * connections would wait for unrelated traffic (forever, with no other
 * connection left). */
static void
http_loop_run_mhd(struct http_loop *l)
{
    unsigned before = http_loop_connections(l);

    MHD_run(l->daemon);
    clients_release(&l->pending);   /* accepted, then failed to start */
    if (http_loop_connections(l) < before) {
        MHD_run(l->daemon);
        clients_release(&l->pending);
    }
}

/* Before a quiesced listener is closed: the connections the kernel
 * completed but nobody accepted yet would be reset by close(), and each
 * may carry a proxy's request already sent (a POST it may not retry: a
 * 502). They are accepted and served like any other; what arrives
 * between the last accept and the close is the one window left. */
static void
http_loop_take_backlog(struct http_loop *l, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int c, n = 0;

    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == -1)
        return;
    for (;;) {
        len = sizeof(ss);
        if ((c = accept4(fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC)) < 0)
            break;              /* EAGAIN: none left; anything else: give up */
        /* It closes c itself when it cannot take it. */
        if (MHD_add_connection(l->daemon, c, (struct sockaddr *)&ss, len) == MHD_YES)
            n++;
    }
    if (n > 0)
        log_debug("http: %d connections taken from the backlog before closing", n);
}

/* The HTTP thread. Why not MHD's own internal thread: in 0.9.75 (and
 * still upstream) its epoll loop reads events 128 at a time and, when a
 * call returns exactly 128, calls epoll_wait again with the same, possibly
 * endless, timeout before it handles the 128 it has. Those connections
 * are edge-triggered, so nothing wakes it for them: when 2,000 streams
 * opened at once, 128 of them (one batch) sometimes waited with their
 * request unread until some other connection stirred that thread. Here
 * the sleep is ours, on the daemon's epoll fd, and MHD_run never blocks
 * (its epoll_wait gets a timeout of 0), so every event it reads is
 * handled in the same call. */
static void *
http_loop_main(void *arg)
{
    struct http_loop *l = arg;
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(l->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    struct pollfd pfd[5];

    if (info == NULL) {
        log_error("http: libmicrohttpd has no epoll fd");
        return NULL;
    }
    pfd[0].fd = info->epoll_fd;
    pfd[0].events = POLLIN;
    pfd[1].fd = l->http->stop_fd;
    pfd[1].events = POLLIN;
    pfd[3].fd = l->http->quiesce_fd;
    pfd[3].events = POLLIN;
    pfd[4].fd = l->wake_fd;
    pfd[4].events = POLLIN;
    for (;;) {
        int timeout = http_timeout_min(http_loop_timeout_ms(l),
                                       pipeline_timeout_ms(l->pipe));

        pfd[2].fd = pipeline_fd(l->pipe);       /* -1: poll skips it */
        pfd[2].events = pipeline_events(l->pipe);
        pfd[2].revents = 0;
        pfd[4].revents = 0;
        /* Out of descriptors with no connection, MHD leaves its listening
         * socket in its epoll set and retries accept() at every call: a
         * busy loop. Retry on the timer instead; it has nothing else. */
        pfd[0].fd = l->accept_paused && http_loop_connections(l) == 0 ? -1
                                                                       : info->epoll_fd;
        if (poll(pfd, 5, timeout) < 0 && errno != EINTR) {
            log_error("http: poll: %s", strerror(errno));
            break;
        }
        if (pfd[1].revents != 0)
            break;
        if (pfd[3].revents != 0) {
            /* On this thread, as every call on this daemon. */
            MHD_socket fd = MHD_quiesce_daemon(l->daemon);

            if (fd != MHD_INVALID_SOCKET) {
                http_loop_take_backlog(l, fd);
                close(fd);
            }
            pfd[3].fd = -1;
        }
        if (pfd[4].revents != 0) {
            uint64_t n;

            /* Drained before the waiters look again, so a wake that
             * comes meanwhile stays readable. */
            if (read(l->wake_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
                log_error("http: wake-up: %s", strerror(errno));
        }
        http_loop_resume_waiting(l, pfd[4].revents != 0);
        /* Replies first: their requests resume and answer in this MHD_run. */
        pipeline_handle(l->pipe, pfd[2].revents);
        http_loop_run_mhd(l);
        /* Shut down what did not arrive in time; MHD closes it next pass. */
        http_loop_expire(l);
        /* The scripts of every request this pass took go out in one write. */
        pipeline_flush(l->pipe);
    }
    /* Waiting requests resume and answer (no more waits), scripts still
     * in flight fail (503) and their requests resume and answer, so that
     * MHD_stop_daemon finds none suspended. */
    l->stopping = 1;
    http_loop_resume_waiting(l, 1);
    pipeline_free(l->pipe);
    l->pipe = NULL;
    MHD_run(l->daemon);
    clients_release(&l->pending);
    strictjson_thread_end();    /* the bodies' and tokens' tokener */
    return NULL;
}

/* The routes' labels in ssegate_http_requests_total: each path, and
 * "static" for one matched by its function (the demo page's files). */
static int
http_metrics_routes(const struct http_routes *rt)
{
    const char **names = calloc(rt->n + 1, sizeof(*names));
    int rc;

    if (names == NULL)
        return -1;
    for (size_t i = 0; i < rt->n; i++)
        names[i] = rt->v[i].path != NULL ? rt->v[i].path : "static";
    rc = metrics_set_routes(names, rt->n);
    free(names);
    return rc;
}

/* SO_REUSEPORT would let a second process share the port silently; bind
 * it once without that first, so a port in use is an error. */
static int
http_port_free(const struct sockaddr_in *sin)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, ok;

    if (fd < 0)
        return 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    ok = bind(fd, (const struct sockaddr *)sin, sizeof(*sin)) == 0;
    close(fd);
    return ok;
}

struct http *
http_start(const struct config *cfg, const struct http_routes *routes,
           struct clients *clients, char *err, size_t errlen)
{
    unsigned n = cfg->http_threads;
    /* Each thread's share of MAX_CONNECTIONS, rounded up. */
    unsigned limit = (cfg->max_connections + n - 1) / n;
    struct sockaddr_in sin;
    struct http *h;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)cfg->port);
    if (inet_pton(AF_INET, cfg->listen_addr, &sin.sin_addr) != 1) {
        snprintf(err, errlen, "LISTEN_ADDR: '%s' is not an IPv4 address",
                 cfg->listen_addr);
        return NULL;
    }
    if (!http_port_free(&sin)) {
        snprintf(err, errlen, "cannot listen on %s:%u (in use?)",
                 cfg->listen_addr, cfg->port);
        return NULL;
    }
    if ((h = calloc(1, sizeof(*h))) == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->stop_fd = eventfd(0, EFD_CLOEXEC);
    h->quiesce_fd = eventfd(0, EFD_CLOEXEC);
    if ((h->loop = calloc(n, sizeof(*h->loop))) == NULL || h->stop_fd < 0 ||
        h->quiesce_fd < 0) {
        snprintf(err, errlen, "out of memory");
        http_stop(h);
        return NULL;
    }
    h->cfg = cfg;
    h->routes = routes;
    h->clients = clients;
    if (http_metrics_routes(routes) == -1) {
        snprintf(err, errlen, "out of memory");
        http_stop(h);
        return NULL;
    }
    atomic_init(&h->body_bytes, 0);
    h->body_max = (size_t)cfg->max_pending_body_kib * 1024;
    while (h->nloops < n) {
        /* Counted before it is set up: http_stop cleans up whatever of
         * it was started. */
        struct http_loop *l = &h->loop[h->nloops++];

        l->http = h;
        atomic_init(&l->nwaiting, 0);
        TAILQ_INIT(&l->arriving);
        TAILQ_INIT(&l->waiting);
        l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (l->wake_fd < 0 || (l->pipe = pipeline_new(cfg)) == NULL) {
            snprintf(err, errlen, "out of memory");
            http_stop(h);
            return NULL;
        }
        if ((l->daemon = http_start_daemon(l, &sin, limit)) == NULL) {
            snprintf(err, errlen, "cannot listen on %s:%u", cfg->listen_addr,
                     cfg->port);
            http_stop(h);
            return NULL;
        }
        if (pthread_create(&l->thread, NULL, http_loop_main, l) != 0) {
            snprintf(err, errlen, "cannot start an HTTP thread");
            http_stop(h);
            return NULL;
        }
        l->running = 1;
    }
    return h;
}

void
http_quiesce(struct http *h)
{
    uint64_t one = 1;

    /* Never read, so it wakes every loop, and each quiesces its own
     * daemon: no libmicrohttpd call from this thread. */
    if (write(h->quiesce_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
        log_error("http: cannot quiesce the HTTP threads: %s", strerror(errno));
}

void
http_drain(struct http *h)
{
    atomic_store(&h->closing, 1);
}

unsigned
http_connections(struct http *h)
{
    return atomic_load(&h->nconns);
}

void
http_stop(struct http *h)
{
    uint64_t one = 1;

    if (h == NULL)
        return;
    /* Never read, so it wakes every loop; each exits at once. */
    if (h->nloops > 0 && write(h->stop_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
        log_error("http: cannot stop the HTTP threads: %s", strerror(errno));
    for (unsigned i = 0; i < h->nloops; i++) {
        if (h->loop[i].running)
            pthread_join(h->loop[i].thread, NULL);
    }
    /* The threads are gone: MHD_stop_daemon may run on this one. */
    for (unsigned i = 0; i < h->nloops; i++) {
        pipeline_free(h->loop[i].pipe);     /* a thread that never ran */
        if (h->loop[i].daemon != NULL)
            MHD_stop_daemon(h->loop[i].daemon);
        if (h->loop[i].wake_fd >= 0)
            close(h->loop[i].wake_fd);
    }
    if (h->stop_fd >= 0)
        close(h->stop_fd);
    if (h->quiesce_fd >= 0)
        close(h->quiesce_fd);
    free(h->loop);
    free(h);
}
