/* http.c -- the libmicrohttpd daemons and the threads that run them.
 * Owns them and each request's state (route, bounded body buffer) from
 * its first access-handler call to MHD's completion callback. Routes to
 * api.c; builds every response.
 *
 * Threading: HTTP_THREADS daemons, each with its own listening socket on
 * the shared address (SO_REUSEPORT), its own epoll set and one thread of
 * ours that runs it (http_loop_main), which also drives the thread's
 * pipelined Redis connection for POST /events and stream opens
 * (pipeline.c). With STREAM_HANDOFF=0 each has also its own list of
 * suspended (idle) streams, so resuming one stream wakes one thread,
 * which walks only its share of the parked connections (libmicrohttpd
 * 0.9.75 walks that whole list). */
#include <arpa/inet.h>
#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "api.h"
#include "app.h"
#include "body.h"
#include "config.h"
#include "hub.h"
#include "http.h"
#include "log.h"
#include "pipeline.h"
#include "stream.h"
#include "web.h"

/* Per-connection memory: request headers plus MHD's read and write
 * buffers. 8 KiB fits a browser's headers and cookies; bodies are
 * buffered outside it (up to BODY_MAX_BYTES). */
#define HTTP_CONN_MEMORY 8192
/* Suspended streams never time out (MHD restarts the timer on resume);
 * this only reaps slowloris requests and clients that stopped reading. */
#define HTTP_CONN_TIMEOUT_S 60
#define HTTP_LISTEN_BACKLOG 4096

/* One HTTP thread and the daemon it runs. */
struct http_loop {
    struct http *http;
    struct MHD_Daemon *daemon;
    int wake_fd;                    /* eventfd: a parked stream was resumed */
    struct pipeline *pipe;          /* this thread's pipelined Redis scripts, or NULL */
    pthread_t thread;
    int running;                    /* thread was started: join it */
};

struct http {
    struct http_loop *loop;         /* HTTP_THREADS of them */
    unsigned nloops;
    int stop_fd;                    /* eventfd: readable once http_stop begins */
    struct app *app;
};

enum route {
    ROUTE_NONE,
    ROUTE_STREAM,           /* /events/sse */
    ROUTE_EVENTS,           /* /events */
    ROUTE_ACCOUNTS,         /* /accounts */
    ROUTE_ACCOUNT,          /* /accounts/ID */
    ROUTE_SNAPSHOTS,        /* /accounts/ID/snapshots */
    ROUTE_HEALTH,           /* /health */
    ROUTE_WEB               /* the demo page: /, /app.js, /style.css */
};

struct request {
    enum route route;
    const char *version;                /* MHD's string, lives as long as the request */
    const struct web_asset *asset;      /* ROUTE_WEB */
    char id[BODY_USER_ID_MAX_DIGITS + 1];
    char *body;             /* owned; NUL-terminated for convenience */
    size_t len;
    size_t cap;
    int too_large;
    struct api_pending pending;         /* its script in flight (POST /events, stream open) */
};

/* ------------------------------------------------------------ responses */

static enum MHD_Result
http_queue(struct MHD_Connection *conn, unsigned status,
           struct MHD_Response *resp)
{
    enum MHD_Result ret;

    if (resp == NULL)
        return MHD_NO;      /* out of memory: MHD closes the connection */
    ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Every JSON answer goes through here: one place for its headers. */
static int
http_json_response(struct MHD_Connection *conn, unsigned status,
                   const char *body, size_t len, const char *location,
                   const char *allow)
{
    struct MHD_Response *resp;

    resp = MHD_create_response_from_buffer(len, (void *)(uintptr_t)body,
                                           MHD_RESPMEM_MUST_COPY);
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type",
                            "application/json; charset=utf-8");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (location != NULL)
        MHD_add_response_header(resp, "Location", location);
    if (allow != NULL)
        MHD_add_response_header(resp, "Allow", allow);
    if (status == MHD_HTTP_SERVICE_UNAVAILABLE)
        MHD_add_response_header(resp, "Retry-After", "1");
    return http_queue(conn, status, resp);
}

int
http_send_json(struct MHD_Connection *conn, unsigned status,
               const char *body, size_t len, const char *location)
{
    return http_json_response(conn, status, body, len, location, NULL);
}

int
http_send_error(struct MHD_Connection *conn, unsigned status,
                const char *code, const char *message, const char *allow)
{
    json_object *o = json_object_new_object();
    const char *s = NULL;
    size_t len = 0;
    int ret = MHD_NO;

    if (o == NULL)
        return MHD_NO;
    if (json_object_object_add(o, "error", json_object_new_string(code)) == 0 &&
        json_object_object_add(o, "message", json_object_new_string(message)) == 0)
        s = json_object_to_json_string_length(
            o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (s != NULL)
        ret = http_json_response(conn, status, s, len, NULL, allow);
    json_object_put(o);
    return ret;
}

/* The page's files are static arrays: MHD sends them without a copy. */
static int
http_send_asset(struct MHD_Connection *conn, const struct web_asset *a)
{
    struct MHD_Response *resp;

    resp = MHD_create_response_from_buffer(a->len, (void *)(uintptr_t)a->data,
                                           MHD_RESPMEM_PERSISTENT);
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", a->content_type);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    return http_queue(conn, MHD_HTTP_OK, resp);
}

/* ---------------------------------------------------------------- streams */

static ssize_t
http_stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    return stream_read(cls, buf, max);
}

/* MHD is done with the response, so with the stream: unindex it, then
 * drop the response's reference. */
static void
http_stream_free(void *cls)
{
    struct stream *s = cls;
    struct hub *h = stream_hub_link(s)->hub;

    if (h != NULL)
        hub_remove(h, s);
    stream_close(s);
    log_info("stream %llu user=%s closed", (unsigned long long)stream_serial(s),
             stream_user_id(s)[0] ? stream_user_id(s) : "*");
    stream_unref(s);
}

/* The loop this HTTP thread runs; the access handler (and so
 * http_send_stream) only ever runs on an HTTP thread. */
static _Thread_local struct http_loop *http_this_loop;

/* Any thread: a stream of this loop's daemon was resumed. Without an
 * internal thread, libmicrohttpd has no channel of its own to say so. */
static void
http_loop_wake(void *arg)
{
    struct http_loop *l = arg;
    uint64_t one = 1;

    /* Fails only if the counter is full, and then the loop is awake. */
    if (write(l->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warn("http: cannot wake an HTTP thread: %s", strerror(errno));
}

int
http_send_stream(struct MHD_Connection *conn, struct stream *s)
{
    struct MHD_Response *resp;

    /* MHD_SIZE_UNKNOWN: chunked on HTTP/1.1, close-delimited on 1.0. The
     * block size only sizes the HTTP/1.0 buffer; keep it small. */
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 256,
                                             http_stream_read, s,
                                             http_stream_free);
    if (resp == NULL) {
        http_stream_free(s);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    stream_attach(s, conn, http_loop_wake, http_this_loop);
    return http_queue(conn, MHD_HTTP_OK, resp);
}

/* ---------------------------------------------------------------- routing */

/* Matches url to a route; fills req's id for routes with an account id
 * (an id that is not 1..18 digits makes the path unknown) and its asset
 * for the demo page. */
static enum route
http_route_match(const char *url, struct request *req)
{
    char *id = req->id;
    const char *p, *slash;
    size_t n;

    if ((req->asset = web_find(url)) != NULL)
        return ROUTE_WEB;
    if (strcmp(url, "/events/sse") == 0)
        return ROUTE_STREAM;
    if (strcmp(url, "/events") == 0)
        return ROUTE_EVENTS;
    if (strcmp(url, "/accounts") == 0)
        return ROUTE_ACCOUNTS;
    if (strcmp(url, "/health") == 0)
        return ROUTE_HEALTH;
    if (strncmp(url, "/accounts/", 10) != 0)
        return ROUTE_NONE;
    p = url + 10;
    slash = strchr(p, '/');
    n = slash ? (size_t)(slash - p) : strlen(p);
    if (!body_user_id_valid(p, n))
        return ROUTE_NONE;
    memcpy(id, p, n);
    id[n] = '\0';
    if (slash == NULL)
        return ROUTE_ACCOUNT;
    if (strcmp(slash, "/snapshots") == 0)
        return ROUTE_SNAPSHOTS;
    return ROUTE_NONE;
}

/* The one method each route accepts. */
static const char *
http_route_method(enum route r)
{
    switch (r) {
    case ROUTE_STREAM:
    case ROUTE_ACCOUNT:
    case ROUTE_HEALTH:
    case ROUTE_WEB:
        return MHD_HTTP_METHOD_GET;
    case ROUTE_EVENTS:
    case ROUTE_ACCOUNTS:
    case ROUTE_SNAPSHOTS:
        return MHD_HTTP_METHOD_POST;
    case ROUTE_NONE:
        break;
    }
    return NULL;
}

static int
http_method_ok(enum route r, const char *want, const char *method)
{
    /* HEAD is GET without a body (MHD drops the body itself), except for
     * a stream, which has no end to describe. */
    return strcmp(want, method) == 0 ||
           (r != ROUTE_STREAM && strcmp(want, MHD_HTTP_METHOD_GET) == 0 &&
            strcmp(method, MHD_HTTP_METHOD_HEAD) == 0);
}

/* The Allow header for a route. */
static const char *
http_route_allow(enum route r, const char *want)
{
    if (strcmp(want, MHD_HTTP_METHOD_GET) == 0)
        return r == ROUTE_STREAM ? "GET" : "GET, HEAD";
    return want;
}

/* First call of a POST: reject by headers alone, before reading the body.
 * Returns 0 to go on, or 1 when a response was queued (*ret set). */
static int
http_check_upload(struct MHD_Connection *conn, enum MHD_Result *ret)
{
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_TYPE);

    if (cl != NULL && strtoull(cl, NULL, 10) > BODY_MAX_BYTES) {
        *ret = (enum MHD_Result)http_send_error(
            conn, MHD_HTTP_CONTENT_TOO_LARGE, "payload_too_large",
            "the body is larger than 65536 bytes", NULL);
        return 1;
    }
    /* No Content-Type is read as JSON; any other type is refused. */
    if (ct != NULL && !body_content_type_is_json(ct)) {
        *ret = (enum MHD_Result)http_send_error(
            conn, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
            "send the body as Content-Type: application/json", NULL);
        return 1;
    }
    return 0;
}

/* Appends an upload chunk within BODY_MAX_BYTES; past it, remembers the
 * overflow and discards the rest (MHD must still be told it was read). */
static int
http_body_append(struct request *req, const char *data, size_t n)
{
    if (req->too_large || req->len + n > BODY_MAX_BYTES) {
        req->too_large = 1;
        return 0;
    }
    if (req->len + n + 1 > req->cap) {
        size_t ncap = req->cap ? req->cap : 1024;
        char *nb;

        while (ncap < req->len + n + 1)
            ncap *= 2;
        if ((nb = realloc(req->body, ncap)) == NULL)
            return -1;
        req->body = nb;
        req->cap = ncap;
    }
    memcpy(req->body + req->len, data, n);
    req->len += n;
    req->body[req->len] = '\0';
    return 0;
}

static enum MHD_Result
http_dispatch(struct http *h, struct MHD_Connection *conn, struct request *req)
{
    struct api_request r = {
        conn, h->app, req->id, req->body ? req->body : "", req->len, req->version,
        &req->pending, http_this_loop != NULL ? http_this_loop->pipe : NULL
    };

    switch (req->route) {
    case ROUTE_STREAM:
        return (enum MHD_Result)api_stream_open(&r);
    case ROUTE_EVENTS:
        return (enum MHD_Result)api_event_publish(&r);
    case ROUTE_ACCOUNTS:
        return (enum MHD_Result)api_account_create(&r);
    case ROUTE_ACCOUNT:
        return (enum MHD_Result)api_account_get(&r);
    case ROUTE_SNAPSHOTS:
        return (enum MHD_Result)api_snapshot_create(&r);
    case ROUTE_HEALTH:
        return (enum MHD_Result)api_health(&r);
    case ROUTE_WEB:
        return (enum MHD_Result)http_send_asset(conn, req->asset);
    case ROUTE_NONE:
        break;
    }
    return MHD_NO;
}

/* MHD calls this once with the headers, then once per body chunk, then
 * once more with no data. Answers go out on the last call, except
 * rejections decided from the headers: a response queued on the first
 * call makes MHD close the connection, which is what an unread body
 * needs anyway. */
static enum MHD_Result
http_on_request(void *cls, struct MHD_Connection *conn, const char *url,
                const char *method, const char *version,
                const char *upload_data, size_t *upload_data_size,
                void **con_cls)
{
    struct http *h = cls;
    struct request *req = *con_cls;
    enum MHD_Result ret;
    const char *want;

    if (req == NULL) {
        if ((req = calloc(1, sizeof(*req))) == NULL)
            return MHD_NO;
        *con_cls = req;
        req->version = version;
        req->route = http_route_match(url, req);
        if (req->route == ROUTE_NONE)
            return (enum MHD_Result)http_send_error(
                conn, MHD_HTTP_NOT_FOUND, "not_found", "no such resource", NULL);
        want = http_route_method(req->route);
        if (!http_method_ok(req->route, want, method))
            return (enum MHD_Result)http_send_error(
                conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                "this resource does not support that method",
                http_route_allow(req->route, want));
        if (strcmp(want, MHD_HTTP_METHOD_POST) == 0 &&
            http_check_upload(conn, &ret))
            return ret;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (http_body_append(req, upload_data, *upload_data_size) == -1)
            return (enum MHD_Result)http_send_error(
                conn, MHD_HTTP_SERVICE_UNAVAILABLE, "out_of_memory",
                "the server is out of memory", NULL);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->too_large)
        return (enum MHD_Result)http_send_error(
            conn, MHD_HTTP_CONTENT_TOO_LARGE, "payload_too_large",
            "the body is larger than 65536 bytes", NULL);
    return http_dispatch(h, conn, req);
}

static void
http_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                  enum MHD_RequestTerminationCode toe)
{
    struct request *req = *con_cls;

    (void)cls;
    (void)conn;
    (void)toe;
    if (req == NULL)
        return;
    api_pending_clear(&req->pending);
    free(req->body);
    free(req);
    *con_cls = NULL;
}

static void
http_on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    size_t n;

    (void)cls;
    vsnprintf(line, sizeof(line), fmt, ap);
    n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    /* A client that went away is routine (it is how dead streams are
     * found); anything else from MHD deserves a warning. */
    if (strstr(line, "Failed to send") != NULL ||
        strstr(line, "Application reported internal error") != NULL ||
        strstr(line, "no longer available") != NULL ||
        strstr(line, "reset by") != NULL)
        log_debug("http: %s", line);
    else
        log_warn("http: %s", line);
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
http_start_daemon(struct http *h, const struct sockaddr_in *sin, unsigned conn_limit)
{
    return MHD_start_daemon(
        /* No MHD_USE_ITC: without an internal thread MHD drops it, and
         * resumes wake the loop through http_loop_wake instead. */
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
            /* With the hand-off, closing MHD's copy of a stream socket
             * must not shutdown() it: TURBO skips that (connection.c,
             * MHD_connection_mark_closed_). */
            MHD_USE_TURBO,
        0, NULL, NULL, http_on_request, h,
        /* First, so MHD's own start-up messages use it too. */
        MHD_OPTION_EXTERNAL_LOGGER, http_on_mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)sin,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int)1,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)HTTP_LISTEN_BACKLOG,
        /* The default is FD_SETSIZE - 4 = 1020, even with epoll. */
        MHD_OPTION_CONNECTION_LIMIT, conn_limit,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEMORY,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)HTTP_CONN_TIMEOUT_S,
        MHD_OPTION_NOTIFY_COMPLETED, http_on_completed, h,
        MHD_OPTION_END);
}

/* How long the loop may sleep: MHD's next connection timeout, 0 when it
 * already holds ready connections, forever when it has neither. */
static int
http_loop_timeout_ms(struct MHD_Daemon *d)
{
    MHD_UNSIGNED_LONG_LONG ms;

    if (MHD_get_timeout(d, &ms) != MHD_YES)
        return -1;
    return ms > INT_MAX ? INT_MAX : (int)ms;
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
    struct pollfd pfd[4];
    uint64_t n;

    if (info == NULL) {
        log_error("http: libmicrohttpd has no epoll fd");
        return NULL;
    }
    http_this_loop = l;
    if ((l->pipe = pipeline_new(l->http->app->cfg)) == NULL)
        log_warn("http: out of memory for a Redis pipeline; publishes and stream opens block");
    pfd[0].fd = info->epoll_fd;
    pfd[1].fd = l->wake_fd;
    pfd[2].fd = l->http->stop_fd;
    for (int i = 0; i < 3; i++)
        pfd[i].events = POLLIN;
    for (;;) {
        int timeout = http_loop_timeout_ms(l->daemon);

        pfd[3].fd = -1;             /* poll skips it, with revents 0 */
        if (l->pipe != NULL) {
            int pt = pipeline_timeout_ms(l->pipe);

            pfd[3].fd = pipeline_fd(l->pipe);
            pfd[3].events = pipeline_events(l->pipe);
            if (pt >= 0 && (timeout < 0 || pt < timeout))
                timeout = pt;
        }
        if (poll(pfd, 4, timeout) < 0 && errno != EINTR) {
            log_error("http: poll: %s", strerror(errno));
            break;
        }
        if (pfd[2].revents != 0)
            break;
        /* Reset before MHD_run: a resume after this wakes the next poll. */
        if (pfd[1].revents != 0 && read(l->wake_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
            log_warn("http: wake fd: %s", strerror(errno));
        /* Replies first: their requests resume and answer in this MHD_run. */
        if (l->pipe != NULL)
            pipeline_handle(l->pipe, pfd[3].revents);
        MHD_run(l->daemon);
        /* The scripts of every request this pass took go out in one write. */
        if (l->pipe != NULL)
            pipeline_flush(l->pipe);
    }
    /* Scripts still in flight fail (503), and their requests resume, so
     * that MHD_stop_daemon finds none suspended. */
    pipeline_free(l->pipe);
    l->pipe = NULL;
    MHD_run(l->daemon);
    return NULL;
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
http_start(struct app *app, char *err, size_t errlen)
{
    const struct config *cfg = app->cfg;
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
    if ((h = calloc(1, sizeof(*h))) == NULL ||
        (h->loop = calloc(n, sizeof(*h->loop))) == NULL ||
        (h->stop_fd = eventfd(0, EFD_CLOEXEC)) < 0) {
        if (h != NULL)
            free(h->loop);
        free(h);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->app = app;
    while (h->nloops < n) {
        /* Counted before it is set up: http_stop cleans up whatever of
         * it was started. */
        struct http_loop *l = &h->loop[h->nloops++];

        l->http = h;
        if ((l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
            (l->daemon = http_start_daemon(h, &sin, limit)) == NULL) {
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
    for (unsigned i = 0; i < h->nloops; i++) {
        MHD_socket fd = MHD_quiesce_daemon(h->loop[i].daemon);

        if (fd != MHD_INVALID_SOCKET)
            close(fd);
    }
}

void
http_stop(struct http *h)
{
    uint64_t one = 1;

    if (h == NULL)
        return;
    /* Never read, so it wakes every loop; each exits at once. */
    if (write(h->stop_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
        log_error("http: cannot stop the HTTP threads: %s", strerror(errno));
    for (unsigned i = 0; i < h->nloops; i++) {
        if (h->loop[i].running)
            pthread_join(h->loop[i].thread, NULL);
    }
    /* The threads are gone: MHD_stop_daemon may run on this one. */
    for (unsigned i = 0; i < h->nloops; i++) {
        if (h->loop[i].daemon != NULL)
            MHD_stop_daemon(h->loop[i].daemon);
        if (h->loop[i].wake_fd >= 0)
            close(h->loop[i].wake_fd);
    }
    close(h->stop_fd);
    free(h->loop);
    free(h);
}
