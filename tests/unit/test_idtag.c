/* test_idtag.c -- the channel key and its tags: the stored pads load
 * into the key they came from, tags are HMAC-SHA1 (RFC 2202's test
 * vectors, through the stored form write.lua reads), verification takes
 * only the exact tag, and nothing verifies without a key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "idtag.h"

/* What the gateway stores for a key of at most 64 bytes (HMAC pads it
 * with zeros to the block): the inner pad, then the outer pad. */
static void
stored_form(const unsigned char *k, size_t n, unsigned char out[IDTAG_STORED_LEN])
{
    for (size_t i = 0; i < IDTAG_KEY_LEN; i++) {
        unsigned char b = i < n ? k[i] : 0;

        out[i] = (unsigned char)(b ^ 0x36);
        out[IDTAG_KEY_LEN + i] = (unsigned char)(b ^ 0x5c);
    }
}

static void
test_rfc2202_vectors(void **state)
{
    static const struct {
        unsigned char key[20];
        size_t key_len;
        unsigned char data[50];
        size_t data_len;
        const char *hmac;
    } v[] = {
        { { 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b,
            0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b }, 20,
          "Hi There", 8, "b617318655057264e28bc0b6fb378c8ef146be00" },
        { "Jefe", 4, "what do ya want for nothing?", 28,
          "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79" },
    };
    unsigned char stored[IDTAG_STORED_LEN], dd[50];
    struct idtag_key key = { { 0 }, 0 };
    char tag[IDTAG_HEX_LEN + 1];

    (void)state;
    for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++) {
        stored_form(v[k].key, v[k].key_len, stored);
        assert_int_equal(idtag_key_load(&key, stored, sizeof(stored)), 0);
        assert_int_equal(idtag_compute(&key, (const char *)v[k].data, v[k].data_len,
                                       tag), 0);
        assert_string_equal(tag, v[k].hmac);
        assert_true(idtag_verify(&key, (const char *)v[k].data, v[k].data_len,
                                 v[k].hmac));
    }
    /* RFC 2202 case 3: key 0xaa x 20, data 0xdd x 50. */
    memset(dd, 0xdd, sizeof(dd));
    memset(stored, 0, sizeof(stored));
    {
        unsigned char aa[20];

        memset(aa, 0xaa, sizeof(aa));
        stored_form(aa, sizeof(aa), stored);
    }
    assert_int_equal(idtag_key_load(&key, stored, sizeof(stored)), 0);
    assert_int_equal(idtag_compute(&key, (const char *)dd, sizeof(dd), tag), 0);
    assert_string_equal(tag, "125d7342b9ac11cd91a39af48aa17b4f63f175d3");
}

static void
test_verify_takes_only_the_tag(void **state)
{
    unsigned char stored[IDTAG_STORED_LEN];
    struct idtag_key key = { { 0 }, 0 };
    char tag[IDTAG_HEX_LEN + 1], other[IDTAG_HEX_LEN + 1];
    static const char id[] = "1732484473123-0";

    (void)state;
    assert_int_equal(idtag_key_generate(stored), 0);
    assert_int_equal(idtag_key_load(&key, stored, sizeof(stored)), 0);
    assert_int_equal(idtag_compute(&key, id, strlen(id), tag), 0);
    assert_true(idtag_verify(&key, id, strlen(id), tag));
    /* Another id, a changed digit, upper case (sha1hex writes lower). */
    assert_false(idtag_verify(&key, "1732484473123-1", 15, tag));
    assert_false(idtag_verify(&key, "99999999999999-0", 16, tag));
    memcpy(other, tag, sizeof(other));
    other[IDTAG_HEX_LEN - 1] = other[IDTAG_HEX_LEN - 1] == '0' ? '1' : '0';
    assert_false(idtag_verify(&key, id, strlen(id), other));
    memcpy(other, tag, sizeof(other));
    for (size_t i = 0; i < IDTAG_HEX_LEN; i++)
        if (other[i] >= 'a')
            other[i] = (char)(other[i] - 'a' + 'A');
    if (strcmp(other, tag) != 0)
        assert_false(idtag_verify(&key, id, strlen(id), other));
    /* A tag of another key. */
    assert_int_equal(idtag_key_generate(stored), 0);
    {
        struct idtag_key k2 = { { 0 }, 0 };

        assert_int_equal(idtag_key_load(&k2, stored, sizeof(stored)), 0);
        assert_memory_not_equal(k2.k, key.k, IDTAG_KEY_LEN);
        assert_false(idtag_verify(&k2, id, strlen(id), tag));
    }
}

static void
test_no_key_no_trust(void **state)
{
    struct idtag_key key = { { 0 }, 0 };
    char tag[IDTAG_HEX_LEN + 1];

    (void)state;
    assert_int_equal(idtag_compute(&key, "1-0", 3, tag), -1);
    assert_string_equal(tag, "");
    /* The HMAC of "1-0" under an all-zero key is still not taken. */
    assert_false(idtag_verify(&key, "1-0", 3, "0000000000000000000000000000000000000000"));
}

static void
test_load_refuses_what_is_not_a_key(void **state)
{
    unsigned char stored[IDTAG_STORED_LEN];
    struct idtag_key key = { { 0 }, 0 };

    (void)state;
    assert_int_equal(idtag_key_generate(stored), 0);
    assert_int_equal(idtag_key_load(&key, stored, sizeof(stored) - 1), -1);
    assert_int_equal(idtag_key_load(&key, stored, 64), -1);
    assert_false(key.set);
    stored[IDTAG_STORED_LEN - 1] ^= 1;          /* the pads disagree */
    assert_int_equal(idtag_key_load(&key, stored, sizeof(stored)), -1);
    assert_false(key.set);
    stored[IDTAG_STORED_LEN - 1] ^= 1;
    assert_int_equal(idtag_key_load(&key, stored, sizeof(stored)), 0);
    assert_true(key.set);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc2202_vectors),
        cmocka_unit_test(test_verify_takes_only_the_tag),
        cmocka_unit_test(test_no_key_no_trust),
        cmocka_unit_test(test_load_refuses_what_is_not_a_key),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
