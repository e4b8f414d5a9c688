/* test_query.c -- which value of a query parameter the API reads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <unistd.h>

#include "query.h"

#define ARG(k, v) { k, sizeof(k) - 1, v, sizeof(v) - 1 }
#define NOVALUE(k) { k, sizeof(k) - 1, NULL, 0 }

static void
test_one_value(void **state)
{
    const struct query_arg args[] = { ARG("a", "1"), ARG("userId", "42"), ARG("b", "") };

    (void)state;
    assert_string_equal(query_value(args, 3, "userId"), "42");
    assert_string_equal(query_value(args, 3, "b"), "");     /* "b=": empty */
    assert_string_equal(query_value(args, 3, "userid"), "42");   /* names match in any case */
    assert_null(query_value(args, 3, "user"));
    assert_null(query_value(args, 0, "a"));
}

static void
test_not_one_value(void **state)
{
    /* libmicrohttpd decoded "userId=1%00x" into a value with a NUL. */
    const struct query_arg nul[] = { { "userId", 6, "1\0x", 3 } };
    const struct query_arg twice[] = { ARG("userId", "1"), ARG("userId", "2") };
    const struct query_arg bare[] = { NOVALUE("userId") };
    const struct query_arg bare_then[] = { NOVALUE("userId"), ARG("userId", "1") };
    /* "user%00Id=1" is not userId; "userid" is (names match in any case). */
    const struct query_arg key_nul[] = { { "userId\0x", 8, "1", 1 } };
    const struct query_arg two_cases[] = { ARG("userid", "1"), ARG("userId", "1") };
    const struct query_arg upper[] = { ARG("USERID", "5") };

    (void)state;
    assert_string_equal(query_value(nul, 1, "userId"), "");
    assert_string_equal(query_value(twice, 2, "userId"), "");
    assert_string_equal(query_value(bare, 1, "userId"), "");
    assert_string_equal(query_value(bare_then, 2, "userId"), "");
    assert_null(query_value(key_nul, 1, "userId"));
    assert_string_equal(query_value(two_cases, 2, "userId"), "");
    assert_string_equal(query_value(upper, 1, "userId"), "5");
}

static void
test_redact(void **state)
{
    char out[64], small[16];

    (void)state;
    assert_string_equal(query_redact("/events/sse?userId=1&token=abc.def", "token", out,
                                     sizeof(out)), "/events/sse?userId=1&token=");
    /* Every occurrence, in any case, the name decoded as MHD decodes it. */
    assert_string_equal(query_redact("/x?TOKEN=a&t%6fken=b&to+ken=c&tokens=d", "token", out,
                                     sizeof(out)), "/x?TOKEN=&t%6fken=&to+ken=c&tokens=d");
    assert_string_equal(query_redact("/x?token", "token", out, sizeof(out)), "/x?token");
    assert_string_equal(query_redact("/health", "token", out, sizeof(out)), "/health");
    assert_string_equal(query_redact("/x?a=1&&token=s3cret&", "token", out, sizeof(out)),
                        "/x?a=1&&token=&");
    /* Too long: cut, marked, and still no secret. */
    assert_string_equal(query_redact("/events/sse?token=abcdefghijkl", "token", small,
                                     sizeof(small)), "/events/sse?...");
    assert_string_equal(query_redact("/abcdefghijklmnopqrstuvwxyz", "token", small,
                                     sizeof(small)), "...");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_value),
        cmocka_unit_test(test_not_one_value),
        cmocka_unit_test(test_redact),
    };

    alarm(60);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
