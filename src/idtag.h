/* idtag.h -- the tag that makes an event id on the channel trustworthy:
 * HMAC-SHA1 of the id under the deployment's channel key, which write.lua
 * puts beside every id it allocates. Anybody who may PUBLISH on the
 * channel can write an "id"; only someone who can read the key (in
 * Redis, beside the history the gateways write) can tag one. Pure
 * (OpenSSL's libcrypto). */
#ifndef SSEGATE_IDTAG_H
#define SSEGATE_IDTAG_H

#include <stddef.h>

/* The key as Redis keeps it (ssegate:channelkey): HMAC's inner pad, then
 * its outer pad (the 64-byte key XOR 0x36, XOR 0x5c), so write.lua needs
 * two SHA1s per id and no byte-wise XOR. */
#define IDTAG_STORED_LEN 128
#define IDTAG_KEY_LEN 64
/* A tag: SHA1's 20 bytes as lowercase hex, as Redis's sha1hex writes it. */
#define IDTAG_HEX_LEN 40

struct idtag_key {
    unsigned char k[IDTAG_KEY_LEN];
    int set;                            /* 0: no key, nothing verifies */
};

/* Makes a new random key (OpenSSL's RAND_bytes) in its stored form.
 * Returns 0, or -1 when no randomness could be had. */
int
idtag_key_generate(unsigned char out[IDTAG_STORED_LEN]);

/* Loads a key from its stored form (len bytes, as GET returns them).
 * Returns 0, or -1 (key unchanged) for anything but the two pads of one
 * key. */
int
idtag_key_load(struct idtag_key *key, const unsigned char *stored, size_t len);

/* Writes id's tag (IDTAG_HEX_LEN hex digits and a NUL) into out: what
 * write.lua computes. Returns 0, or -1 without a key or when OpenSSL
 * fails. */
int
idtag_compute(const struct idtag_key *key, const char *id, size_t id_len,
              char out[IDTAG_HEX_LEN + 1]);

/* 1 if tag (IDTAG_HEX_LEN bytes) is id's tag under key, compared in
 * constant time; 0 otherwise and always without a key. */
int
idtag_verify(const struct idtag_key *key, const char *id, size_t id_len,
             const char *tag);

#endif
