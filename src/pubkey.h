/* pubkey.h -- the publish keys (PUBLISH_KEYS): whether a request's
 * Authorization header carries one, decided in constant time. Pure
 * (OpenSSL's libcrypto). */
#ifndef SSEGATE_PUBKEY_H
#define SSEGATE_PUBKEY_H

#include <stddef.h>

#include "config.h"

#define PUBKEY_DIGEST_LEN 32    /* SHA-256 */

/* Only the keys' digests are kept: every check compares fixed-size
 * digests, so neither a key's length nor which key matched shows in the
 * time a check takes. */
struct pubkey_set {
    size_t n;                   /* 0: no keys, every write is open */
    unsigned char digest[CONFIG_PUBLISH_KEYS_COUNT][PUBKEY_DIGEST_LEN];
};

/* Fills set from a PUBLISH_KEYS value config.c has checked (keys
 * separated by commas; "" for none). Returns 0, or -1 when OpenSSL
 * fails (set then holds no key). */
int
pubkey_set_init(struct pubkey_set *set, const char *list);

/* 1 when set holds at least one key. */
int
pubkey_set_enabled(const struct pubkey_set *set);

/* 1 if authorization (an Authorization header's value, NULL when
 * absent) is "Bearer <one of the keys>" (the scheme in any case, one or
 * more spaces after it), else 0. Every key is compared every time. */
int
pubkey_check(const struct pubkey_set *set, const char *authorization);

/* Wipes the digests. */
void
pubkey_set_clear(struct pubkey_set *set);

#endif
