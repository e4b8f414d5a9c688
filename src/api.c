/* api.c -- the endpoints. Each validates its input (body.c), calls the
 * store (through the HTTP thread's pipeline where a request may wait on
 * Redis) and answers through http.c; nothing is written unless the whole
 * input is valid, and, with PUBLISH_KEYS set, nothing is even read of a
 * write without a publish key (its route's head hook refuses it). A request that waits keeps its state in a struct
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
#include "auth.h"
#include "body.h"
#include "clients.h"
#include "clock.h"
#include "config.h"
#include "eventid.h"
#include "http.h"
#include "hub.h"
#include "log.h"
#include "metrics.h"
#include "pipeline.h"
#include "pubkey.h"
#include "replay.h"
#include "sse.h"
#include "store.h"
#include "stream.h"
#include "subscriber.h"
#include "token.h"
#include "topic.h"
#include "web.h"
#include "writer.h"

/* A request that waits: for room in the publish backlog (ROOM: parked by
 * http_req_wait until room comes or PUBLISH_WAIT_MS passes), or for its
 * Redis command (WAITING: in flight on the thread's pipeline). Either
 * way the request is suspended, never the thread, and its handler runs
 * again when the wait ends. Every Redis call of a handler goes this way:
 * an HTTP thread never blocks on Redis. */
enum api_pending_state {
    API_PENDING_NONE, API_PENDING_ROOM, API_PENDING_WAITING, API_PENDING_DONE
};
/* A request's rate-limit check (RATE_LIMIT_WRITES, RATE_LIMIT_STREAMS). */
enum api_rate {
    API_RATE_UNCHECKED,             /* not asked yet */
    API_RATE_OK,                    /* within the limit (or no limit, or a
                                     * stream open Redis could not check) */
    API_RATE_REFUSED,               /* over it: 429, nothing done */
    API_RATE_FAILED                 /* a write whose check Redis could not answer */
};
struct api_pending {
    enum api_pending_state state;
    struct http_req *req;
    struct app *app;
    struct store_cmd cmd;           /* the command in flight */
    struct pipeline_req q;
    enum store_result rc;
    int out_of_memory;              /* building the next command failed */
    int room_waiting;               /* counted as a waiter by the subscriber */
    int64_t room_deadline_ms;       /* monotonic: then 503 overloaded */
    /* POST /events, snapshots */
    struct event_input in;          /* the parsed body, until answered */
    char id[EVENTID_STR_MAX];       /* the event's id, once stored */
    /* POST /accounts (acct also GET /accounts/ID), snapshots */
    struct account_input account_in;
    struct snapshot_input snapshot_in;
    struct account acct;
    int64_t taken_at;
    int64_t balance;
    /* GET /events/sse: the stream, indexed in its hub and replaying
     * until its history is read; owned here until it is handed to a
     * writer loop. after: the Last-Event-ID, if has_after. */
    struct stream *stream;
    struct event_id after;
    int has_after;
    unsigned gen;                   /* stream_replay_gen at the opening read */
    /* The replay reader reads on from here after the hand-off: the
     * opening page was not the last, or was not read at all (Redis could
     * not answer, or this thread had API_OPEN_READS_MAX in flight). */
    int read_on;
    int read_has_after;             /* 0: from the deployment's last id */
    int read_opened;                /* read_after is where it opened: no gap */
    /* A stream on topics without Last-Event-ID: its opening read only
     * checks the account and takes the deployment's last id, where the
     * replay reader starts once the topics are subscribed. */
    int topics_open;
    struct event_id read_after;
    /* A write's Idempotency-Key ("" if none) and its kept answer. */
    char idem_key[STORE_IDEM_KEY_MAX + 1];
    char *idem_body;                /* owned */
    int idem_replayed;              /* an earlier try's answer: nothing written now */
    /* POST /accounts in secure mode: the new account's stream token,
     * signed before the write (so failing to sign writes nothing), and
     * the kept answer with it (idem_body + token) for a first try with an
     * Idempotency-Key. The kept answer itself never holds a token. */
    char *token;                    /* owned */
    char *token_body;               /* owned */
    /* The rate-limit check: its command (in flight before a write's, or
     * beside a stream's opening read), its verdict, and for a refusal
     * the seconds until the client may try again. */
    struct store_cmd rl_cmd;
    struct pipeline_req rl_q;
    enum api_rate rl;
    enum store_result rl_rc;        /* API_RATE_FAILED: why */
    unsigned retry_after;
    unsigned inflight;              /* a stream open's commands in flight */
    /* GET /presence: what Redis holds of the topic. */
    struct store_presence presence;
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
    case STORE_FULL:
        return http_send_error(r, 503, "redis_full",
                               "Redis is full (maxmemory): nothing was written; retry later",
                               NULL);
    case STORE_NOT_REPLICATED:
        /* Written on the master; a failover may or may not keep it. A
         * retry with the same Idempotency-Key cannot write it twice. */
        return http_send_error(r, 503, "replication_timeout",
                               "written on the Redis master but not acknowledged by "
                               "REDIS_WAIT_REPLICAS replicas in time; it may be lost in "
                               "a failover: retry with the same Idempotency-Key", NULL);
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
 * fan-out (api_pending_room); past PUBLISH_WAIT_MS it is refused. */
static enum http_ret
api_send_overloaded(struct http_req *r)
{
    return http_send_error(r, 503, "overloaded",
                           "events are published faster than they can be "
                           "delivered; retry shortly", NULL);
}

/* A client over its rate limit: nothing was done. */
static enum http_ret
api_send_rate_limited(struct http_req *r, unsigned retry_after)
{
    metrics_add(METRICS_RATE_LIMITED, 1);
    return http_send_error_retry(r, 429, "rate_limited",
                                 "too many requests from this address; retry after "
                                 "Retry-After seconds", retry_after);
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
    if (pd->room_waiting)
        subscriber_wait_end(pd->app->sub);
    /* A stream whose open was answered but whose client left before the
     * handler ran again. */
    if (pd->stream != NULL)
        hub_drop_stream(pd->app->hub, pd->stream, STREAM_END_CLIENT);
    store_command_clear(&pd->cmd);
    store_presence_clear(&pd->presence);
    event_input_clear(&pd->in);
    free(pd->idem_body);
    free(pd->token);
    free(pd->token_body);
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

/* Publish backpressure for a write, on its first run and on each resume:
 * 1: go ahead; 0: the request now waits for room (return HTTP_DONE), and
 * its handler runs again when room may have come (http_wake, from the
 * subscriber's room hook) or at its deadline; -1: no room within
 * PUBLISH_WAIT_MS (answer 503 overloaded). */
static int
api_pending_room(struct api_pending *pd)
{
    struct subscriber *sub = pd->app->sub;
    int ok;

    if (!pd->room_waiting) {
        if (subscriber_has_room(sub))
            return 1;
        pd->room_deadline_ms = clock_mono_ms() + (int64_t)pd->app->cfg->publish_wait_ms;
        /* Registered before the second test: room freed in between is
         * either seen here or announced by the hook. */
        subscriber_wait_begin(sub);
        pd->room_waiting = 1;
    }
    ok = subscriber_has_room(sub);
    if (!ok && clock_mono_ms() < pd->room_deadline_ms &&
        http_req_wait(pd->req, pd->room_deadline_ms) == 0) {
        pd->state = API_PENDING_ROOM;
        return 0;
    }
    subscriber_wait_end(sub);
    pd->room_waiting = 0;
    pd->state = API_PENDING_NONE;
    return ok ? 1 : -1;
}

/* ------------------------------------------------------- rate limits */

/* Reads a rate-limit check's reply into pd: its verdict, and for a
 * refusal the seconds to wait. */
static void
api_rate_result(struct api_pending *pd, const struct redisReply *reply)
{
    int allowed;

    pd->rl_rc = store_ratelimit_result(reply, &allowed, &pd->retry_after);
    pd->rl = pd->rl_rc != STORE_OK ? API_RATE_FAILED
             : allowed ? API_RATE_OK : API_RATE_REFUSED;
}

/* Builds the check of rate for pd's client in scope and sends it on the
 * thread's pipeline with done. Returns -1 if nothing was sent (Redis is
 * known to be down, or out of memory). */
static int
api_rate_send(struct api_pending *pd, const struct config_rate *rate, const char *scope,
              pipeline_done_fn done)
{
    store_ratelimit_command(&pd->rl_cmd, scope, http_req_client(pd->req), rate->n,
                            rate->window_s);
    return pipeline_send(http_req_pipeline(pd->req), &pd->rl_q, &pd->rl_cmd, done, pd);
}

/* The pipeline answered a write's check (same thread, outside MHD_run):
 * keep the verdict and resume the request, whose handler goes on. */
static void
api_on_write_rate(void *arg, const struct redisReply *reply)
{
    struct api_pending *pd = arg;

    api_rate_result(pd, reply);
    pd->state = API_PENDING_NONE;
    http_req_resume(pd->req);
}

/* A write's rate limit (RATE_LIMIT_WRITES), checked once its body is
 * valid and before anything is written, so a refused write writes
 * nothing (not even the account id counter of POST /accounts). Returns
 * 1 to go on; 0 when the check is in flight (the request waits,
 * suspended, and the handler runs again on its reply); -1 when the
 * write is refused (429) or Redis could not check it (503, as any Redis
 * failure of a write), answered in *ret. */
static int
api_write_rate(struct api_pending *pd, enum http_ret *ret)
{
    const struct config_rate *rate = &pd->app->cfg->rate_limit_writes;

    switch (pd->rl) {
    case API_RATE_UNCHECKED:
        if (rate->n == 0) {
            pd->rl = API_RATE_OK;
            return 1;
        }
        if (api_rate_send(pd, rate, "writes", api_on_write_rate) == -1) {
            *ret = api_send_store_error(pd->req, STORE_UNAVAILABLE, NULL);
            return -1;
        }
        pd->state = API_PENDING_WAITING;
        http_req_suspend(pd->req);
        *ret = HTTP_DONE;
        return 0;
    case API_RATE_OK:
        return 1;
    case API_RATE_REFUSED:
        log_debug("api: %s over RATE_LIMIT_WRITES: refused", http_req_client(pd->req));
        *ret = api_send_rate_limited(pd->req, pd->retry_after);
        return -1;
    case API_RATE_FAILED:
        break;
    }
    *ret = api_send_store_error(pd->req, pd->rl_rc, NULL);
    return -1;
}

/* ------------------------------------------------------- idempotency */

/* Takes the request's Idempotency-Key into pd ("" when it has none).
 * Returns -1 for one that is not 1 to STORE_IDEM_KEY_MAX visible ASCII
 * characters. */
static int
api_idem_key(struct api_pending *pd)
{
    const char *k = http_req_header(pd->req, "Idempotency-Key");
    size_t n;

    pd->idem_key[0] = '\0';
    if (k == NULL)
        return 0;
    n = strlen(k);
    if (n == 0 || n > STORE_IDEM_KEY_MAX)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)k[i] <= 0x20 || (unsigned char)k[i] >= 0x7f)
            return -1;
    }
    memcpy(pd->idem_key, k, n + 1);
    return 0;
}

static enum http_ret
api_send_bad_idem_key(struct http_req *r)
{
    return http_send_error(r, 400, "invalid_parameter",
                           "Idempotency-Key must be 1 to 128 visible ASCII characters",
                           NULL);
}

/* Makes pd's write command idempotent when the request has a key; body_tpl
 * is its answer, with the store's marks for the event id and balance.
 * Returns -1 when out of memory. */
static int
api_idem_command(struct api_pending *pd, const char *scope, const char *body_tpl)
{
    if (pd->idem_key[0] == '\0')
        return 0;
    return store_command_idempotent(&pd->cmd, scope, pd->idem_key, body_tpl);
}

/* A write's reply: with a key, its kept answer (returns 1); without one,
 * returns 0 and the caller reads the reply itself. */
static int
api_idem_result(struct api_pending *pd, const struct redisReply *reply)
{
    if (pd->idem_key[0] == '\0')
        return 0;
    pd->rc = store_idempotent_result(reply, &pd->idem_replayed, &pd->idem_body);
    return 1;
}

/* The answer to an idempotent write: the kept body, byte for byte, with
 * the write's status. Only a first try published events (the backlog
 * counts them until they come back through the channel). */
static enum http_ret
api_idem_answer(struct api_pending *pd, unsigned status, unsigned events,
                const char *location_prefix)
{
    char location[64];
    const char *loc = NULL;

    if (!pd->idem_replayed)
        subscriber_note_published(pd->app->sub, events);
    if (location_prefix != NULL) {
        json_object *o = json_tokener_parse(pd->idem_body);
        json_object *id;

        if (o != NULL && json_object_object_get_ex(o, "id", &id)) {
            snprintf(location, sizeof(location), "%s%s", location_prefix,
                     json_object_get_string(id));
            loc = location;
        }
        json_object_put(o);
    }
    return http_send_json(pd->req, status, pd->idem_body, strlen(pd->idem_body), loc);
}

/* ---------------------------------------------------------------- tokens */

/* RFC 6750 3: a 401 names the scheme; after a token that failed, also
 * invalid_token, so a client knows to get a fresh one. */
#define API_CHALLENGE "Bearer realm=\"ssegate\""
#define API_CHALLENGE_INVALID "Bearer realm=\"ssegate\", error=\"invalid_token\""

/* Secure mode: the request's token (Authorization: Bearer, else the
 * token query parameter, the one place EventSource can put it, else the
 * ssegate_token cookie, which EventSource sends withCredentials) checked
 * against user_id ("" or NULL: the firehose); the claims in *c, the
 * reason in *why. Call with app->auth set. It costs no Redis call, so it
 * comes before anything that does. */
static enum auth_result
api_auth_check(struct http_req *r, const struct app *app, const char *user_id,
               struct token_claims *c, const char **why)
{
    const char *tok;
    size_t len;

    token_find(http_req_header(r, "Authorization"), http_req_query(r, "token"),
               http_req_cookie(r, "ssegate_token"), &tok, &len);
    return auth_check_user(app->auth, tok, len, user_id, clock_wall_ms(), c, why);
}

/* The one answer to a token refused (res is not AUTH_OK): 401 with a
 * challenge (invalid_token when one was sent, so a client knows to get a
 * fresh one), 403, or 503 out of memory; logged with the reason and the
 * user, never the token. */
static enum http_ret
api_auth_refuse(struct http_req *r, enum auth_result res, const char *why,
                const char *user_id)
{
    log_info("%s refused: %s (user=%s)", http_req_path(r), why,
             user_id != NULL && user_id[0] != '\0' ? user_id : "*");
    switch (res) {
    case AUTH_NO_TOKEN:
        return http_send_challenge(r, API_CHALLENGE, "unauthorized", why);
    case AUTH_INVALID:
        return http_send_challenge(r, API_CHALLENGE_INVALID, "unauthorized", why);
    case AUTH_FORBIDDEN:
        return http_send_error(r, 403, "forbidden", why, NULL);
    case AUTH_OK:           /* never passed: not a refusal */
    case AUTH_NO_MEMORY:
        break;
    }
    return api_send_out_of_memory(r);
}

/* Secure mode: the request's token (api_auth_check) must be valid and
 * open user_id's stream. Returns 1 to go on, with the claims in *c; else
 * 0, having answered in *ret (api_auth_refuse). In open mode (no AUTH_*
 * key) returns 1 with *c zeroed. */
static int
api_auth_user(struct http_req *r, struct app *app, const char *user_id,
              int topics_only, struct token_claims *c, enum http_ret *ret)
{
    const char *why;
    enum auth_result res;

    memset(c, 0, sizeof(*c));
    if (app->auth == NULL)
        return 1;
    res = api_auth_check(r, app, user_id, c, &why);
    /* A stream of topics alone opens no user's stream and not the
     * firehose: any valid token will do, its topics claim decides. */
    if (res == AUTH_FORBIDDEN && topics_only)
        res = AUTH_OK;
    if (res == AUTH_OK)
        return 1;
    *ret = api_auth_refuse(r, res, why, user_id);
    return 0;
}

/* ------------------------------------------------------- publish keys */

/* 1 if the request carries one of PUBLISH_KEYS, or none is set. */
static int
api_has_publish_key(struct http_req *r, const struct app *app)
{
    return !pubkey_set_enabled(app->keys) ||
           pubkey_check(app->keys, http_req_header(r, "Authorization"));
}

/* One answer whatever was wrong (no header, another scheme, a wrong key),
 * and nothing logged: a guess learns nothing but "no". */
static enum http_ret
api_send_unauthorized(struct http_req *r)
{
    return http_send_error(r, 401, "unauthorized",
                           "this needs Authorization: Bearer <a publish key>", NULL);
}

/* Every write's head hook (http.h): with PUBLISH_KEYS set, a write
 * without one of the keys is refused before its body is read, before
 * anything else is looked at. */
static enum http_ret
api_write_check(struct http_req *r, void *arg)
{
    if (api_has_publish_key(r, arg))
        return HTTP_DONE;
    return api_send_unauthorized(r);
}

/* GET /accounts/ID's head hook: with PUBLISH_KEYS set, an account is
 * read with a publish key, or, in secure mode, with a stream token that
 * opens that account's stream (its "sub", or the firehose claim, which
 * sees every account's events anyway). The Authorization: Bearer value
 * is the publish key when it is one; anything else there is taken for a
 * token and refused as a stream open would refuse it (401 with
 * invalid_token, 403 for another user). With publish keys alone there is
 * no token to check: the one publish key answer. */
static enum http_ret
api_account_read_check(struct http_req *r, void *arg)
{
    const struct app *app = arg;
    const char *id = http_req_param(r), *why;
    struct token_claims c;
    enum auth_result res;

    if (api_has_publish_key(r, app))
        return HTTP_DONE;
    if (app->auth == NULL)
        return api_send_unauthorized(r);
    if ((res = api_auth_check(r, app, id, &c, &why)) == AUTH_OK)
        return HTTP_DONE;
    if (res == AUTH_NO_TOKEN)
        why = "this needs Authorization: Bearer <a publish key, or a stream "
              "token for this account>";
    return api_auth_refuse(r, res, why, id);
}

/* ---------------------------------------------------------------- streams */

/* The id to resume after: the Last-Event-ID header (what EventSource
 * sends on reconnect) or, for a first connect, which cannot carry a
 * header, the lastEventId or last_event_id query parameter. Sets *has
 * when there is one that parses; returns the raw value of one that does
 * not (NULL otherwise). */
static const char *
api_resume_id(struct http_req *r, struct event_id *after, int *has)
{
    const char *v;

    v = http_req_header(r, "Last-Event-ID");
    if (v == NULL || v[0] == '\0')
        v = http_req_query(r, "lastEventId");
    if (v == NULL || v[0] == '\0')
        v = http_req_query(r, "last_event_id");
    *has = 0;
    if (v == NULL || v[0] == '\0')
        return NULL;
    if (eventid_parse(v, strlen(v), after) == -1)
        return v;
    *has = 1;
    return NULL;
}

/* The opening page is read (or was not, see read_on): hand the stream
 * to a writer loop, and to the replay reader if it is not caught up; or
 * drop it and say why. Takes pd's stream. */
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
    struct clients_slot slot;

    pd->stream = NULL;
    if (pd->rl == API_RATE_REFUSED) {
        log_debug("api: %s over RATE_LIMIT_STREAMS: refused", http_req_client(r));
        hub_drop_stream(hub, s, STREAM_END_OPEN_FAILED);
        return api_send_rate_limited(r, pd->retry_after);
    }
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
    /* The socket leaves libmicrohttpd but stays its client's connection. */
    http_req_take_client(r, &slot);
    stream_hold_client(s, &slot);
    log_info("stream %llu user=%s open%s%s", (unsigned long long)stream_serial(s),
             uid[0] ? uid : "*", pd->has_after ? " (resuming)" : "",
             pd->read_on ? " (history read on by the replay reader)" : "");
    /* Before the hand-off, after which the stream may go at any time. */
    if (pd->read_on && pd->read_opened)
        replay_add_opened(pd->app->replay, s, &pd->read_after);
    else if (pd->read_on)
        replay_add(pd->app->replay, s, pd->read_has_after ? &pd->read_after : NULL);
    writers_attach(pd->app->writers, s, fd, chunked, head, head_len);
    return HTTP_CLOSE;
}

/* This HTTP thread's opening reads of resuming streams in flight (a
 * stream opened without Last-Event-ID reads only its account and the last
 * id: cheap, never capped, so it is live as soon as it has its 200).
 * Past API_OPEN_READS_MAX a resuming stream opens without its read and
 * the replay reader reads its history: a resume storm then neither queues
 * thousands of reads on the pipeline,
 * where every write would wait behind them and the oldest would pass
 * REDIS_TIMEOUT_MS and fail the rest, nor holds them in memory at once.
 * Such a stream (like one opened while Redis cannot answer) gets its 200
 * before its account is checked: for an unknown user it then ends, and
 * the next open gets the 404. */
#define API_OPEN_READS_MAX 16
static _Thread_local unsigned api_open_reads;

/* The stream opens without its history read now: the replay reader
 * reads it, from the Last-Event-ID or else from the newest event this
 * instance has seen, fanned out or written (so nothing published after
 * the open is missed, and what this instance wrote before it is not
 * taken for new; with none seen, from the deployment's last id when it
 * reads). */
static void
api_stream_read_later(struct api_pending *pd)
{
    pd->rc = STORE_OK;
    pd->read_on = 1;
    pd->read_has_after = pd->has_after;
    pd->read_after = pd->after;
    if (!pd->has_after)
        pd->read_has_after = subscriber_last_id(pd->app->sub, &pd->read_after);
}

/* One of a stream open's commands (its rate-limit check, its opening
 * read) was answered: once both are, the request resumes and its handler
 * starts the stream, or refuses it. */
static void
api_stream_step_done(struct api_pending *pd)
{
    if (--pd->inflight > 0)
        return;
    pd->state = API_PENDING_DONE;
    http_req_resume(pd->req);
}

/* The pipeline answered a stream open's rate-limit check. A check Redis
 * could not answer admits the stream: any status but 200 stops
 * EventSource for good, and a stream opened while Redis is away is
 * already admitted the same way (its read waits for Redis), still
 * bounded by MAX_CONNECTIONS_PER_CLIENT. */
static void
api_on_stream_rate(void *arg, const struct redisReply *reply)
{
    struct api_pending *pd = arg;

    api_rate_result(pd, reply);
    if (pd->rl == API_RATE_FAILED)
        pd->rl = API_RATE_OK;
    api_stream_step_done(pd);
}

static void
api_stream_read_topics(struct api_pending *pd);

/* The pipeline answered the opening read (same thread, outside
 * MHD_run): apply the page and resume the request, whose handler then
 * starts the stream. A Redis that could not answer does not refuse the
 * stream (any status but 200 stops EventSource for good): it opens, and
 * its history is read once Redis answers. */
static void
api_on_history_read(void *arg, const struct redisReply *reply)
{
    struct api_pending *pd = arg;
    struct store_replay rp;

    if (pd->has_after)
        api_open_reads--;
    pd->rc = store_stream_result(reply, &pd->cmd, &rp);
    if (pd->topics_open) {
        /* Its history is read once its topics are subscribed, after the
         * deployment's last id now: exactly what comes after this open. */
        if (pd->rc == STORE_OK || pd->rc == STORE_UNAVAILABLE)
            api_stream_read_topics(pd);
        if (pd->rc == STORE_OK && rp.has_start)
            pd->read_after = rp.start;
        store_replay_clear(&rp);
        api_stream_step_done(pd);
        return;
    }
    if (pd->rc == STORE_OK) {
        if (replay_apply(pd->stream, pd->has_after ? &pd->after : NULL, &rp,
                         pd->gen, &pd->read_after) == STREAM_REPLAY_MORE)
            pd->read_on = pd->read_has_after = 1;
    } else if (pd->rc == STORE_UNAVAILABLE) {
        api_stream_read_later(pd);
    }
    api_stream_step_done(pd);
}

/* The topics a stream asks for (?topic=a&topic=b), each once. */
struct api_topics {
    char names[CONFIG_TOKEN_TOPICS_MAX][TOPIC_NAME_MAX + 1];
    const char *ptrs[CONFIG_TOKEN_TOPICS_MAX];
    size_t n, max;
    const char *why;                /* the refusal, for the 400 */
};

static int
api_stream_topic_one(const char *v, size_t len, void *arg)
{
    struct api_topics *tp = arg;

    if (!topic_name_valid(v, len)) {
        tp->why = "topic must be 1 to 128 of A-Z a-z 0-9 . _ : / -, each given with a value";
        return -1;
    }
    for (size_t i = 0; i < tp->n; i++) {
        if (strlen(tp->names[i]) == len && memcmp(tp->names[i], v, len) == 0)
            return 0;               /* the same topic twice counts once */
    }
    if (tp->n == tp->max) {
        tp->why = "a stream names at most MAX_TOPICS_PER_STREAM topics";
        return -1;
    }
    memcpy(tp->names[tp->n], v, len);
    tp->names[tp->n][len] = '\0';
    tp->ptrs[tp->n] = tp->names[tp->n];
    tp->n++;
    return 0;
}

/* Reads the request's topics into *tp. Returns 0, or -1 having answered
 * 400 invalid_parameter in *ret. */
static int
api_stream_topics(struct http_req *r, struct app *app, struct api_topics *tp,
                  enum http_ret *ret)
{
    tp->n = 0;
    tp->max = app->cfg->max_topics_per_stream < CONFIG_TOKEN_TOPICS_MAX
              ? app->cfg->max_topics_per_stream : CONFIG_TOKEN_TOPICS_MAX;
    tp->why = "topic must be 1 to 128 of A-Z a-z 0-9 . _ : / -, each given with a value";
    if (http_req_query_each(r, "topic", api_stream_topic_one, tp) == -1) {
        *ret = http_send_error(r, 400, "invalid_parameter", tp->why, NULL);
        return -1;
    }
    return 0;
}

/* A stream on topics reads no history on its HTTP thread: the replay
 * reader reads it once its topics are subscribed (a read before would
 * miss what comes live in between), after its Last-Event-ID, or after
 * the deployment's last id at the open (api_on_history_read), or, when
 * Redis could not say, after the later of the newest id this instance
 * has seen and the wall clock a second ago: whatever is published after
 * this 200 comes after both. */
static void
api_stream_read_topics(struct api_pending *pd)
{
    struct event_id seen;
    int64_t now = clock_wall_ms() - 1000;

    pd->rc = STORE_OK;
    pd->read_on = 1;
    pd->read_has_after = 1;
    pd->read_after = pd->after;
    if (pd->has_after)
        return;
    pd->read_opened = 1;
    pd->read_after.ms = now > 0 ? (uint64_t)now : 0;
    pd->read_after.seq = 0;
    if (subscriber_last_id(pd->app->sub, &seen) && eventid_cmp(&seen, &pd->read_after) > 0)
        pd->read_after = seen;
}

/* A stream opened on an instance that is stopping (a kept-alive proxy
 * connection still brings them): it ends at once after a spread retry,
 * so its client reconnects, elsewhere, and resumes. */
static enum http_ret
api_send_stream_end(struct http_req *r, const struct app *app)
{
    const struct sse_frame *f;

    if (app->nlast == 0)
        return api_send_out_of_memory(r);
    f = app->last[(size_t)random() % app->nlast];
    return http_send_stream_end(r, f->bytes, f->len);
}

static enum http_ret
api_stream_open(struct http_req *r, void *arg)
{
    struct app *app = arg;
    struct api_pending *pd = http_req_state(r);
    struct api_topics tp;
    const char *uid;
    struct event_id after;
    struct stream *s;
    struct sse_frame *gap = NULL;
    const char *foreign;
    int has_after;
    struct token_claims claims;
    enum http_ret ret = HTTP_CLOSE;

    if (pd != NULL && pd->state == API_PENDING_DONE)
        return api_stream_start(pd);
    if (pd != NULL && pd->state == API_PENDING_WAITING)
        return HTTP_DONE;           /* suspended; not called again until done */
    /* "?userId" without a value is a mistake, not the firehose; and two
     * userIds are one too many to guess between (a proxy that checks
     * one may pass the request on for the other): http_req_query reads
     * both as "", which is no user id. */
    uid = http_req_query(r, "userId");
    if (uid != NULL && !body_user_id_valid(uid, strlen(uid)))
        return http_send_error(r, 400, "invalid_parameter",
                               "userId must be given once, as 1 to 18 digits", NULL);
    if (api_stream_topics(r, app, &tp, &ret) == -1)
        return ret;
    if (!api_auth_user(r, app, uid, uid == NULL && tp.n > 0, &claims, &ret))
        return ret;
    for (size_t i = 0; app->auth != NULL && i < tp.n; i++) {
        if (!token_allows_topic(&claims, tp.ptrs[i])) {
            log_info("%s refused: the token does not grant topic %s (user=%s)",
                     http_req_path(r), tp.ptrs[i], uid != NULL ? uid : "*");
            return http_send_error(r, 403, "forbidden",
                                   "the token does not grant every topic asked for", NULL);
        }
    }
    /* An id that is not ours does not refuse the stream: any status but
     * 200 stops EventSource for good. It starts now, with a gap event. */
    foreign = api_resume_id(r, &after, &has_after);
    if (atomic_load(&app->stopping))
        return api_send_stream_end(r, app);
    /* Streams leave libmicrohttpd's connection count once taken over, so
     * the limit is kept here; a full instance says so rather than failing
     * on the file descriptor limit later. */
    if (hub_count(app->hub) >= app->cfg->max_connections)
        return http_send_error(r, 503, "too_many_streams",
                               "this instance holds MAX_CONNECTIONS streams", NULL);
    if ((pd = api_pending_get(r, app)) == NULL)
        return api_send_out_of_memory(r);
    if (foreign != NULL && (gap = replay_foreign_gap(foreign)) == NULL)
        return api_send_out_of_memory(r);
    s = stream_new(uid, (size_t)app->cfg->stream_queue_kib * 1024, app->hello);
    if (s != NULL && gap != NULL)
        stream_push_first(s, gap);          /* right after the hello */
    /* Its writer loop ends it at exp, on the loop's monotonic clock. */
    if (s != NULL && claims.has_exp)
        stream_set_expiry(s, clock_coarse_ms() + (claims.exp_ms - clock_wall_ms()));
    sse_frame_unref(gap);
    /* Who it is in its topics' presence: its user, or in secure mode
     * its token's. */
    if (s != NULL && stream_set_topics(s, tp.ptrs, tp.n,
                                       uid != NULL ? uid : claims.sub) == -1) {
        stream_unref(s);
        s = NULL;
    }
    if (s == NULL)
        return api_send_out_of_memory(r);
    /* Index first, then read history: an event published in between is
     * both held live and in the read, and the stream's dedup keeps one.
     * The index also counts the user's streams (MAX_STREAMS_PER_USER). */
    switch (hub_add_limited(app->hub, s, app->cfg->max_streams_per_user)) {
    case 0:
        break;
    case HUB_ADD_FULL:
        log_debug("api: user %s holds MAX_STREAMS_PER_USER streams: refused", uid);
        stream_unref(s);
        return http_send_error(r, 429, "too_many_streams",
                               "this user holds MAX_STREAMS_PER_USER streams on this "
                               "instance already", NULL);
    default:
        stream_unref(s);
        return api_send_stream_end(r, app);
    }
    pd->stream = s;
    pd->after = after;
    pd->has_after = has_after;
    /* The rate-limit check goes out first, on the same pipeline as the
     * opening read and in the same pass: no round trip of its own. The
     * read changes nothing, so a refused open only drops its result. A
     * check that cannot be sent (Redis known down) admits the stream. */
    pd->inflight = 0;
    pd->rl = API_RATE_OK;
    if (app->cfg->rate_limit_streams.n > 0 &&
        api_rate_send(pd, &app->cfg->rate_limit_streams, "streams", api_on_stream_rate) == 0)
        pd->inflight++;
    if (tp.n > 0 && !has_after) {
        /* The account and the deployment's last id, nothing more: cheap,
         * never capped, like a fresh user stream's opening read. */
        pd->topics_open = 1;
        store_read_command(&pd->cmd, uid, NULL, 0, NULL, 0);
        if (pipeline_send(http_req_pipeline(r), &pd->q, &pd->cmd, api_on_history_read,
                          pd) == 0)
            pd->inflight++;
        else
            api_stream_read_topics(pd);     /* Redis is known to be down */
    } else if (tp.n > 0) {
        api_stream_read_topics(pd);
    } else if (has_after && api_open_reads >= API_OPEN_READS_MAX) {
        api_stream_read_later(pd);
    } else {
        /* Concurrent opens' reads share round trips on the pipeline. */
        pd->gen = stream_replay_gen(s);
        store_read_command(&pd->cmd, uid, NULL, 0, has_after ? &pd->after : NULL,
                           replay_open_page_bytes(app->cfg));
        if (pipeline_send(http_req_pipeline(r), &pd->q, &pd->cmd, api_on_history_read,
                          pd) == 0) {
            pd->inflight++;
            if (has_after)
                api_open_reads++;
        } else {
            api_stream_read_later(pd);      /* Redis is known to be down */
        }
    }
    if (pd->inflight == 0)
        return api_stream_start(pd);
    pd->state = API_PENDING_WAITING;
    http_req_suspend(r);
    return HTTP_DONE;
}

/* What every write handler does before its command, on each call: the
 * answer once the command was answered, nothing while it waits; on the
 * first call the body (parse fills pd) and the Idempotency-Key; then the
 * client's rate limit, then room in the fan-out, each waited for
 * suspended. Returns 1 with *out when the handler goes on to send its
 * command, else 0 with the handler's *ret. */
typedef int (*api_parse_fn)(struct api_pending *pd, const char *body, size_t len,
                            struct body_error *e);

static int
api_write_begin(struct http_req *r, struct app *app, api_parse_fn parse,
                enum http_ret (*answer)(struct api_pending *),
                struct api_pending **out, enum http_ret *ret)
{
    struct api_pending *pd = http_req_state(r);
    struct body_error e;
    size_t len;
    const char *body;

    *ret = HTTP_DONE;               /* suspended; not called again until done */
    if (pd != NULL && pd->state == API_PENDING_DONE) {
        *ret = answer(pd);
        return 0;
    }
    if (pd != NULL && pd->state == API_PENDING_WAITING)
        return 0;
    if (pd == NULL) {
        if ((pd = api_pending_get(r, app)) == NULL) {
            *ret = api_send_out_of_memory(r);
            return 0;
        }
        body = http_req_body(r, &len);
        if (parse(pd, body, len, &e) == -1) {
            *ret = api_send_body_error(r, &e);
            return 0;
        }
        if (api_idem_key(pd) == -1) {
            *ret = api_send_bad_idem_key(r);
            return 0;
        }
    }
    if (api_write_rate(pd, ret) != 1)
        return 0;
    switch (api_pending_room(pd)) {
    case 0:
        return 0;                   /* waits for room, suspended */
    case -1:
        *ret = api_send_overloaded(r);
        return 0;
    default:
        break;
    }
    *out = pd;
    return 1;
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

_Static_assert(sizeof(((struct account_input *)0)->name) <= STORE_ACCOUNT_NAME_MAX,
               "an account's name fits struct account");

/* A kept account answer (a JSON object) with "token": token added last,
 * the rest byte for byte. Returns it (owned), or NULL when out of memory
 * or body is not an object. */
static char *
api_token_splice(const char *body, const char *token)
{
    static const char key[] = ",\"token\":\"";
    size_t n = strlen(body), t = strlen(token);
    char *out;

    if (n < 2 || body[n - 1] != '}' || (out = malloc(n + sizeof(key) + t + 2)) == NULL)
        return NULL;
    /* A token is base64url and dots: nothing in it needs escaping. */
    snprintf(out, n + sizeof(key) + t + 2, "%.*s%s%s\"}", (int)(n - 1), body, key, token);
    return out;
}

/* The idempotent answer with its token: the one signed before this
 * request's write, or, for an earlier try's answer (which may be old,
 * and was kept without a token), one signed now for the id it names.
 * Returns -1 when out of memory; a replay wrote nothing, so it may then
 * answer 503. */
static int
api_account_idem_token(struct api_pending *pd)
{
    json_object *o, *id;
    char *tok = NULL, *body;

    if (!auth_can_sign(pd->app->auth))
        return 0;
    if (!pd->idem_replayed && pd->token_body != NULL) {
        free(pd->idem_body);
        pd->idem_body = pd->token_body;
        pd->token_body = NULL;
        return 0;
    }
    if ((o = json_tokener_parse(pd->idem_body)) != NULL &&
        json_object_object_get_ex(o, "id", &id))
        tok = auth_sign(pd->app->auth, json_object_get_string(id), clock_wall_ms(),
                        pd->app->cfg->auth_token_ttl_secs, 0, NULL, 0);
    json_object_put(o);
    body = tok != NULL ? api_token_splice(pd->idem_body, tok) : NULL;
    free(tok);
    if (body == NULL)
        return -1;
    free(pd->idem_body);
    pd->idem_body = body;
    return 0;
}

static enum http_ret
api_account_answer(struct api_pending *pd)
{
    char location[64];
    json_object *o;

    if (pd->out_of_memory)
        return api_send_out_of_memory(pd->req);
    if (pd->rc != STORE_OK)
        return api_send_store_error(pd->req, pd->rc, "no such account");
    if (pd->idem_body != NULL) {
        if (api_account_idem_token(pd) == -1)
            return api_send_out_of_memory(pd->req);
        return api_idem_answer(pd, 201, 2, "/accounts/");
    }
    subscriber_note_published(pd->app->sub, 2);     /* account.created, snapshot */
    snprintf(location, sizeof(location), "/accounts/%s", pd->acct.id);
    if ((o = api_account_object(&pd->acct)) != NULL && pd->token != NULL)
        json_object_object_add(o, "token", json_object_new_string(pd->token));
    return api_send_object(pd->req, 201, o, location);
}

static void
api_on_account_created(void *arg, const struct redisReply *reply)
{
    struct api_pending *pd = arg;

    if (!api_idem_result(pd, reply))
        pd->rc = store_account_created_result(reply);
    store_command_clear(&pd->cmd);
    pd->state = API_PENDING_DONE;
    http_req_resume(pd->req);
}

/* With an Idempotency-Key, the account's answer is kept whole (without
 * its token: a secret has no place in Redis, and a token kept a day
 * would be stale when replayed). */
static int
api_idem_account(struct api_pending *pd)
{
    char *tpl;
    int rc;

    if (pd->idem_key[0] == '\0')
        return 0;
    if ((tpl = store_account_json(&pd->acct)) == NULL)
        return -1;
    rc = api_idem_command(pd, "accounts", tpl);
    if (rc == 0 && pd->token != NULL &&
        (pd->token_body = api_token_splice(tpl, pd->token)) == NULL)
        rc = -1;
    free(tpl);
    return rc;
}

/* Secure mode with AUTH_SECRET: the new account's stream token, signed
 * now, before the write, so that failing to sign it writes nothing. */
static int
api_account_token(struct api_pending *pd)
{
    if (!auth_can_sign(pd->app->auth))
        return 0;
    pd->token = auth_sign(pd->app->auth, pd->acct.id, clock_wall_ms(),
                          pd->app->cfg->auth_token_ttl_secs, 0, NULL, 0);
    return pd->token != NULL ? 0 : -1;
}

/* Step 1 answered: the account has its id. Step 2, the write script, goes
 * out from here on the same pipeline; the request stays suspended. A
 * failed step 1 wrote nothing. */
static void
api_on_account_id(void *arg, const struct redisReply *reply)
{
    struct api_pending *pd = arg;

    pd->rc = store_account_id_result(reply, &pd->acct);
    if (pd->rc == STORE_OK) {
        snprintf(pd->acct.name, sizeof(pd->acct.name), "%s", pd->account_in.name);
        pd->acct.balance = pd->account_in.balance;
        pd->acct.created_at = clock_wall_ms();
        if (api_account_token(pd) == -1 ||
            store_account_command(&pd->cmd, &pd->acct) == -1 ||
            api_idem_account(pd) == -1) {
            store_command_clear(&pd->cmd);
            pd->out_of_memory = 1;
        } else if (pipeline_send(http_req_pipeline(pd->req), &pd->q, &pd->cmd,
                                 api_on_account_created, pd) == 0) {
            return;
        } else {
            store_command_clear(&pd->cmd);
            pd->rc = STORE_UNAVAILABLE;
        }
    }
    pd->state = API_PENDING_DONE;
    http_req_resume(pd->req);
}

/* POST /accounts: two pipelined steps, INCR for the id, then the write
 * script (the envelopes carry the id, so it must be known first). */
static int
api_parse_account(struct api_pending *pd, const char *body, size_t len, struct body_error *e)
{
    return body_parse_account(body, len, &pd->account_in, e);
}

static enum http_ret
api_account_create(struct http_req *r, void *arg)
{
    struct api_pending *pd;
    enum http_ret ret;

    if (!api_write_begin(r, arg, api_parse_account, api_account_answer, &pd, &ret))
        return ret;
    store_account_id_command(&pd->cmd);
    if (api_pending_send(pd, api_on_account_id) == -1)
        return api_send_store_error(r, STORE_UNAVAILABLE, NULL);
    return HTTP_DONE;
}

static void
api_on_account_read(void *arg, const struct redisReply *reply)
{
    struct api_pending *pd = arg;

    pd->rc = store_account_get_result(reply, http_req_param(pd->req), &pd->acct);
    pd->state = API_PENDING_DONE;
    http_req_resume(pd->req);
}

static enum http_ret
api_account_get(struct http_req *r, void *arg)
{
    struct app *app = arg;
    struct api_pending *pd = http_req_state(r);

    if (pd != NULL && pd->state == API_PENDING_DONE) {
        if (pd->rc != STORE_OK)
            return api_send_store_error(r, pd->rc, "no account with this id");
        return api_send_object(r, 200, api_account_object(&pd->acct), NULL);
    }
    if (pd != NULL && pd->state == API_PENDING_WAITING)
        return HTTP_DONE;           /* suspended; not called again until done */
    if ((pd = api_pending_get(r, app)) == NULL)
        return api_send_out_of_memory(r);
    store_account_get_command(&pd->cmd, http_req_param(r));
    if (api_pending_send(pd, api_on_account_read) == -1)
        return api_send_store_error(r, STORE_UNAVAILABLE, NULL);
    return HTTP_DONE;
}

static enum http_ret
api_snapshot_answer(struct api_pending *pd)
{
    json_object *o;

    if (pd->rc != STORE_OK)
        return api_send_store_error(pd->req, pd->rc, "no account with this id");
    if (pd->idem_body != NULL)
        return api_idem_answer(pd, 201, 1, NULL);
    subscriber_note_published(pd->app->sub, 1);
    if ((o = json_object_new_object()) != NULL) {
        json_object_object_add(o, "id", json_object_new_string(pd->id));
        json_object_object_add(o, "accountId",
                               json_object_new_string(http_req_param(pd->req)));
        json_object_object_add(o, "balance", json_object_new_int64(pd->balance));
        json_object_object_add(o, "takenAt", json_object_new_int64(pd->taken_at));
    }
    return api_send_object(pd->req, 201, o, NULL);
}

/* A write of ours got its id: the newest id this instance knows of is at
 * least it, even before the subscriber fans it out (a stream opened
 * while Redis cannot answer starts after the newest: api_stream_read_later). */
static void
api_note_written(struct api_pending *pd)
{
    struct event_id id;

    if (pd->rc == STORE_OK && pd->id[0] != '\0' &&
        eventid_parse(pd->id, strlen(pd->id), &id) == 0)
        subscriber_note_id(pd->app->sub, &id);
}

static void
api_on_snapshot_taken(void *arg, const struct redisReply *reply)
{
    struct api_pending *pd = arg;

    pd->id[0] = '\0';
    if (!api_idem_result(pd, reply))
        pd->rc = store_snapshot_result(reply, pd->id, sizeof(pd->id), &pd->balance);
    api_note_written(pd);
    store_command_clear(&pd->cmd);
    pd->state = API_PENDING_DONE;
    http_req_resume(pd->req);
}

static int
api_parse_snapshot(struct api_pending *pd, const char *body, size_t len, struct body_error *e)
{
    return body_parse_snapshot(body, len, &pd->snapshot_in, e);
}

static enum http_ret
api_snapshot_create(struct http_req *r, void *arg)
{
    struct api_pending *pd;
    enum http_ret ret;

    if (!api_write_begin(r, arg, api_parse_snapshot, api_snapshot_answer, &pd, &ret))
        return ret;
    pd->taken_at = clock_wall_ms();
    if (store_snapshot_command(&pd->cmd, http_req_param(r), pd->snapshot_in.has_balance,
                               pd->snapshot_in.balance, pd->taken_at) == -1)
        return api_send_out_of_memory(r);
    {
        /* The same fields, in the same order, as api_snapshot_answer's. */
        char tpl[256];

        snprintf(tpl, sizeof(tpl), "{\"id\":\"" STORE_IDEM_ID_MARK "\",\"accountId\":\"%s\","
                 "\"balance\":" STORE_IDEM_BALANCE_MARK ",\"takenAt\":%" PRId64 "}",
                 http_req_param(r), pd->taken_at);
        if (api_idem_command(pd, "snapshots", tpl) == -1) {
            store_command_clear(&pd->cmd);
            return api_send_out_of_memory(r);
        }
    }
    if (api_pending_send(pd, api_on_snapshot_taken) == -1) {
        store_command_clear(&pd->cmd);
        return api_send_store_error(r, STORE_UNAVAILABLE, NULL);
    }
    return HTTP_DONE;
}

/* ---------------------------------------------------------------- events */

/* The answer to a write: 202 with its id, or the store's error. */
static enum http_ret
api_event_answer(struct api_pending *pd)
{
    char body[sizeof("{\"id\":\"\"}") + EVENTID_STR_MAX];
    int n;

    /* A topic's event comes back through our subscription only while
     * this instance holds a stream on the topic: it is not counted in the
     * publish backlog, which would otherwise never give its room back. */
    unsigned counted = pd->in.topic[0] != '\0' ? 0 : 1;

    if (pd->rc != STORE_OK)
        return api_send_store_error(pd->req, pd->rc, "no account with this userId");
    if (pd->idem_body != NULL)
        return api_idem_answer(pd, 202, counted, NULL);
    subscriber_note_published(pd->app->sub, counted);
    /* Every write's answer: written as it is (the store checked the id is
     * an id), not through json-c objects. */
    n = snprintf(body, sizeof(body), "{\"id\":\"%s\"}", pd->id);
    if (n < 0 || (size_t)n >= sizeof(body))
        return api_send_out_of_memory(pd->req);
    return http_send_json(pd->req, 202, body, (size_t)n, NULL);
}

/* The pipeline answered (same thread, outside MHD_run): keep the outcome
 * and resume the request, whose handler then sends it. */
static void
api_on_event_stored(void *arg, const struct redisReply *reply)
{
    struct api_pending *pd = arg;

    pd->id[0] = '\0';
    if (!api_idem_result(pd, reply))
        pd->rc = store_event_result(reply, pd->id, sizeof(pd->id));
    api_note_written(pd);
    store_command_clear(&pd->cmd);
    pd->state = API_PENDING_DONE;
    http_req_resume(pd->req);
}

static int
api_parse_event(struct api_pending *pd, const char *body, size_t len, struct body_error *e)
{
    return body_parse_event(body, len, &pd->in, e);
}

static enum http_ret
api_event_publish(struct http_req *r, void *arg)
{
    struct api_pending *pd;
    enum http_ret ret;

    if (!api_write_begin(r, arg, api_parse_event, api_event_answer, &pd, &ret))
        return ret;
    if ((pd->in.topic[0] != '\0'
         ? store_topic_event_command(&pd->cmd, pd->in.topic, pd->in.type,
                                     pd->in.data_json, pd->in.data_len)
         : store_event_command(&pd->cmd, pd->in.user_id, pd->in.type,
                               pd->in.data_json, pd->in.data_len)) == -1)
        return api_send_out_of_memory(r);
    if (api_idem_command(pd, "events", "{\"id\":\"" STORE_IDEM_ID_MARK "\"}") == -1) {
        store_command_clear(&pd->cmd);
        return api_send_out_of_memory(r);
    }
    if (api_pending_send(pd, api_on_event_stored) == -1) {
        store_command_clear(&pd->cmd);
        return api_send_store_error(r, STORE_UNAVAILABLE, NULL);
    }
    return HTTP_DONE;
}

/* ---------------------------------------------------------------- tokens */

/* POST /tokens (a publish key, checked by the head hook): a stream token
 * for userId, signed with AUTH_SECRET, for an application's back end that
 * holds a publish key but not the secret, and for the demo page. Nothing
 * is written anywhere: a token is only a signature. */
static enum http_ret
api_token_create(struct http_req *r, void *arg)
{
    struct app *app = arg;
    struct token_input in;
    const char *topics[BODY_TOKEN_TOPICS_MAX];
    struct body_error e;
    const char *body;
    size_t len;
    unsigned ttl;
    int64_t now = clock_wall_ms();
    char *tok;
    json_object *o;

    if (!auth_can_sign(app->auth))
        return http_send_error(r, 404, "not_found",
                               "this gateway signs no tokens: AUTH_SECRET is not set", NULL);
    body = http_req_body(r, &len);
    if (body_parse_token(body, len, &in, &e) == -1)
        return api_send_body_error(r, &e);
    ttl = in.ttl_secs != 0 ? in.ttl_secs : app->cfg->auth_token_ttl_secs;
    for (size_t i = 0; i < in.ntopics; i++)
        topics[i] = in.topics[i];
    if ((tok = auth_sign(app->auth, in.user_id, now, ttl, in.firehose, topics,
                         in.ntopics)) == NULL)
        return api_send_out_of_memory(r);
    o = json_object_new_object();
    if (o != NULL &&
        (json_object_object_add(o, "token", json_object_new_string(tok)) != 0 ||
         json_object_object_add(o, "userId", json_object_new_string(in.user_id)) != 0 ||
         json_object_object_add(o, "expiresAt",
                                json_object_new_int64(now + (int64_t)ttl * 1000)) != 0)) {
        json_object_put(o);
        o = NULL;
    }
    free(tok);
    return api_send_object(r, 200, o, NULL);
}

/* ---------------------------------------------------------------- health */

static enum http_ret
api_health(struct http_req *r, void *arg)
{
    struct app *app = arg;
    /* Both without waiting: the subscription, and whether Redis answered
     * this thread's pipeline lately (it PINGs when idle). A frozen Redis
     * keeps the subscription's socket open, so only the second sees it. */
    int up = subscriber_is_up(app->sub) && pipeline_is_up(http_req_pipeline(r));
    /* Stopping: load balancers are to send new clients elsewhere. */
    int draining = atomic_load(&app->draining);
    json_object *o = json_object_new_object();

    if (o != NULL) {
        json_object_object_add(o, "status",
                               json_object_new_string(draining ? "draining"
                                                      : up ? "ok" : "degraded"));
        json_object_object_add(o, "serverId",
                               json_object_new_string(app->cfg->server_id));
        json_object_object_add(o, "redis",
                               json_object_new_string(up ? "up" : "down"));
        json_object_object_add(o, "streams",
                               json_object_new_int64((int64_t)hub_count(app->hub)));
    }
    return api_send_object(r, up && !draining ? 200 : 503, o, NULL);
}

/* ---------------------------------------------------------------- metrics */

/* GET /metrics's head hook: with METRICS_KEY set, a scrape without one of
 * its keys is refused, compared in constant time (pubkey.c). */
static enum http_ret
api_metrics_check(struct http_req *r, void *arg)
{
    const struct app *app = arg;

    if (!pubkey_set_enabled(app->metrics_keys) ||
        pubkey_check(app->metrics_keys, http_req_header(r, "Authorization")))
        return HTTP_DONE;
    return http_send_error(r, 401, "unauthorized",
                           "this needs Authorization: Bearer <METRICS_KEY>", NULL);
}

/* GET /metrics: the Prometheus text (metrics.c), with what the hub and
 * the subscriber keep. Reads atomics only: a scrape takes no lock a
 * delivery takes. */
static enum http_ret
api_metrics(struct http_req *r, void *arg)
{
    struct app *app = arg;
    struct metrics_view v;
    enum http_ret ret;
    char *text;
    size_t len;

    memset(&v, 0, sizeof(v));
    for (int k = 0; k < HUB_KIND_COUNT && v.nstreams < METRICS_LABELS_MAX; k++)
        v.streams[v.nstreams++] = (struct metrics_labelled){
            hub_kind_name((enum hub_kind)k), hub_count_kind(app->hub, (enum hub_kind)k) };
    v.streams_opened = hub_opened(app->hub);
    for (int e = 0; e < STREAM_END_COUNT && v.nclosed < METRICS_LABELS_MAX; e++)
        v.closed[v.nclosed++] = (struct metrics_labelled){
            stream_end_name((enum stream_end)e), hub_ended(app->hub, (enum stream_end)e) };
    v.redis_up = subscriber_is_up(app->sub);
    v.publish_backlog = subscriber_backlog(app->sub);
    v.bodies_pending = http_req_bodies_pending(r);
    if ((text = metrics_render(&v, &len)) == NULL)
        return api_send_out_of_memory(r);
    ret = http_send_text(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
    return ret;
}

/* ------------------------------------------------------------ presence */

/* Members as people expect them: user ids in numeric order (shorter
 * first), anything else as text after its length. */
static int
api_member_cmp(const void *a, const void *b)
{
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    size_t lx = strlen(x), ly = strlen(y);

    if (lx != ly)
        return lx < ly ? -1 : 1;
    return strcmp(x, y);
}

static enum http_ret
api_presence_answer(struct api_pending *pd)
{
    struct store_presence *pr = &pd->presence;
    json_object *o, *users;

    if (pd->rc != STORE_OK)
        return api_send_store_error(pd->req, pd->rc, NULL);
    if (pr->n > 1)
        qsort(pr->members, pr->n, sizeof(*pr->members), api_member_cmp);
    if ((o = json_object_new_object()) == NULL)
        return api_send_out_of_memory(pd->req);
    if ((users = json_object_new_array()) == NULL) {
        json_object_put(o);
        return api_send_out_of_memory(pd->req);
    }
    json_object_object_add(o, "topic", json_object_new_string(http_req_query(pd->req, "topic")));
    json_object_object_add(o, "streams", json_object_new_int64((int64_t)pr->streams));
    for (size_t i = 0; i < pr->n; i++)
        json_object_array_add(users, json_object_new_string(pr->members[i]));
    json_object_object_add(o, "users", users);
    return api_send_object(pd->req, 200, o, NULL);
}

static void
api_on_presence_read(void *arg, const struct redisReply *reply)
{
    struct api_pending *pd = arg;

    pd->rc = store_presence_get_result(reply, &pd->presence);
    pd->state = API_PENDING_DONE;
    http_req_resume(pd->req);
}

/* Secure mode: who is on a topic is for those who may read it (a token
 * that grants it) and the back end (a publish key). Open mode: anyone,
 * as anyone may read the topic. Returns 1 to go on, else 0 having
 * answered in *ret. */
static int
api_presence_allowed(struct http_req *r, struct app *app, const char *topic,
                     enum http_ret *ret)
{
    struct token_claims claims;

    if (app->auth == NULL || api_has_publish_key(r, app))
        return 1;
    if (!api_auth_user(r, app, NULL, 1, &claims, ret))
        return 0;
    if (token_allows_topic(&claims, topic))
        return 1;
    log_info("%s refused: the token does not grant topic %s", http_req_path(r), topic);
    *ret = http_send_error(r, 403, "forbidden", "the token does not grant this topic", NULL);
    return 0;
}

/* GET /presence?topic=T: the streams open on T across every instance
 * and the distinct users among them, as the instances told Redis
 * (presence.c). */
static enum http_ret
api_presence_get(struct http_req *r, void *arg)
{
    struct app *app = arg;
    struct api_pending *pd = http_req_state(r);
    const char *topic;
    enum http_ret ret;

    if (pd != NULL && pd->state == API_PENDING_DONE)
        return api_presence_answer(pd);
    if (pd != NULL && pd->state == API_PENDING_WAITING)
        return HTTP_DONE;           /* suspended; not called again until done */
    topic = http_req_query(r, "topic");
    if (topic == NULL || !topic_name_valid(topic, strlen(topic)))
        return http_send_error(r, 400, "invalid_parameter",
                               "topic must be given once, as 1 to 128 of "
                               "A-Z a-z 0-9 . _ : / -", NULL);
    if (!api_presence_allowed(r, app, topic, &ret))
        return ret;
    if ((pd = api_pending_get(r, app)) == NULL)
        return api_send_out_of_memory(r);
    store_presence_get_command(&pd->cmd, topic);
    if (api_pending_send(pd, api_on_presence_read) == -1)
        return api_send_store_error(r, STORE_UNAVAILABLE, NULL);
    return HTTP_DONE;
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
    { NULL, api_is_web_asset, "GET", 0, api_web_asset, NULL },
    { "/events/sse", NULL, "GET", HTTP_ROUTE_NO_HEAD, api_stream_open, NULL },
    { "/events", NULL, "POST", 0, api_event_publish, api_write_check },
    { "/accounts", NULL, "POST", 0, api_account_create, api_write_check },
    { "/accounts/{id}", NULL, "GET", 0, api_account_get, api_account_read_check },
    { "/accounts/{id}/snapshots", NULL, "POST", 0, api_snapshot_create,
      api_write_check },
    { "/tokens", NULL, "POST", 0, api_token_create, api_write_check },
    { "/presence", NULL, "GET", 0, api_presence_get, NULL },
    { "/health", NULL, "GET", 0, api_health, NULL },
    { "/metrics", NULL, "GET", 0, api_metrics, api_metrics_check },
};

void
api_routes(struct app *app, struct http_routes *out)
{
    out->v = api_route_table;
    out->n = sizeof(api_route_table) / sizeof(api_route_table[0]);
    out->id_ok = api_id_ok;
    out->arg = app;
}
