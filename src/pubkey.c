/* pubkey.c -- the publish keys (PUBLISH_KEYS): owns their SHA-256
 * digests, made once at start-up, and the check of a request's bearer
 * token against them. A secret compared byte by byte answers sooner the
 * sooner it differs, which tells a patient client how much of its guess
 * is right; here the presented token is hashed and its digest compared
 * with every key's by CRYPTO_memcmp, so the time depends only on the
 * token's own length and the number of keys. Pure. */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>
#include <strings.h>

#include "pubkey.h"

/* SHA-256 of n bytes at s into out. Returns 0 or -1. */
static int
pubkey_digest(const char *s, size_t n, unsigned char out[PUBKEY_DIGEST_LEN])
{
    unsigned int len = 0;

    if (EVP_Digest(s, n, out, &len, EVP_sha256(), NULL) != 1 ||
        len != PUBKEY_DIGEST_LEN)
        return -1;
    return 0;
}

int
pubkey_set_init(struct pubkey_set *set, const char *list)
{
    const char *p = list;

    memset(set, 0, sizeof(*set));
    while (*p != '\0' && set->n < CONFIG_PUBLISH_KEYS_COUNT) {
        size_t n = strcspn(p, ",");

        if (n > 0 && pubkey_digest(p, n, set->digest[set->n++]) == -1) {
            pubkey_set_clear(set);
            return -1;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return 0;
}

int
pubkey_set_enabled(const struct pubkey_set *set)
{
    return set->n > 0;
}

int
pubkey_check(const struct pubkey_set *set, const char *authorization)
{
    static const char scheme[] = "Bearer";
    const size_t scheme_len = sizeof(scheme) - 1;
    unsigned char d[PUBKEY_DIGEST_LEN];
    const char *token;
    int match = 0;

    if (authorization == NULL || set->n == 0 ||
        strncasecmp(authorization, scheme, scheme_len) != 0 ||
        authorization[scheme_len] != ' ')
        return 0;
    token = authorization + scheme_len;
    while (*token == ' ')
        token++;
    if (*token == '\0' || pubkey_digest(token, strlen(token), d) == -1)
        return 0;
    /* No early exit: which key matched, if any, must not show. */
    for (size_t i = 0; i < set->n; i++)
        match |= CRYPTO_memcmp(d, set->digest[i], PUBKEY_DIGEST_LEN) == 0;
    return match;
}

void
pubkey_set_clear(struct pubkey_set *set)
{
    OPENSSL_cleanse(set, sizeof(*set));
}
