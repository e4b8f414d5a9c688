/* test_log.c -- log lines: exact shape, level filter, one line per call
 * whatever the message holds, bounded length, and no mixing between
 * threads. stderr is pointed at a temporary file for each test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define LOG_TEST_CAP (1 << 20)
/* "2026-11-24T22:41:13.123Z info  " is 31 bytes for every level. */
#define LOG_TEST_HEAD 31

static int saved_stderr = -1;
static FILE *capture;

static void
capture_start(void)
{
    assert_non_null(capture = tmpfile());
    assert_true((saved_stderr = dup(STDERR_FILENO)) >= 0);
    assert_true(dup2(fileno(capture), STDERR_FILENO) >= 0);
}

/* Restores stderr and returns what was logged (the caller frees it). */
static char *
capture_end(size_t *len)
{
    char *buf = malloc(LOG_TEST_CAP);
    size_t n;

    assert_non_null(buf);
    assert_true(dup2(saved_stderr, STDERR_FILENO) >= 0);
    close(saved_stderr);
    rewind(capture);
    n = fread(buf, 1, LOG_TEST_CAP - 1, capture);
    buf[n] = '\0';
    fclose(capture);
    if (len != NULL)
        *len = n;
    return buf;
}

static int
teardown_level(void **state)
{
    (void)state;
    log_set_level(LOG_LEVEL_INFO);
    return 0;
}

/* "2026-11-24T22:41:13.123Z info  message" */
static void
assert_line(const char *line, const char *level, const char *msg)
{
    char pattern[256], head[LOG_TEST_HEAD + 1];
    regex_t re;

    snprintf(pattern, sizeof(pattern),
             "^[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]\\.[0-9]{3}Z %-5s $",
             level);
    assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    assert_true(strlen(line) > LOG_TEST_HEAD);
    memcpy(head, line, LOG_TEST_HEAD);
    head[LOG_TEST_HEAD] = '\0';
    if (regexec(&re, head, 0, NULL, 0) != 0)
        fail_msg("bad line head: '%s'", head);
    regfree(&re);
    assert_string_equal(line + LOG_TEST_HEAD, msg);
}

static void
test_parse_level(void **state)
{
    (void)state;
    assert_int_equal(log_parse_level("debug"), LOG_LEVEL_DEBUG);
    assert_int_equal(log_parse_level("info"), LOG_LEVEL_INFO);
    assert_int_equal(log_parse_level("warn"), LOG_LEVEL_WARN);
    assert_int_equal(log_parse_level("error"), LOG_LEVEL_ERROR);
    assert_int_equal(log_parse_level("INFO"), -1);
    assert_int_equal(log_parse_level("warning"), -1);
    assert_int_equal(log_parse_level(""), -1);
}

static void
test_line_shape_and_levels(void **state)
{
    char *out, *save = NULL, *line;

    (void)state;
    capture_start();
    log_debug("hidden %d", 1);                  /* the default level is info */
    log_info("hello %s %d", "world", 42);
    log_warn("careful");
    log_error("broken: %s", "disk");
    log_set_level(LOG_LEVEL_ERROR);
    log_info("hidden");
    log_warn("hidden");
    log_error("still shown");
    log_set_level(LOG_LEVEL_DEBUG);
    log_debug("now shown");
    out = capture_end(NULL);
    assert_non_null(line = strtok_r(out, "\n", &save));
    assert_line(line, "info", "hello world 42");
    assert_non_null(line = strtok_r(NULL, "\n", &save));
    assert_line(line, "warn", "careful");
    assert_non_null(line = strtok_r(NULL, "\n", &save));
    assert_line(line, "error", "broken: disk");
    assert_non_null(line = strtok_r(NULL, "\n", &save));
    assert_line(line, "error", "still shown");
    assert_non_null(line = strtok_r(NULL, "\n", &save));
    assert_line(line, "debug", "now shown");
    assert_null(strtok_r(NULL, "\n", &save));
    free(out);
}

static void
test_one_line_per_call(void **state)
{
    char *out;
    size_t len;

    (void)state;
    capture_start();
    log_info("a\nforged 2026-01-01T00:00:00.000Z error line\r\t\x7f" "end");
    out = capture_end(&len);
    assert_int_equal(out[len - 1], '\n');
    assert_ptr_equal(strchr(out, '\n'), out + len - 1);
    out[len - 1] = '\0';
    assert_line(out, "info", "a?forged 2026-01-01T00:00:00.000Z error line???end");
    free(out);
}

static void
test_long_message_is_cut(void **state)
{
    char *big = malloc(10000), *out;
    size_t len;

    (void)state;
    assert_non_null(big);
    memset(big, 'x', 9999);
    big[9999] = '\0';
    capture_start();
    log_warn("%s", big);
    out = capture_end(&len);
    assert_int_equal(len, 2047);
    assert_ptr_equal(strchr(out, '\n'), out + len - 1);
    assert_memory_equal(out + len - 4, "...\n", 4);
    free(out);
    free(big);
}

static void
test_errno_is_kept(void **state)
{
    int after;

    (void)state;
    capture_start();
    errno = ENOSPC;
    log_error("x");
    after = errno;
    free(capture_end(NULL));
    assert_int_equal(after, ENOSPC);
}

#define LOG_TEST_THREADS 4
#define LOG_TEST_LINES 500

static void *
log_thread(void *arg)
{
    char msg[301];
    int id = (int)(intptr_t)arg;

    /* Long lines make a torn write likely if the writes were split. */
    memset(msg, 'a' + id, sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    for (int i = 0; i < LOG_TEST_LINES; i++)
        log_info("%s", msg);
    return NULL;
}

static void
test_threads_never_mix(void **state)
{
    pthread_t t[LOG_TEST_THREADS];
    char *out, *save = NULL, *line;
    int lines = 0;

    (void)state;
    capture_start();
    for (int i = 0; i < LOG_TEST_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, log_thread, (void *)(intptr_t)i), 0);
    for (int i = 0; i < LOG_TEST_THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    out = capture_end(NULL);
    for (line = strtok_r(out, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        const char *msg = line + LOG_TEST_HEAD;

        assert_int_equal(strlen(msg), 300);
        assert_int_equal(strspn(msg, (char[]){ msg[0], '\0' }), 300);
        lines++;
    }
    assert_int_equal(lines, LOG_TEST_THREADS * LOG_TEST_LINES);
    free(out);
}

/* Untrusted bytes become one line of printable ASCII, bounded. */
static void
test_excerpt(void **state)
{
    char out[LOG_EXCERPT_SIZE(16)], tiny[8];
    static const char raw[] = "a\nb\xff\\c\x7f\"";

    (void)state;
    assert_string_equal(log_excerpt(out, sizeof(out), raw, sizeof(raw) - 1, 16),
                        "a\\x0ab\\xff\\\\c\\x7f\"");
    assert_string_equal(log_excerpt(out, sizeof(out), "0123456789abcdefXYZ", 19, 16),
                        "0123456789abcdef...");
    assert_string_equal(log_excerpt(out, sizeof(out), "abc", 3, 16), "abc");
    assert_string_equal(log_excerpt(out, sizeof(out), "", 0, 16), "");
    /* NULs inside are bytes like any other, and only n are read. */
    assert_string_equal(log_excerpt(out, sizeof(out), "a\0bXX", 3, 16), "a\\x00b");
    /* A small buffer cuts, and still ends with the mark and a NUL. */
    assert_string_equal(log_excerpt(tiny, sizeof(tiny), "abcdefgh", 8, 16), "abcd...");
    assert_string_equal(log_excerpt(tiny, sizeof(tiny), "\xff\xff", 2, 16), "\\xff...");
    assert_string_equal(log_excerpt(tiny, 3, "abcdef", 6, 16), "");
    /* The worst case fits its size. */
    memset(out, 'z', sizeof(out));
    {
        char all[16];

        memset(all, 0xff, sizeof(all));
        log_excerpt(out, sizeof(out), all, sizeof(all), 16);
        assert_int_equal(strlen(out), 64);
        log_excerpt(out, sizeof(out), all, sizeof(all), 17);
        assert_int_equal(strlen(out), 64);
    }
}

/* Text fields: key=value after the message, quoted when they must be;
 * JSON-only fields left out. */
static void
test_text_fields(void **state)
{
    const struct log_field f[] = {
        LOG_STR("method", "GET"), LOG_STR("path", "/x?a=1&token="), LOG_INT("status", 200),
        LOG_NUM("duration_ms", 1.5), LOG_STR("quoted", "a \"b\"\\"), LOG_STR("empty", ""),
        LOG_STR_JSON("hidden", "x"), LOG_STR("nl", "a\nb"),
    };
    char *out;
    size_t len;

    (void)state;
    capture_start();
    log_fields(LOG_LEVEL_INFO, f, sizeof(f) / sizeof(f[0]), "request");
    log_fields(LOG_LEVEL_DEBUG, f, 1, "hidden at info");
    out = capture_end(&len);
    out[len - 1] = '\0';
    assert_line(out, "info", "request method=GET path=/x?a=1&token= status=200 "
                "duration_ms=1.500 quoted=\"a \\\"b\\\"\\\\\" empty=\"\" nl=a?b");
    free(out);
}

/* JSON lines: one object each, whatever the message and fields hold
 * (quotes, control bytes, bytes that are not UTF-8), with ts, level,
 * server_id, msg and the fields. */
static void
test_json_lines(void **state)
{
    const struct log_field f[] = {
        LOG_STR("path", "/a\"b\\"), LOG_INT("status", 503), LOG_NUM("duration_s", 0.25),
        LOG_STR_JSON("user", "42"), LOG_STR("bad", "\xff\xed\xa0\x80 caf\xc3\xa9"),
    };
    json_object *o, *v;
    char *out, *nl, *big;
    size_t len;

    (void)state;
    log_set_format(LOG_FORMAT_JSON);
    log_set_server_id("gw-\"1\"");
    capture_start();
    log_fields(LOG_LEVEL_WARN, f, sizeof(f) / sizeof(f[0]), "a\nforged\x01 \"line\"");
    assert_non_null(big = malloc(10000));
    memset(big, '\x01', 9999);             /* six bytes each, escaped */
    big[9999] = '\0';
    log_error("%s", big);
    free(big);
    out = capture_end(&len);
    log_set_format(LOG_FORMAT_TEXT);
    log_set_server_id("");
    assert_non_null(nl = strchr(out, '\n'));
    *nl = '\0';
    assert_non_null(o = json_tokener_parse(out));
    assert_true(json_object_object_get_ex(o, "ts", &v));
    assert_int_equal(strlen(json_object_get_string(v)), 24);
    assert_true(json_object_object_get_ex(o, "level", &v));
    assert_string_equal(json_object_get_string(v), "warn");
    assert_true(json_object_object_get_ex(o, "server_id", &v));
    assert_string_equal(json_object_get_string(v), "gw-\"1\"");
    assert_true(json_object_object_get_ex(o, "msg", &v));
    assert_string_equal(json_object_get_string(v), "a\nforged\x01 \"line\"");
    assert_true(json_object_object_get_ex(o, "path", &v));
    assert_string_equal(json_object_get_string(v), "/a\"b\\");
    assert_true(json_object_object_get_ex(o, "status", &v));
    assert_int_equal(json_object_get_int(v), 503);
    assert_true(json_object_object_get_ex(o, "user", &v));
    assert_string_equal(json_object_get_string(v), "42");
    assert_true(json_object_object_get_ex(o, "bad", &v));
    assert_string_equal(json_object_get_string(v),
                        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd caf\xc3\xa9");
    json_object_put(o);
    /* The long one is cut, still one JSON line within the bound. */
    assert_true(strlen(nl + 1) <= 2048);
    assert_int_equal(nl[strlen(nl + 1)], '\n');
    nl[strlen(nl + 1)] = '\0';
    assert_non_null(o = json_tokener_parse(nl + 1));
    assert_true(json_object_object_get_ex(o, "msg", &v));
    assert_true(strlen(json_object_get_string(v)) > 100);
    json_object_put(o);
    free(out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_level),
        cmocka_unit_test_teardown(test_line_shape_and_levels, teardown_level),
        cmocka_unit_test(test_one_line_per_call),
        cmocka_unit_test(test_long_message_is_cut),
        cmocka_unit_test(test_errno_is_kept),
        cmocka_unit_test(test_threads_never_mix),
        cmocka_unit_test(test_excerpt),
        cmocka_unit_test(test_text_fields),
        cmocka_unit_test(test_json_lines),
    };

    /* A hang (a deadlock, an endless loop) must fail the test, not stall
     * CI: nothing here catches SIGALRM, so it kills the process and the
     * TAP driver reports it. The run takes under a second, even with ASan. */
    alarm(60);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
