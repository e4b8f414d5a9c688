/* test_config.c -- config_load: defaults, environment, flags (which win),
 * and the exact one-line error for every kind of bad value. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

/* A fake environment of "NAME=VALUE" strings, so no test depends on the
 * real one. */
static const char *const *fake_env;

static const char *
fake_getenv(const char *name)
{
    size_t n = strlen(name);

    for (const char *const *e = fake_env; e != NULL && *e != NULL; e++) {
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    }
    return NULL;
}

/* Loads with env (NULL: empty) and the flags in args (NULL-terminated,
 * without argv[0]; NULL: none). */
static enum config_result
load(struct config *cfg, const char *const *env, const char *const *args,
     char *err, size_t errlen)
{
    char *argv[16] = { "ssegate" };
    int argc = 1;

    for (; args != NULL && args[argc - 1] != NULL; argc++) {
        assert_true(argc < 15);
        argv[argc] = (char *)args[argc - 1];
    }
    argv[argc] = NULL;
    fake_env = env;
    return config_load(cfg, argc, argv, fake_getenv, err, errlen);
}

/* Expects CONFIG_ERROR and exactly the error line want. */
static void
expect_error(const char *const *env, const char *const *args, const char *want)
{
    struct config c;
    char err[256];

    assert_int_equal(load(&c, env, args, err, sizeof(err)), CONFIG_ERROR);
    assert_string_equal(err, want);
}

static void
test_defaults(void **state)
{
    struct config c;
    char err[256], host[256];

    (void)state;
    assert_int_equal(load(&c, NULL, NULL, err, sizeof(err)), CONFIG_OK);
    assert_string_equal(err, "");
    assert_string_equal(c.listen_addr, "0.0.0.0");
    assert_int_equal(c.port, 3000);
    assert_string_equal(c.redis_host, "127.0.0.1");
    assert_int_equal(c.redis_port, 6379);
    assert_string_equal(c.redis_password, "");
    assert_string_equal(c.redis_username, "");
    assert_string_equal(c.publish_keys, "");
    assert_string_equal(c.redis_channel, "user-events");
    assert_int_equal(c.history_maxlen, 1000);
    assert_int_equal(c.firehose_maxlen, 10000);
    assert_int_equal(c.heartbeat_secs, 15);
    assert_int_equal(c.sse_retry_ms, 3000);
    assert_int_equal(c.http_threads, 2);
    assert_int_equal(c.max_connections, 10000);
    assert_int_equal(c.stream_queue_kib, 4096);
    assert_int_equal(c.writer_threads, 2);
    assert_int_equal(c.fanout_threads, 1);
    assert_int_equal(c.fanout_uring, 1);
    assert_int_equal(c.publish_backlog, 64);
    assert_int_equal(c.publish_wait_ms, 1000);
    assert_int_equal(c.redis_timeout_ms, 500);
    assert_int_equal(c.log_level, LOG_LEVEL_INFO);
    /* SERVER_ID defaults to the host name. */
    assert_int_equal(gethostname(host, sizeof(host)), 0);
    host[sizeof(host) - 1] = '\0';
    assert_string_equal(c.server_id, host[0] != '\0' ? host : "ssegate");
}

static void
test_env_overrides_defaults(void **state)
{
    const char *env[] = {
        "LISTEN_ADDR=127.0.0.1", "PORT=4000", "SERVER_ID=backend-1",
        "REDIS_HOST=redis", "REDIS_PORT=6380", "REDIS_PASSWORD=s3cret",
        "REDIS_CHANNEL=ch", "HISTORY_MAXLEN=5", "FIREHOSE_MAXLEN=6",
        "HEARTBEAT_SECS=7", "SSE_RETRY_MS=0", "HTTP_THREADS=64",
        "MAX_CONNECTIONS=16", "STREAM_QUEUE_KIB=1048576", "REDIS_TIMEOUT_MS=60000",
        "LOG_LEVEL=debug", "UNRELATED=x", NULL
    };
    struct config c;
    char err[256];

    (void)state;
    assert_int_equal(load(&c, env, NULL, err, sizeof(err)), CONFIG_OK);
    assert_string_equal(c.listen_addr, "127.0.0.1");
    assert_int_equal(c.port, 4000);
    assert_string_equal(c.server_id, "backend-1");
    assert_string_equal(c.redis_host, "redis");
    assert_int_equal(c.redis_port, 6380);
    assert_string_equal(c.redis_password, "s3cret");
    assert_string_equal(c.redis_channel, "ch");
    assert_int_equal(c.history_maxlen, 5);
    assert_int_equal(c.firehose_maxlen, 6);
    assert_int_equal(c.heartbeat_secs, 7);
    assert_int_equal(c.sse_retry_ms, 0);
    assert_int_equal(c.http_threads, 64);
    assert_int_equal(c.max_connections, 16);
    assert_int_equal(c.stream_queue_kib, 1048576);
    assert_int_equal(c.redis_timeout_ms, 60000);
    assert_int_equal(c.log_level, LOG_LEVEL_DEBUG);
}

static void
test_flags_override_env(void **state)
{
    const char *env[] = { "PORT=4000", "REDIS_PORT=6380", "SERVER_ID=from-env",
                          "LOG_LEVEL=debug", "HEARTBEAT_SECS=9", NULL };
    const char *args[] = { "--port", "5000", "--redis-port=7000",
                           "--server-id=a=b", "--log-level", "error",
                           "--listen-addr=10.0.0.1", "--port", "5001", NULL };
    struct config c;
    char err[256];

    (void)state;
    assert_int_equal(load(&c, env, args, err, sizeof(err)), CONFIG_OK);
    assert_int_equal(c.port, 5001);                 /* the last flag wins */
    assert_int_equal(c.redis_port, 7000);
    assert_string_equal(c.server_id, "a=b");        /* split at the first '=' */
    assert_int_equal(c.log_level, LOG_LEVEL_ERROR);
    assert_string_equal(c.listen_addr, "10.0.0.1");
    assert_int_equal(c.heartbeat_secs, 9);          /* no flag: the variable */
}

static void
test_empty_variable_is_unset(void **state)
{
    const char *env[] = { "PORT=", "SERVER_ID=", "LOG_LEVEL=", "REDIS_HOST=", NULL };
    const char *args[] = { "--redis-password=", NULL };
    struct config c;
    char err[256];

    (void)state;
    assert_int_equal(load(&c, env, args, err, sizeof(err)), CONFIG_OK);
    assert_int_equal(c.port, 3000);
    assert_true(strlen(c.server_id) > 0);
    assert_int_equal(c.log_level, LOG_LEVEL_INFO);
    assert_string_equal(c.redis_host, "127.0.0.1");
    assert_string_equal(c.redis_password, "");      /* an empty flag is a value */
}

static void
test_bad_numbers(void **state)
{
    const char *abc[] = { "PORT=abc", NULL }, *big[] = { "PORT=70000", NULL },
               *zero[] = { "PORT=0", NULL }, *neg[] = { "PORT=-1", NULL },
               *plus[] = { "PORT=+80", NULL }, *lead[] = { "PORT= 80", NULL },
               *trail[] = { "PORT=80 ", NULL }, *hex[] = { "PORT=0x50", NULL },
               *frac[] = { "REDIS_PORT=1.5", NULL }, *hist0[] = { "HISTORY_MAXLEN=0", NULL },
               *huge[] = { "HEARTBEAT_SECS=99999999999999999999999", NULL },
               *conn[] = { "MAX_CONNECTIONS=15", NULL }, *nl[] = { "PORT=8\n0", NULL },
               *wrap[] = { "PORT=18446744073709551696", NULL };
    char long_value[100];
    const char *long_env[] = { long_value, NULL };
    const char *flag_abc[] = { "--port", "abc", NULL }, *flag_eq[] = { "--port=70000", NULL },
               *flag_empty[] = { "--http-threads=", NULL };

    (void)state;
    expect_error(abc, NULL, "PORT: 'abc' is not a number in 1..65535");
    expect_error(big, NULL, "PORT: '70000' is out of range 1..65535");
    expect_error(zero, NULL, "PORT: '0' is out of range 1..65535");
    expect_error(neg, NULL, "PORT: '-1' is not a number in 1..65535");
    expect_error(plus, NULL, "PORT: '+80' is not a number in 1..65535");
    expect_error(lead, NULL, "PORT: ' 80' is not a number in 1..65535");
    expect_error(trail, NULL, "PORT: '80 ' is not a number in 1..65535");
    expect_error(hex, NULL, "PORT: '0x50' is not a number in 1..65535");
    expect_error(frac, NULL, "REDIS_PORT: '1.5' is not a number in 1..65535");
    expect_error(hist0, NULL, "HISTORY_MAXLEN: '0' is out of range 1..1000000");
    expect_error(huge, NULL,
                 "HEARTBEAT_SECS: '99999999999999999999999' is out of range 1..3600");
    expect_error(conn, NULL, "MAX_CONNECTIONS: '15' is out of range 16..1000000");
    /* 2^64 + 80 must not wrap around to port 80. */
    expect_error(wrap, NULL, "PORT: '18446744073709551696' is out of range 1..65535");
    /* The error stays one line whatever the value holds, and short. */
    expect_error(nl, NULL, "PORT: '8?0' is not a number in 1..65535");
    memset(long_value, 'z', sizeof(long_value) - 1);
    long_value[sizeof(long_value) - 1] = '\0';
    memcpy(long_value, "PORT=", 5);
    expect_error(long_env, NULL, "PORT: 'zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz...' "
                                 "is not a number in 1..65535");
    /* A bad flag value names the flag, not the variable. */
    expect_error(NULL, flag_abc, "--port: 'abc' is not a number in 1..65535");
    expect_error(NULL, flag_eq, "--port: '70000' is out of range 1..65535");
    expect_error(NULL, flag_empty, "--http-threads: '' is not a number in 1..64");
}

static void
test_bad_strings(void **state)
{
    char long_id[300], long_env[320];
    const char *env_long[] = { long_env, NULL };
    const char *flag_long[] = { "--server-id", long_id, NULL };
    const char *level[] = { "LOG_LEVEL=loud", NULL }, *level_case[] = { "LOG_LEVEL=INFO", NULL };
    const char *addr[] = { "LISTEN_ADDR=nowhere", NULL }, *addr6[] = { "LISTEN_ADDR=::1", NULL },
               *addr3[] = { "LISTEN_ADDR=1.2.3", NULL };
    const char *flag_level[] = { "--log-level=verbose", NULL };
    const char *flag_empty_id[] = { "--server-id=", NULL };
    const char *own_channel[] = { "REDIS_CHANNEL=ssegate:events", NULL },
               *own_prefix[] = { "--redis-channel=ssegate:mine", NULL },
               *near_prefix[] = { "REDIS_CHANNEL=ssegate-events", NULL };
    const char *own_topics[] = { "TOPIC_CHANNEL_PREFIX=ssegate:events:", NULL },
               *own_topics2[] = { "TOPIC_CHANNEL_PREFIX=ssegate:eventsX", NULL },
               *topics_ok[] = { "TOPIC_CHANNEL_PREFIX=rooms.", NULL };
    char fits[128], fits_env[140];
    const char *env_fits[] = { fits_env, NULL };
    struct config c;
    char err[256];

    (void)state;
    memset(long_id, 'x', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    snprintf(long_env, sizeof(long_env), "SERVER_ID=%s", long_id);
    expect_error(env_long, NULL, "SERVER_ID: 299 bytes is longer than the 127 allowed");
    expect_error(NULL, flag_long, "--server-id: 299 bytes is longer than the 127 allowed");
    /* 127 bytes is the most that fits with its NUL. */
    memset(fits, 'y', sizeof(fits) - 1);
    fits[sizeof(fits) - 1] = '\0';
    snprintf(fits_env, sizeof(fits_env), "SERVER_ID=%s", fits);
    assert_int_equal(load(&c, env_fits, NULL, err, sizeof(err)), CONFIG_OK);
    assert_string_equal(c.server_id, fits);

    expect_error(level, NULL, "LOG_LEVEL: 'loud' is not one of debug, info, warn, error");
    expect_error(level_case, NULL, "LOG_LEVEL: 'INFO' is not one of debug, info, warn, error");
    expect_error(NULL, flag_level,
                 "--log-level: 'verbose' is not one of debug, info, warn, error");
    expect_error(addr, NULL, "LISTEN_ADDR: 'nowhere' is not an IPv4 address");
    expect_error(addr6, NULL, "LISTEN_ADDR: '::1' is not an IPv4 address");
    expect_error(addr3, NULL, "LISTEN_ADDR: '1.2.3' is not an IPv4 address");
    expect_error(NULL, flag_empty_id, "--server-id: must not be empty");
    /* REDIS_CHANNEL is anybody's: never the gateways' own channel, nor
     * anything else in their namespace. */
    expect_error(own_channel, NULL, "REDIS_CHANNEL: 'ssegate:events' is in ssegate:*, the "
                 "gateways' own names; pick a channel outside it");
    expect_error(NULL, own_prefix, "--redis-channel: 'ssegate:mine' is in ssegate:*, the "
                 "gateways' own names; pick a channel outside it");
    /* TOPIC_CHANNEL_PREFIX may be in ssegate:* (its default is), never
     * over the gateways' own channels, whose ids streams trust. */
    expect_error(own_topics, NULL, "TOPIC_CHANNEL_PREFIX: 'ssegate:events:' starts with "
                 "ssegate:events, the gateways' own channels; pick a prefix outside it");
    expect_error(own_topics2, NULL, "TOPIC_CHANNEL_PREFIX: 'ssegate:eventsX' starts with "
                 "ssegate:events, the gateways' own channels; pick a prefix outside it");
    assert_int_equal(load(&c, topics_ok, NULL, err, sizeof(err)), CONFIG_OK);
    assert_string_equal(c.topic_channel_prefix, "rooms.");
    assert_int_equal(load(&c, NULL, NULL, err, sizeof(err)), CONFIG_OK);
    assert_string_equal(c.topic_channel_prefix, "ssegate:topic:");
    assert_int_equal(c.max_topics_per_stream, 32);
    assert_int_equal(c.topic_history_maxlen, 1000);
    assert_int_equal(load(&c, near_prefix, NULL, err, sizeof(err)), CONFIG_OK);
    assert_string_equal(c.redis_channel, "ssegate-events");
}

static void
test_bad_flags(void **state)
{
    const char *unknown[] = { "--frobnicate", NULL }, *unknown_eq[] = { "--frob=1", NULL },
               *positional[] = { "extra", NULL }, *single[] = { "-p", "80", NULL },
               *novalue[] = { "--port", NULL }, *novalue2[] = { "--port=1", "--redis-host", NULL },
               *env_name[] = { "--PORT=1", NULL }, *prefix[] = { "--por=1", NULL },
               *longer[] = { "--portx", "1", NULL },
               *handoff[] = { "--stream-handoff=1", NULL },
               *pipeline[] = { "--publish-pipeline", "1", NULL };

    (void)state;
    expect_error(NULL, unknown, "--frobnicate: unknown option (see --help)");
    expect_error(NULL, unknown_eq, "--frob=1: unknown option (see --help)");
    expect_error(NULL, positional, "extra: unknown option (see --help)");
    expect_error(NULL, single, "-p: unknown option (see --help)");
    expect_error(NULL, novalue, "--port: needs a value");
    expect_error(NULL, novalue2, "--redis-host: needs a value");
    expect_error(NULL, env_name, "--PORT=1: unknown option (see --help)");
    /* No abbreviations: a new flag must not change what an old one meant. */
    expect_error(NULL, prefix, "--por=1: unknown option (see --help)");
    expect_error(NULL, longer, "--portx: unknown option (see --help)");
    /* Removed settings: streams are always handed off, publishes always
     * pipelined. Their flags are refused, not silently ignored. */
    expect_error(NULL, handoff, "--stream-handoff=1: unknown option (see --help)");
    expect_error(NULL, pipeline, "--publish-pipeline: unknown option (see --help)");
}

static void
test_help_and_version(void **state)
{
    const char *help[] = { "--help", NULL }, *h[] = { "-h", NULL },
               *version[] = { "--version", NULL }, *v[] = { "-V", NULL },
               *late[] = { "--port", "abc", "--help", NULL },
               *as_value[] = { "--server-id", "--help", NULL };
    const char *bad_env[] = { "PORT=abc", NULL };
    struct config c;
    char err[256];

    (void)state;
    assert_int_equal(load(&c, NULL, help, err, sizeof(err)), CONFIG_HELP);
    assert_int_equal(load(&c, NULL, h, err, sizeof(err)), CONFIG_HELP);
    assert_int_equal(load(&c, NULL, version, err, sizeof(err)), CONFIG_VERSION);
    assert_int_equal(load(&c, NULL, v, err, sizeof(err)), CONFIG_VERSION);
    /* --help works when a value is bad: that is when it is needed. */
    assert_int_equal(load(&c, bad_env, help, err, sizeof(err)), CONFIG_HELP);
    assert_int_equal(load(&c, NULL, late, err, sizeof(err)), CONFIG_HELP);
    /* A flag's value is never read as a flag. */
    assert_int_equal(load(&c, NULL, as_value, err, sizeof(err)), CONFIG_OK);
    assert_string_equal(c.server_id, "--help");
}

static void
test_error_buffer_is_bounded(void **state)
{
    const char *abc[] = { "PORT=abc", NULL };
    struct config c;
    char err[12];

    (void)state;
    memset(err, '#', sizeof(err));
    assert_int_equal(load(&c, abc, NULL, err, 8), CONFIG_ERROR);
    assert_string_equal(err, "PORT: '");
    assert_int_equal(err[8], '#');
}

/* Reads config_usage() into buf through a temporary file. */
/* RATE_LIMIT_*, TRUSTED_PROXIES, the per-client and per-user caps and
 * CORS_ORIGINS: off by default but the connection cap; every accepted
 * form; the one-line error for each bad one. */
static void
test_client_limits(void **state)
{
    const char *env[] = {
        "RATE_LIMIT_WRITES=100/10s", "RATE_LIMIT_STREAMS=5/1m",
        "TRUSTED_PROXIES=127.0.0.1/32, 10.0.0.0/8,fd00::/8",
        "MAX_STREAMS_PER_USER=3", "MAX_CONNECTIONS_PER_CLIENT=0",
        "CORS_ORIGINS=https://app.example.com,http://localhost:8080", NULL
    };
    static const struct { const char *v; unsigned n, w; } rates[] = {
        { "1/1s", 1, 1 }, { "10/s", 10, 1 }, { "100/10s", 100, 10 },
        { "2/3m", 2, 180 }, { "1000000/24h", 1000000, 86400 }, { "7/86400s", 7, 86400 },
        { "007/010s", 7, 10 },
    };
    const char *rate_bad[] = { "100", "100/", "/10s", "0/10s", "100/0s", "100/10",
                               "100/10x", "100/25h", "100/86401s", "1000001/1s",
                               "-1/10s", "1e3/10s", "100/10 s", " 100/10s", "100/10S",
                               "99999999999999999999/1s", NULL };
    struct config c;
    char err[256], want[256];

    (void)state;
    assert_int_equal(load(&c, NULL, NULL, err, sizeof(err)), CONFIG_OK);
    assert_int_equal(c.rate_limit_writes.n, 0);
    assert_int_equal(c.rate_limit_streams.n, 0);
    assert_int_equal(c.trusted_proxies.n, 0);
    assert_int_equal(c.max_streams_per_user, 0);
    assert_int_equal(c.max_connections_per_client, 256);
    assert_false(cors_enabled(&c.cors_origins));

    assert_int_equal(load(&c, env, NULL, err, sizeof(err)), CONFIG_OK);
    assert_int_equal(c.rate_limit_writes.n, 100);
    assert_int_equal(c.rate_limit_writes.window_s, 10);
    assert_int_equal(c.rate_limit_streams.n, 5);
    assert_int_equal(c.rate_limit_streams.window_s, 60);
    assert_int_equal(c.trusted_proxies.n, 3);
    assert_int_equal(c.max_streams_per_user, 3);
    assert_int_equal(c.max_connections_per_client, 0);
    assert_int_equal(c.cors_origins.n, 2);
    assert_string_equal(c.cors_origins.v[1], "http://localhost:8080");

    for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
        const char *args[] = { "--rate-limit-writes", rates[i].v, NULL };

        assert_int_equal(load(&c, NULL, args, err, sizeof(err)), CONFIG_OK);
        assert_int_equal(c.rate_limit_writes.n, rates[i].n);
        assert_int_equal(c.rate_limit_writes.window_s, rates[i].w);
    }
    for (const char **v = rate_bad; *v != NULL; v++) {
        char var[64];
        const char *e[] = { var, NULL };
        char shown[48];

        snprintf(var, sizeof(var), "RATE_LIMIT_STREAMS=%s", *v);
        snprintf(shown, sizeof(shown), "%.44s%s", *v, strlen(*v) > 44 ? "..." : "");
        snprintf(want, sizeof(want), "RATE_LIMIT_STREAMS: '%s' is not N/Ws, N requests "
                 "(1..1000000) per W seconds (s, m or h; at most a day), e.g. 100/10s",
                 shown);
        expect_error(e, NULL, want);
    }
    {
        const char *bad_cidr[] = { "TRUSTED_PROXIES=127.0.0.1/32,localhost", NULL };
        const char *bad_bits[] = { "TRUSTED_PROXIES=10.0.0.1/8", NULL };
        const char *flag[] = { "--trusted-proxies=10.0.0.0/8,", NULL };
        const char *bad_origin[] = { "CORS_ORIGINS=https://app.example.com/", NULL };
        const char *bad_cap[] = { "MAX_CONNECTIONS_PER_CLIENT=1000001", NULL };

        expect_error(bad_cidr, NULL,
                     "TRUSTED_PROXIES: 'localhost' is not an IPv4 or IPv6 address");
        expect_error(bad_bits, NULL, "TRUSTED_PROXIES: '10.0.0.1/8' has bits set past its /8");
        expect_error(NULL, flag, "--trusted-proxies: an empty item in the list");
        expect_error(bad_origin, NULL,
                     "CORS_ORIGINS: 'https://app.example.com/' is not an origin like "
                     "https://app.example.com (lower case, no path, no trailing slash) or *");
        expect_error(bad_cap, NULL,
                     "MAX_CONNECTIONS_PER_CLIENT: '1000001' is out of range 0..1000000");
    }
}

static void
read_usage(char *buf, size_t cap)
{
    FILE *f = tmpfile();
    size_t n;

    assert_non_null(f);
    config_usage(f, "ssegate");
    rewind(f);
    n = fread(buf, 1, cap - 1, f);
    assert_true(n > 0 && n < cap - 1);
    buf[n] = '\0';
    fclose(f);
}

static void
test_usage(void **state)
{
    static const char *const vars[] = {
        "LISTEN_ADDR", "PORT", "SERVER_ID", "REDIS_HOST", "REDIS_PORT",
        "REDIS_PASSWORD", "REDIS_CHANNEL", "HISTORY_MAXLEN", "FIREHOSE_MAXLEN",
        "HEARTBEAT_SECS", "SSE_RETRY_MS", "HTTP_THREADS", "MAX_CONNECTIONS",
        "STREAM_QUEUE_KIB", "WRITER_THREADS", "FANOUT_THREADS", "FANOUT_URING",
        "PUBLISH_BACKLOG", "PUBLISH_WAIT_MS", "REDIS_TIMEOUT_MS", "LOG_LEVEL",
        "RATE_LIMIT_WRITES", "RATE_LIMIT_STREAMS", "TRUSTED_PROXIES",
        "MAX_STREAMS_PER_USER", "MAX_CONNECTIONS_PER_CLIENT", "CORS_ORIGINS",
    };
    char buf[16384];
    const char *line;
    long column = -1;

    (void)state;
    read_usage(buf, sizeof(buf));
    assert_non_null(strstr(buf, "usage: ssegate"));
    assert_non_null(strstr(buf, "  --port=N "));
    assert_non_null(strstr(buf, "HTTP port (1..65535, default 3000)\n"));
    assert_non_null(strstr(buf, "(default host name)\n"));
    assert_non_null(strstr(buf, "-h, --help"));
    assert_non_null(strstr(buf, "-V, --version"));
    assert_null(strstr(buf, "STREAM_HANDOFF"));
    assert_null(strstr(buf, "PUBLISH_PIPELINE"));
    /* Every variable appears, on its flag's line, in one aligned column. */
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        char needle[64];
        const char *at;

        snprintf(needle, sizeof(needle), " %s ", vars[i]);
        assert_non_null(at = strstr(buf, needle));
        for (line = at; line > buf && line[-1] != '\n'; line--)
            ;
        assert_memory_equal(line, "  --", 4);
        if (column == -1)
            column = at - line;
        assert_int_equal(at - line, column);
    }
}

/* Stream tokens: the secret's length is checked and never shown. */
static void
test_auth_settings(void **state)
{
    const char *secret32[] = { "AUTH_SECRET=0123456789abcdef0123456789abcdef",
                               "AUTH_TOKEN_TTL_SECS=60", "AUTH_ISSUER=https://idp",
                               "AUTH_AUDIENCE=ssegate", "AUTH_PUBLIC_KEY_FILE=/k.pem", NULL };
    const char *secret31[] = { "AUTH_SECRET=0123456789abcdef0123456789abcde", NULL };
    const char *ttl0[] = { "AUTH_TOKEN_TTL_SECS=0", NULL };
    char big[600], flag[620];
    const char *args[] = { flag, NULL };
    struct config c;
    char err[256];

    (void)state;
    assert_int_equal(load(&c, NULL, NULL, err, sizeof(err)), CONFIG_OK);
    assert_string_equal(c.auth_secret, "");
    assert_string_equal(c.auth_public_key_file, "");
    assert_string_equal(c.auth_issuer, "");
    assert_string_equal(c.auth_audience, "");
    assert_int_equal(c.auth_token_ttl_secs, 3600);
    assert_int_equal(load(&c, secret32, NULL, err, sizeof(err)), CONFIG_OK);
    assert_string_equal(c.auth_secret, "0123456789abcdef0123456789abcdef");
    assert_int_equal(c.auth_token_ttl_secs, 60);
    assert_string_equal(c.auth_issuer, "https://idp");
    assert_string_equal(c.auth_audience, "ssegate");
    assert_string_equal(c.auth_public_key_file, "/k.pem");
    expect_error(secret31, NULL, "AUTH_SECRET: 31 bytes is shorter than the 32 required");
    memset(big, 'k', 513);
    big[513] = '\0';
    snprintf(flag, sizeof(flag), "--auth-secret=%s", big);
    expect_error(NULL, args, "--auth-secret: 513 bytes is longer than the 512 allowed");
    snprintf(flag, sizeof(flag), "--auth-secret=short");
    expect_error(NULL, args, "--auth-secret: 5 bytes is shorter than the 32 required");
    expect_error(ttl0, NULL, "AUTH_TOKEN_TTL_SECS: '0' is out of range 1..2592000");
}

static enum config_result
load_token(struct config *cfg, struct config_token *t, const char *const *env,
           const char *const *args, char *err, size_t errlen)
{
    char *argv[16] = { "token" };
    int argc = 1;

    for (; args[argc - 1] != NULL; argc++) {
        assert_true(argc < 15);
        argv[argc] = (char *)args[argc - 1];
    }
    argv[argc] = NULL;
    fake_env = env;
    return config_load_token(cfg, t, argc, argv, fake_getenv, err, errlen);
}

static void
expect_token_error(const char *const *args, const char *want)
{
    struct config c;
    struct config_token t;
    char err[256];

    assert_int_equal(load_token(&c, &t, NULL, args, err, sizeof(err)), CONFIG_ERROR);
    assert_string_equal(err, want);
}

/* `ssegate token`: its own flags, and every setting as usual. */
static void
test_token_args(void **state)
{
    const char *env[] = { "AUTH_TOKEN_TTL_SECS=120", "PORT=4000", NULL };
    struct config c;
    struct config_token t;
    char err[256];

    (void)state;
    assert_int_equal(load_token(&c, &t, NULL, (const char *[]){ "--sub", "42", NULL },
                                err, sizeof(err)), CONFIG_OK);
    assert_string_equal(t.sub, "42");
    assert_int_equal(t.ttl_secs, 3600);
    assert_false(t.firehose);
    assert_int_equal(load_token(&c, &t, env,
                                (const char *[]){ "--port", "5000", "--sub=svc", "--firehose",
                                                  "--auth-secret", "0123456789abcdef0123456789abcdef",
                                                  NULL }, err, sizeof(err)), CONFIG_OK);
    assert_string_equal(t.sub, "svc");
    assert_int_equal(t.ttl_secs, 120);          /* AUTH_TOKEN_TTL_SECS */
    assert_true(t.firehose);
    assert_int_equal(c.port, 5000);
    assert_string_equal(c.auth_secret, "0123456789abcdef0123456789abcdef");
    assert_int_equal(load_token(&c, &t, env, (const char *[]){ "--ttl=7", "--sub", "1", NULL },
                                err, sizeof(err)), CONFIG_OK);
    assert_int_equal(t.ttl_secs, 7);
    assert_int_equal(load_token(&c, &t, NULL, (const char *[]){ "--help", NULL }, err,
                                sizeof(err)), CONFIG_HELP);
    expect_token_error((const char *[]){ NULL }, "--sub: required (the user id the token is for)");
    expect_token_error((const char *[]){ "--sub", "a b", NULL },
                       "--sub: 'a b' is not 1 to 64 visible ASCII characters");
    expect_token_error((const char *[]){ "--sub", NULL }, "--sub: needs a value");
    expect_token_error((const char *[]){ "--sub", "1", "--ttl", "0", NULL },
                       "--ttl: '0' is not a number in 1..2592000");
    expect_token_error((const char *[]){ "--sub", "1", "--ttl", "2592001", NULL },
                       "--ttl: '2592001' is not a number in 1..2592000");
    expect_token_error((const char *[]){ "--sub", "1", "--firehose=yes", NULL },
                       "--firehose: takes no value");
    expect_token_error((const char *[]){ "--sub", "1", "--subject", "2", NULL },
                       "--subject: unknown option (see --help)");
}

/* PUBLISH_KEYS: checked whole at start-up, and never echoed (a secret). */
static void
test_publish_keys(void **state)
{
    static const char k16[] = "abcdefghij012345", k128[] =
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    char env0[1200], many[1200];
    const char *env[] = { env0, NULL };
    struct config c;
    char err[256];

    (void)state;
    snprintf(env0, sizeof(env0), "PUBLISH_KEYS=%s,%s", k16, k128);
    assert_int_equal(load(&c, env, NULL, err, sizeof(err)), CONFIG_OK);
    assert_string_equal(c.publish_keys, strchr(env0, '=') + 1);
    snprintf(env0, sizeof(env0), "PUBLISH_KEYS=A-Za-z0-9._~+/=x");
    assert_int_equal(load(&c, env, NULL, err, sizeof(err)), CONFIG_OK);
    expect_error((const char *[]){ "PUBLISH_KEYS=short-secret", NULL }, NULL,
                 "PUBLISH_KEYS: key 1 has 12 characters, not 16 to 128");
    expect_error((const char *[]){ "PUBLISH_KEYS=abcdefghij012345,", NULL }, NULL,
                 "PUBLISH_KEYS: key 2 has 0 characters, not 16 to 128");
    expect_error((const char *[]){ "PUBLISH_KEYS=abcdefghij012345,,abcdefghij012345", NULL },
                 NULL, "PUBLISH_KEYS: key 2 has 0 characters, not 16 to 128");
    expect_error((const char *[]){ "PUBLISH_KEYS=abcdefghij012345, abcdefghij012345", NULL },
                 NULL, "PUBLISH_KEYS: key 2 has a character outside "
                       "A-Z a-z 0-9 - . _ ~ + / =");
    expect_error(NULL, (const char *[]){ "--publish-keys", "secret\"secret\"secret", NULL },
                 "--publish-keys: key 1 has a character outside "
                 "A-Z a-z 0-9 - . _ ~ + / =");
    snprintf(env0, sizeof(env0), "PUBLISH_KEYS=%s0", k128);
    assert_int_equal(load(&c, env, NULL, err, sizeof(err)), CONFIG_ERROR);
    assert_string_equal(err, "PUBLISH_KEYS: key 1 has 129 characters, not 16 to 128");
    many[0] = '\0';
    for (int i = 0; i < CONFIG_PUBLISH_KEYS_COUNT + 1; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s%s",
                 i ? "," : "", k16);
    snprintf(env0, sizeof(env0), "PUBLISH_KEYS=%s", many);
    assert_int_equal(load(&c, env, NULL, err, sizeof(err)), CONFIG_ERROR);
    assert_string_equal(err, "PUBLISH_KEYS: more than 8 keys");
    assert_null(strstr(err, k16));
}

static void
test_redis_username(void **state)
{
    struct config c;
    char err[256];

    (void)state;
    assert_int_equal(load(&c, (const char *[]){ "REDIS_USERNAME=gateway", NULL },
                          (const char *[]){ "--redis-password=pw", NULL }, err,
                          sizeof(err)), CONFIG_OK);
    assert_string_equal(c.redis_username, "gateway");
    assert_string_equal(c.redis_password, "pw");
}

/* REDIS_SENTINELS, REDIS_MASTER_NAME, REDIS_WAIT_REPLICAS: parsed, and
 * refused with REDIS_HOST or REDIS_PORT (an empty one is unset). */
static void
test_redis_sentinels(void **state)
{
    struct config c;
    char err[256];

    (void)state;
    assert_int_equal(load(&c, NULL, NULL, err, sizeof(err)), CONFIG_OK);
    assert_int_equal(c.redis_sentinels.n, 0);
    assert_string_equal(c.redis_master_name, "mymaster");
    assert_int_equal(c.redis_wait_replicas, 0);
    assert_int_equal(load(&c, (const char *[]){
                              "REDIS_SENTINELS=10.0.0.1:26379,sentinel-b:26380",
                              "REDIS_HOST=", "REDIS_MASTER_NAME=cache",
                              "REDIS_WAIT_REPLICAS=2", NULL },
                          NULL, err, sizeof(err)), CONFIG_OK);
    assert_int_equal(c.redis_sentinels.n, 2);
    assert_string_equal(c.redis_sentinels.at[0].host, "10.0.0.1");
    assert_int_equal(c.redis_sentinels.at[0].port, 26379);
    assert_string_equal(c.redis_sentinels.at[1].host, "sentinel-b");
    assert_int_equal(c.redis_sentinels.at[1].port, 26380);
    assert_string_equal(c.redis_master_name, "cache");
    assert_int_equal(c.redis_wait_replicas, 2);
    expect_error((const char *[]){ "REDIS_SENTINELS=a:1", "REDIS_PORT=6379", NULL }, NULL,
                 "REDIS_SENTINELS and REDIS_PORT are both set: with sentinels the "
                 "master's address comes from them; unset one");
    expect_error((const char *[]){ "REDIS_SENTINELS=a:1", NULL },
                 (const char *[]){ "--redis-host", "h", NULL },
                 "REDIS_SENTINELS and REDIS_HOST are both set: with sentinels the "
                 "master's address comes from them; unset one");
    expect_error((const char *[]){ "REDIS_SENTINELS=a", NULL }, NULL,
                 "REDIS_SENTINELS: sentinel 1 is not host:port (want host:port,host:port,...)");
    expect_error((const char *[]){ "REDIS_SENTINELS=a:1,:2", NULL }, NULL,
                 "REDIS_SENTINELS: sentinel 2 is not host:port (want host:port,host:port,...)");
    expect_error((const char *[]){ "REDIS_SENTINELS=a:", NULL }, NULL,
                 "REDIS_SENTINELS: sentinel 1 is not host:port (want host:port,host:port,...)");
    expect_error((const char *[]){ "REDIS_SENTINELS=a:65536", NULL }, NULL,
                 "REDIS_SENTINELS: sentinel 1: port is not a number in 1..65535 "
                 "(want host:port,host:port,...)");
    expect_error((const char *[]){ "REDIS_SENTINELS=a:+1", NULL }, NULL,
                 "REDIS_SENTINELS: sentinel 1: port is not a number in 1..65535 "
                 "(want host:port,host:port,...)");
    expect_error((const char *[]){ "REDIS_SENTINELS=a:1,", NULL }, NULL,
                 "REDIS_SENTINELS: a trailing comma (want host:port,host:port,...)");
    expect_error((const char *[]){ "REDIS_WAIT_REPLICAS=65", NULL }, NULL,
                 "REDIS_WAIT_REPLICAS: '65' is out of range 0..64");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_env_overrides_defaults),
        cmocka_unit_test(test_flags_override_env),
        cmocka_unit_test(test_empty_variable_is_unset),
        cmocka_unit_test(test_bad_numbers),
        cmocka_unit_test(test_bad_strings),
        cmocka_unit_test(test_bad_flags),
        cmocka_unit_test(test_redis_sentinels),
        cmocka_unit_test(test_help_and_version),
        cmocka_unit_test(test_error_buffer_is_bounded),
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_auth_settings),
        cmocka_unit_test(test_token_args),
        cmocka_unit_test(test_publish_keys),
        cmocka_unit_test(test_redis_username),
        cmocka_unit_test(test_client_limits),
    };

    /* A hang (a deadlock, an endless loop) must fail the test, not stall
     * CI: nothing here catches SIGALRM, so it kills the process and the
     * TAP driver reports it. The run takes under a second, even with ASan. */
    alarm(60);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
