/* token.c -- a stream token as text, pure: where a request carries one,
 * its form (a compact JWS: three base64url parts), the algorithm its
 * header names, its claims and what they allow. Decoding is bounded by
 * TOKEN_MAX before anything else. The signature is auth.c's (libjwt):
 * nothing read here is trusted until auth.c has checked it, and the
 * algorithm read here is what picks the key, so a token cannot choose
 * how it is verified. */
#include <json-c/json.h>
#include <math.h>
#include <string.h>
#include <strings.h>

#include "strictjson.h"
#include "token.h"

/* exp and nbf beyond the year 9999 are not dates: refused, which also
 * keeps their milliseconds far inside int64_t. */
#define TOKEN_TIME_MAX_SECS 253402300799LL

/* ------------------------------------------------------------ the place */

/* The token of an "Authorization: Bearer <token>" value (RFC 6750 2.1;
 * the scheme is case-insensitive), or NULL. */
static const char *
token_bearer(const char *h, size_t *len)
{
    size_t n;

    while (*h == ' ' || *h == '\t')
        h++;
    if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t'))
        return NULL;
    h += 6;
    while (*h == ' ' || *h == '\t')
        h++;
    n = strlen(h);
    while (n > 0 && (h[n - 1] == ' ' || h[n - 1] == '\t'))
        n--;
    *len = n;
    return n > 0 ? h : NULL;
}

/* A query parameter's or a cookie's value; a cookie's may be quoted
 * (RFC 6265 4.1.1). */
static const char *
token_value(const char *v, size_t *len)
{
    size_t n;

    if (v == NULL)
        return NULL;
    n = strlen(v);
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
        v++;
        n -= 2;
    }
    *len = n;
    return n > 0 ? v : NULL;
}

enum token_place
token_find(const char *authorization, const char *query, const char *cookie,
           const char **tok, size_t *len)
{
    *tok = NULL;
    *len = 0;
    if (authorization != NULL && (*tok = token_bearer(authorization, len)) != NULL)
        return TOKEN_PLACE_HEADER;
    if ((*tok = token_value(query, len)) != NULL)
        return TOKEN_PLACE_QUERY;
    if ((*tok = token_value(cookie, len)) != NULL)
        return TOKEN_PLACE_COOKIE;
    *len = 0;
    return TOKEN_PLACE_NONE;
}

/* ------------------------------------------------------------- the form */

static int
token_b64url_value(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '-')
        return 62;
    if (ch == '_')
        return 63;
    return -1;
}

/* Decodes n characters of unpadded base64url (RFC 7515 2) into out, at
 * most cap bytes. Refuses any other character, a length no encoding
 * gives, and leftover bits that are not zero (one text per value).
 * Returns the byte count, or -1. */
static long
token_b64url_decode(const char *in, size_t n, char *out, size_t cap)
{
    unsigned acc = 0, bits = 0;
    size_t o = 0;

    if (n % 4 == 1)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int v = token_b64url_value(in[i]);

        if (v < 0)
            return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap)
                return -1;
            out[o++] = (char)((acc >> bits) & 0xffu);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0)
        return -1;
    return (long)o;
}

/* Decodes a base64url part and parses it as one JSON object (strict
 * grammar, valid UTF-8). */
static enum token_parse
token_decode_object(const char *part, size_t n, json_object **out, const char **why)
{
    char buf[TOKEN_MAX];
    long len = token_b64url_decode(part, n, buf, sizeof(buf));
    const char *jwhy;

    *out = NULL;
    if (len < 0) {
        *why = "a part of the token is not base64url";
        return TOKEN_PARSE_MALFORMED;
    }
    if ((*out = strictjson_parse_object(buf, (size_t)len, &jwhy)) == NULL) {
        if (strcmp(jwhy, "out of memory") == 0) {
            *why = "out of memory";
            return TOKEN_PARSE_NO_MEMORY;
        }
        *why = "a part of the token is not a JSON object";
        return TOKEN_PARSE_MALFORMED;
    }
    return TOKEN_PARSE_OK;
}

static enum token_alg
token_alg_of(const char *name)
{
    /* "none" in any case: libjwt reads it so. The others only as RFC
     * 7518 spells them. */
    if (strcasecmp(name, "none") == 0)
        return TOKEN_ALG_NONE;
    if (strcmp(name, "HS256") == 0)
        return TOKEN_ALG_HS256;
    if (strcmp(name, "RS256") == 0)
        return TOKEN_ALG_RS256;
    if (strcmp(name, "ES256") == 0)
        return TOKEN_ALG_ES256;
    return TOKEN_ALG_OTHER;
}

const char *
token_alg_name(enum token_alg alg)
{
    switch (alg) {
    case TOKEN_ALG_NONE:
        return "none";
    case TOKEN_ALG_HS256:
        return "HS256";
    case TOKEN_ALG_RS256:
        return "RS256";
    case TOKEN_ALG_ES256:
        return "ES256";
    case TOKEN_ALG_OTHER:
        break;
    }
    return "other";
}

static enum token_parse
token_read_header(json_object *h, enum token_alg *alg, const char **why)
{
    json_object *v;

    if (!json_object_object_get_ex(h, "alg", &v) || !json_object_is_type(v, json_type_string)) {
        *why = "the token's header names no alg";
        return TOKEN_PARSE_MALFORMED;
    }
    *alg = token_alg_of(json_object_get_string(v));
    if (json_object_object_get_ex(h, "typ", &v) &&
        (!json_object_is_type(v, json_type_string) ||
         strcasecmp(json_object_get_string(v), "JWT") != 0)) {
        *why = "the token's typ is not JWT";
        return TOKEN_PARSE_MALFORMED;
    }
    /* RFC 7515 4.1.11: extensions named in crit must be understood, and
     * we understand none. */
    if (json_object_object_get_ex(h, "crit", NULL)) {
        *why = "the token's header has crit extensions, which are not supported";
        return TOKEN_PARSE_MALFORMED;
    }
    return TOKEN_PARSE_OK;
}

/* ----------------------------------------------------------- the claims */

/* A NumericDate (RFC 7519 2: seconds, possibly fractional) as ms. */
static int
token_read_time(json_object *o, const char *name, int *has, int64_t *ms)
{
    json_object *v;
    double d;

    *has = 0;
    if (!json_object_object_get_ex(o, name, &v))
        return 0;
    if (json_object_is_type(v, json_type_int)) {
        int64_t s = json_object_get_int64(v);

        if (s < 0 || s > TOKEN_TIME_MAX_SECS)
            return -1;
        *ms = s * 1000;
    } else if (json_object_is_type(v, json_type_double)) {
        d = json_object_get_double(v);
        if (!isfinite(d) || d < 0 || d > (double)TOKEN_TIME_MAX_SECS)
            return -1;
        *ms = (int64_t)(d * 1000.0);    /* d >= 0: truncation is floor */
    } else {
        return -1;
    }
    *has = 1;
    return 0;
}

static int
token_sub_ok(const char *s, size_t n)
{
    if (n == 0 || n > TOKEN_SUB_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return 0;
    }
    return 1;
}

/* RFC 7519 4.1.3: aud is one string or an array of them. */
static int
token_aud_names(json_object *aud, const char *want)
{
    if (json_object_is_type(aud, json_type_string))
        return strcmp(json_object_get_string(aud), want) == 0;
    if (!json_object_is_type(aud, json_type_array))
        return 0;
    for (size_t i = 0; i < json_object_array_length(aud); i++) {
        json_object *v = json_object_array_get_idx(aud, i);

        if (json_object_is_type(v, json_type_string) &&
            strcmp(json_object_get_string(v), want) == 0)
            return 1;
    }
    return 0;
}

static enum token_parse
token_read_claims(json_object *o, const struct token_rules *rules,
                  struct token_claims *c, const char **why)
{
    json_object *v;

    if (!json_object_object_get_ex(o, "sub", &v) || !json_object_is_type(v, json_type_string)) {
        *why = "the token has no sub";
        return TOKEN_PARSE_MALFORMED;
    }
    if (!token_sub_ok(json_object_get_string(v), (size_t)json_object_get_string_len(v))) {
        *why = "the token's sub is not 1 to 64 visible ASCII characters";
        return TOKEN_PARSE_MALFORMED;
    }
    memcpy(c->sub, json_object_get_string(v), (size_t)json_object_get_string_len(v) + 1);
    if (token_read_time(o, "exp", &c->has_exp, &c->exp_ms) == -1) {
        *why = "the token's exp is not a time in seconds";
        return TOKEN_PARSE_MALFORMED;
    }
    if (token_read_time(o, "nbf", &c->has_nbf, &c->nbf_ms) == -1) {
        *why = "the token's nbf is not a time in seconds";
        return TOKEN_PARSE_MALFORMED;
    }
    if (json_object_object_get_ex(o, "firehose", &v)) {
        if (!json_object_is_type(v, json_type_boolean)) {
            *why = "the token's firehose is not a boolean";
            return TOKEN_PARSE_MALFORMED;
        }
        c->firehose = json_object_get_boolean(v) ? 1 : 0;
    }
    if (json_object_object_get_ex(o, "topics", &v)) {
        size_t n = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 0;

        if (!json_object_is_type(v, json_type_array) || n > TOKEN_TOPICS_MAX) {
            *why = "the token's topics is not an array of at most 32 grants";
            return TOKEN_PARSE_MALFORMED;
        }
        for (size_t i = 0; i < n; i++) {
            json_object *t = json_object_array_get_idx(v, i);

            if (!json_object_is_type(t, json_type_string) ||
                !topic_grant_valid(json_object_get_string(t),
                                   (size_t)json_object_get_string_len(t))) {
                *why = "the token's topics holds something that is not a topic or a prefix*";
                return TOKEN_PARSE_MALFORMED;
            }
            memcpy(c->topics[i], json_object_get_string(t),
                   (size_t)json_object_get_string_len(t) + 1);
        }
        c->ntopics = n;
    }
    if (rules != NULL && rules->issuer != NULL && rules->issuer[0] != '\0' &&
        (!json_object_object_get_ex(o, "iss", &v) ||
         !json_object_is_type(v, json_type_string) ||
         strcmp(json_object_get_string(v), rules->issuer) != 0)) {
        *why = "the token is not from the expected issuer";
        return TOKEN_PARSE_MALFORMED;
    }
    if (rules != NULL && rules->audience != NULL && rules->audience[0] != '\0' &&
        (!json_object_object_get_ex(o, "aud", &v) ||
         !token_aud_names(v, rules->audience))) {
        *why = "the token is not for this audience";
        return TOKEN_PARSE_MALFORMED;
    }
    return TOKEN_PARSE_OK;
}

/* The form every part is read through: at most TOKEN_MAX bytes, three
 * dot-separated parts, the signature's characters base64url (only libjwt
 * decodes it). */
static enum token_parse
token_split(const char *tok, size_t len, const char **dot1, const char **dot2,
            const char **why)
{
    if (len == 0) {
        *why = "the token is empty";
        return TOKEN_PARSE_MALFORMED;
    }
    if (len > TOKEN_MAX) {
        *why = "the token is longer than 4096 bytes";
        return TOKEN_PARSE_MALFORMED;
    }
    if ((*dot1 = memchr(tok, '.', len)) == NULL ||
        (*dot2 = memchr(*dot1 + 1, '.', len - (size_t)(*dot1 + 1 - tok))) == NULL ||
        memchr(*dot2 + 1, '.', len - (size_t)(*dot2 + 1 - tok)) != NULL) {
        *why = "the token is not three dot-separated parts";
        return TOKEN_PARSE_MALFORMED;
    }
    for (const char *p = *dot2 + 1; p < tok + len; p++) {
        if (token_b64url_value(*p) < 0) {
            *why = "a part of the token is not base64url";
            return TOKEN_PARSE_MALFORMED;
        }
    }
    return TOKEN_PARSE_OK;
}

enum token_parse
token_parse_header(const char *tok, size_t len, enum token_alg *alg, const char **why)
{
    const char *dot1, *dot2;
    json_object *o = NULL;
    enum token_parse rc;

    *alg = TOKEN_ALG_OTHER;
    if ((rc = token_split(tok, len, &dot1, &dot2, why)) != TOKEN_PARSE_OK ||
        (rc = token_decode_object(tok, (size_t)(dot1 - tok), &o, why)) != TOKEN_PARSE_OK)
        return rc;
    rc = token_read_header(o, alg, why);
    json_object_put(o);
    if (rc == TOKEN_PARSE_OK && *alg != TOKEN_ALG_NONE && dot2 + 1 == tok + len) {
        *why = "the token has no signature";
        rc = TOKEN_PARSE_MALFORMED;
    }
    if (rc != TOKEN_PARSE_OK)
        *alg = TOKEN_ALG_OTHER;
    return rc;
}

enum token_parse
token_parse_claims(const char *tok, size_t len, const struct token_rules *rules,
                   struct token_claims *c, const char **why)
{
    const char *dot1, *dot2;
    json_object *o = NULL;
    enum token_parse rc;

    memset(c, 0, sizeof(*c));
    if ((rc = token_split(tok, len, &dot1, &dot2, why)) != TOKEN_PARSE_OK ||
        (rc = token_decode_object(dot1 + 1, (size_t)(dot2 - dot1 - 1), &o, why)) !=
            TOKEN_PARSE_OK)
        return rc;
    rc = token_read_claims(o, rules, c, why);
    json_object_put(o);
    if (rc != TOKEN_PARSE_OK)
        memset(c, 0, sizeof(*c));
    return rc;
}

/* ------------------------------------------------------ what it allows */

enum token_time
token_check_time(const struct token_claims *c, int64_t now_ms)
{
    /* RFC 7519 4.1.4: not accepted on or after exp; 4.1.5: nor before nbf. */
    if (c->has_exp && now_ms >= c->exp_ms)
        return TOKEN_TIME_EXPIRED;
    if (c->has_nbf && now_ms < c->nbf_ms)
        return TOKEN_TIME_NOT_YET;
    return TOKEN_TIME_OK;
}

int
token_allows(const struct token_claims *c, const char *user_id)
{
    if (c->firehose)
        return 1;
    if (user_id == NULL || user_id[0] == '\0')
        return 0;
    return strcmp(c->sub, user_id) == 0;
}

int
token_allows_topic(const struct token_claims *c, const char *topic)
{
    for (size_t i = 0; i < c->ntopics; i++) {
        if (topic_grant_covers(c->topics[i], topic))
            return 1;
    }
    return 0;
}
