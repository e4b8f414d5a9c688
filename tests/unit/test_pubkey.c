/* test_pubkey.c -- the publish keys: "Bearer <key>" with any configured
 * key passes, anything else does not (another key, a prefix or extension
 * of a key, another scheme, no header), and no key set means none is
 * needed to be asked about. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "pubkey.h"

#define K1 "k1-0123456789abcdef"
#define K2 "K2_fedcba9876543210+/="

static void
test_two_keys(void **state)
{
    struct pubkey_set set;

    (void)state;
    assert_int_equal(pubkey_set_init(&set, K1 "," K2), 0);
    assert_true(pubkey_set_enabled(&set));
    assert_int_equal(set.n, 2);
    assert_true(pubkey_check(&set, "Bearer " K1));
    assert_true(pubkey_check(&set, "Bearer " K2));
    assert_true(pubkey_check(&set, "bearer " K1));          /* the scheme in any case */
    assert_true(pubkey_check(&set, "BEARER   " K2));        /* spaces after it */
    assert_false(pubkey_check(&set, NULL));
    assert_false(pubkey_check(&set, ""));
    assert_false(pubkey_check(&set, "Bearer"));
    assert_false(pubkey_check(&set, "Bearer "));
    assert_false(pubkey_check(&set, K1));                   /* no scheme */
    assert_false(pubkey_check(&set, "Basic " K1));
    assert_false(pubkey_check(&set, "Bearer" K1));
    assert_false(pubkey_check(&set, "Bearer " K1 "x"));
    assert_false(pubkey_check(&set, "Bearer k1-0123456789abcde"));
    assert_false(pubkey_check(&set, "Bearer " K1 "," K2));
    assert_false(pubkey_check(&set, "Bearer " K1 " "));
    assert_false(pubkey_check(&set, "Bearer k1-0123456789ABCDEF"));
    pubkey_set_clear(&set);
    assert_false(pubkey_set_enabled(&set));
    assert_false(pubkey_check(&set, "Bearer " K1));
}

static void
test_no_keys(void **state)
{
    struct pubkey_set set;

    (void)state;
    assert_int_equal(pubkey_set_init(&set, ""), 0);
    assert_false(pubkey_set_enabled(&set));
    assert_false(pubkey_check(&set, "Bearer anything-at-all-here"));
}

static void
test_only_digests_kept(void **state)
{
    struct pubkey_set set;

    (void)state;
    assert_int_equal(pubkey_set_init(&set, K1), 0);
    assert_int_equal(set.n, 1);
    assert_null(memmem(&set, sizeof(set), K1, strlen(K1)));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_keys),
        cmocka_unit_test(test_no_keys),
        cmocka_unit_test(test_only_digests_kept),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
