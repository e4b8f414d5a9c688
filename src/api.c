/* api.c -- the endpoints. Each validates its input (body.c), calls the
 * store (through the HTTP thread's pipeline where a request may wait on
 * Redis) and answers through http.c; nothing is written unless the whole
 * input is valid. A request that waits keeps its state in a struct
 * api_pending, owned by the request (freed by http.c when it ends).
 * Handlers run on the HTTP threads. */
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "app.h"
#include "body.h"
#include "clock.h"
#include "config.h"
#include "eventid.h"
#include "http.h"
#include "hub.h"
#include "log.h"
#include "pipeline.h"
#include "replay.h"
#include "store.h"
#include "stream.h"
#include "subscriber.h"
#include "web.h"
#include "writer.h"

/* A POST /events or a stream open whose script (the write, or the
 * history read) is in flight on the thread's pipeline: the request waits
 * suspended, and its handler runs again once the script is answered. */
enum api_pending_state { API_PENDING_NONE, API_PENDING_WAITING, API_PENDING_DONE };
struct api_pending {
    enum api_pending_state state;
    struct http_req *req;
    struct app *app;
    struct store_cmd cmd;           /* the script in flight */
    struct pipeline_req q;
    enum store_result rc;
    /* POST /events */
    struct event_input in;          /* the parsed body, until answered */
    char id[EVENTID_STR_MAX];       /* the event's id, once stored */
    /* GET /events/sse: the stream, indexed in its hub and still in
     * replay mode until the read is answered; owned here until it is
     * handed to a writer loop. */
    struct stream *stream;
    struct event_id after;
    int has_after;
};

/* ------------------------------------------------------------- answers */

/* The one place store results become HTTP statuses. */
static enum http_ret
api_send_store_error(struct http_req *r, enum store_result rc, const char *not_found)
{
    switch (rc) {
    case STORE_NOT_FOUND:
        return http_send_error(r, 404, "not_found", not_found, NULL);
    case STORE_UNAVAILABLE:
        return http_send_error(r, 503, "redis_unavailable",
                               "Redis is unreachable; retry shortly", NULL);
    case STORE_ERROR:
    case STORE_OK:
        break;
    }
    return http_send_error(r, 500, "internal_error", "unexpected storage error", NULL);
}

static enum http_ret
api_send_out_of_memory(struct http_req *r)
{
    return http_send_error(r, 503, "out_of_memory", "the server is out of memory", NULL);
}

/* Every write publishes, so every write first waits for room in the
 * fan-out (subscriber_wait_room); past PUBLISH_WAIT_MS it is refused. */
static enum http_ret
api_send_overloaded(struct http_req *r)
{
    return http_send_error(r, 503, "overloaded",
                           "events are published faster than they can be "
                           "delivered; retry shortly", NULL);
}

/* A rejected body is the client's fault (400), except when the parser
 * ran out of memory: then the request may be retried (503). */
static enum http_ret
api_send_body_error(struct http_req *r, const struct body_error *e)
{
    unsigned status = strcmp(e->code, "out_of_memory") == 0 ? 503 : 400;

    return http_send_error(r, status, e->code, e->message, NULL);
}

/* Serialises o (consumed) and sends it. */
static enum http_ret
api_send_object(struct http_req *r, unsigned status, json_object *o,
                const char *location)
{
    const char *s;
    size_t len;
    enum http_ret ret = HTTP_CLOSE;

    if (o == NULL)
        return api_send_out_of_memory(r);
    s = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (s != NULL)
        ret = http_send_json(r, status, s, len, location);
    json_object_put(o);
    return ret;
}

/* ------------------------------------------------------------- pending */

/* The request ended (http.c calls this however it ended). */
static void
api_pending_free(void *arg)
{
    struct api_pending *pd = arg;

    if (pd->state == API_PENDING_WAITING) {
        /* The pipeline still points at it; a request cannot end while
         * suspended, so this is a bug, and leaking beats a use after free. */
        log_error("api: a request ended while its script was in flight");
        return;
    }
    /* A stream whose open was answered but whose client left before the
     * handler ran again. */
    if (pd->stream != NULL)
        hub_drop_stream(pd->app->hub, pd->stream, STREAM_END_CLIENT);
    store_command_clear(&pd->cmd);
    event_input_clear(&pd->in);
    free(pd);
}

/* The request's pending state, made on first use; NULL when out of
 * memory. */
static struct api_pending *
api_pending_get(struct http_req *r, struct app *app)
{
    struct api_pending *pd = http_req_state(r);

    if (pd == NULL && (pd = calloc(1, sizeof(*pd))) != NULL) {
        pd->req = r;
        pd->app = app;
        http_req_set_state(r, pd, api_pending_free);
    }
    return pd;
}

/* Sends the request's pending script on the thread's pipeline and
 * suspends the request until done runs. done can only run from this
 * thread's loop, after the handler returns, so suspending after sending
 * is safe. Returns -1 if nothing was sent. */
static int
api_pending_send(struct api_pending *pd, pipeline_done_fn done)
{
    if (pipeline_send(http_req_pipeline(pd->req), &pd->q, &pd->cmd, done, pd) == -1)
        return -1;
    pd->state = API_PENDING_WAITING;
    http_req_suspend(pd->req);
    return 0;
}

/* ---------------------------------------------------------------- streams */

/* The id to resume after: the Last-Event-ID header (what EventSource
 * sends on reconnect) or, for a first connect, which cannot carry a
 * header, the lastEventId or last_event_id query parameter. Returns 0
 * with *has set, or -1 for an id that is not an event id. */
static int
api_resume_id(struct http_req *r, struct event_id *after, int *has)
{
    const char *v;

    v = http_req_header(r, "Last-Event-ID");
    if (v == NULL || v[0] == '\0')
        v = http_req_query(r, "lastEventId");
    if (v == NULL || v[0] == '\0')
        v = http_req_query(r, "last_event_id");
    *has = v != NULL && v[0] != '\0';
    if (!*has)
        return 0;
    return eventid_parse(v, strlen(v), after);
}

/* The history read is done: hand the stream to a writer loop, or drop it
 * and say why. Takes pd's stream. */
static enum http_ret
api_stream_start(struct api_pending *pd)
{
    struct http_req *r = pd->req;
    struct hub *hub = pd->app->hub;
    struct stream *s = pd->stream;
    const char *uid = stream_user_id(s);
    char head[HTTP_STREAM_HEAD_MAX];
    size_t head_len;
    int fd, chunked, err;

    pd->stream = NULL;
    if (pd->rc != STORE_OK) {
        hub_drop_stream(hub, s, STREAM_END_OPEN_FAILED);
        return api_send_store_error(r, pd->rc, "no account with this userId");
    }
    if ((err = http_req_take_over(r, &fd, head, &head_len, &chunked)) < 0) {
        hub_drop_stream(hub, s, STREAM_END_OPEN_FAILED);
        /* Out of descriptors is not out of memory: say which. */
        if (err == -EMFILE || err == -ENFILE)
            return http_send_error(r, 503, "too_many_streams",
                                   "this instance has no file descriptor left "
                                   "for another stream", NULL);
        return http_send_error(r, 500, "internal_error",
                               "the stream's connection could not be taken over",
                               NULL);
    }
    log_info("stream %llu user=%s open%s", (unsigned long long)stream_serial(s),
             uid[0] ? uid : "*", pd->has_after ? " (resuming)" : "");
    writers_attach(pd->app->writers, s, fd, chunked, head, head_len);
    return HTTP_CLOSE;
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
    http_req_resume(pd->req);
}

static enum http_ret
api_stream_open(struct http_req *r, void *arg)
{
    struct app *app = arg;
    struct api_pending *pd = http_req_state(r);
    const char *uid;
    struct event_id after;
    struct stream *s;
    int has_after;

    if (pd != NULL && pd->state == API_PENDING_DONE)
        return api_stream_start(pd);
    if (pd != NULL && pd->state == API_PENDING_WAITING)
        return HTTP_DONE;           /* suspended; not called again until done */
    uid = http_req_query(r, "userId");
    if (uid != NULL && !body_user_id_valid(uid, strlen(uid)))
        return http_send_error(r, 400, "invalid_parameter",
                               "userId must be 1 to 18 digits", NULL);
    if (api_resume_id(r, &after, &has_after) == -1)
        return http_send_error(r, 400, "invalid_parameter",
                               "Last-Event-ID must be an event id such as "
                               "1732484473123-0", NULL);
    if (atomic_load(&app->stopping))
        return http_send_error(r, 503, "shutting_down", "this instance is stopping",
                               NULL);
    /* Streams leave libmicrohttpd's connection count once taken over, so
     * the limit is kept here; a full instance says so rather than failing
     * on the file descriptor limit later. */
    if (hub_count(app->hub) >= app->cfg->max_connections)
        return http_send_error(r, 503, "too_many_streams",
                               "this instance holds MAX_CONNECTIONS streams", NULL);
    if ((pd = api_pending_get(r, app)) == NULL)
        return api_send_out_of_memory(r);
    s = stream_new(uid, (size_t)app->cfg->stream_queue_kib * 1024, app->hello);
    if (s == NULL)
        return api_send_out_of_memory(r);
    /* Index first, then read history: an event published in between is
     * both held live and in the read, and the stream's dedup keeps one. */
    if (hub_add(app->hub, s) == -1) {
        stream_unref(s);
        return http_send_error(r, 503, "shutting_down", "this instance is stopping",
                               NULL);
    }
    pd->stream = s;
    pd->after = after;
    pd->has_after = has_after;
    /* A reconnect storm's reads share round trips instead of holding the
     * thread one by one. */
    store_read_command(&pd->cmd, uid, has_after ? &pd->after : NULL);
    if (api_pending_send(pd, api_on_history_read) == -1) {
        pd->rc = STORE_UNAVAILABLE;
        return api_stream_start(pd);
    }
    return HTTP_DONE;
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

static enum http_ret
api_account_create(struct http_req *r, void *arg)
{
    struct app *app = arg;
    struct account_input in;
    struct body_error e;
    struct account a;
    enum store_result rc;
    char location[64];
    size_t len;
    const char *body = http_req_body(r, &len);

    if (body_parse_account(body, len, &in, &e) == -1)
        return api_send_body_error(r, &e);
    if (subscriber_wait_room(app->sub) == -1)
        return api_send_overloaded(r);
    rc = store_account_create(in.name, in.balance, &a);
    if (rc != STORE_OK)
        return api_send_store_error(r, rc, "no such account");
    subscriber_note_published(app->sub, 2);     /* account.created, snapshot */
    snprintf(location, sizeof(location), "/accounts/%s", a.id);
    return api_send_object(r, 201, api_account_object(&a), location);
}

static enum http_ret
api_account_get(struct http_req *r, void *arg)
{
    struct account a;
    enum store_result rc = store_account_get(http_req_param(r), &a);

    (void)arg;
    if (rc != STORE_OK)
        return api_send_store_error(r, rc, "no account with this id");
    return api_send_object(r, 200, api_account_object(&a), NULL);
}

static enum http_ret
api_snapshot_create(struct http_req *r, void *arg)
{
    struct app *app = arg;
    struct snapshot_input in;
    struct body_error e;
    enum store_result rc;
    char id[EVENTID_STR_MAX];
    const char *uid = http_req_param(r);
    int64_t balance, taken_at = clock_wall_ms();
    json_object *o;
    size_t len;
    const char *body = http_req_body(r, &len);

    if (body_parse_snapshot(body, len, &in, &e) == -1)
        return api_send_body_error(r, &e);
    if (subscriber_wait_room(app->sub) == -1)
        return api_send_overloaded(r);
    rc = store_snapshot_take(uid, in.has_balance, in.balance, taken_at, id,
                             sizeof(id), &balance);
    if (rc != STORE_OK)
        return api_send_store_error(r, rc, "no account with this id");
    subscriber_note_published(app->sub, 1);
    if ((o = json_object_new_object()) != NULL) {
        json_object_object_add(o, "id", json_object_new_string(id));
        json_object_object_add(o, "accountId", json_object_new_string(uid));
        json_object_object_add(o, "balance", json_object_new_int64(balance));
        json_object_object_add(o, "takenAt", json_object_new_int64(taken_at));
    }
    return api_send_object(r, 201, o, NULL);
}

/* ---------------------------------------------------------------- events */

/* The answer to a write: 202 with its id, or the store's error. */
static enum http_ret
api_event_answer(struct api_pending *pd)
{
    json_object *o;

    if (pd->rc != STORE_OK)
        return api_send_store_error(pd->req, pd->rc, "no account with this userId");
    subscriber_note_published(pd->app->sub, 1);
    if ((o = json_object_new_object()) != NULL)
        json_object_object_add(o, "id", json_object_new_string(pd->id));
    return api_send_object(pd->req, 202, o, NULL);
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
    http_req_resume(pd->req);
}

static enum http_ret
api_event_publish(struct http_req *r, void *arg)
{
    struct app *app = arg;
    struct api_pending *pd = http_req_state(r);
    struct body_error e;
    size_t len;
    const char *body;

    if (pd != NULL && pd->state == API_PENDING_DONE)
        return api_event_answer(pd);
    if (pd != NULL && pd->state == API_PENDING_WAITING)
        return HTTP_DONE;           /* suspended; not called again until done */
    if ((pd = api_pending_get(r, app)) == NULL)
        return api_send_out_of_memory(r);
    body = http_req_body(r, &len);
    if (body_parse_event(body, len, &pd->in, &e) == -1)
        return api_send_body_error(r, &e);
    if (subscriber_wait_room(app->sub) == -1)
        return api_send_overloaded(r);
    if (store_event_command(&pd->cmd, pd->in.user_id, pd->in.type,
                            pd->in.data_json, pd->in.data_len) == -1)
        return api_send_out_of_memory(r);
    if (api_pending_send(pd, api_on_event_stored) == -1)
        return api_send_store_error(r, STORE_UNAVAILABLE, NULL);
    return HTTP_DONE;
}

/* ---------------------------------------------------------------- health */

static enum http_ret
api_health(struct http_req *r, void *arg)
{
    struct app *app = arg;
    int up = subscriber_is_up(app->sub);
    json_object *o = json_object_new_object();

    if (o != NULL) {
        json_object_object_add(o, "status",
                               json_object_new_string(up ? "ok" : "degraded"));
        json_object_object_add(o, "serverId",
                               json_object_new_string(app->cfg->server_id));
        json_object_object_add(o, "redis",
                               json_object_new_string(up ? "up" : "down"));
        json_object_object_add(o, "streams",
                               json_object_new_int64((int64_t)hub_count(app->hub)));
    }
    return api_send_object(r, up ? 200 : 503, o, NULL);
}

/* ---------------------------------------------------------------- the page */

static int
api_is_web_asset(const char *path)
{
    return web_find(path) != NULL;
}

static enum http_ret
api_web_asset(struct http_req *r, void *arg)
{
    const struct web_asset *a = web_find(http_req_path(r));

    (void)arg;
    return http_send_static(r, a->content_type, a->data, a->len);
}

/* ---------------------------------------------------------------- routes */

static int
api_id_ok(const char *seg, size_t len)
{
    return body_user_id_valid(seg, len);
}

static const struct http_route api_route_table[] = {
    { NULL, api_is_web_asset, "GET", 0, api_web_asset },
    { "/events/sse", NULL, "GET", HTTP_ROUTE_NO_HEAD, api_stream_open },
    { "/events", NULL, "POST", 0, api_event_publish },
    { "/accounts", NULL, "POST", 0, api_account_create },
    { "/accounts/{id}", NULL, "GET", 0, api_account_get },
    { "/accounts/{id}/snapshots", NULL, "POST", 0, api_snapshot_create },
    { "/health", NULL, "GET", 0, api_health },
};

void
api_routes(struct app *app, struct http_routes *out)
{
    out->v = api_route_table;
    out->n = sizeof(api_route_table) / sizeof(api_route_table[0]);
    out->id_ok = api_id_ok;
    out->arg = app;
}
