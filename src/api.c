/* api.c -- the endpoints. Each validates its input (body.c), calls the
 * store and answers through http.c; nothing is written unless the whole
 * input is valid. Runs on libmicrohttpd worker threads. */
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "app.h"
#include "body.h"
#include "clock.h"
#include "config.h"
#include "http.h"
#include "hub.h"
#include "log.h"
#include "replay.h"
#include "sink.h"
#include "store.h"
#include "stream.h"
#include "subscriber.h"

/* The one place store results become HTTP statuses. */
static int
api_send_store_error(struct MHD_Connection *conn, enum store_result rc,
                     const char *not_found)
{
    switch (rc) {
    case STORE_NOT_FOUND:
        return http_send_error(conn, MHD_HTTP_NOT_FOUND, "not_found",
                               not_found, NULL);
    case STORE_UNAVAILABLE:
        return http_send_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                               "redis_unavailable",
                               "Redis is unreachable; retry shortly", NULL);
    case STORE_ERROR:
    case STORE_OK:
        break;
    }
    return http_send_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
                           "internal_error", "unexpected storage error", NULL);
}

/* Every write publishes, so every write first waits for room in the
 * fan-out (subscriber_wait_room); past PUBLISH_WAIT_MS it is refused. */
static int
api_send_overloaded(struct MHD_Connection *conn)
{
    return http_send_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "overloaded",
                           "events are published faster than they can be "
                           "delivered; retry shortly", NULL);
}

/* A rejected body is the client's fault (400), except when the parser
 * ran out of memory: then the request may be retried (503). */
static int
api_send_body_error(struct MHD_Connection *conn, const struct body_error *e)
{
    unsigned status = strcmp(e->code, "out_of_memory") == 0
                          ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_BAD_REQUEST;

    return http_send_error(conn, status, e->code, e->message, NULL);
}

/* Serialises o (consumed) and sends it. */
static int
api_send_object(struct MHD_Connection *conn, unsigned status, json_object *o,
                const char *location)
{
    const char *s;
    size_t len;
    int ret = MHD_NO;

    if (o == NULL)
        return http_send_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                               "out_of_memory", "the server is out of memory",
                               NULL);
    s = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (s != NULL)
        ret = http_send_json(conn, status, s, len, location);
    json_object_put(o);
    return ret;
}

/* ---------------------------------------------------------------- streams */

/* The id to resume after: the Last-Event-ID header (what EventSource
 * sends on reconnect) or, for a first connect, which cannot carry a
 * header, the lastEventId or last_event_id query parameter. Returns 0
 * with *has set, or -1 for an id that is not an event id. */
static int
api_resume_id(struct MHD_Connection *conn, struct event_id *after, int *has)
{
    const char *v;

    v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Last-Event-ID");
    if (v == NULL || v[0] == '\0')
        v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND,
                                        "lastEventId");
    if (v == NULL || v[0] == '\0')
        v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND,
                                        "last_event_id");
    *has = v != NULL && v[0] != '\0';
    if (!*has)
        return 0;
    return eventid_parse(v, strlen(v), after);
}

/* STREAM_HANDOFF=1: answer the stream ourselves on a duplicate of the
 * connection's socket, owned by a writer loop from now on, and tell
 * libmicrohttpd to drop the request (MHD_NO: it closes its copy without
 * shutdown(), see http.c). Takes the caller's reference to s. */
static int
api_stream_handoff(const struct api_request *r, struct stream *s)
{
    static const char head11[] =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"
        "Transfer-Encoding: chunked\r\n\r\n";
    static const char head10[] =
        "HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n"
        "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"
        "Connection: close\r\n\r\n";
    const union MHD_ConnectionInfo *ci;
    int chunked = r->version == NULL || strcmp(r->version, "HTTP/1.0") != 0;
    int fd;

    ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci == NULL || (fd = fcntl(ci->connect_fd, F_DUPFD_CLOEXEC, 0)) < 0 ||
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == -1) {
        if (ci != NULL && fd >= 0)
            close(fd);
        hub_remove(r->app->hub, s);
        stream_unref(s);
        return http_send_error(r->conn, MHD_HTTP_SERVICE_UNAVAILABLE, "out_of_memory",
                               "the server cannot take another stream", NULL);
    }
    /* An event must not wait behind the client's delayed ACK of the one
     * before (Nagle): SSE frames are small and each should go at once. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
    sinks_attach(r->app->sinks, s, fd, chunked, chunked ? head11 : head10,
                 chunked ? sizeof(head11) - 1 : sizeof(head10) - 1);
    return MHD_NO;
}

/* The history read is done (rc): start the stream, or drop it and say
 * why. Takes the caller's reference to s. */
static int
api_stream_start(const struct api_request *r, struct stream *s, enum store_result rc,
                 int has_after)
{
    const char *uid = stream_user_id(s);

    if (rc != STORE_OK) {
        hub_remove(r->app->hub, s);
        stream_unref(s);
        return api_send_store_error(r->conn, rc, "no account with this userId");
    }
    log_info("stream %llu user=%s open%s", (unsigned long long)stream_serial(s),
             uid[0] ? uid : "*", has_after ? " (resuming)" : "");
    if (r->app->sinks != NULL)
        return api_stream_handoff(r, s);
    return http_send_stream(r->conn, s);
}

/* Sends the request's pending script on the thread's pipeline and
 * suspends the request until done runs. done can only run from this
 * thread's loop, after the handler returns, so suspending after sending
 * is safe. Returns -1 if nothing was sent. */
static int
api_pending_send(const struct api_request *r, pipeline_done_fn done)
{
    struct api_pending *pd = r->pending;

    if (pipeline_send(r->pipe, &pd->q, &pd->cmd, done, pd) == -1)
        return -1;
    pd->conn = r->conn;
    pd->state = API_PENDING_WAITING;
    MHD_suspend_connection(r->conn);
    return 0;
}

/* The pipeline answered the history read (same thread, outside MHD_run):
 * finish the replay and resume the request, whose handler then starts
 * the stream. */
static void
api_on_history_read(void *arg, const struct redisReply *reply)
{
    struct api_pending *pd = arg;
    struct store_replay rp;

    pd->rc = store_stream_result(reply, &pd->cmd, &rp);
    if (pd->rc == STORE_OK)
        pd->rc = replay_finish(pd->stream, pd->has_after ? &pd->after : NULL, &rp);
    pd->state = API_PENDING_DONE;
    MHD_resume_connection(pd->conn);
}

int
api_stream_open(const struct api_request *r)
{
    struct app *app = r->app;
    struct api_pending *pd = r->pending;
    const char *uid;
    struct event_id after;
    struct stream *s;
    int has_after;

    if (pd != NULL && pd->state == API_PENDING_DONE) {
        s = pd->stream;
        pd->stream = NULL;
        return api_stream_start(r, s, pd->rc, pd->has_after);
    }
    if (pd != NULL && pd->state == API_PENDING_WAITING)
        return MHD_YES;             /* suspended; not called again until done */
    uid = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "userId");
    if (uid != NULL && !body_user_id_valid(uid, strlen(uid)))
        return http_send_error(r->conn, MHD_HTTP_BAD_REQUEST,
                               "invalid_parameter",
                               "userId must be 1 to 18 digits", NULL);
    if (api_resume_id(r->conn, &after, &has_after) == -1)
        return http_send_error(r->conn, MHD_HTTP_BAD_REQUEST,
                               "invalid_parameter",
                               "Last-Event-ID must be an event id such as "
                               "1732484473123-0", NULL);
    if (atomic_load(&app->stopping))
        return http_send_error(r->conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                               "shutting_down", "this instance is stopping",
                               NULL);
    /* Handed-off streams leave libmicrohttpd's connection count, so the
     * limit is kept here; a full instance says so rather than failing on
     * the file descriptor limit later. */
    if (app->sinks != NULL && hub_count(app->hub) >= app->cfg->max_connections)
        return http_send_error(r->conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                               "too_many_streams",
                               "this instance holds MAX_CONNECTIONS streams",
                               NULL);
    s = stream_new(uid, (size_t)app->cfg->stream_queue_kib * 1024, app->hello);
    if (s == NULL)
        return http_send_error(r->conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                               "out_of_memory", "the server is out of memory",
                               NULL);
    /* Index first, then read history: an event published in between is
     * both held live and in the read, and the stream's dedup keeps one. */
    if (hub_add(app->hub, s) == -1) {
        stream_unref(s);
        return http_send_error(r->conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                               "shutting_down", "this instance is stopping",
                               NULL);
    }
    if (pd != NULL && r->pipe != NULL) {
        /* A reconnect storm's reads then share round trips instead of
         * holding the thread one by one. */
        pd->after = after;
        pd->has_after = has_after;
        store_read_command(&pd->cmd, uid, has_after ? &pd->after : NULL);
        if (api_pending_send(r, api_on_history_read) == -1)
            return api_stream_start(r, s, STORE_UNAVAILABLE, has_after);
        pd->stream = s;
        return MHD_YES;
    }
    return api_stream_start(r, s, replay_open(s, has_after ? &after : NULL), has_after);
}

/* ---------------------------------------------------------------- accounts */

static json_object *
api_account_object(const struct account *a)
{
    json_object *o = json_object_new_object();

    if (o == NULL)
        return NULL;
    json_object_object_add(o, "id", json_object_new_string(a->id));
    json_object_object_add(o, "name", json_object_new_string(a->name));
    json_object_object_add(o, "balance", json_object_new_int64(a->balance));
    json_object_object_add(o, "createdAt", json_object_new_int64(a->created_at));
    return o;
}

int
api_account_create(const struct api_request *r)
{
    struct account_input in;
    struct body_error e;
    struct account a;
    enum store_result rc;
    char location[64];

    if (body_parse_account(r->body, r->body_len, &in, &e) == -1)
        return api_send_body_error(r->conn, &e);
    if (subscriber_wait_room(r->app->sub) == -1)
        return api_send_overloaded(r->conn);
    rc = store_account_create(in.name, in.balance, &a);
    if (rc != STORE_OK)
        return api_send_store_error(r->conn, rc, "no such account");
    subscriber_note_published(r->app->sub, 2);  /* account.created, snapshot */
    snprintf(location, sizeof(location), "/accounts/%s", a.id);
    return api_send_object(r->conn, MHD_HTTP_CREATED, api_account_object(&a),
                           location);
}

int
api_account_get(const struct api_request *r)
{
    struct account a;
    enum store_result rc = store_account_get(r->id, &a);

    if (rc != STORE_OK)
        return api_send_store_error(r->conn, rc, "no account with this id");
    return api_send_object(r->conn, MHD_HTTP_OK, api_account_object(&a), NULL);
}

int
api_snapshot_create(const struct api_request *r)
{
    struct snapshot_input in;
    struct body_error e;
    enum store_result rc;
    char id[EVENTID_STR_MAX];
    int64_t balance, taken_at = clock_wall_ms();
    json_object *o;

    if (body_parse_snapshot(r->body, r->body_len, &in, &e) == -1)
        return api_send_body_error(r->conn, &e);
    if (subscriber_wait_room(r->app->sub) == -1)
        return api_send_overloaded(r->conn);
    rc = store_snapshot_take(r->id, in.has_balance, in.balance, taken_at, id,
                             sizeof(id), &balance);
    if (rc != STORE_OK)
        return api_send_store_error(r->conn, rc, "no account with this id");
    subscriber_note_published(r->app->sub, 1);
    if ((o = json_object_new_object()) != NULL) {
        json_object_object_add(o, "id", json_object_new_string(id));
        json_object_object_add(o, "accountId", json_object_new_string(r->id));
        json_object_object_add(o, "balance", json_object_new_int64(balance));
        json_object_object_add(o, "takenAt", json_object_new_int64(taken_at));
    }
    return api_send_object(r->conn, MHD_HTTP_CREATED, o, NULL);
}

/* ---------------------------------------------------------------- events */

/* The answer to a write: 202 with its id, or the store's error. */
static int
api_event_answer(const struct api_request *r, enum store_result rc, const char *id)
{
    json_object *o;

    if (rc != STORE_OK)
        return api_send_store_error(r->conn, rc, "no account with this userId");
    subscriber_note_published(r->app->sub, 1);
    if ((o = json_object_new_object()) != NULL)
        json_object_object_add(o, "id", json_object_new_string(id));
    return api_send_object(r->conn, MHD_HTTP_ACCEPTED, o, NULL);
}

/* The pipeline answered (same thread, outside MHD_run): keep the outcome
 * and resume the request, whose handler then sends it. */
static void
api_on_event_stored(void *arg, const struct redisReply *reply)
{
    struct api_pending *pd = arg;

    pd->id[0] = '\0';
    pd->rc = store_event_result(reply, pd->id, sizeof(pd->id));
    store_command_clear(&pd->cmd);
    pd->state = API_PENDING_DONE;
    MHD_resume_connection(pd->conn);
}

void
api_pending_clear(struct api_pending *pd)
{
    if (pd->state == API_PENDING_WAITING) {
        /* The pipeline still points at it; the request cannot end while
         * suspended, so this is a bug, and leaking beats a use after free. */
        log_error("api: a request ended while its script was in flight");
        return;
    }
    /* A stream whose open was answered but whose client left before the
     * handler ran again. */
    if (pd->stream != NULL) {
        hub_remove(stream_hub_link(pd->stream)->hub, pd->stream);
        stream_unref(pd->stream);
        pd->stream = NULL;
    }
    store_command_clear(&pd->cmd);
    event_input_clear(&pd->in);
    pd->state = API_PENDING_NONE;
}

int
api_event_publish(const struct api_request *r)
{
    struct api_pending *pd = r->pending;
    struct event_input in;
    struct body_error e;
    enum store_result rc;
    char id[EVENTID_STR_MAX];

    if (pd != NULL && pd->state == API_PENDING_DONE)
        return api_event_answer(r, pd->rc, pd->id);
    if (pd != NULL && pd->state == API_PENDING_WAITING)
        return MHD_YES;             /* suspended; not called again until done */
    if (body_parse_event(r->body, r->body_len, &in, &e) == -1)
        return api_send_body_error(r->conn, &e);
    if (subscriber_wait_room(r->app->sub) == -1) {
        event_input_clear(&in);
        return api_send_overloaded(r->conn);
    }
    if (pd != NULL && r->pipe != NULL) {
        pd->in = in;
        if (store_event_command(&pd->cmd, pd->in.user_id, pd->in.type,
                                pd->in.data_json, pd->in.data_len) == -1)
            return api_send_store_error(r->conn, STORE_UNAVAILABLE, NULL);
        if (api_pending_send(r, api_on_event_stored) == -1) {
            store_command_clear(&pd->cmd);
            return api_send_store_error(r->conn, STORE_UNAVAILABLE, NULL);
        }
        return MHD_YES;
    }
    rc = store_event_publish(in.user_id, in.type, in.data_json, in.data_len,
                             id, sizeof(id));
    event_input_clear(&in);
    return api_event_answer(r, rc, id);
}

/* ---------------------------------------------------------------- health */

int
api_health(const struct api_request *r)
{
    int up = subscriber_is_up(r->app->sub);
    json_object *o = json_object_new_object();

    if (o != NULL) {
        json_object_object_add(o, "status",
                               json_object_new_string(up ? "ok" : "degraded"));
        json_object_object_add(o, "serverId",
                               json_object_new_string(r->app->cfg->server_id));
        json_object_object_add(o, "redis",
                               json_object_new_string(up ? "up" : "down"));
        json_object_object_add(o, "streams",
                               json_object_new_int64((int64_t)hub_count(r->app->hub)));
    }
    return api_send_object(r->conn, up ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                           o, NULL);
}
