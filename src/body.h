/* body.h -- validation of REST request bodies into plain structs: the
 * one place that decides what input is acceptable. Pure (json-c,
 * strictjson). */
#ifndef SSEGATE_BODY_H
#define SSEGATE_BODY_H

#include <stddef.h>
#include <stdint.h>

#include "sse.h"
#include "topic.h"

#define BODY_MAX_BYTES (64 * 1024)
#define BODY_NAME_MAX_CHARS 100
/* Balances must stay exact in JavaScript clients: at most 2^53 - 1. */
#define BODY_BALANCE_MAX INT64_C(9007199254740991)
#define BODY_USER_ID_MAX_DIGITS 18

/* A rejected body: code is the JSON "error" value ("invalid_json",
 * "invalid_field", "missing_field", "unknown_field", "reserved_type"),
 * message says what is wrong in one sentence naming the field. */
struct body_error {
    char code[32];
    char message[200];
};

struct account_input {
    char name[4 * BODY_NAME_MAX_CHARS + 1];     /* UTF-8, NUL-terminated */
    int64_t balance;                            /* default 0 */
};

struct snapshot_input {
    int has_balance;
    int64_t balance;
};

struct event_input {
    char user_id[BODY_USER_ID_MAX_DIGITS + 1];  /* "" for a topic's event */
    char topic[TOPIC_NAME_MAX + 1];             /* "" for a user's event */
    char type[SSE_EVENT_MAX + 1];
    char *data_json;        /* owned: one-line JSON ("null" if absent); free with event_input_clear */
    size_t data_len;
};

/* All parsers take len bytes (not NUL-terminated) of a UTF-8 JSON body
 * and return 0, or -1 with err filled. They read it as a strict json-c
 * tokener does (JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8, depth
 * 32; strictjson_parse_object), reject trailing garbage, truncated input
 * and non-objects with "invalid_json", and reject unknown fields with
 * "unknown_field". body_parse_event, on every write's path, reads with
 * strictjson_scan_object instead, which takes and refuses the same. */

/* {"name": string of 1..100 Unicode characters, not all whitespace, no
 * control characters, "balance": optional integer 0..BODY_BALANCE_MAX}.
 * A balance given as a float (1.5, 1e3, 100.0), string, bool or null is
 * "invalid_field". */
int
body_parse_account(const char *buf, size_t len, struct account_input *out,
                   struct body_error *err);

/* {"balance": optional integer 0..BODY_BALANCE_MAX}. len 0 (no body)
 * is accepted as {}. */
int
body_parse_snapshot(const char *buf, size_t len, struct snapshot_input *out,
                    struct body_error *err);

/* {"userId": string of 1..18 digits or an integer >= 1, "type":
 * 1..SSE_EVENT_MAX of [A-Za-z0-9._-] and not reserved
 * (envelope_type_reserved: "reserved_type"), "data": optional, any JSON
 * value}.
 * data is what json-c writes back for it, one line
 * (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE): its text
 * without white space when that is the same, else json-c's reading of
 * it written back. On success out->data_json is owned by out; on
 * failure nothing is left to free. */
int
body_parse_event(const char *buf, size_t len, struct event_input *out,
                 struct body_error *err);

void
event_input_clear(struct event_input *in);

/* POST /tokens: {"userId": as for events, "ttlSecs": optional integer
 * 1..BODY_TOKEN_TTL_MAX (0 in out: the default), "firehose": optional
 * boolean, "topics": optional array of at most BODY_TOKEN_TOPICS_MAX
 * grants: topic names or prefixes ending in "*"}. */
#define BODY_TOKEN_TTL_MAX 2592000
/* Most grants a token's "topics" may hold (POST /tokens, ssegate token). */
#define BODY_TOKEN_TOPICS_MAX 32
struct token_input {
    char user_id[BODY_USER_ID_MAX_DIGITS + 1];
    unsigned ttl_secs;
    int firehose;
    /* "topics": optional array of grants (topic_grant_valid) */
    char topics[BODY_TOKEN_TOPICS_MAX][TOPIC_NAME_MAX + 2];
    size_t ntopics;
};
int
body_parse_token(const char *buf, size_t len, struct token_input *out,
                 struct body_error *err);

/* Returns 1 if a Content-Type header value is JSON: "application/json"
 * (case-insensitive) optionally followed by parameters (";
 * charset=utf-8"); a charset other than utf-8 is rejected. */
int
body_content_type_is_json(const char *content_type);

/* Returns 1 if s (len bytes) is a user id: 1..18 ASCII digits, no
 * leading zero. */
int
body_user_id_valid(const char *s, size_t len);

#endif
