/* store.c -- accounts and event history in Redis. Owns one synchronous
 * hiredis connection per calling thread (created on first use, dropped on
 * any I/O error, closed when the thread exits), so a slow Redis only
 * blocks the thread that asked. Every write is one Lua script (scripts.h).
 *
 * Keys:  ssegate:account:seq       account id counter (INCR)
 *        ssegate:account:<id>      hash: name, balance, createdAt
 *        ssegate:lastid            the last event id handed out
 *        ssegate:history           firehose history (stream, capped)
 *        ssegate:history:<userId>  one user's history (stream, capped)
 * History entries have fields t (event type) and e (the envelope). */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "config.h"
#include "envelope.h"
#include "log.h"
#include "scripts.h"
#include "sse.h"
#include "store.h"

#define KEY_MAX STORE_KEY_MAX
/* After a failed connect, a thread waits this long before trying again,
 * so a dead Redis costs each request one check, not one connect. */
#define STORE_RETRY_MS 100
/* How far a history may run over its cap before script_write cuts it
 * back (scripts.h): replay reads cap + slack entries, so none is missed. */
#define STORE_TRIM_SLACK(cap) ((cap) / 16 < 63 ? (cap) / 16 : 63)

static const char *const script_text[STORE_SCRIPT_COUNT] = { script_write, script_read };

static struct {
    char host[256];
    int port;
    char password[256];
    char channel[128];
    char server_id[128];
    char history_maxlen[16];
    char firehose_maxlen[16];
    unsigned history_count;
    unsigned firehose_count;
    struct timeval timeout;
} store_cfg;

struct store_conn {
    redisContext *c;
    int fresh;                      /* connected for the command now running */
    int64_t retry_at_ms;            /* no connect attempt before this... */
    unsigned back_gen;              /* ...unless store_back_gen moved past this */
};

/* SHA1s of the scripts: the same for every connection and server, set
 * by the first SCRIPT LOAD (under store_sha_mu). */
static char store_sha[STORE_SCRIPT_COUNT][41];
static pthread_mutex_t store_sha_mu = PTHREAD_MUTEX_INITIALIZER;

static pthread_key_t store_key;
static pthread_once_t store_key_once = PTHREAD_ONCE_INIT;

/* Bumped by store_redis_is_back(): a thread waiting out STORE_RETRY_MS
 * after a failed connect tries at once when it sees a new value. */
static atomic_uint store_back_gen;

static void
store_conn_free(void *p)
{
    struct store_conn *sc = p;

    if (sc == NULL)
        return;
    if (sc->c != NULL)
        redisFree(sc->c);
    free(sc);
}

static void
store_key_create(void)
{
    /* The destructor closes the connection of a libmicrohttpd worker
     * thread when the daemon stops it. */
    pthread_key_create(&store_key, store_conn_free);
}

void
store_setup(const struct config *cfg)
{
    pthread_once(&store_key_once, store_key_create);
    snprintf(store_cfg.host, sizeof(store_cfg.host), "%s", cfg->redis_host);
    store_cfg.port = cfg->redis_port;
    snprintf(store_cfg.password, sizeof(store_cfg.password), "%s",
             cfg->redis_password);
    snprintf(store_cfg.channel, sizeof(store_cfg.channel), "%s",
             cfg->redis_channel);
    snprintf(store_cfg.server_id, sizeof(store_cfg.server_id), "%s",
             cfg->server_id);
    snprintf(store_cfg.history_maxlen, sizeof(store_cfg.history_maxlen), "%u",
             cfg->history_maxlen);
    snprintf(store_cfg.firehose_maxlen, sizeof(store_cfg.firehose_maxlen),
             "%u", cfg->firehose_maxlen);
    store_cfg.history_count = cfg->history_maxlen + STORE_TRIM_SLACK(cfg->history_maxlen);
    store_cfg.firehose_count = cfg->firehose_maxlen + STORE_TRIM_SLACK(cfg->firehose_maxlen);
    store_cfg.timeout.tv_sec = cfg->redis_timeout_ms / 1000;
    store_cfg.timeout.tv_usec = (cfg->redis_timeout_ms % 1000) * 1000;
}

void
store_thread_cleanup(void)
{
    store_conn_free(pthread_getspecific(store_key));
    pthread_setspecific(store_key, NULL);
}

/* ----------------------------------------------------------- connection */

/* Drops the connection after an I/O error or timeout: hiredis leaves a
 * failed context unusable. */
static void
store_conn_reset(struct store_conn *sc)
{
    if (sc->c != NULL) {
        redisFree(sc->c);
        sc->c = NULL;
    }
    sc->retry_at_ms = clock_mono_ms() + STORE_RETRY_MS;
    sc->back_gen = atomic_load(&store_back_gen);
}

void
store_redis_is_back(void)
{
    atomic_fetch_add(&store_back_gen, 1);
}

unsigned
store_back_generation(void)
{
    return atomic_load(&store_back_gen);
}

/* Returns 0 if cmd's reply is fine, else logs why and returns -1. */
static int
store_reply_ok(const redisReply *r, int type, const char *what)
{
    if (r == NULL)
        return -1;
    if (r->type == type)
        return 0;
    if (r->type == REDIS_REPLY_ERROR)
        log_warn("redis: %s: %s", what, r->str);
    else
        log_warn("redis: %s: unexpected reply type %d", what, r->type);
    return -1;
}

/* Connects, authenticates and loads the scripts. Returns -1 (and
 * schedules the next attempt) when Redis cannot be used. */
static int
store_conn_open(struct store_conn *sc)
{
    redisReply *r;

    if (clock_mono_ms() < sc->retry_at_ms &&
        atomic_load(&store_back_gen) == sc->back_gen)
        return -1;
    sc->c = redisConnectWithTimeout(store_cfg.host, store_cfg.port,
                                    store_cfg.timeout);
    if (sc->c == NULL || sc->c->err) {
        log_debug("redis connect %s:%d: %s", store_cfg.host, store_cfg.port,
                  sc->c ? sc->c->errstr : "out of memory");
        goto err;
    }
    /* The connect timeout does not cover commands; this does. */
    if (redisSetTimeout(sc->c, store_cfg.timeout) != REDIS_OK)
        goto err;
    if (store_cfg.password[0] != '\0') {
        r = redisCommand(sc->c, "AUTH %s", store_cfg.password);
        if (store_reply_ok(r, REDIS_REPLY_STATUS, "AUTH") == -1) {
            freeReplyObject(r);
            goto err;
        }
        freeReplyObject(r);
    }
    for (int i = 0; i < STORE_SCRIPT_COUNT; i++) {
        r = redisCommand(sc->c, "SCRIPT LOAD %s", script_text[i]);
        if (store_reply_ok(r, REDIS_REPLY_STRING, "SCRIPT LOAD") == -1 ||
            r->len != 40) {
            freeReplyObject(r);
            goto err;
        }
        pthread_mutex_lock(&store_sha_mu);
        memcpy(store_sha[i], r->str, 41);
        pthread_mutex_unlock(&store_sha_mu);
        freeReplyObject(r);
    }
    sc->fresh = 1;
    return 0;
err:
    store_conn_reset(sc);
    return -1;
}

/* The calling thread's connection, opened if needed, or NULL. */
static struct store_conn *
store_conn_get(void)
{
    struct store_conn *sc = pthread_getspecific(store_key);

    if (sc == NULL) {
        if ((sc = calloc(1, sizeof(*sc))) == NULL)
            return NULL;
        if (pthread_setspecific(store_key, sc) != 0) {
            free(sc);
            return NULL;
        }
    }
    if (sc->c == NULL && store_conn_open(sc) == -1)
        return NULL;
    return sc;
}

/* Maps a Redis error reply to a result: a Redis that is loading, busy or
 * read-only is "unavailable" (retry later), anything else is a bug. */
static enum store_result
store_error_result(const redisReply *r, const char *what)
{
    if (strncmp(r->str, "LOADING", 7) == 0 || strncmp(r->str, "BUSY", 4) == 0 ||
        strncmp(r->str, "MASTERDOWN", 10) == 0 ||
        strncmp(r->str, "READONLY", 8) == 0 || strncmp(r->str, "OOM", 3) == 0 ||
        strncmp(r->str, "NOAUTH", 6) == 0 || strncmp(r->str, "WRONGPASS", 9) == 0) {
        log_warn("redis: %s: %s", what, r->str);
        return STORE_UNAVAILABLE;
    }
    log_error("redis: %s: %s", what, r->str);
    return STORE_ERROR;
}

/* Sends one command on this thread's connection. A connection that sat
 * idle across a Redis restart fails at once with EOF or a reset: the
 * command never reached the new server, so it is sent once more on a
 * fresh connection. Returns the reply (the caller frees it), or NULL with
 * the connection dropped. */
static redisReply *
store_command(int argc, const char **argv, const size_t *lens,
              const char *what)
{
    struct store_conn *sc = store_conn_get();
    redisReply *r;
    int fresh, err;

    if (sc == NULL)
        return NULL;
    fresh = sc->fresh;
    sc->fresh = 0;
    r = redisCommandArgv(sc->c, argc, argv, lens);
    if (r != NULL)
        return r;
    err = sc->c->err;
    log_warn("redis: %s: %s", what, sc->c->errstr);
    store_conn_reset(sc);
    if (fresh || !(err == REDIS_ERR_EOF || err == REDIS_ERR_IO))
        return NULL;
    sc->retry_at_ms = 0;
    if ((sc = store_conn_get()) == NULL)
        return NULL;
    sc->fresh = 0;
    if ((r = redisCommandArgv(sc->c, argc, argv, lens)) == NULL) {
        log_warn("redis: %s: %s", what, sc->c->errstr);
        store_conn_reset(sc);
    }
    return r;
}

/* Runs one command given as argv. On success returns STORE_OK with the
 * reply in *out (the caller frees it); an error reply is mapped and
 * freed. */
static enum store_result
store_run(int argc, const char **argv, const size_t *lens, const char *what,
          redisReply **out)
{
    redisReply *r = store_command(argc, argv, lens, what);
    enum store_result rc;

    *out = NULL;
    if (r == NULL)
        return STORE_UNAVAILABLE;
    if (r->type == REDIS_REPLY_ERROR) {
        rc = store_error_result(r, what);
        freeReplyObject(r);
        return rc;
    }
    *out = r;
    return STORE_OK;
}

#define STORE_EVAL_MAX_ARGS 16

/* Runs a script by its SHA; if Redis lost its script cache (SCRIPT FLUSH,
 * or a restart), sends the text with EVAL, which caches it again. */
static enum store_result
store_eval(int script, int nkeys, int nargs, const char **args,
           const size_t *lens, redisReply **out)
{
    const char *argv[STORE_EVAL_MAX_ARGS + 3];
    size_t argl[STORE_EVAL_MAX_ARGS + 3];
    char nk[8], sha[41];

    *out = NULL;
    if (nargs > STORE_EVAL_MAX_ARGS)
        return STORE_ERROR;
    /* Connecting loads the scripts, so the SHA is known after this. */
    if (store_conn_get() == NULL)
        return STORE_UNAVAILABLE;
    pthread_mutex_lock(&store_sha_mu);
    memcpy(sha, store_sha[script], sizeof(sha));
    pthread_mutex_unlock(&store_sha_mu);
    snprintf(nk, sizeof(nk), "%d", nkeys);
    argv[0] = "EVALSHA";
    argv[1] = sha;
    argv[2] = nk;
    for (int i = 0; i < 3; i++)
        argl[i] = strlen(argv[i]);
    for (int i = 0; i < nargs; i++) {
        argv[3 + i] = args[i];
        argl[3 + i] = lens ? lens[i] : strlen(args[i]);
    }
    {
        redisReply *r = store_command(nargs + 3, argv, argl, "script");

        if (r != NULL && r->type == REDIS_REPLY_ERROR &&
            strncmp(r->str, "NOSCRIPT", 8) == 0) {
            freeReplyObject(r);
            argv[0] = "EVAL";
            argv[1] = script_text[script];
            argl[0] = 4;
            argl[1] = strlen(script_text[script]);
            r = store_command(nargs + 3, argv, argl, "script");
        }
        *out = NULL;
        if (r == NULL)
            return STORE_UNAVAILABLE;
        if (r->type == REDIS_REPLY_ERROR) {
            enum store_result rc = store_error_result(r, "script");

            freeReplyObject(r);
            return rc;
        }
        *out = r;
    }
    return STORE_OK;
}

/* ------------------------------------------------------------- helpers */

static int
store_copy_id(const redisReply *r, char *out, size_t cap)
{
    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len >= cap)
        return -1;
    memcpy(out, r->str, r->len);
    out[r->len] = '\0';
    return 0;
}

/* Parses a decimal int64 reply field (strings from HGETALL). */
static int
store_parse_i64(const char *s, int64_t *out)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

char *
store_account_json(const struct account *a)
{
    json_object *o = json_object_new_object();
    char *s = NULL;

    if (o == NULL)
        return NULL;
    if (json_object_object_add(o, "id", json_object_new_string(a->id)) == 0 &&
        json_object_object_add(o, "name", json_object_new_string(a->name)) == 0 &&
        json_object_object_add(o, "balance", json_object_new_int64(a->balance)) == 0 &&
        json_object_object_add(o, "createdAt",
                               json_object_new_int64(a->created_at)) == 0) {
        const char *j = json_object_to_json_string_ext(
            o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

        if (j != NULL)
            s = strdup(j);
    }
    json_object_put(o);
    return s;
}

/* The snapshot's data, with the balance left out when it is only known
 * inside Redis: the split point is marked by a control character that
 * cannot survive JSON escaping anywhere else in the envelope. */
#define BALANCE_MARK "\x01"

static char *
store_snapshot_rest(const char *user_id, const char *balance, int64_t taken_at,
                    int64_t ts)
{
    char data[160];
    int n;

    n = snprintf(data, sizeof(data),
                 "{\"accountId\":\"%s\",\"balance\":%s,\"takenAt\":%" PRId64 "}",
                 user_id, balance, taken_at);
    if (n < 0 || (size_t)n >= sizeof(data))
        return NULL;
    return envelope_build_rest("snapshot", user_id, data, (size_t)n,
                               store_cfg.server_id, ts);
}

static void
store_keys(const char *user_id, char *history, char *account)
{
    snprintf(history, KEY_MAX, "ssegate:history:%s", user_id);
    snprintf(account, KEY_MAX, "ssegate:account:%s", user_id);
}

/* ------------------------------------------------------------- accounts */

enum store_result
store_account_create(const char *name, int64_t balance, struct account *out)
{
    const char *argv[3] = { "INCR", "ssegate:account:seq", NULL };
    char history[KEY_MAX], account[KEY_MAX], bal[24], created[24];
    char *acct_json = NULL, *rest1 = NULL, *rest2 = NULL;
    redisReply *r = NULL;
    enum store_result rc;

    memset(out, 0, sizeof(*out));
    if ((rc = store_run(2, argv, NULL, "INCR", &r)) != STORE_OK)
        return rc;
    if (r->type != REDIS_REPLY_INTEGER || r->integer <= 0) {
        freeReplyObject(r);
        return STORE_ERROR;
    }
    snprintf(out->id, sizeof(out->id), "%lld", r->integer);
    freeReplyObject(r);
    r = NULL;
    snprintf(out->name, sizeof(out->name), "%s", name);
    out->balance = balance;
    out->created_at = clock_wall_ms();

    snprintf(bal, sizeof(bal), "%" PRId64, balance);
    snprintf(created, sizeof(created), "%" PRId64, out->created_at);
    store_keys(out->id, history, account);
    rc = STORE_ERROR;
    if ((acct_json = store_account_json(out)) == NULL ||
        (rest1 = envelope_build_rest("account.created", out->id, acct_json,
                                     strlen(acct_json), store_cfg.server_id,
                                     out->created_at)) == NULL ||
        (rest2 = store_snapshot_rest(out->id, bal, out->created_at,
                                     out->created_at)) == NULL)
        goto out;
    {
        const char *args[] = {
            "ssegate:lastid", "ssegate:history", history, account,
            "create", store_cfg.channel, store_cfg.history_maxlen,
            store_cfg.firehose_maxlen, name, bal, created, rest1, rest2
        };

        rc = store_eval(STORE_SCRIPT_WRITE, 4, 13, args, NULL, &r);
    }
    if (rc == STORE_OK &&
        (r->type != REDIS_REPLY_ARRAY || r->elements != 2))
        rc = STORE_ERROR;
out:
    freeReplyObject(r);
    free(acct_json);
    free(rest1);
    free(rest2);
    return rc;
}

enum store_result
store_account_get(const char *id, struct account *out)
{
    char history[KEY_MAX], account[KEY_MAX];
    const char *argv[2] = { "HGETALL", account };
    redisReply *r;
    enum store_result rc;
    int have = 0;

    memset(out, 0, sizeof(*out));
    store_keys(id, history, account);
    if ((rc = store_run(2, argv, NULL, "HGETALL", &r)) != STORE_OK)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return STORE_ERROR;
    }
    if (r->elements == 0) {
        freeReplyObject(r);
        return STORE_NOT_FOUND;
    }
    snprintf(out->id, sizeof(out->id), "%s", id);
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];

        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(k->str, "name") == 0 && v->len < sizeof(out->name)) {
            memcpy(out->name, v->str, v->len + 1);
            have |= 1;
        } else if (strcmp(k->str, "balance") == 0 &&
                   store_parse_i64(v->str, &out->balance) == 0) {
            have |= 2;
        } else if (strcmp(k->str, "createdAt") == 0 &&
                   store_parse_i64(v->str, &out->created_at) == 0) {
            have |= 4;
        }
    }
    freeReplyObject(r);
    if (have != 7) {
        log_error("redis: account %s is malformed", id);
        return STORE_ERROR;
    }
    return STORE_OK;
}

/* ------------------------------------------------------------- events */

enum store_result
store_snapshot_take(const char *user_id, int has_balance, int64_t balance,
                    int64_t taken_at, char *id_out, size_t id_cap,
                    int64_t *balance_out)
{
    char history[KEY_MAX], account[KEY_MAX], bal[24] = "";
    char *rest = NULL, *mark;
    redisReply *r = NULL;
    enum store_result rc = STORE_ERROR;

    store_keys(user_id, history, account);
    if (has_balance)
        snprintf(bal, sizeof(bal), "%" PRId64, balance);
    if ((rest = store_snapshot_rest(user_id, BALANCE_MARK, taken_at,
                                    taken_at)) == NULL ||
        (mark = strstr(rest, BALANCE_MARK)) == NULL)
        goto out;
    *mark = '\0';
    {
        const char *args[] = {
            "ssegate:lastid", "ssegate:history", history, account,
            "snapshot", store_cfg.channel, store_cfg.history_maxlen,
            store_cfg.firehose_maxlen, bal, rest, mark + 1
        };

        rc = store_eval(STORE_SCRIPT_WRITE, 4, 11, args, NULL, &r);
    }
    if (rc != STORE_OK)
        goto out;
    if (r->type == REDIS_REPLY_NIL) {
        rc = STORE_NOT_FOUND;
    } else if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
               store_copy_id(r->element[0], id_out, id_cap) == -1 ||
               r->element[1]->type != REDIS_REPLY_STRING ||
               store_parse_i64(r->element[1]->str, balance_out) == -1) {
        rc = STORE_ERROR;
    }
out:
    freeReplyObject(r);
    free(rest);
    return rc;
}

int
store_event_command(struct store_cmd *c, const char *user_id,
                    const char *type, const char *data_json, size_t data_len)
{
    c->script = STORE_SCRIPT_WRITE;
    c->argc = 13;
    store_keys(user_id, c->history, c->account);
    c->rest = envelope_build_rest(type, user_id, data_json, data_len,
                                  store_cfg.server_id, clock_wall_ms());
    if (c->rest == NULL)
        return -1;
    c->argv[0] = "EVALSHA";
    c->argv[1] = "";
    c->argv[2] = "4";
    c->argv[3] = "ssegate:lastid";
    c->argv[4] = "ssegate:history";
    c->argv[5] = c->history;
    c->argv[6] = c->account;
    c->argv[7] = "event";
    c->argv[8] = store_cfg.channel;
    c->argv[9] = store_cfg.history_maxlen;
    c->argv[10] = store_cfg.firehose_maxlen;
    c->argv[11] = type;
    c->argv[12] = c->rest;
    for (int i = 0; i < c->argc; i++)
        c->lens[i] = strlen(c->argv[i]);
    return 0;
}

void
store_read_command(struct store_cmd *c, const char *user_id,
                   const struct event_id *after)
{
    c->script = STORE_SCRIPT_READ;
    c->argc = 9;
    c->rest = NULL;
    snprintf(c->history, sizeof(c->history), "ssegate:history");
    c->account[0] = '\0';
    c->after[0] = '\0';
    if (user_id != NULL)
        store_keys(user_id, c->history, c->account);
    snprintf(c->count, sizeof(c->count), "%u",
             user_id ? store_cfg.history_count : store_cfg.firehose_count);
    /* Nothing can follow the largest id, and Redis rejects "(" on it. */
    if (after != NULL && !(after->ms == UINT64_MAX && after->seq == UINT64_MAX))
        eventid_format(after, c->after, sizeof(c->after));
    c->argv[0] = "EVALSHA";
    c->argv[1] = "";
    c->argv[2] = "3";
    c->argv[3] = c->history;
    c->argv[4] = "ssegate:lastid";
    c->argv[5] = user_id ? c->account : "ssegate:none";
    c->argv[6] = user_id ? "1" : "0";
    c->argv[7] = c->after;
    c->argv[8] = c->count;
    for (int i = 0; i < c->argc; i++)
        c->lens[i] = strlen(c->argv[i]);
}

void
store_command_clear(struct store_cmd *c)
{
    free(c->rest);
    c->rest = NULL;
}

const char *
store_script_text(enum store_script script)
{
    return script_text[script];
}

/* What a script's reply says before its value is read: no reply (the
 * connection failed), an error, or nil (no such account); STORE_OK when
 * there is a value to read. */
static enum store_result
store_script_status(const redisReply *r)
{
    if (r == NULL)
        return STORE_UNAVAILABLE;
    if (r->type == REDIS_REPLY_ERROR)
        return store_error_result(r, "script");
    if (r->type == REDIS_REPLY_NIL)
        return STORE_NOT_FOUND;
    return STORE_OK;
}

enum store_result
store_event_result(const struct redisReply *r, char *id_out, size_t id_cap)
{
    enum store_result rc = store_script_status(r);

    if (rc != STORE_OK)
        return rc;
    return store_copy_id(r, id_out, id_cap) == 0 ? STORE_OK : STORE_ERROR;
}

enum store_result
store_event_publish(const char *user_id, const char *type,
                    const char *data_json, size_t data_len,
                    char *id_out, size_t id_cap)
{
    struct store_cmd c;
    redisReply *r = NULL;
    enum store_result rc;

    if (store_event_command(&c, user_id, type, data_json, data_len) == -1)
        return STORE_ERROR;
    rc = store_eval(c.script, 4, c.argc - 3, c.argv + 3, c.lens + 3, &r);
    if (rc == STORE_OK)
        rc = store_event_result(r, id_out, id_cap);
    freeReplyObject(r);
    store_command_clear(&c);
    return rc;
}

/* ------------------------------------------------------------- history */

/* Builds one frame from an XRANGE entry [id, [t, type, e, envelope]]. */
static struct sse_frame *
store_entry_frame(const redisReply *e)
{
    const redisReply *fields;
    const char *type = NULL, *env = NULL;
    size_t env_len = 0;
    struct event_id id;

    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING ||
        e->element[1]->type != REDIS_REPLY_ARRAY ||
        eventid_parse(e->element[0]->str, e->element[0]->len, &id) == -1)
        return NULL;
    fields = e->element[1];
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *k = fields->element[i], *v = fields->element[i + 1];

        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(k->str, "t") == 0) {
            type = v->str;
        } else if (strcmp(k->str, "e") == 0) {
            env = v->str;
            env_len = v->len;
        }
    }
    if (type == NULL || env == NULL)
        return NULL;
    return sse_frame_new_event(&id, type, env, env_len);
}

void
store_replay_clear(struct store_replay *r)
{
    for (size_t i = 0; i < r->n; i++)
        sse_frame_unref(r->frames[i]);
    free(r->frames);
    memset(r, 0, sizeof(*r));
}

enum store_result
store_stream_result(const struct redisReply *r, const struct store_cmd *c,
                    struct store_replay *out)
{
    const redisReply *entries;
    enum store_result rc = store_script_status(r);

    memset(out, 0, sizeof(*out));
    if (rc != STORE_OK)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[1]->type != REDIS_REPLY_INTEGER ||
        r->element[2]->type != REDIS_REPLY_ARRAY)
        goto malformed;
    if (r->element[0]->len > 0) {
        if (eventid_parse(r->element[0]->str, r->element[0]->len,
                          &out->start) == -1)
            goto malformed;
        out->has_start = 1;
    }
    out->gap = r->element[1]->integer != 0;
    entries = r->element[2];
    if (entries->elements > 0) {
        out->frames = calloc(entries->elements, sizeof(*out->frames));
        if (out->frames == NULL)
            return STORE_ERROR;
        for (size_t i = 0; i < entries->elements; i++) {
            struct sse_frame *f = store_entry_frame(entries->element[i]);

            if (f == NULL) {
                log_warn("redis: skipping a malformed history entry in %s",
                         c->history);
                continue;
            }
            out->frames[out->n++] = f;
        }
    }
    return STORE_OK;
malformed:
    log_error("redis: unexpected reply to the history read of %s", c->history);
    store_replay_clear(out);
    return STORE_ERROR;
}

enum store_result
store_stream_open(const char *user_id, const struct event_id *after,
                  struct store_replay *out)
{
    struct store_cmd c;
    redisReply *r = NULL;
    enum store_result rc;

    memset(out, 0, sizeof(*out));
    store_read_command(&c, user_id, after);
    rc = store_eval(c.script, 3, c.argc - 3, c.argv + 3, c.lens + 3, &r);
    if (rc == STORE_OK)
        rc = store_stream_result(r, &c, out);
    freeReplyObject(r);
    return rc;
}
