/* test_cors.c -- CORS_ORIGINS: what the list accepts, and what each
 * request Origin gets (the exact origin with credentials, "*", or
 * nothing). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cors.h"

static struct cors_origins
parse(const char *list)
{
    struct cors_origins c;
    char err[200] = "";

    if (cors_parse(list, &c, err, sizeof(err)) != 0)
        fail_msg("'%s': %s", list, err);
    return c;
}

static void
expect_error(const char *list, const char *want)
{
    struct cors_origins c;
    char err[200] = "";

    assert_int_equal(cors_parse(list, &c, err, sizeof(err)), -1);
    assert_string_equal(err, want);
}

/* What origin gets: "-" for nothing, else the header value, with "+" in
 * front when credentials are allowed. */
static const char *
allow(const struct cors_origins *c, const char *origin)
{
    static char buf[CORS_ORIGIN_MAX + 2];
    int cred = -1;
    const char *v = cors_allow(c, origin, origin ? strlen(origin) : 0, &cred);

    assert_true(cred == 0 || cred == 1);
    if (v == NULL) {
        assert_int_equal(cred, 0);
        return "-";
    }
    strcpy(buf, cred ? "+" : "");
    strcat(buf, v);
    return buf;
}

static void
test_off(void **state)
{
    struct cors_origins c = parse("");

    (void)state;
    assert_false(cors_enabled(&c));
    assert_string_equal(allow(&c, "https://app.example.com"), "-");
    assert_string_equal(allow(&c, NULL), "-");
}

static void
test_exact(void **state)
{
    struct cors_origins c = parse("https://app.example.com, http://localhost:8080,"
                                  "https://[2001:db8::1]:8443");

    (void)state;
    assert_true(cors_enabled(&c));
    assert_int_equal(c.n, 3);
    assert_string_equal(allow(&c, "https://app.example.com"), "+https://app.example.com");
    assert_string_equal(allow(&c, "http://localhost:8080"), "+http://localhost:8080");
    assert_string_equal(allow(&c, "https://[2001:db8::1]:8443"), "+https://[2001:db8::1]:8443");
    /* Exact: no prefix, suffix, other scheme, port or case. */
    assert_string_equal(allow(&c, "https://app.example.com.evil.net"), "-");
    assert_string_equal(allow(&c, "https://app.example.co"), "-");
    assert_string_equal(allow(&c, "http://app.example.com"), "-");
    assert_string_equal(allow(&c, "https://app.example.com:443"), "-");
    assert_string_equal(allow(&c, "https://APP.example.com"), "-");
    assert_string_equal(allow(&c, "http://localhost"), "-");
    assert_string_equal(allow(&c, "null"), "-");
    assert_string_equal(allow(&c, ""), "-");
    assert_string_equal(allow(&c, NULL), "-");
    /* Only len bytes are compared. */
    {
        int cred;

        assert_null(cors_allow(&c, "https://app.example.com", 10, &cred));
        assert_string_equal(cors_allow(&c, "http://localhost:8080/x", 21, &cred),
                            "http://localhost:8080");
    }
}

static void
test_any(void **state)
{
    struct cors_origins c = parse("*");
    struct cors_origins mixed = parse("https://app.example.com,*");

    (void)state;
    assert_true(cors_enabled(&c));
    assert_string_equal(allow(&c, "https://anything.example"), "*");
    assert_string_equal(allow(&c, "null"), "*");
    assert_string_equal(allow(&c, NULL), "-");          /* not a CORS request */
    /* A listed origin keeps its credentials next to "*". */
    assert_string_equal(allow(&mixed, "https://app.example.com"), "+https://app.example.com");
    assert_string_equal(allow(&mixed, "https://other.example"), "*");
}

static void
test_errors(void **state)
{
    char many[2048] = "";

    (void)state;
    expect_error("https://app.example.com/",
                 "'https://app.example.com/' is not an origin like https://app.example.com "
                 "(lower case, no path, no trailing slash) or *");
    expect_error("app.example.com",
                 "'app.example.com' is not an origin like https://app.example.com "
                 "(lower case, no path, no trailing slash) or *");
    expect_error("https://App.example.com",
                 "'https://App.example.com' is not an origin like https://app.example.com "
                 "(lower case, no path, no trailing slash) or *");
    expect_error("https://", "'https://' is not an origin like https://app.example.com "
                 "(lower case, no path, no trailing slash) or *");
    expect_error("://x", "'://x' is not an origin like https://app.example.com "
                 "(lower case, no path, no trailing slash) or *");
    expect_error("https://a b", "'https://a b' is not an origin like https://app.example.com "
                 "(lower case, no path, no trailing slash) or *");
    expect_error("**", "'**' is not an origin like https://app.example.com "
                 "(lower case, no path, no trailing slash) or *");
    expect_error("https://a.example,", "an empty item in the list");
    expect_error(" ,https://a.example", "an empty item in the list");
    for (int i = 0; i <= CORS_ORIGINS_MAX; i++) {
        char item[40];

        snprintf(item, sizeof(item), "%shttps://a%d.example", i ? "," : "", i);
        strcat(many, item);
    }
    expect_error(many, "more than 16 origins");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_off),
        cmocka_unit_test(test_exact),
        cmocka_unit_test(test_any),
        cmocka_unit_test(test_errors),
    };

    alarm(60);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
