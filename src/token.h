/* token.h -- a stream token as text, pure: where a request carries one,
 * its form and header (which algorithm it claims), its claims, and what
 * they allow. Whether it is genuine (the signature) is auth.c's. */
#ifndef SSEGATE_TOKEN_H
#define SSEGATE_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "topic.h"

/* Longest token accepted, checked before any decoding: an RS256 token
 * from an identity provider is about 1 KiB, and a query parameter or a
 * header must fit libmicrohttpd's 8 KiB of connection memory. */
#define TOKEN_MAX 4096
/* Longest sub: a user id (the API's are 1 to 18 digits) or a service's
 * name. Visible ASCII only, so it can be compared and logged as is. */
#define TOKEN_SUB_MAX 64

/* Where a request's token was found (token_find). */
enum token_place {
    TOKEN_PLACE_NONE,
    TOKEN_PLACE_HEADER,         /* Authorization: Bearer <token> */
    TOKEN_PLACE_QUERY,          /* ?token=<token> (EventSource sets no header) */
    TOKEN_PLACE_COOKIE          /* ssegate_token=<token> (withCredentials) */
};

/* The algorithm a token's header names. Only the three a key of ours can
 * verify have names; everything else is refused. */
enum token_alg {
    TOKEN_ALG_OTHER,
    TOKEN_ALG_NONE,             /* "none": unsigned, always refused */
    TOKEN_ALG_HS256,
    TOKEN_ALG_RS256,
    TOKEN_ALG_ES256
};

/* Most grants a token's "topics" claim may hold. */
#define TOKEN_TOPICS_MAX 32

/* What a token says, once its form and types are checked. Add a claim
 * here, read it in token.c's token_read_claims, and use it in
 * token_allows (or token_allows_topic). */
struct token_claims {
    char sub[TOKEN_SUB_MAX + 1];    /* the user id */
    int has_exp;
    int64_t exp_ms;             /* exp, in ms since the epoch */
    int has_nbf;
    int64_t nbf_ms;             /* nbf, in ms since the epoch */
    int firehose;               /* "firehose": true */
    /* "topics": the topics its stream may name: exact names, or prefixes
     * ending in "*" (topic_grant_valid). */
    char topics[TOKEN_TOPICS_MAX][TOPIC_NAME_MAX + 2];
    size_t ntopics;
};

/* What a token must also say to be accepted here: NULL or "" accepts
 * anything. */
struct token_rules {
    const char *issuer;         /* iss must equal it */
    const char *audience;       /* aud (a string or an array) must name it */
};

/* Picks the request's token out of the Authorization header's value,
 * the token query parameter's and the ssegate_token cookie's (each NULL
 * when absent), in that order: the first place holding one wins. Only a
 * "Bearer" Authorization counts (another scheme is someone else's, a
 * proxy's, say); an empty value counts as absent. Returns the place, with
 * the token (borrowed from its argument) in *tok and *len. */
enum token_place
token_find(const char *authorization, const char *query, const char *cookie,
           const char **tok, size_t *len);

enum token_parse {
    TOKEN_PARSE_OK,
    TOKEN_PARSE_MALFORMED,      /* *why says what is wrong */
    TOKEN_PARSE_NO_MEMORY
};

/* A compact JWS (header.payload.signature, base64url) of at most
 * TOKEN_MAX bytes is read in two steps, so that the algorithm can pick
 * the key and the signature be checked before any claim is believed.
 * *why is a static reason that never quotes the token.
 *
 * The header: *alg, from "alg" (required; TOKEN_ALG_OTHER for one we do
 * not name), with no "crit", a "typ" of JWT if any, and a signature
 * unless the alg is "none". */
enum token_parse
token_parse_header(const char *tok, size_t len, enum token_alg *alg, const char **why);

/* The claims: sub (required, 1 to TOKEN_SUB_MAX visible ASCII), exp and
 * nbf (numbers of seconds, if present), firehose (a boolean, if present),
 * and iss and aud as rules require (rules may be NULL). */
enum token_parse
token_parse_claims(const char *tok, size_t len, const struct token_rules *rules,
                   struct token_claims *c, const char **why);

enum token_time {
    TOKEN_TIME_OK,
    TOKEN_TIME_EXPIRED,         /* now is at or after exp */
    TOKEN_TIME_NOT_YET          /* now is before nbf */
};

/* The claims' time window at now_ms (ms since the epoch). */
enum token_time
token_check_time(const struct token_claims *c, int64_t now_ms);

/* Whether the claims open the stream of user_id ("" or NULL: the
 * firehose): their own user's, or any with "firehose": true (the
 * firehose carries every user's events). */
int
token_allows(const struct token_claims *c, const char *user_id);

/* Whether the claims let a stream name topic: one of their "topics"
 * grants covers it (topic_grant_covers). The firehose claim does not:
 * the firehose carries users' events, not topics'. */
int
token_allows_topic(const struct token_claims *c, const char *topic);

/* The name of alg as a token's header spells it ("HS256"...). */
const char *
token_alg_name(enum token_alg alg);

#endif
