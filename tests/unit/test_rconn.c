/* test_rconn.c -- the rules rconn.c writes once for every Redis
 * connection: the back-off's bounds and its "Redis is back" override,
 * which error replies mean "unavailable", and EVAL before a SHA is known.
 * No Redis here: nothing connects. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <string.h>

#include "rconn.h"

static void
test_backoff_bounds(void **state)
{
    struct rconn_backoff b;
    unsigned cap = RCONN_BACKOFF_MIN_MS;

    (void)state;
    rconn_backoff_init(&b);
    assert_true(rconn_backoff_ready(&b));
    /* Each wait lies in [cap/2, cap]; cap doubles up to the maximum. */
    for (int i = 0; i < 20; i++) {
        unsigned d = rconn_backoff_fail(&b);

        assert_true(d >= cap / 2 && d <= cap);
        cap = cap * 2 > RCONN_BACKOFF_MAX_MS ? RCONN_BACKOFF_MAX_MS : cap * 2;
    }
    assert_int_equal(b.next_ms, RCONN_BACKOFF_MAX_MS);
    rconn_backoff_reset(&b);
    assert_true(rconn_backoff_ready(&b));
    assert_true(rconn_backoff_fail(&b) <= RCONN_BACKOFF_MIN_MS);
}

static void
test_backoff_jitters(void **state)
{
    struct rconn_backoff b;
    unsigned first, differs = 0;

    (void)state;
    /* At the cap, 20 waits that all came out equal would mean no jitter:
     * instances would retry in step. */
    rconn_backoff_init(&b);
    b.next_ms = RCONN_BACKOFF_MAX_MS;
    first = rconn_backoff_fail(&b);
    for (int i = 0; i < 20; i++)
        differs += rconn_backoff_fail(&b) != first;
    assert_true(differs > 0);
}

static void
test_backoff_redis_is_back(void **state)
{
    struct rconn_backoff b;

    (void)state;
    rconn_backoff_init(&b);
    rconn_backoff_fail(&b);                 /* at least 50 ms to wait */
    assert_false(rconn_backoff_ready(&b));
    rconn_redis_is_back();
    assert_true(rconn_backoff_ready(&b));
    rconn_backoff_fail(&b);                 /* a new failure waits again */
    assert_false(rconn_backoff_ready(&b));
}

static redisReply
error_reply(char *str)
{
    redisReply r;

    memset(&r, 0, sizeof(r));
    r.type = REDIS_REPLY_ERROR;
    r.str = str;
    r.len = strlen(str);
    return r;
}

static void
test_error_classes(void **state)
{
    static char *const unavailable[] = {
        "LOADING Redis is loading the dataset in memory",
        "BUSY Redis is busy running a script",
        "MASTERDOWN Link with MASTER is down",
        "READONLY You can't write against a read only replica.",
        "OOM command not allowed when used memory > 'maxmemory'.",
        "NOAUTH Authentication required.",
        "WRONGPASS invalid username-password pair",
        "NOPERM this user has no permissions to run the 'evalsha' command",
        "ERR Protocol error: unauthenticated multibulk length",
        "NOREPLICAS Not enough good replicas to write.",
    };
    static char *const refusals[] = {
        "NOAUTH Authentication required.",
        "WRONGPASS invalid username-password pair",
        "NOPERM this user has no permissions to access one of the channels",
        "ERR Protocol error: unauthenticated bulk length",
    };
    char err[] = "ERR unknown op", noscript[] = "NOSCRIPT No matching script.";
    char status[] = "LOADING";
    redisReply r, s;

    (void)state;
    for (size_t i = 0; i < sizeof(unavailable) / sizeof(unavailable[0]); i++) {
        r = error_reply(unavailable[i]);
        assert_true(rconn_is_unavailable(&r));
        assert_false(rconn_is_noscript(&r));
    }
    for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
        r = error_reply(refusals[i]);
        assert_true(rconn_is_refusal(&r));
    }
    r = error_reply(unavailable[0]);
    assert_false(rconn_is_refusal(&r));             /* LOADING passes by itself */
    r = error_reply(err);
    assert_false(rconn_is_unavailable(&r));
    assert_false(rconn_is_refusal(&r));
    r = error_reply(noscript);
    assert_true(rconn_is_noscript(&r));
    assert_false(rconn_is_unavailable(&r));
    /* Only error replies are classified; no reply is neither. */
    s = error_reply(status);
    s.type = REDIS_REPLY_STATUS;
    assert_false(rconn_is_unavailable(&s));
    assert_false(rconn_is_noscript(NULL));
    assert_false(rconn_is_unavailable(NULL));
    assert_false(rconn_is_refusal(NULL));
}

/* READONLY: the server was demoted (look the master up again);
 * NOTREPLICATED: pipeline.c's own answer for a write WAIT did not see
 * replicated, neither "unavailable" (it was written) nor a refusal. */
static void
test_failover_classes(void **state)
{
    char ro[] = "READONLY You can't write against a read only replica.";
    char nr[] = RCONN_NOT_REPLICATED " 0 of 1 replicas acknowledged the write within 500 ms";
    redisReply r;

    (void)state;
    r = error_reply(ro);
    assert_true(rconn_is_readonly(&r));
    assert_false(rconn_is_not_replicated(&r));
    r = error_reply(nr);
    assert_true(rconn_is_not_replicated(&r));
    assert_false(rconn_is_unavailable(&r));
    assert_false(rconn_is_refusal(&r));
    assert_false(rconn_is_readonly(&r));
    assert_false(rconn_is_readonly(NULL));
    assert_false(rconn_is_not_replicated(NULL));
    /* Without sentinels there is one master for ever. */
    assert_int_equal(rconn_master_gen(), 0);
    rconn_master_lost();
    assert_int_equal(rconn_master_gen(), 0);
}

static void
test_script_argv_before_load(void **state)
{
    const char *argv[RCONN_ARGV_FIRST] = { 0 };
    size_t lens[RCONN_ARGV_FIRST] = { 0 };

    (void)state;
    /* No SCRIPT LOAD has answered: the text goes with EVAL. */
    assert_int_equal(rconn_script_argv(RCONN_SCRIPT_WRITE, 0, argv, lens), 1);
    assert_string_equal(argv[RCONN_ARGV_CMD], "EVAL");
    assert_ptr_equal(argv[RCONN_ARGV_SCRIPT], rconn_script_text(RCONN_SCRIPT_WRITE));
    assert_int_equal(lens[RCONN_ARGV_SCRIPT], strlen(argv[RCONN_ARGV_SCRIPT]));
    assert_non_null(strstr(rconn_script_text(RCONN_SCRIPT_WRITE), "local last_id_key = KEYS[1]"));
    assert_non_null(strstr(rconn_script_text(RCONN_SCRIPT_READ), "local last_id_key = KEYS[1]"));
    assert_non_null(strstr(rconn_script_text(RCONN_SCRIPT_RATELIMIT), "local key = KEYS[1]"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_bounds),
        cmocka_unit_test(test_backoff_jitters),
        cmocka_unit_test(test_backoff_redis_is_back),
        cmocka_unit_test(test_error_classes),
        cmocka_unit_test(test_failover_classes),
        cmocka_unit_test(test_script_argv_before_load),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
