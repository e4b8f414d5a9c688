/* store.h -- everything ssegate keeps in Redis: accounts, the event
 * history streams, and the one script that appends an event to history
 * and publishes it atomically. Synchronous hiredis, one connection per
 * calling thread (hiredis contexts are not thread-safe). */
#ifndef SSEGATE_STORE_H
#define SSEGATE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "eventid.h"

struct config;
struct redisReply;
struct sse_frame;

enum store_result {
    STORE_OK = 0,
    STORE_NOT_FOUND,        /* no such account */
    STORE_UNAVAILABLE,      /* Redis unreachable, timed out or loading */
    STORE_ERROR             /* Redis answered something unexpected (logged) */
};

struct account {
    char id[24];
    char name[404];
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

/* Tells every thread that Redis answers again (the subscriber just
 * subscribed): a thread whose last connect failed retries at once
 * instead of answering 503 for the rest of its back-off. Any thread. */
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

/* POST /events: publishes type/data (data_json: one JSON text) for an
 * existing user. */
enum store_result
store_event_publish(const char *user_id, const char *type,
                    const char *data_json, size_t data_len,
                    char *id_out, size_t id_cap);

/* POST /events on a pipelined connection (pipeline.c): the write
 * script's command for an event, argv[0] and argv[1] left for the caller
 * ("EVALSHA" and the SHA, or "EVAL" and store_write_script()). */
#define STORE_EVENT_ARGC 13
#define STORE_KEY_MAX 128
struct store_event_cmd {
    const char *argv[STORE_EVENT_ARGC];
    size_t lens[STORE_EVENT_ARGC];
    char history[STORE_KEY_MAX];
    char account[STORE_KEY_MAX];
    char *rest;             /* owned: the envelope after its id */
};

/* Fills c for an event of user_id; type is borrowed and must outlive c.
 * Returns 0, or -1 when out of memory (nothing to clear). */
int
store_event_command(struct store_event_cmd *c, const char *user_id,
                    const char *type, const char *data_json, size_t data_len);

void
store_event_command_clear(struct store_event_cmd *c);

const char *
store_write_script(void);

/* The outcome of a write script's reply (NULL: the connection failed),
 * as store_event_publish would report it; fills the event id on
 * STORE_OK. */
enum store_result
store_event_result(const struct redisReply *r, char *id_out, size_t id_cap);

/* Bumped by store_redis_is_back: a connection waiting out a back-off
 * after a failed connect may try again at once when it changes. */
unsigned
store_back_generation(void);

/* Opens a stream: for user_id (NULL for the firehose) checks the
 * account exists, and when after != NULL reads every held event after
 * it (and whether some were trimmed). Fills out; on success the caller
 * owns out's frames. */
enum store_result
store_stream_open(const char *user_id, const struct event_id *after,
                  struct store_replay *out);

void
store_replay_clear(struct store_replay *r);

#endif
