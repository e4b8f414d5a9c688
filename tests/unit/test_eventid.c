/* test_eventid.c -- event ids: parse, compare, format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "eventid.h"

static int
parse(const char *s, struct event_id *id)
{
    return eventid_parse(s, strlen(s), id);
}

static void
test_parse_valid(void **state)
{
    struct event_id id;

    (void)state;
    assert_int_equal(parse("1732484473123-7", &id), 0);
    assert_int_equal(id.ms, 1732484473123ULL);
    assert_int_equal(id.seq, 7);
    assert_int_equal(parse("42", &id), 0);
    assert_int_equal(id.ms, 42);
    assert_int_equal(id.seq, 0);
    assert_int_equal(parse("0", &id), 0);
    assert_int_equal(parse("18446744073709551615-18446744073709551615", &id), 0);
    assert_true(id.ms == UINT64_MAX && id.seq == UINT64_MAX);
}

static void
test_parse_invalid(void **state)
{
    const char *bad[] = { "", "-", "1-", "-1", "a", "1-a", "1 ", " 1", "+1", "1-2-3",
                          "18446744073709551616", "1-18446744073709551616",
                          "123456789012345678901", "1.5" };
    struct event_id id = { 9, 9 };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(bad[i], &id), -1);
        assert_int_equal(id.ms, 9);     /* untouched on error */
    }
    /* Only len bytes are read. */
    assert_int_equal(eventid_parse("12-3xyz", 4, &id), 0);
    assert_int_equal(id.ms, 12);
    assert_int_equal(id.seq, 3);
}

static void
test_compare(void **state)
{
    struct event_id a = { 5, 1 }, b = { 5, 2 }, c = { 6, 0 };

    (void)state;
    assert_true(eventid_cmp(&a, &b) < 0);
    assert_true(eventid_cmp(&b, &a) > 0);
    assert_true(eventid_cmp(&b, &c) < 0);
    assert_int_equal(eventid_cmp(&a, &a), 0);
}

static void
test_format(void **state)
{
    struct event_id id = { 1732484473123ULL, 4 };
    char buf[EVENTID_STR_MAX], small[5];

    (void)state;
    assert_int_equal(eventid_format(&id, buf, sizeof(buf)), 15);
    assert_string_equal(buf, "1732484473123-4");
    assert_int_equal(eventid_format(&id, small, sizeof(small)), -1);
    assert_string_equal(small, "");
    id.ms = id.seq = UINT64_MAX;
    assert_int_equal(eventid_format(&id, buf, sizeof(buf)), EVENTID_STR_MAX - 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_compare),
        cmocka_unit_test(test_format),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
