/* test_config.c -- defaults, environment, flags and every kind of bad value. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "config.h"
#include "log.h"

/* A fake environment: NAME=VALUE strings. */
static const char *const *fake_env;

static const char *
fake_getenv(const char *name)
{
    size_t n = strlen(name);

    for (const char *const *e = fake_env; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

static enum config_result
load(struct config *cfg, const char *const *env, int argc, char **argv,
     char *err)
{
    char *noargs[] = { "ssegate", NULL };

    fake_env = env;
    if (argv == NULL) {
        argv = noargs;
        argc = 1;
    }
    err[0] = '\0';
    return config_load(cfg, argc, argv, fake_getenv, err, 256);
}

static void
test_defaults(void **state)
{
    struct config c;
    char err[256];

    (void)state;
    assert_int_equal(load(&c, NULL, 0, NULL, err), CONFIG_OK);
    assert_int_equal(c.port, 3000);
    assert_string_equal(c.listen_addr, "0.0.0.0");
    assert_string_equal(c.redis_host, "127.0.0.1");
    assert_int_equal(c.redis_port, 6379);
    assert_string_equal(c.redis_password, "");
    assert_string_equal(c.redis_channel, "user-events");
    assert_int_equal(c.history_maxlen, 1000);
    assert_int_equal(c.firehose_maxlen, 10000);
    assert_int_equal(c.heartbeat_secs, 15);
    assert_int_equal(c.sse_retry_ms, 3000);
    assert_int_equal(c.http_threads, 8);
    assert_int_equal(c.log_level, LOG_LEVEL_INFO);
    assert_true(strlen(c.server_id) > 0);       /* the host name */
}

static void
test_env_then_flags(void **state)
{
    const char *env[] = { "PORT=4000", "SERVER_ID=backend-1", "REDIS_HOST=redis",
                          "HISTORY_MAXLEN=5", "LOG_LEVEL=debug", "REDIS_PASSWORD=",
                          NULL };
    char *argv[] = { "ssegate", "--port", "5000", "--redis-port=7000", NULL };
    struct config c;
    char err[256];

    (void)state;
    assert_int_equal(load(&c, env, 4, argv, err), CONFIG_OK);
    assert_int_equal(c.port, 5000);                 /* flag wins */
    assert_int_equal(c.redis_port, 7000);
    assert_string_equal(c.server_id, "backend-1");
    assert_string_equal(c.redis_host, "redis");
    assert_int_equal(c.history_maxlen, 5);
    assert_int_equal(c.log_level, LOG_LEVEL_DEBUG);
    assert_string_equal(c.redis_password, "");      /* empty = unset */
}

static void
test_empty_is_unset(void **state)
{
    const char *env[] = { "PORT=", NULL };
    struct config c;
    char err[256];

    (void)state;
    assert_int_equal(load(&c, env, 0, NULL, err), CONFIG_OK);
    assert_int_equal(c.port, 3000);
}

/* Each bad value fails with one line naming the variable or flag. */
static void
expect_error(const char *const *env, int argc, char **argv, const char *name)
{
    struct config c;
    char err[256];

    assert_int_equal(load(&c, env, argc, argv, err), CONFIG_ERROR);
    assert_non_null(strstr(err, name));
    assert_null(strchr(err, '\n'));
}

static void
test_bad_values(void **state)
{
    const char *port_abc[] = { "PORT=abc", NULL }, *port_big[] = { "PORT=70000", NULL },
               *port_zero[] = { "PORT=0", NULL }, *port_neg[] = { "PORT=-1", NULL },
               *port_sp[] = { "PORT= 80", NULL }, *hist0[] = { "HISTORY_MAXLEN=0", NULL },
               *level[] = { "LOG_LEVEL=loud", NULL }, *addr[] = { "LISTEN_ADDR=nowhere", NULL },
               *huge[] = { "HEARTBEAT_SECS=99999999999999999999", NULL };
    char *unknown[] = { "ssegate", "--frobnicate", NULL };
    char *novalue[] = { "ssegate", "--port", NULL };
    char *badflag[] = { "ssegate", "--port=abc", NULL };
    char longid[300], *longv[] = { "ssegate", "--server-id", longid, NULL };

    (void)state;
    expect_error(port_abc, 0, NULL, "PORT");
    expect_error(port_big, 0, NULL, "PORT");
    expect_error(port_zero, 0, NULL, "PORT");
    expect_error(port_neg, 0, NULL, "PORT");
    expect_error(port_sp, 0, NULL, "PORT");
    expect_error(hist0, 0, NULL, "HISTORY_MAXLEN");
    expect_error(level, 0, NULL, "LOG_LEVEL");
    expect_error(addr, 0, NULL, "LISTEN_ADDR");
    expect_error(huge, 0, NULL, "HEARTBEAT_SECS");
    expect_error(NULL, 2, unknown, "--frobnicate");
    expect_error(NULL, 2, novalue, "--port");
    expect_error(NULL, 2, badflag, "--port");
    memset(longid, 'x', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    expect_error(NULL, 3, longv, "--server-id");
}

static void
test_help_version(void **state)
{
    char *help[] = { "ssegate", "--help", NULL }, *ver[] = { "ssegate", "--version", NULL };
    struct config c;
    char err[256];

    (void)state;
    assert_int_equal(load(&c, NULL, 2, help, err), CONFIG_HELP);
    assert_int_equal(load(&c, NULL, 2, ver, err), CONFIG_VERSION);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_env_then_flags),
        cmocka_unit_test(test_empty_is_unset),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_help_version),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
