/* test_eventid.c -- event ids: exact parsing, ordering and formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <unistd.h>

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
    assert_true(id.ms == 1732484473123ULL && id.seq == 7);
    assert_int_equal(parse("42", &id), 0);              /* no seq: 0 */
    assert_true(id.ms == 42 && id.seq == 0);
    assert_int_equal(parse("0", &id), 0);
    assert_true(id.ms == 0 && id.seq == 0);
    assert_int_equal(parse("0-0", &id), 0);
    assert_true(id.ms == 0 && id.seq == 0);
    assert_int_equal(parse("007-08", &id), 0);          /* leading zeros are digits */
    assert_true(id.ms == 7 && id.seq == 8);
    assert_int_equal(parse("18446744073709551615-18446744073709551615", &id), 0);
    assert_true(id.ms == UINT64_MAX && id.seq == UINT64_MAX);
    assert_int_equal(parse("00000000000000000001-1", &id), 0);   /* 20 digits */
    assert_true(id.ms == 1 && id.seq == 1);
}

static void
test_parse_invalid(void **state)
{
    static const char *const bad[] = {
        "", "-", "1-", "-1", "a", "1-a", "1 ", " 1", "1- 2", "+1", "1-+2", "1-2-3",
        "1--2", "1.5", "0x10", "1e3", "18446744073709551616", "1-18446744073709551616",
        "99999999999999999999", "000000000000000000001", "1-000000000000000000001",
        "$", "*", "1-*",
    };
    struct event_id id = { 9, 9 };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse(bad[i], &id) != -1)
            fail_msg("accepted '%s'", bad[i]);
        assert_true(id.ms == 9 && id.seq == 9);         /* untouched on error */
    }
    /* A NUL inside the given length is not a digit. */
    assert_int_equal(eventid_parse("1\0002", 3, &id), -1);
}

static void
test_parse_reads_only_len_bytes(void **state)
{
    struct event_id id = { 9, 9 };

    (void)state;
    assert_int_equal(eventid_parse("12-3xyz", 4, &id), 0);
    assert_true(id.ms == 12 && id.seq == 3);
    assert_int_equal(eventid_parse("5-", 1, &id), 0);
    assert_true(id.ms == 5 && id.seq == 0);
    assert_int_equal(eventid_parse("5", 0, &id), -1);
}

static void
test_compare(void **state)
{
    struct event_id a = { 5, 1 }, b = { 5, 2 }, c = { 6, 0 },
                    max = { UINT64_MAX, UINT64_MAX }, zero = { 0, 0 };

    (void)state;
    assert_true(eventid_cmp(&a, &b) < 0);
    assert_true(eventid_cmp(&b, &a) > 0);
    assert_true(eventid_cmp(&b, &c) < 0);       /* ms first, then seq */
    assert_true(eventid_cmp(&c, &b) > 0);
    assert_int_equal(eventid_cmp(&a, &a), 0);
    assert_true(eventid_cmp(&zero, &max) < 0);  /* unsigned, no overflow */
    assert_true(eventid_cmp(&max, &zero) > 0);
}

static void
test_format(void **state)
{
    struct event_id id = { 1732484473123ULL, 4 };
    char buf[EVENTID_STR_MAX], small[15];

    (void)state;
    assert_int_equal(eventid_format(&id, buf, sizeof(buf)), 15);
    assert_string_equal(buf, "1732484473123-4");
    /* One byte short of the NUL: refused, and the buffer is "". */
    assert_int_equal(eventid_format(&id, small, sizeof(small)), -1);
    assert_string_equal(small, "");
    assert_int_equal(eventid_format(&id, small, 0), -1);
    id.ms = id.seq = UINT64_MAX;
    assert_int_equal(eventid_format(&id, buf, sizeof(buf)), EVENTID_STR_MAX - 1);
    assert_string_equal(buf, "18446744073709551615-18446744073709551615");
    id.ms = id.seq = 0;
    assert_int_equal(eventid_format(&id, buf, sizeof(buf)), 3);
    assert_string_equal(buf, "0-0");
}

static void
test_round_trip(void **state)
{
    static const struct event_id ids[] = {
        { 0, 0 }, { 1, 0 }, { 1732484473123ULL, 4 }, { UINT64_MAX, 0 }, { 0, UINT64_MAX },
    };
    char buf[EVENTID_STR_MAX];
    struct event_id back;

    (void)state;
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        int n = eventid_format(&ids[i], buf, sizeof(buf));

        assert_true(n > 0);
        assert_int_equal(eventid_parse(buf, (size_t)n, &back), 0);
        assert_int_equal(eventid_cmp(&ids[i], &back), 0);
    }
}

static void
test_show_foreign(void **state)
{
    char out[EVENTID_FOREIGN_MAX + 1], small[4];
    char longer[200];

    (void)state;
    eventid_show_foreign("a\"b\\c\td\x7f\xc3\xa9 e", out, sizeof(out));
    assert_string_equal(out, "a?b?c?d??? e");
    eventid_show_foreign("", out, sizeof(out));
    assert_string_equal(out, "");
    eventid_show_foreign("abcdef", small, sizeof(small));
    assert_string_equal(small, "abc");              /* cap - 1 bytes */
    memset(longer, 'x', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    eventid_show_foreign(longer, out, sizeof(out));
    assert_int_equal(strlen(out), EVENTID_FOREIGN_MAX);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_parse_reads_only_len_bytes),
        cmocka_unit_test(test_compare),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_show_foreign),
    };

    /* A hang (a deadlock, an endless loop) must fail the test, not stall
     * CI: nothing here catches SIGALRM, so it kills the process and the
     * TAP driver reports it. The run takes under a second, even with ASan. */
    alarm(60);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
