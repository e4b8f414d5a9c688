/* idtag.c -- the channel key and the tags it puts on event ids (HMAC-SHA1
 * through OpenSSL; write.lua computes the same with Redis's sha1hex from
 * the two pads the key is stored as). Why a tag: the channel is open to
 * anybody who may PUBLISH, and an id a stream takes raises its last id,
 * so an outside message claiming a far-future id once made every later
 * real event look like a duplicate, and a resume from it lost them all.
 * A tag binds the id alone: a tag copied from a real message only
 * repeats an id that has already gone by, which the streams' dedup
 * drops or which moves nothing. Pure. */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <string.h>

#include "idtag.h"

#define IDTAG_IPAD 0x36
#define IDTAG_OPAD 0x5c

int
idtag_key_generate(unsigned char out[IDTAG_STORED_LEN])
{
    unsigned char k[IDTAG_KEY_LEN];

    /* A key of the hash's whole block: HMAC uses it as it is. */
    if (RAND_bytes(k, (int)sizeof(k)) != 1)
        return -1;
    for (size_t i = 0; i < IDTAG_KEY_LEN; i++) {
        out[i] = (unsigned char)(k[i] ^ IDTAG_IPAD);
        out[IDTAG_KEY_LEN + i] = (unsigned char)(k[i] ^ IDTAG_OPAD);
    }
    OPENSSL_cleanse(k, sizeof(k));
    return 0;
}

int
idtag_key_load(struct idtag_key *key, const unsigned char *stored, size_t len)
{
    unsigned char k[IDTAG_KEY_LEN];

    if (len != IDTAG_STORED_LEN)
        return -1;
    for (size_t i = 0; i < IDTAG_KEY_LEN; i++) {
        k[i] = (unsigned char)(stored[i] ^ IDTAG_IPAD);
        /* Both pads must come from one key, or write.lua and we would
         * disagree on every tag. */
        if ((stored[IDTAG_KEY_LEN + i] ^ IDTAG_OPAD) != k[i]) {
            OPENSSL_cleanse(k, sizeof(k));
            return -1;
        }
    }
    memcpy(key->k, k, sizeof(k));
    key->set = 1;
    OPENSSL_cleanse(k, sizeof(k));
    return 0;
}

int
idtag_compute(const struct idtag_key *key, const char *id, size_t id_len,
              char out[IDTAG_HEX_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;

    out[0] = '\0';
    if (!key->set ||
        HMAC(EVP_sha1(), key->k, IDTAG_KEY_LEN, (const unsigned char *)id, id_len,
             md, &md_len) == NULL ||
        md_len * 2 != IDTAG_HEX_LEN)
        return -1;
    for (unsigned i = 0; i < md_len; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0xf];
    }
    out[IDTAG_HEX_LEN] = '\0';
    return 0;
}

int
idtag_verify(const struct idtag_key *key, const char *id, size_t id_len,
             const char *tag)
{
    char want[IDTAG_HEX_LEN + 1];

    if (idtag_compute(key, id, id_len, want) == -1)
        return 0;
    return CRYPTO_memcmp(want, tag, IDTAG_HEX_LEN) == 0;
}
