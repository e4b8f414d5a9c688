/* auth.h -- stream tokens: the keys (AUTH_SECRET, AUTH_PUBLIC_KEY_FILE),
 * verifying a token and what it allows (libjwt, token.c), and signing
 * one (HS256). Thread-safe: a struct auth is read-only once made. */
#ifndef SSEGATE_AUTH_H
#define SSEGATE_AUTH_H

#include <stddef.h>
#include <stdint.h>

struct auth;
struct config;
struct token_claims;

/* Loads cfg's keys: AUTH_SECRET (HS256) and the PEM public key in
 * AUTH_PUBLIC_KEY_FILE (an RSA key of 2048 bits or more verifies RS256
 * tokens, an EC P-256 key ES256 ones), with the AUTH_ISSUER and
 * AUTH_AUDIENCE rules. *out is NULL when neither key is set: open mode,
 * where streams need no token. Returns 0, or -1 with one line in err
 * naming the setting at fault (start-up stops, exit 2). */
int
auth_new(const struct config *cfg, struct auth **out, char *err, size_t errlen);

/* NULL is ignored. */
void
auth_free(struct auth *a);

enum auth_result {
    AUTH_OK,
    AUTH_NO_TOKEN,          /* 401: no token was sent */
    AUTH_INVALID,           /* 401 invalid_token: malformed, badly signed,
                             * expired, not yet valid, wrong issuer or
                             * audience, or an algorithm we do not take */
    AUTH_FORBIDDEN,         /* 403: valid, but not for this user or the firehose */
    AUTH_NO_MEMORY          /* 503 */
};

/* Checks tok (len bytes; NULL: none was sent) at now_ms (ms since the
 * epoch): its form and size (TOKEN_MAX) first, then its algorithm
 * against the configured keys (HS256 only with AUTH_SECRET; RS256 or
 * ES256 only with a public key of that kind; never "none"), then the
 * signature (libjwt), issuer and audience, exp and nbf; then whether it
 * opens user_id's stream ("" or NULL: the firehose). Fills *c when
 * the token is valid (AUTH_OK or AUTH_FORBIDDEN). *why is a static
 * reason for the answer and the log; it never quotes the token. Call
 * with a non-NULL a (secure mode). Any thread. */
enum auth_result
auth_check_user(const struct auth *a, const char *tok, size_t len, const char *user_id,
                int64_t now_ms, struct token_claims *c, const char **why);

/* The algorithms a accepts, for the start-up log: "HS256", "RS256",
 * "HS256, ES256"... */
const char *
auth_algs(const struct auth *a);

/* Whether a signs tokens (AUTH_SECRET is set). a may be NULL. */
int
auth_can_sign(const struct auth *a);

/* A stream token for sub (HS256, signed with AUTH_SECRET): iat now_ms,
 * exp now_ms + ttl_secs, "firehose": true if firehose, "topics": the
 * ntopics grants (topic_grant_valid each) if any, and iss and aud
 * when AUTH_ISSUER and AUTH_AUDIENCE are set, so this gateway and its
 * peers accept it. Returns it (the caller free()s it), or NULL when a
 * signs nothing or out of memory. */
char *
auth_sign(const struct auth *a, const char *sub, int64_t now_ms, unsigned ttl_secs,
          int firehose, const char *const *topics, size_t ntopics);

#endif
