/* store.h -- everything ssegate keeps in Redis: accounts, the event
 * history streams, and the one script that appends an event to history
 * and publishes it atomically. Builds the commands the HTTP threads send
 * on their pipelines (pipeline.h) and reads the replies; one synchronous
 * connection, the main thread's, serves recovery's history reads
 * (store_stream_open), made through rconn.h like every other
 * connection. */
#ifndef SSEGATE_STORE_H
#define SSEGATE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "eventid.h"
#include "rconn.h"

struct config;
struct redisReply;
struct sse_frame;

/* The gateways' own channel: write.lua publishes every event it writes
 * here, and only here, so a message on it is one of ours and its id can
 * be trusted. Outside publishers use REDIS_CHANNEL; in the ssegate:
 * namespace like our keys, so one ACL pattern (&ssegate:*) names what
 * they must not have. */
#define STORE_EVENTS_CHANNEL "ssegate:events"

enum store_result {
    STORE_OK = 0,
    STORE_NOT_FOUND,        /* no such account */
    STORE_UNAVAILABLE,      /* Redis unreachable, timed out or loading */
    STORE_ERROR,            /* Redis answered something unexpected (logged) */
    /* A write done on the master that fewer than REDIS_WAIT_REPLICAS
     * replicas acknowledged in time (pipeline.h) */
    STORE_NOT_REPLICATED,
    STORE_FULL              /* Redis is at maxmemory: nothing was written */
};

/* An account id is an INCR value: up to 20 digits, and the NUL. */
#define STORE_ACCOUNT_ID_MAX 24
/* A name's UTF-8 bytes (body.h: 4 * BODY_NAME_MAX_CHARS), its NUL, and
 * rounding. */
#define STORE_ACCOUNT_NAME_MAX 404
/* A decimal int64 or unsigned, with its sign and NUL. */
#define STORE_NUM_MAX 24

struct account {
    char id[STORE_ACCOUNT_ID_MAX];
    char name[STORE_ACCOUNT_NAME_MAX];
    int64_t balance;
    int64_t created_at;     /* ms since the epoch */
};

/* One page of history (store_read_command): frames to replay (owned,
 * unref each via store_replay_clear) and where the stream starts. */
struct store_replay {
    struct sse_frame **frames;
    size_t n;
    int gap;                /* events after `after` were trimmed */
    int more;               /* the page stopped short of history's end */
    int has_start;
    struct event_id start;  /* the deployment's last event id at the read */
};

/* Copies what the store needs from cfg (addresses, limits, server
 * id). Call once before any other store_* call. */
void
store_setup(const struct config *cfg);

/* The account as one line of JSON: {"id","name","balance","createdAt"}.
 * The caller frees it; NULL when out of memory. */
char *
store_account_json(const struct account *a);

/* One command for a pipelined connection (pipeline.c). For a script,
 * argv[0] and argv[1] are left for the sender, who fills them with
 * rconn_script_argv ("EVALSHA" and the SHA, or "EVAL" and the text); a
 * plain command (plain set: PING, INCR, HGETALL) is sent as it is. Built
 * by the store_*_command functions below; freed with
 * store_command_clear. */
/* The longest: a history read of a user and 32 topics (3 + 2 + 33 keys
 * + 4 arguments). */
#define STORE_CMD_ARGC_MAX 48
#define STORE_KEY_MAX 192       /* a topic's history key or channel: 22 + 128 */
struct store_cmd {
    enum rconn_script script;
    int plain;              /* not a script: argv is the whole command */
    int argc;
    const char *argv[STORE_CMD_ARGC_MAX];
    size_t lens[STORE_CMD_ARGC_MAX];
    char history[STORE_KEY_MAX];
    char account[STORE_KEY_MAX];
    char key[STORE_KEY_MAX];    /* any other key (a rate limit's) */
    char after[EVENTID_STR_MAX];
    char count[STORE_NUM_MAX];
    char budget[STORE_NUM_MAX];
    char num1[STORE_NUM_MAX];   /* a balance */
    char num2[STORE_NUM_MAX];   /* a time */
    char *rest;             /* owned: the envelope after its id */
    char *rest2;            /* owned: a second envelope (account creation) */
    char idem[STORE_KEY_MAX];   /* the Idempotency-Key's Redis key, or "" */
    char *idem_body;        /* owned: the answer's template (store_command_idempotent) */
    char *keys;             /* owned: a read's topic history keys, one after another */
};

/* A write's Idempotency-Key: at most this many visible ASCII characters. */
#define STORE_IDEM_KEY_MAX 128
/* Where an answer template (store_command_idempotent) takes the event id
 * and, for a snapshot, the balance the write script recorded. */
#define STORE_IDEM_ID_MARK "\x01"
#define STORE_IDEM_BALANCE_MARK "\x02"

/* Makes the write command c idempotent under key (STORE_IDEM_KEY_MAX
 * visible ASCII characters) in scope ("events", "snapshots",
 * "accounts"): the script then answers {first or replay, body}, where
 * body is body_tpl (copied) with the marks filled, kept in Redis for
 * IDEMPOTENCY_TTL_SECS with the write, atomically. A retry with the same
 * key gets the kept body and writes nothing. Returns 0, or -1 when out of
 * memory (c unchanged). */
int
store_command_idempotent(struct store_cmd *c, const char *scope, const char *key,
                         const char *body_tpl);

/* The outcome of an idempotent write's reply: STORE_OK with *body (the
 * caller frees it) and *replayed (1: an earlier write's answer, nothing
 * written now), or the store's error. */
enum store_result
store_idempotent_result(const struct redisReply *r, int *replayed, char **body);

/* PING: the pipelines' liveness check (/health). */
void
store_ping_command(struct store_cmd *c);

/* POST /accounts, step 1: INCR of the account id counter. Its result
 * fills out->id. Not a write anyone sees: a counter value lost to a
 * failure only leaves a gap in account ids. */
void
store_account_id_command(struct store_cmd *c);
enum store_result
store_account_id_result(const struct redisReply *r, struct account *out);

/* POST /accounts, step 2: stores the account a (id from step 1) and
 * publishes its account.created and snapshot events, all or nothing. a
 * is borrowed and must outlive c. Returns 0, or -1 when out of memory
 * (nothing to clear). The result is STORE_OK or an error. */
int
store_account_command(struct store_cmd *c, const struct account *a);
enum store_result
store_account_created_result(const struct redisReply *r);

/* GET /accounts/ID: HGETALL of the account; the result fills out
 * (STORE_NOT_FOUND: no such account). */
void
store_account_get_command(struct store_cmd *c, const char *id);
enum store_result
store_account_get_result(const struct redisReply *r, const char *id,
                         struct account *out);

/* POST /accounts/ID/snapshots: sets the balance when has_balance, then
 * publishes a snapshot event. Returns 0, or -1 when out of memory
 * (nothing to clear). The result fills the event id and the balance
 * recorded (STORE_NOT_FOUND: no such account). */
int
store_snapshot_command(struct store_cmd *c, const char *user_id,
                       int has_balance, int64_t balance, int64_t taken_at);
enum store_result
store_snapshot_result(const struct redisReply *r, char *id_out, size_t id_cap,
                      int64_t *balance_out);

/* POST /events: fills c for publishing type/data (data_json: one JSON
 * text) to an existing user_id, sent on the HTTP thread's pipeline; type
 * is borrowed and must outlive c. Returns 0, or -1 when out of memory
 * (nothing to clear). */
int
store_event_command(struct store_cmd *c, const char *user_id,
                    const char *type, const char *data_json, size_t data_len);

/* The most entries one page of history holds, whatever their size. */
#define STORE_PAGE_ENTRIES 1000

/* Fills c for one page of history (src/lua/read.lua): for user_id (NULL
 * for none) checks the account exists and reads the deployment's last
 * id, and when after != NULL the held events after it (and whether some
 * were trimmed), at most STORE_PAGE_ENTRIES and, past the first, at most
 * budget bytes of events, merged in id order from every source: the
 * user's history (the firehose's when there is neither a user nor a
 * topic) and each of the ntopics topics' (borrowed; topic.h names, at
 * most STORE_READ_TOPICS_MAX). Returns 0, or -1 when out of memory
 * (nothing to clear). */
#define STORE_READ_TOPICS_MAX 32
int
store_read_command(struct store_cmd *c, const char *user_id, const char *const *topics,
                   size_t ntopics, const struct event_id *after, size_t budget);

/* POST /events for a topic: fills c for publishing type/data to topic
 * (topic_name_valid) on its own history and channel; type is borrowed
 * and must outlive c. Returns 0, or -1 when out of memory (nothing to
 * clear). */
int
store_topic_event_command(struct store_cmd *c, const char *topic,
                          const char *type, const char *data_json, size_t data_len);

/* Presence (write.lua's 'presence' and 'alive' ops; docs/ARCHITECTURE.md
 * "Presence"): each instance's absolute counts of streams on a topic and
 * of each member's, in the topic's hash; each instance's topics in its
 * set; the instances and until when each lives in one sorted set. */
#define STORE_PRESENCE_TOPIC_PREFIX "ssegate:presence:topic:"
#define STORE_PRESENCE_INSTANCE_PREFIX "ssegate:presence:instance:"
#define STORE_PRESENCE_INSTANCES "ssegate:presence:instances"
/* Member counts one command carries (within STORE_CMD_ARGC_MAX). */
#define STORE_PRESENCE_MEMBERS_MAX 13
/* Topics an 'alive' takes away from dead instances per call. */
#define STORE_PRESENCE_REAP_BUDGET 256

struct store_presence_member {
    const char *member;     /* a user id or token sub; borrowed */
    unsigned count;         /* its streams on the topic here; 0: none */
};

/* Sets instance's counts on topic: streams in all, and n (at most
 * STORE_PRESENCE_MEMBERS_MAX) members' (borrowed, with instance: they
 * must outlive c). events: PRESENCE_EVENTS (join and leave events are
 * written when a member's count across instances leaves or reaches 0).
 * Returns 0, or -1 when out of memory or n is too large (nothing to
 * clear). The reply is checked with store_script_ok. */
int
store_presence_command(struct store_cmd *c, const char *instance, const char *topic,
                       int events, unsigned streams,
                       const struct store_presence_member *m, size_t n);

/* instance (borrowed) lives for ttl_ms more (0: it leaves now, and its
 * counts go with it); instances past their time are taken away (their
 * members' leave events written when events). Returns 0, or -1 when out
 * of memory (nothing to clear). */
int
store_alive_command(struct store_cmd *c, const char *instance, unsigned ttl_ms,
                    int events);
/* Its outcome: STORE_OK with *fresh (1: Redis did not know the instance;
 * its counts are to be sent again) and *more (dead instances are left
 * to take away: call again soon), or the store's error. */
enum store_result
store_alive_result(const struct redisReply *r, int *fresh, int *more);

/* A script that answers nothing in particular: STORE_OK or an error. */
enum store_result
store_script_ok(const struct redisReply *r);

/* GET /presence: the topic's hash, read as a whole. */
void
store_presence_get_command(struct store_cmd *c, const char *topic);
/* What it says: the streams on the topic across instances and the
 * distinct members (owned copies, in the hash's order; free with
 * store_presence_clear). */
struct store_presence {
    uint64_t streams;
    char **members;
    size_t n;
};
enum store_result
store_presence_get_result(const struct redisReply *r, struct store_presence *out);
void
store_presence_clear(struct store_presence *p);

/* Fills c for one rate-limit check (src/lua/ratelimit.lua) of the client
 * named client (an address as text) in scope ("writes", "streams"): at
 * most n requests per window_s seconds, shared by every instance. */
void
store_ratelimit_command(struct store_cmd *c, const char *scope, const char *client,
                        unsigned n, unsigned window_s);

/* The outcome of a rate-limit check (NULL: no answer): STORE_OK with
 * *allowed (1: counted, go on; 0: refused, *retry_after_s the whole
 * seconds, at least 1, until a request would be allowed), or the store's
 * error (Redis could not answer). */
enum store_result
store_ratelimit_result(const struct redisReply *r, int *allowed, unsigned *retry_after_s);

void
store_command_clear(struct store_cmd *c);

/* The outcome of an event's write script (NULL: the connection failed
 * or timed out): STORE_NOT_FOUND for an unknown user; fills the event id
 * on STORE_OK. */
enum store_result
store_event_result(const struct redisReply *r, char *id_out, size_t id_cap);

/* The outcome of a history page's reply (NULL: the connection failed):
 * STORE_NOT_FOUND for an unknown user; on STORE_OK the caller owns out's
 * frames. c is the command that read. */
enum store_result
store_stream_result(const struct redisReply *r, const struct store_cmd *c,
                    struct store_replay *out);

void
store_replay_clear(struct store_replay *r);

#endif
