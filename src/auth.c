/* auth.c -- stream tokens. Owns the keys: AUTH_SECRET for HS256, and the
 * public key of AUTH_PUBLIC_KEY_FILE, read once at start-up with
 * OpenSSL to learn its kind (RSA: RS256; EC P-256: ES256) and kept as a
 * normalised PEM for libjwt. Verifies tokens with libjwt and signs
 * HS256 ones; no cryptography of its own.
 *
 * The key is chosen by the algorithm token.c reads from the token's
 * header, and each algorithm has one key: libjwt 1.10 verifies with
 * whatever key it is given under whatever algorithm the token names, so
 * handing it the public key's PEM for an "HS256" token would verify an
 * HMAC keyed with a public text (algorithm confusion). A token naming an
 * algorithm we hold no key for never reaches libjwt. */
#include <errno.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "config.h"
#include "token.h"

_Static_assert(CONFIG_TOKEN_SUB_MAX == TOKEN_SUB_MAX,
               "ssegate token --sub takes what a token's sub may be");

/* A PEM public key is well under this (RSA 4096: 800 bytes); more is not
 * a key file. */
#define AUTH_KEY_FILE_MAX 65536
/* NIST SP 800-131A: RSA keys under 2048 bits no longer protect anything. */
#define AUTH_RSA_MIN_BITS 2048

struct auth {
    unsigned char *secret;      /* AUTH_SECRET; NULL when unset */
    size_t secret_len;
    unsigned char *pem;         /* the public key, as PEM SubjectPublicKeyInfo */
    size_t pem_len;
    enum token_alg pem_alg;     /* RS256 or ES256; OTHER when no public key */
    char issuer[256];
    char audience[256];
    struct token_rules rules;
};

/* ------------------------------------------------------------- the keys */

/* Reads path whole into a NUL-terminated buffer (the caller frees it). */
static char *
auth_read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;

    if (f == NULL) {
        snprintf(err, errlen, "AUTH_PUBLIC_KEY_FILE: cannot open %s: %s", path,
                 strerror(errno));
        return NULL;
    }
    if ((buf = malloc(AUTH_KEY_FILE_MAX + 1)) == NULL) {
        fclose(f);
        snprintf(err, errlen, "AUTH_PUBLIC_KEY_FILE: out of memory");
        return NULL;
    }
    n = fread(buf, 1, AUTH_KEY_FILE_MAX + 1, f);
    if (ferror(f) || n > AUTH_KEY_FILE_MAX) {
        snprintf(err, errlen, "AUTH_PUBLIC_KEY_FILE: %s: %s", path,
                 ferror(f) ? "cannot be read" : "larger than 64 KiB, not a key file");
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Which algorithm pkey verifies: RS256 for RSA of AUTH_RSA_MIN_BITS or
 * more, ES256 for EC on P-256 (an ES256 signature is two P-256 numbers;
 * libjwt would take any curve's). */
static enum token_alg
auth_key_alg(EVP_PKEY *pkey, const char *path, char *err, size_t errlen)
{
    char group[64];
    size_t glen = 0;

    switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_RSA:
        if (EVP_PKEY_get_bits(pkey) < AUTH_RSA_MIN_BITS) {
            snprintf(err, errlen, "AUTH_PUBLIC_KEY_FILE: %s: an RSA key of %d bits; "
                     "RS256 needs %d or more", path, EVP_PKEY_get_bits(pkey),
                     AUTH_RSA_MIN_BITS);
            return TOKEN_ALG_OTHER;
        }
        return TOKEN_ALG_RS256;
    case EVP_PKEY_EC:
        if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), &glen) != 1 ||
            strcmp(group, "prime256v1") != 0) {
            snprintf(err, errlen, "AUTH_PUBLIC_KEY_FILE: %s: an EC key on %s; "
                     "ES256 needs P-256 (prime256v1)", path,
                     glen > 0 ? group : "an unnamed curve");
            return TOKEN_ALG_OTHER;
        }
        return TOKEN_ALG_ES256;
    default:
        snprintf(err, errlen, "AUTH_PUBLIC_KEY_FILE: %s: neither an RSA nor an EC "
                 "key (RS256 and ES256 tokens are accepted)", path);
        return TOKEN_ALG_OTHER;
    }
}

/* Reads the public key file, learns its algorithm and keeps the key as
 * OpenSSL writes it back (one PUBLIC KEY block, whatever else the file
 * held), which is what libjwt reads at each verification. */
static int
auth_load_public_key(struct auth *a, const char *path, char *err, size_t errlen)
{
    size_t len = 0;
    char *text = auth_read_file(path, &len, err, errlen);
    BIO *in = NULL, *out = NULL;
    EVP_PKEY *pkey = NULL;
    char *data;
    long n;
    int rc = -1;

    if (text == NULL)
        return -1;
    if ((in = BIO_new_mem_buf(text, (int)len)) == NULL ||
        (out = BIO_new(BIO_s_mem())) == NULL) {
        snprintf(err, errlen, "AUTH_PUBLIC_KEY_FILE: out of memory");
        goto out;
    }
    if ((pkey = PEM_read_bio_PUBKEY(in, NULL, NULL, NULL)) == NULL) {
        snprintf(err, errlen, "AUTH_PUBLIC_KEY_FILE: %s holds no PEM public key "
                 "(-----BEGIN PUBLIC KEY-----; from a certificate: "
                 "openssl x509 -pubkey -noout -in CERT)", path);
        goto out;
    }
    if ((a->pem_alg = auth_key_alg(pkey, path, err, errlen)) == TOKEN_ALG_OTHER)
        goto out;
    if (PEM_write_bio_PUBKEY(out, pkey) != 1 || (n = BIO_get_mem_data(out, &data)) <= 0 ||
        (a->pem = malloc((size_t)n)) == NULL) {
        snprintf(err, errlen, "AUTH_PUBLIC_KEY_FILE: out of memory");
        goto out;
    }
    memcpy(a->pem, data, (size_t)n);
    a->pem_len = (size_t)n;
    rc = 0;
out:
    EVP_PKEY_free(pkey);
    BIO_free(out);
    BIO_free(in);
    free(text);
    ERR_clear_error();
    return rc;
}

int
auth_new(const struct config *cfg, struct auth **out, char *err, size_t errlen)
{
    struct auth *a;

    *out = NULL;
    if (cfg->auth_secret[0] == '\0' && cfg->auth_public_key_file[0] == '\0')
        return 0;
    if ((a = calloc(1, sizeof(*a))) == NULL) {
        snprintf(err, errlen, "AUTH_SECRET: out of memory");
        return -1;
    }
    a->pem_alg = TOKEN_ALG_OTHER;
    if (cfg->auth_secret[0] != '\0') {
        /* config.c saw to its length (CONFIG_AUTH_SECRET_MIN). */
        a->secret_len = strlen(cfg->auth_secret);
        if ((a->secret = malloc(a->secret_len)) == NULL) {
            snprintf(err, errlen, "AUTH_SECRET: out of memory");
            auth_free(a);
            return -1;
        }
        memcpy(a->secret, cfg->auth_secret, a->secret_len);
    }
    if (cfg->auth_public_key_file[0] != '\0' &&
        auth_load_public_key(a, cfg->auth_public_key_file, err, errlen) == -1) {
        auth_free(a);
        return -1;
    }
    snprintf(a->issuer, sizeof(a->issuer), "%s", cfg->auth_issuer);
    snprintf(a->audience, sizeof(a->audience), "%s", cfg->auth_audience);
    a->rules.issuer = a->issuer;
    a->rules.audience = a->audience;
    *out = a;
    return 0;
}

void
auth_free(struct auth *a)
{
    if (a == NULL)
        return;
    if (a->secret != NULL)
        memset(a->secret, 0, a->secret_len);
    free(a->secret);
    free(a->pem);
    free(a);
}

/* --------------------------------------------------------- verification */

/* The key for a token of algorithm alg, or NULL (with *why) when we take
 * no such token. */
static const unsigned char *
auth_key_for(const struct auth *a, enum token_alg alg, int *len, jwt_alg_t *jalg,
             const char **why)
{
    switch (alg) {
    case TOKEN_ALG_HS256:
        *jalg = JWT_ALG_HS256;
        *len = (int)a->secret_len;
        *why = "HS256 tokens are not accepted here";
        return a->secret;
    case TOKEN_ALG_RS256:
    case TOKEN_ALG_ES256:
        *jalg = alg == TOKEN_ALG_RS256 ? JWT_ALG_RS256 : JWT_ALG_ES256;
        *len = (int)a->pem_len;
        *why = alg == TOKEN_ALG_RS256 ? "RS256 tokens are not accepted here"
                                      : "ES256 tokens are not accepted here";
        return a->pem_alg == alg ? a->pem : NULL;
    case TOKEN_ALG_NONE:
        *why = "unsigned tokens (alg none) are refused";
        return NULL;
    case TOKEN_ALG_OTHER:
        break;
    }
    *why = "the token's alg is not HS256, RS256 or ES256";
    return NULL;
}

/* The signature, by libjwt. Returns AUTH_OK, AUTH_INVALID or
 * AUTH_NO_MEMORY. */
static enum auth_result
auth_verify_signature(const struct auth *a, const char *tok, size_t len,
                      enum token_alg alg, const char **why)
{
    char buf[TOKEN_MAX + 1];        /* libjwt wants a C string */
    const unsigned char *key;
    jwt_t *jwt = NULL;
    jwt_alg_t jalg = JWT_ALG_INVAL;
    int klen = 0, rc;
    enum auth_result res = AUTH_OK;

    if ((key = auth_key_for(a, alg, &klen, &jalg, why)) == NULL || klen <= 0)
        return AUTH_INVALID;
    memcpy(buf, tok, len);          /* token_parse_header bounded len by TOKEN_MAX */
    buf[len] = '\0';
    rc = jwt_decode(&jwt, buf, key, klen);
    if (rc == ENOMEM) {
        *why = "out of memory";
        res = AUTH_NO_MEMORY;
    } else if (rc != 0 || jwt == NULL || jwt_get_alg(jwt) != jalg) {
        /* The last test is for a header libjwt read otherwise than
         * token.c: the key was picked for jalg. */
        *why = "the token's signature does not verify";
        res = AUTH_INVALID;
    }
    jwt_free(jwt);
    /* libjwt leaves OpenSSL's reasons on this thread's error queue. */
    ERR_clear_error();
    return res;
}

enum auth_result
auth_check_user(const struct auth *a, const char *tok, size_t len, const char *user_id,
                int64_t now_ms, struct token_claims *c, const char **why)
{
    enum token_alg alg;
    enum auth_result res;

    memset(c, 0, sizeof(*c));
    if (tok == NULL) {
        *why = "this stream needs a token (Authorization: Bearer, the token "
               "parameter or the ssegate_token cookie)";
        return AUTH_NO_TOKEN;
    }
    /* Form and algorithm, then the signature with that algorithm's one
     * key; only then is any claim read. */
    switch (token_parse_header(tok, len, &alg, why)) {
    case TOKEN_PARSE_OK:
        break;
    case TOKEN_PARSE_NO_MEMORY:
        return AUTH_NO_MEMORY;
    case TOKEN_PARSE_MALFORMED:
        return AUTH_INVALID;
    }
    if ((res = auth_verify_signature(a, tok, len, alg, why)) != AUTH_OK)
        return res;
    switch (token_parse_claims(tok, len, &a->rules, c, why)) {
    case TOKEN_PARSE_OK:
        break;
    case TOKEN_PARSE_NO_MEMORY:
        return AUTH_NO_MEMORY;
    case TOKEN_PARSE_MALFORMED:
        return AUTH_INVALID;
    }
    switch (token_check_time(c, now_ms)) {
    case TOKEN_TIME_EXPIRED:
        *why = "the token has expired";
        return AUTH_INVALID;
    case TOKEN_TIME_NOT_YET:
        *why = "the token is not valid yet (nbf)";
        return AUTH_INVALID;
    case TOKEN_TIME_OK:
        break;
    }
    if (!token_allows(c, user_id)) {
        *why = user_id == NULL || user_id[0] == '\0'
                   ? "the token does not open the firehose"
                   : "the token is for another user";
        return AUTH_FORBIDDEN;
    }
    *why = "";
    return AUTH_OK;
}

const char *
auth_algs(const struct auth *a)
{
    if (a->secret == NULL)
        return token_alg_name(a->pem_alg);
    switch (a->pem_alg) {
    case TOKEN_ALG_RS256:
        return "HS256, RS256";
    case TOKEN_ALG_ES256:
        return "HS256, ES256";
    default:
        return "HS256";
    }
}

/* -------------------------------------------------------------- signing */

int
auth_can_sign(const struct auth *a)
{
    return a != NULL && a->secret != NULL;
}

/* {"topics":["a","b*"]}: grants need no escaping (topic_grant_valid
 * allows no quote, backslash or control character). Returns it (owned),
 * or NULL when out of memory. */
static char *
auth_topics_json(const char *const *topics, size_t ntopics)
{
    size_t len = sizeof("{\"topics\":[]}");
    char *out, *p;

    for (size_t i = 0; i < ntopics; i++)
        len += strlen(topics[i]) + 3;
    if ((out = malloc(len)) == NULL)
        return NULL;
    p = out + sprintf(out, "{\"topics\":[");
    for (size_t i = 0; i < ntopics; i++)
        p += sprintf(p, "%s\"%s\"", i > 0 ? "," : "", topics[i]);
    sprintf(p, "]}");
    return out;
}

char *
auth_sign(const struct auth *a, const char *sub, int64_t now_ms, unsigned ttl_secs,
          int firehose, const char *const *topics, size_t ntopics)
{
    long now = (long)(now_ms / 1000);
    jwt_t *jwt = NULL;
    char *out = NULL, *tj = NULL;

    if (!auth_can_sign(a) || jwt_new(&jwt) != 0)
        return NULL;
    if (ntopics > 0 && (tj = auth_topics_json(topics, ntopics)) == NULL) {
        jwt_free(jwt);
        return NULL;
    }
    if (jwt_set_alg(jwt, JWT_ALG_HS256, a->secret, (int)a->secret_len) == 0 &&
        jwt_add_grant(jwt, "sub", sub) == 0 &&
        jwt_add_grant_int(jwt, "iat", now) == 0 &&
        jwt_add_grant_int(jwt, "exp", now + (long)ttl_secs) == 0 &&
        (!firehose || jwt_add_grant_bool(jwt, "firehose", 1) == 0) &&
        (tj == NULL || jwt_add_grants_json(jwt, tj) == 0) &&
        (a->issuer[0] == '\0' || jwt_add_grant(jwt, "iss", a->issuer) == 0) &&
        (a->audience[0] == '\0' || jwt_add_grant(jwt, "aud", a->audience) == 0))
        out = jwt_encode_str(jwt);
    free(tj);
    jwt_free(jwt);
    ERR_clear_error();
    return out;
}
