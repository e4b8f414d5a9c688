/* store.c -- accounts and event history in Redis. Builds every command
 * the HTTP threads send on their pipelines (pipeline.c) and reads their
 * replies: the scripts (src/lua/, slot by slot as the enums below name
 * them) and the plain commands (INCR, HGETALL, PING), for the HTTP
 * threads' pipelines and the replay reader's (replay.c). Owns no
 * connection: connecting, the scripts' SHAs, error classes and back-off
 * are rconn.c's, sending is pipeline.c's.
 *
 * Keys:  ssegate:account:seq       account id counter (INCR)
 *        ssegate:account:<id>      hash: name, balance, createdAt
 *        ssegate:lastid            the last event id handed out
 *        ssegate:history           firehose history (stream, capped)
 *        ssegate:history:<userId>  one user's history (stream, capped)
 *        ssegate:history:topic:<t> one topic's history (stream, capped; user
 *                                  ids are digits, so never "topic:...")
 *        ssegate:rl:<scope>:<addr> a client's rate-limit bucket (GCRA time, expiring)
 *        ssegate:idem:<scope>:<k>  a write's kept answer (Idempotency-Key)
 * History entries have fields t (event type) and e (the envelope).
 * Channel: ssegate:events            every user's event write.lua writes, as
 *                                    history holds it (STORE_EVENTS_CHANNEL)
 *          ssegate:events:<topic>    every event of that topic, likewise
 *                                    (TOPIC_OWN_CHANNEL_PREFIX) */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "envelope.h"
#include "eventid.h"
#include "log.h"
#include "rconn.h"
#include "sse.h"
#include "store.h"
#include "topic.h"

#define KEY_MAX STORE_KEY_MAX
/* How far a history may run over its cap before the write script cuts it
 * back (src/lua/write.lua): cap / 16, at most 63. Passed to the script. */
#define STORE_TRIM_SLACK(cap) ((cap) / 16 < 63 ? (cap) / 16 : 63)
/* Room for the server id copied from struct config. */
#define STORE_NAME_CFG_MAX 128
/* A snapshot's data: {"accountId","balance","takenAt"}, two int64s and an id. */
#define STORE_SNAPSHOT_DATA_MAX 160

/* The write script's argv, slot by slot; src/lua/write.lua names the same
 * slots in the same order: its KEYS, the ARGV every op takes, then the
 * op's own. */
enum store_write_argv {
    WRITE_KEY_LAST_ID = RCONN_ARGV_FIRST,
    WRITE_KEY_FIREHOSE,
    WRITE_KEY_HISTORY,
    WRITE_KEY_ACCOUNT,
    WRITE_OP,                       /* ARGV[1] */
    WRITE_CHANNEL,                  /* where it publishes: STORE_EVENTS_CHANNEL */
    WRITE_HISTORY_CAP,
    WRITE_FIREHOSE_CAP,
    WRITE_HISTORY_SLACK,
    WRITE_FIREHOSE_SLACK,
    WRITE_IDEM_KEY,                 /* the Idempotency-Key's Redis key, or "" */
    WRITE_IDEM_TTL,                 /* seconds it keeps the answer */
    WRITE_IDEM_BODY,                /* the answer's template */
    WRITE_OP_ARGS                   /* the op's own arguments start here */
};
#define WRITE_NKEYS "4"
_Static_assert(WRITE_OP - WRITE_KEY_LAST_ID == 4, "WRITE_NKEYS");

enum store_create_argv {
    CREATE_NAME = WRITE_OP_ARGS,
    CREATE_BALANCE,
    CREATE_AT,
    CREATE_CREATED_REST,            /* account.created envelope after its id */
    CREATE_SNAPSHOT_REST,           /* snapshot envelope after its id */
    CREATE_ARGC
};

enum store_event_argv {
    EVENT_TYPE = WRITE_OP_ARGS,
    EVENT_REST,                     /* the envelope after its id */
    EVENT_ARGC
};

enum store_snapshot_argv {
    SNAPSHOT_BALANCE = WRITE_OP_ARGS,   /* "" keeps the stored balance */
    SNAPSHOT_REST_BEFORE,           /* the envelope up to the balance */
    SNAPSHOT_REST_AFTER,            /* and after it */
    SNAPSHOT_ARGC
};

/* The read script's argv (src/lua/read.lua): two keys, then the history
 * keys (one or more: READ_KEY_HISTORY on), then the ARGV, whose slots
 * count from the end of the keys (READ_ARG_*). */
enum store_read_argv {
    READ_KEY_LAST_ID = RCONN_ARGV_FIRST,
    READ_KEY_ACCOUNT,
    READ_KEY_HISTORY                /* the first history key */
};
enum store_read_args {
    READ_ARG_MUST_EXIST,            /* ARGV[1]: "1" if the account must exist */
    READ_ARG_AFTER,                 /* the id to read after, or "" */
    READ_ARG_COUNT,                 /* the most entries to return */
    READ_ARG_BUDGET,                /* the most bytes of values to return */
    READ_NARGS
};
/* The read script's reply: {last id or "", gap, entries, more}. */
enum store_read_reply {
    READ_REPLY_LAST_ID, READ_REPLY_GAP, READ_REPLY_ENTRIES, READ_REPLY_MORE, READ_REPLY_LEN
};
_Static_assert(READ_KEY_HISTORY + 1 + STORE_READ_TOPICS_MAX + READ_NARGS <= STORE_CMD_ARGC_MAX,
               "STORE_CMD_ARGC_MAX holds a read of a user and every topic");

/* The rate-limit script's argv (src/lua/ratelimit.lua). */
enum store_ratelimit_argv {
    RATELIMIT_KEY = RCONN_ARGV_FIRST,
    RATELIMIT_LIMIT,                /* ARGV[1]: N */
    RATELIMIT_INTERVAL,             /* ms between requests at the rate: W / N */
    RATELIMIT_ARGC
};
#define RATELIMIT_NKEYS "1"

_Static_assert(CREATE_ARGC <= STORE_CMD_ARGC_MAX && EVENT_ARGC <= STORE_CMD_ARGC_MAX &&
               SNAPSHOT_ARGC <= STORE_CMD_ARGC_MAX,
               "STORE_CMD_ARGC_MAX");

static struct {
    char server_id[STORE_NAME_CFG_MAX];
    char history_maxlen[STORE_NUM_MAX];
    char firehose_maxlen[STORE_NUM_MAX];
    char history_slack[STORE_NUM_MAX];
    char firehose_slack[STORE_NUM_MAX];
    char idem_ttl[STORE_NUM_MAX];
    char topic_maxlen[STORE_NUM_MAX];
    char topic_slack[STORE_NUM_MAX];
} store_cfg;

void
store_setup(const struct config *cfg)
{
    rconn_setup(cfg);
    snprintf(store_cfg.server_id, sizeof(store_cfg.server_id), "%s",
             cfg->server_id);
    snprintf(store_cfg.history_maxlen, sizeof(store_cfg.history_maxlen), "%u",
             cfg->history_maxlen);
    snprintf(store_cfg.firehose_maxlen, sizeof(store_cfg.firehose_maxlen),
             "%u", cfg->firehose_maxlen);
    snprintf(store_cfg.history_slack, sizeof(store_cfg.history_slack), "%u",
             STORE_TRIM_SLACK(cfg->history_maxlen));
    snprintf(store_cfg.firehose_slack, sizeof(store_cfg.firehose_slack), "%u",
             STORE_TRIM_SLACK(cfg->firehose_maxlen));
    snprintf(store_cfg.idem_ttl, sizeof(store_cfg.idem_ttl), "%u",
             cfg->idempotency_ttl_secs);
    snprintf(store_cfg.topic_maxlen, sizeof(store_cfg.topic_maxlen), "%u",
             cfg->topic_history_maxlen);
    snprintf(store_cfg.topic_slack, sizeof(store_cfg.topic_slack), "%u",
             STORE_TRIM_SLACK(cfg->topic_history_maxlen));
}

/* ----------------------------------------------------------- replies */

/* Maps a Redis error reply to a result: a Redis that is loading, busy or
 * read-only, or that refuses us, is "unavailable" (retry later), anything
 * else is a bug. */
static enum store_result
store_error_result(const redisReply *r, const char *what)
{
    /* Not an error of Redis: the request says so (503). */
    if (rconn_is_not_replicated(r))
        return STORE_NOT_REPLICATED;
    /* Every request would log it again: said once, process-wide. */
    if (rconn_is_refusal(r)) {
        rconn_note_refused(what, r->str);
        return STORE_UNAVAILABLE;
    }
    if (rconn_is_unavailable(r)) {
        log_warn("redis: %s: %s", what, r->str);
        return STORE_UNAVAILABLE;
    }
    log_error("redis: %s: %s", what, r->str);
    return STORE_ERROR;
}

/* ------------------------------------------------------------- helpers */

/* An event id the write script answered: only ever "<ms>-<seq>", which
 * the handlers then quote into their JSON answers as it is. */
static int
store_copy_id(const redisReply *r, char *out, size_t cap)
{
    struct event_id id;

    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len >= cap ||
        eventid_parse(r->str, r->len, &id) == -1)
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
    char data[STORE_SNAPSHOT_DATA_MAX];
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

/* Fills the slots every write takes (keys, op, channel, caps, slacks);
 * the caller fills the op's own from WRITE_OP_ARGS, then calls
 * store_cmd_finish. */
static void
store_write_command(struct store_cmd *c, const char *user_id, const char *op)
{
    memset(c, 0, sizeof(*c));
    c->script = RCONN_SCRIPT_WRITE;
    store_keys(user_id, c->history, c->account);
    c->argv[RCONN_ARGV_NKEYS] = WRITE_NKEYS;
    c->argv[WRITE_KEY_LAST_ID] = "ssegate:lastid";
    c->argv[WRITE_KEY_FIREHOSE] = "ssegate:history";
    c->argv[WRITE_KEY_HISTORY] = c->history;
    c->argv[WRITE_KEY_ACCOUNT] = c->account;
    c->argv[WRITE_OP] = op;
    c->argv[WRITE_CHANNEL] = STORE_EVENTS_CHANNEL;
    c->argv[WRITE_HISTORY_CAP] = store_cfg.history_maxlen;
    c->argv[WRITE_FIREHOSE_CAP] = store_cfg.firehose_maxlen;
    c->argv[WRITE_HISTORY_SLACK] = store_cfg.history_slack;
    c->argv[WRITE_FIREHOSE_SLACK] = store_cfg.firehose_slack;
    c->argv[WRITE_IDEM_KEY] = "";
    c->argv[WRITE_IDEM_TTL] = store_cfg.idem_ttl;
    c->argv[WRITE_IDEM_BODY] = "";
}

int
store_command_idempotent(struct store_cmd *c, const char *scope, const char *key,
                         const char *body_tpl)
{
    char *tpl = strdup(body_tpl);

    if (tpl == NULL)
        return -1;
    snprintf(c->idem, sizeof(c->idem), "ssegate:idem:%s:%s", scope, key);
    free(c->idem_body);
    c->idem_body = tpl;
    c->argv[WRITE_IDEM_KEY] = c->idem;
    c->argv[WRITE_IDEM_BODY] = c->idem_body;
    c->lens[WRITE_IDEM_KEY] = strlen(c->idem);
    c->lens[WRITE_IDEM_BODY] = strlen(c->idem_body);
    return 0;
}

/* Sets c's length from argc, and the lengths of its C strings; argv[0..1]
 * stay for the sender (rconn_script_argv). */
static void
store_cmd_finish(struct store_cmd *c, int argc)
{
    c->argc = argc;
    c->argv[RCONN_ARGV_CMD] = "EVALSHA";
    c->argv[RCONN_ARGV_SCRIPT] = "";
    for (int i = 0; i < argc; i++)
        c->lens[i] = strlen(c->argv[i]);
}

/* ------------------------------------------------------------- accounts */

/* A plain command (not a script) of C strings. */
static void
store_plain_finish(struct store_cmd *c, int argc)
{
    c->plain = 1;
    c->argc = argc;
    for (int i = 0; i < argc; i++)
        c->lens[i] = strlen(c->argv[i]);
}

void
store_ping_command(struct store_cmd *c)
{
    memset(c, 0, sizeof(*c));
    c->argv[0] = "PING";
    store_plain_finish(c, 1);
}

void
store_account_id_command(struct store_cmd *c)
{
    memset(c, 0, sizeof(*c));
    c->argv[0] = "INCR";
    c->argv[1] = "ssegate:account:seq";
    store_plain_finish(c, 2);
}

/* What a reply says before its value is read: no reply (the connection
 * failed or timed out), or an error, mapped; STORE_OK otherwise. */
static enum store_result
store_reply_status(const redisReply *r, const char *what)
{
    if (r == NULL)
        return STORE_UNAVAILABLE;
    if (r->type == REDIS_REPLY_ERROR)
        return store_error_result(r, what);
    return STORE_OK;
}

static enum store_result store_write_status(const redisReply *r);

enum store_result
store_account_id_result(const struct redisReply *r, struct account *out)
{
    /* The first step of a write: a full Redis refuses it as it would the
     * script. */
    enum store_result rc = store_write_status(r);

    if (rc != STORE_OK)
        return rc;
    if (r->type != REDIS_REPLY_INTEGER || r->integer <= 0)
        return STORE_ERROR;
    snprintf(out->id, sizeof(out->id), "%lld", r->integer);
    return STORE_OK;
}

int
store_account_command(struct store_cmd *c, const struct account *a)
{
    char *acct_json;

    store_write_command(c, a->id, "create");
    snprintf(c->num1, sizeof(c->num1), "%" PRId64, a->balance);
    snprintf(c->num2, sizeof(c->num2), "%" PRId64, a->created_at);
    if ((acct_json = store_account_json(a)) == NULL)
        return -1;
    c->rest = envelope_build_rest("account.created", a->id, acct_json,
                                  strlen(acct_json), store_cfg.server_id,
                                  a->created_at);
    free(acct_json);
    if (c->rest == NULL ||
        (c->rest2 = store_snapshot_rest(a->id, c->num1, a->created_at,
                                        a->created_at)) == NULL) {
        store_command_clear(c);
        return -1;
    }
    c->argv[CREATE_NAME] = a->name;
    c->argv[CREATE_BALANCE] = c->num1;
    c->argv[CREATE_AT] = c->num2;
    c->argv[CREATE_CREATED_REST] = c->rest;
    c->argv[CREATE_SNAPSHOT_REST] = c->rest2;
    store_cmd_finish(c, CREATE_ARGC);
    return 0;
}

enum store_result
store_account_created_result(const struct redisReply *r)
{
    enum store_result rc = store_write_status(r);

    if (rc != STORE_OK)
        return rc;
    return r->type == REDIS_REPLY_ARRAY && r->elements == 2 ? STORE_OK : STORE_ERROR;
}

void
store_account_get_command(struct store_cmd *c, const char *id)
{
    memset(c, 0, sizeof(*c));
    store_keys(id, c->history, c->account);
    c->argv[0] = "HGETALL";
    c->argv[1] = c->account;
    store_plain_finish(c, 2);
}

enum store_result
store_account_get_result(const struct redisReply *r, const char *id,
                         struct account *out)
{
    enum store_result rc = store_reply_status(r, "HGETALL");
    int have = 0;

    memset(out, 0, sizeof(*out));
    if (rc != STORE_OK)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY)
        return STORE_ERROR;
    if (r->elements == 0)
        return STORE_NOT_FOUND;
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
    if (have != 7) {
        log_error("redis: account %s is malformed", id);
        return STORE_ERROR;
    }
    return STORE_OK;
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

/* ------------------------------------------------------------- events */

int
store_snapshot_command(struct store_cmd *c, const char *user_id,
                       int has_balance, int64_t balance, int64_t taken_at)
{
    char *rest, *mark;

    if ((rest = store_snapshot_rest(user_id, BALANCE_MARK, taken_at,
                                    taken_at)) == NULL)
        return -1;
    if ((mark = strstr(rest, BALANCE_MARK)) == NULL) {
        free(rest);
        return -1;
    }
    *mark = '\0';
    store_write_command(c, user_id, "snapshot");
    c->rest = rest;
    if (has_balance)
        snprintf(c->num1, sizeof(c->num1), "%" PRId64, balance);
    c->argv[SNAPSHOT_BALANCE] = c->num1;
    c->argv[SNAPSHOT_REST_BEFORE] = rest;
    c->argv[SNAPSHOT_REST_AFTER] = mark + 1;
    store_cmd_finish(c, SNAPSHOT_ARGC);
    return 0;
}

/* A write script's reply: as store_script_status, but a full Redis
 * (maxmemory under noeviction) is said apart: the fix is Redis's memory,
 * and unlike a timeout it is certain nothing was written. Reads keep
 * "unavailable": they wait and read again. */
static enum store_result
store_write_status(const redisReply *r)
{
    if (r != NULL && rconn_is_full(r)) {
        log_warn("redis: write refused: %s", r->str);
        return STORE_FULL;
    }
    return store_script_status(r);
}

enum store_result
store_snapshot_result(const struct redisReply *r, char *id_out, size_t id_cap,
                      int64_t *balance_out)
{
    enum store_result rc = store_write_status(r);

    if (rc != STORE_OK)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        store_copy_id(r->element[0], id_out, id_cap) == -1 ||
        r->element[1]->type != REDIS_REPLY_STRING ||
        store_parse_i64(r->element[1]->str, balance_out) == -1)
        return STORE_ERROR;
    return STORE_OK;
}

/* An event's write, user's or topic's: its type and rest (owned by c
 * from here; NULL: out of memory). Returns 0 or -1. */
static int
store_event_finish(struct store_cmd *c, const char *type, char *rest)
{
    if ((c->rest = rest) == NULL)
        return -1;
    c->argv[EVENT_TYPE] = type;
    c->argv[EVENT_REST] = c->rest;
    store_cmd_finish(c, EVENT_ARGC);
    return 0;
}

int
store_event_command(struct store_cmd *c, const char *user_id,
                    const char *type, const char *data_json, size_t data_len)
{
    store_write_command(c, user_id, "event");
    return store_event_finish(c, type, envelope_build_rest(type, user_id, data_json, data_len,
                                                           store_cfg.server_id,
                                                           clock_wall_ms()));
}

int
store_topic_event_command(struct store_cmd *c, const char *topic,
                          const char *type, const char *data_json, size_t data_len)
{
    store_write_command(c, "", "topic");
    /* The topic's history and channel, in place of a user's: the cap and
     * slack are the topic's, the account slot unused. */
    snprintf(c->history, sizeof(c->history), TOPIC_HISTORY_PREFIX "%s", topic);
    snprintf(c->key, sizeof(c->key), TOPIC_OWN_CHANNEL_PREFIX "%s", topic);
    snprintf(c->account, sizeof(c->account), "ssegate:none");
    c->argv[WRITE_CHANNEL] = c->key;
    c->argv[WRITE_HISTORY_CAP] = store_cfg.topic_maxlen;
    c->argv[WRITE_HISTORY_SLACK] = store_cfg.topic_slack;
    return store_event_finish(c, type, envelope_build_topic_rest(type, topic, data_json,
                                                                 data_len, store_cfg.server_id,
                                                                 clock_wall_ms()));
}

/* ----------------------------------------------------------- presence */

/* Where write.lua's presence ops find their arguments. */
enum store_presence_argv {
    PRESENCE_INSTANCE = WRITE_OP_ARGS,
    PRESENCE_TOPIC,                 /* alive: the ttl */
    PRESENCE_EVENTS,
    PRESENCE_TEMPLATE,              /* the join/leave envelope's template */
    PRESENCE_STREAMS,               /* alive: the first of its prefixes */
    PRESENCE_MEMBERS                /* member, count pairs */
};
enum store_alive_argv {
    ALIVE_TOPIC_PREFIX = PRESENCE_STREAMS,
    ALIVE_INSTANCE_PREFIX,
    ALIVE_HISTORY_PREFIX,
    ALIVE_CHANNEL_PREFIX,
    ALIVE_BUDGET,
    ALIVE_ARGC
};
_Static_assert(PRESENCE_MEMBERS + 2 * STORE_PRESENCE_MEMBERS_MAX <= STORE_CMD_ARGC_MAX,
               "STORE_PRESENCE_MEMBERS_MAX");

/* The envelope of presence.join and presence.leave, made by envelope.c
 * like every other so the two can never differ: write.lua puts the kind
 * for the type's escaped \u0001, the member's JSON for the data's raw
 * \2, and (for 'alive', whose topic is one of many) the topic for its
 * escaped \u0003. */
static char *
store_presence_template(const char *topic)
{
    static const char data[] = "{\"userId\":\x02}";

    return envelope_build_topic_rest("presence.\x01", topic, data, sizeof(data) - 1,
                                     store_cfg.server_id, clock_wall_ms());
}

/* The parts every presence op shares: the topic's cap and slack (its
 * events go to a topic's history), and no idempotency. */
static void
store_presence_base(struct store_cmd *c, const char *op, const char *instance,
                    int events)
{
    store_write_command(c, "", op);
    c->argv[WRITE_HISTORY_CAP] = store_cfg.topic_maxlen;
    c->argv[WRITE_HISTORY_SLACK] = store_cfg.topic_slack;
    c->argv[PRESENCE_INSTANCE] = instance;
    c->argv[PRESENCE_EVENTS] = events ? "1" : "0";
}

int
store_presence_command(struct store_cmd *c, const char *instance, const char *topic,
                       int events, unsigned streams,
                       const struct store_presence_member *m, size_t n)
{
    char *p;

    if (n > STORE_PRESENCE_MEMBERS_MAX)
        return -1;
    store_presence_base(c, "presence", instance, events);
    /* The instance's set, the topic's history, its presence hash, its
     * own channel, and the counts: one buffer. */
    if ((c->keys = malloc(4 * STORE_KEY_MAX + n * STORE_NUM_MAX)) == NULL)
        return -1;
    p = c->keys;
    snprintf(p, STORE_KEY_MAX, STORE_PRESENCE_INSTANCE_PREFIX "%s", instance);
    c->argv[WRITE_KEY_FIREHOSE] = p;
    p += STORE_KEY_MAX;
    snprintf(c->history, sizeof(c->history), TOPIC_HISTORY_PREFIX "%s", topic);
    snprintf(p, STORE_KEY_MAX, STORE_PRESENCE_TOPIC_PREFIX "%s", topic);
    c->argv[WRITE_KEY_ACCOUNT] = p;
    p += STORE_KEY_MAX;
    snprintf(p, STORE_KEY_MAX, TOPIC_OWN_CHANNEL_PREFIX "%s", topic);
    c->argv[WRITE_CHANNEL] = p;
    p += STORE_KEY_MAX;
    snprintf(c->num1, sizeof(c->num1), "%u", streams);
    c->argv[PRESENCE_TOPIC] = topic;
    c->argv[PRESENCE_STREAMS] = c->num1;
    for (size_t i = 0; i < n; i++) {
        snprintf(p, STORE_NUM_MAX, "%u", m[i].count);
        c->argv[PRESENCE_MEMBERS + 2 * (int)i] = m[i].member;
        c->argv[PRESENCE_MEMBERS + 2 * (int)i + 1] = p;
        p += STORE_NUM_MAX;
    }
    if ((c->rest = store_presence_template(topic)) == NULL) {
        store_command_clear(c);
        return -1;
    }
    c->argv[PRESENCE_TEMPLATE] = c->rest;
    store_cmd_finish(c, PRESENCE_MEMBERS + 2 * (int)n);
    return 0;
}

int
store_alive_command(struct store_cmd *c, const char *instance, unsigned ttl_ms,
                    int events)
{
    store_presence_base(c, "alive", instance, events);
    c->argv[WRITE_KEY_FIREHOSE] = STORE_PRESENCE_INSTANCES;
    c->argv[WRITE_KEY_HISTORY] = "ssegate:none";
    c->argv[WRITE_KEY_ACCOUNT] = "ssegate:none";
    c->argv[WRITE_CHANNEL] = "";
    snprintf(c->num1, sizeof(c->num1), "%u", ttl_ms);
    snprintf(c->num2, sizeof(c->num2), "%u", STORE_PRESENCE_REAP_BUDGET);
    c->argv[PRESENCE_TOPIC] = c->num1;
    c->argv[ALIVE_TOPIC_PREFIX] = STORE_PRESENCE_TOPIC_PREFIX;
    c->argv[ALIVE_INSTANCE_PREFIX] = STORE_PRESENCE_INSTANCE_PREFIX;
    c->argv[ALIVE_HISTORY_PREFIX] = TOPIC_HISTORY_PREFIX;
    c->argv[ALIVE_CHANNEL_PREFIX] = TOPIC_OWN_CHANNEL_PREFIX;
    c->argv[ALIVE_BUDGET] = c->num2;
    if ((c->rest = store_presence_template("\x03")) == NULL)
        return -1;
    c->argv[PRESENCE_TEMPLATE] = c->rest;
    store_cmd_finish(c, ALIVE_ARGC);
    return 0;
}

enum store_result
store_alive_result(const redisReply *r, int *fresh, int *more)
{
    enum store_result rc = store_script_status(r);

    if (rc != STORE_OK)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER ||
        r->element[1]->type != REDIS_REPLY_INTEGER) {
        log_error("redis: unexpected reply to presence alive");
        return STORE_ERROR;
    }
    *fresh = r->element[0]->integer != 0;
    *more = r->element[1]->integer != 0;
    return STORE_OK;
}

enum store_result
store_script_ok(const redisReply *r)
{
    return store_script_status(r);
}

void
store_presence_get_command(struct store_cmd *c, const char *topic)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->key, sizeof(c->key), STORE_PRESENCE_TOPIC_PREFIX "%s", topic);
    c->argv[0] = "HGETALL";
    c->argv[1] = c->key;
    store_plain_finish(c, 2);
}

enum store_result
store_presence_get_result(const redisReply *r, struct store_presence *out)
{
    memset(out, 0, sizeof(*out));
    if (r == NULL)
        return STORE_UNAVAILABLE;
    if (r->type == REDIS_REPLY_ERROR)
        return store_error_result(r, "HGETALL");
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0)
        return STORE_ERROR;
    if (r->elements > 0 && (out->members = calloc(r->elements / 2, sizeof(char *))) == NULL)
        return STORE_UNAVAILABLE;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *f = r->element[i], *v = r->element[i + 1];
        long long n;

        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        n = strtoll(v->str, NULL, 10);
        if (n <= 0)
            continue;
        if (strncmp(f->str, "s|", 2) == 0) {
            out->streams += (uint64_t)n;
        } else if (strncmp(f->str, "u|", 2) == 0) {
            if ((out->members[out->n] = strdup(f->str + 2)) == NULL) {
                store_presence_clear(out);
                return STORE_UNAVAILABLE;
            }
            out->n++;
        }
    }
    return STORE_OK;
}

void
store_presence_clear(struct store_presence *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->members[i]);
    free(p->members);
    memset(p, 0, sizeof(*p));
}

int
store_read_command(struct store_cmd *c, const char *user_id, const char *const *topics,
                   size_t ntopics, const struct event_id *after, size_t budget)
{
    int k = READ_KEY_HISTORY, argc;
    char *p;

    memset(c, 0, sizeof(*c));
    if (ntopics > STORE_READ_TOPICS_MAX)
        return -1;
    c->script = RCONN_SCRIPT_READ;
    snprintf(c->history, sizeof(c->history), "ssegate:history");
    if (user_id != NULL)
        store_keys(user_id, c->history, c->account);
    snprintf(c->count, sizeof(c->count), "%u", STORE_PAGE_ENTRIES);
    snprintf(c->budget, sizeof(c->budget), "%zu", budget);
    /* Nothing can follow the largest id, and Redis rejects "(" on it. */
    if (after != NULL && !(after->ms == UINT64_MAX && after->seq == UINT64_MAX))
        eventid_format(after, c->after, sizeof(c->after));
    c->argv[READ_KEY_LAST_ID] = "ssegate:lastid";
    c->argv[READ_KEY_ACCOUNT] = user_id ? c->account : "ssegate:none";
    /* The user's history, or the firehose's for a stream of neither a
     * user nor a topic; a topic-only stream reads its topics alone. */
    if (user_id != NULL || ntopics == 0)
        c->argv[k++] = c->history;
    if (ntopics > 0) {
        if ((c->keys = malloc(ntopics * TOPIC_KEY_MAX)) == NULL)
            return -1;
        p = c->keys;
        for (size_t i = 0; i < ntopics; i++) {
            int n = snprintf(p, TOPIC_KEY_MAX, TOPIC_HISTORY_PREFIX "%s", topics[i]);

            c->argv[k++] = p;
            p += (size_t)n + 1;
        }
        if (user_id == NULL)
            snprintf(c->history, sizeof(c->history), "%s", c->argv[READ_KEY_HISTORY]);
    }
    snprintf(c->num1, sizeof(c->num1), "%d", k - READ_KEY_LAST_ID);
    c->argv[RCONN_ARGV_NKEYS] = c->num1;
    c->argv[k + READ_ARG_MUST_EXIST] = user_id ? "1" : "0";
    c->argv[k + READ_ARG_AFTER] = c->after;
    c->argv[k + READ_ARG_COUNT] = c->count;
    c->argv[k + READ_ARG_BUDGET] = c->budget;
    argc = k + READ_NARGS;
    store_cmd_finish(c, argc);
    return 0;
}

void
store_ratelimit_command(struct store_cmd *c, const char *scope, const char *client,
                        unsigned n, unsigned window_s)
{
    /* Rounded up: the sustained rate never exceeds N per W, and the
     * burst stays N whatever the rounding (ratelimit.lua). */
    uint64_t interval = ((uint64_t)window_s * 1000 + n - 1) / n;

    memset(c, 0, sizeof(*c));
    c->script = RCONN_SCRIPT_RATELIMIT;
    snprintf(c->key, sizeof(c->key), "ssegate:rl:%s:%s", scope, client);
    snprintf(c->num1, sizeof(c->num1), "%u", n);
    snprintf(c->num2, sizeof(c->num2), "%" PRIu64, interval);
    c->argv[RCONN_ARGV_NKEYS] = RATELIMIT_NKEYS;
    c->argv[RATELIMIT_KEY] = c->key;
    c->argv[RATELIMIT_LIMIT] = c->num1;
    c->argv[RATELIMIT_INTERVAL] = c->num2;
    store_cmd_finish(c, RATELIMIT_ARGC);
}

enum store_result
store_ratelimit_result(const struct redisReply *r, int *allowed, unsigned *retry_after_s)
{
    enum store_result rc = store_reply_status(r, "rate limit");
    long long ms;

    *allowed = 0;
    *retry_after_s = 1;
    if (rc != STORE_OK)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER ||
        r->element[1]->type != REDIS_REPLY_INTEGER) {
        log_error("redis: unexpected reply to a rate-limit check");
        return STORE_ERROR;
    }
    *allowed = r->element[0]->integer == 1;
    ms = r->element[1]->integer;
    /* Whole seconds, rounded up: a client that waits that long is let in. */
    if (ms > 1000) {
        long long secs = (ms + 999) / 1000;

        *retry_after_s = secs > (long long)CONFIG_RATE_WINDOW_MAX ? CONFIG_RATE_WINDOW_MAX
                                                                 : (unsigned)secs;
    }
    return STORE_OK;
}

void
store_command_clear(struct store_cmd *c)
{
    free(c->rest);
    free(c->rest2);
    free(c->idem_body);
    free(c->keys);
    c->rest = NULL;
    c->rest2 = NULL;
    c->idem_body = NULL;
    c->keys = NULL;
}

enum store_result
store_idempotent_result(const struct redisReply *r, int *replayed, char **body)
{
    enum store_result rc = store_write_status(r);
    const redisReply *kind, *b;

    *body = NULL;
    *replayed = 0;
    if (rc != STORE_OK)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
        return STORE_ERROR;
    kind = r->element[0];
    b = r->element[1];
    if (kind->type != REDIS_REPLY_STRING || b->type != REDIS_REPLY_STRING)
        return STORE_ERROR;
    if (strcmp(kind->str, "replay") == 0)
        *replayed = 1;
    else if (strcmp(kind->str, "first") != 0)
        return STORE_ERROR;
    if ((*body = strdup(b->str)) == NULL)
        return STORE_ERROR;
    return STORE_OK;
}

enum store_result
store_event_result(const struct redisReply *r, char *id_out, size_t id_cap)
{
    enum store_result rc = store_write_status(r);

    if (rc != STORE_OK)
        return rc;
    return store_copy_id(r, id_out, id_cap) == 0 ? STORE_OK : STORE_ERROR;
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
    const redisReply *entries, *last;
    enum store_result rc = store_script_status(r);

    memset(out, 0, sizeof(*out));
    if (rc != STORE_OK)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != READ_REPLY_LEN ||
        r->element[READ_REPLY_LAST_ID]->type != REDIS_REPLY_STRING ||
        r->element[READ_REPLY_GAP]->type != REDIS_REPLY_INTEGER ||
        r->element[READ_REPLY_ENTRIES]->type != REDIS_REPLY_ARRAY ||
        r->element[READ_REPLY_MORE]->type != REDIS_REPLY_INTEGER)
        goto malformed;
    last = r->element[READ_REPLY_LAST_ID];
    if (last->len > 0) {
        if (eventid_parse(last->str, last->len, &out->start) == -1)
            goto malformed;
        out->has_start = 1;
    }
    out->gap = r->element[READ_REPLY_GAP]->integer != 0;
    out->more = r->element[READ_REPLY_MORE]->integer != 0;
    entries = r->element[READ_REPLY_ENTRIES];
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
