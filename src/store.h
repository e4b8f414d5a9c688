/* store.h -- everything ssegate keeps in Redis: accounts, the event
 * history streams, and the one script that appends an event to history
 * and publishes it atomically. Synchronous hiredis, one connection per
 * calling thread (hiredis contexts are not thread-safe), made through
 * rconn.h like every other connection. */
#ifndef SSEGATE_STORE_H
#define SSEGATE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "eventid.h"
#include "rconn.h"

struct config;
struct redisReply;
struct sse_frame;

enum store_result {
    STORE_OK = 0,
    STORE_NOT_FOUND,        /* no such account */
    STORE_UNAVAILABLE,      /* Redis unreachable, timed out or loading */
    STORE_ERROR             /* Redis answered something unexpected (logged) */
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

/* The result of opening a stream: frames to replay (owned, unref each
 * via store_replay_clear) and where the stream starts. */
struct store_replay {
    struct sse_frame **frames;
    size_t n;
    int gap;                /* events after `after` were trimmed */
    int has_start;
    struct event_id start;  /* the deployment's last event id at the read */
};

/* Copies what the store needs from cfg (addresses, limits, channel,
 * server id). Call once before any other store_* call. */
void
store_setup(const struct config *cfg);

/* Closes the calling thread's connection, if any. Threads created by
 * libmicrohttpd close theirs automatically when they exit. */
void
store_thread_cleanup(void);

/* Tells every connection that Redis answers again (the subscriber just
 * subscribed): a thread's or a pipeline's connection whose last connect
 * failed retries at once instead of answering 503 for the rest of its
 * back-off. The same as rconn_redis_is_back, kept for callers outside the
 * Redis layer. Any thread. */
void
store_redis_is_back(void);

/* POST /accounts: allocates an id, stores the account and publishes its
 * account.created and snapshot events, all or nothing. */
enum store_result
store_account_create(const char *name, int64_t balance, struct account *out);

enum store_result
store_account_get(const char *id, struct account *out);

/* The account as one line of JSON: {"id","name","balance","createdAt"}.
 * The caller frees it; NULL when out of memory. */
char *
store_account_json(const struct account *a);

/* POST /accounts/ID/snapshots: sets the balance when has_balance, then
 * publishes a snapshot event. Fills the event id and the balance
 * recorded. */
enum store_result
store_snapshot_take(const char *user_id, int has_balance, int64_t balance,
                    int64_t taken_at, char *id_out, size_t id_cap,
                    int64_t *balance_out);

/* One script's command, for a pipelined connection (pipeline.c): argv[0]
 * and argv[1] are left for the sender, who fills them with
 * rconn_script_argv ("EVALSHA" and the SHA, or "EVAL" and the text).
 * Built by store_event_command or store_read_command; freed with
 * store_command_clear. */
#define STORE_CMD_ARGC_MAX 18   /* the longest: creating an account */
#define STORE_KEY_MAX 128
struct store_cmd {
    enum rconn_script script;
    int argc;
    const char *argv[STORE_CMD_ARGC_MAX];
    size_t lens[STORE_CMD_ARGC_MAX];
    char history[STORE_KEY_MAX];
    char account[STORE_KEY_MAX];
    char after[EVENTID_STR_MAX];
    char count[STORE_NUM_MAX];
    char *rest;             /* owned: the envelope after its id */
};

/* POST /events: fills c for publishing type/data (data_json: one JSON
 * text) to an existing user_id, sent on the HTTP thread's pipeline; type
 * is borrowed and must outlive c. Returns 0, or -1 when out of memory
 * (nothing to clear). */
int
store_event_command(struct store_cmd *c, const char *user_id,
                    const char *type, const char *data_json, size_t data_len);

/* Fills c for opening a stream, as store_stream_open reads. */
void
store_read_command(struct store_cmd *c, const char *user_id,
                   const struct event_id *after);

void
store_command_clear(struct store_cmd *c);

/* The outcome of an event's write script (NULL: the connection failed
 * or timed out): STORE_NOT_FOUND for an unknown user; fills the event id
 * on STORE_OK. */
enum store_result
store_event_result(const struct redisReply *r, char *id_out, size_t id_cap);

/* Opens a stream: for user_id (NULL for the firehose) checks the
 * account exists, and when after != NULL reads every held event after
 * it (and whether some were trimmed). Fills out; on success the caller
 * owns out's frames. */
enum store_result
store_stream_open(const char *user_id, const struct event_id *after,
                  struct store_replay *out);

/* The outcome of a history read's reply (NULL: the connection failed),
 * as store_stream_open would report it; c is the command that read. */
enum store_result
store_stream_result(const struct redisReply *r, const struct store_cmd *c,
                    struct store_replay *out);

void
store_replay_clear(struct store_replay *r);

#endif
