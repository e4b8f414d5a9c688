/* config.c -- every setting from its environment variable or its flag,
 * validated once at start-up. One table row per setting drives the
 * defaults, the parsing, the error messages and --help, so they cannot
 * drift apart. Pure: reads the environment only through the caller's
 * getenv function. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

enum config_kind {
    KIND_PORT,          /* uint16_t, min..max */
    KIND_UINT,          /* unsigned, min..max */
    KIND_STRING,        /* char[size] */
    KIND_IPV4,          /* char[size], an IPv4 literal */
    KIND_LOG_LEVEL      /* int, debug|info|warn|error */
};

struct config_option {
    const char *env;
    const char *flag;
    enum config_kind kind;
    const char *def;            /* NULL: the host name */
    unsigned long min, max;     /* numbers only */
    size_t offset, size;        /* the field in struct config */
    const char *help;
};

#define FIELD(f) offsetof(struct config, f), sizeof(((struct config *)0)->f)

static const struct config_option config_options[] = {
    { "PORT", "--port", KIND_PORT, "3000", 1, 65535, FIELD(port),
      "HTTP port" },
    { "LISTEN_ADDR", "--listen-addr", KIND_IPV4, "0.0.0.0", 0, 0, FIELD(listen_addr),
      "IPv4 address to listen on" },
    { "SERVER_ID", "--server-id", KIND_STRING, NULL, 0, 0, FIELD(server_id),
      "instance name shown in events and /health" },
    { "REDIS_HOST", "--redis-host", KIND_STRING, "127.0.0.1", 0, 0, FIELD(redis_host),
      "Redis host" },
    { "REDIS_PORT", "--redis-port", KIND_PORT, "6379", 1, 65535, FIELD(redis_port),
      "Redis port" },
    { "REDIS_PASSWORD", "--redis-password", KIND_STRING, "", 0, 0, FIELD(redis_password),
      "Redis AUTH password (empty: none)" },
    { "REDIS_CHANNEL", "--redis-channel", KIND_STRING, "user-events", 0, 0, FIELD(redis_channel),
      "pub/sub channel every instance shares" },
    { "HISTORY_MAXLEN", "--history-maxlen", KIND_UINT, "1000", 1, 1000000, FIELD(history_maxlen),
      "events kept per user for Last-Event-ID resume" },
    { "FIREHOSE_MAXLEN", "--firehose-maxlen", KIND_UINT, "10000", 1, 1000000, FIELD(firehose_maxlen),
      "events kept for firehose resume" },
    { "HEARTBEAT_SECS", "--heartbeat-secs", KIND_UINT, "15", 1, 3600, FIELD(heartbeat_secs),
      "seconds between ': ping' comments" },
    { "SSE_RETRY_MS", "--sse-retry-ms", KIND_UINT, "3000", 0, 3600000, FIELD(sse_retry_ms),
      "reconnect delay sent to clients (retry:)" },
    { "HTTP_THREADS", "--http-threads", KIND_UINT, "8", 1, 64, FIELD(http_threads),
      "HTTP worker threads" },
    { "MAX_CONNECTIONS", "--max-connections", KIND_UINT, "10000", 16, 1000000, FIELD(max_connections),
      "most simultaneous connections" },
    { "STREAM_QUEUE_KIB", "--stream-queue-kib", KIND_UINT, "4096", 16, 1048576, FIELD(stream_queue_kib),
      "unsent KiB per stream before it is closed as slow" },
    { "REDIS_TIMEOUT_MS", "--redis-timeout-ms", KIND_UINT, "500", 10, 60000, FIELD(redis_timeout_ms),
      "Redis command timeout before a 503" },
    { "LOG_LEVEL", "--log-level", KIND_LOG_LEVEL, "info", 0, 0, FIELD(log_level),
      "debug, info, warn or error" },
};

#define CONFIG_NOPTIONS (sizeof(config_options) / sizeof(config_options[0]))

/* Parses decimal digits only (no sign, space or suffix) into *out. */
static int
config_parse_number(const char *v, unsigned long *out)
{
    size_t n = strlen(v);

    if (n == 0 || n > 9 || strspn(v, "0123456789") != n)
        return -1;
    *out = strtoul(v, NULL, 10);
    return 0;
}

/* Stores value v of option o into cfg. name is what the user wrote (the
 * variable or the flag), for the one-line error. */
static int
config_set(struct config *cfg, const struct config_option *o, const char *name,
           const char *v, char *err, size_t errlen)
{
    void *field = (char *)cfg + o->offset;
    unsigned long n;
    struct in_addr addr;
    int level;

    switch (o->kind) {
    case KIND_PORT:
    case KIND_UINT:
        if (config_parse_number(v, &n) == -1) {
            snprintf(err, errlen, "%s: '%s' is not a number in %lu..%lu", name, v,
                     o->min, o->max);
            return -1;
        }
        if (n < o->min || n > o->max) {
            snprintf(err, errlen, "%s: '%s' is out of range %lu..%lu", name, v,
                     o->min, o->max);
            return -1;
        }
        if (o->kind == KIND_PORT)
            *(uint16_t *)field = (uint16_t)n;
        else
            *(unsigned *)field = (unsigned)n;
        return 0;
    case KIND_IPV4:
        if (inet_pton(AF_INET, v, &addr) != 1) {
            snprintf(err, errlen, "%s: '%s' is not an IPv4 address", name, v);
            return -1;
        }
        /* FALLTHROUGH */
    case KIND_STRING:
        if (strlen(v) >= o->size) {
            snprintf(err, errlen, "%s: longer than %zu characters", name, o->size - 1);
            return -1;
        }
        memcpy(field, v, strlen(v) + 1);
        return 0;
    case KIND_LOG_LEVEL:
        if ((level = log_parse_level(v)) < 0) {
            snprintf(err, errlen, "%s: '%s' is not one of debug, info, warn, error",
                     name, v);
            return -1;
        }
        *(int *)field = level;
        return 0;
    }
    return -1;
}

static const struct config_option *
config_find_flag(const char *arg, size_t len)
{
    for (size_t i = 0; i < CONFIG_NOPTIONS; i++) {
        const char *f = config_options[i].flag;

        if (strlen(f) == len && strncmp(f, arg, len) == 0)
            return &config_options[i];
    }
    return NULL;
}

static int
config_load_defaults(struct config *cfg, char *err, size_t errlen)
{
    char host[128];

    memset(cfg, 0, sizeof(*cfg));
    if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
        strcpy(host, "ssegate");
    host[sizeof(host) - 1] = '\0';
    for (size_t i = 0; i < CONFIG_NOPTIONS; i++) {
        const struct config_option *o = &config_options[i];

        if (config_set(cfg, o, o->env, o->def ? o->def : host, err, errlen) == -1)
            return -1;
    }
    return 0;
}

enum config_result
config_load(struct config *cfg, int argc, char **argv,
            config_getenv_fn getenv_fn, char *err, size_t errlen)
{
    if (config_load_defaults(cfg, err, errlen) == -1)
        return CONFIG_ERROR;
    for (size_t i = 0; i < CONFIG_NOPTIONS; i++) {
        const struct config_option *o = &config_options[i];
        const char *v = getenv_fn(o->env);

        /* An empty variable is unset, as in most shells' ${VAR:-default}. */
        if (v != NULL && v[0] != '\0' &&
            config_set(cfg, o, o->env, v, err, errlen) == -1)
            return CONFIG_ERROR;
    }
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a], *eq = strchr(arg, '='), *v;
        const struct config_option *o;

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
            return CONFIG_HELP;
        if (strcmp(arg, "--version") == 0 || strcmp(arg, "-V") == 0)
            return CONFIG_VERSION;
        o = config_find_flag(arg, eq ? (size_t)(eq - arg) : strlen(arg));
        if (o == NULL) {
            snprintf(err, errlen, "unknown option '%s' (see --help)", arg);
            return CONFIG_ERROR;
        }
        if (eq != NULL) {
            v = eq + 1;
        } else if (a + 1 < argc) {
            v = argv[++a];
        } else {
            snprintf(err, errlen, "%s: needs a value", o->flag);
            return CONFIG_ERROR;
        }
        if (config_set(cfg, o, o->flag, v, err, errlen) == -1)
            return CONFIG_ERROR;
    }
    return CONFIG_OK;
}

void
config_usage(FILE *out, const char *progname)
{
    fprintf(out, "usage: %s [options]\n"
                 "Every option is also an environment variable; options win.\n\n",
            progname);
    for (size_t i = 0; i < CONFIG_NOPTIONS; i++) {
        const struct config_option *o = &config_options[i];

        fprintf(out, "  %-20s %-17s %s (default: %s)\n", o->flag, o->env, o->help,
                o->def == NULL ? "host name" : o->def[0] ? o->def : "unset");
    }
    fprintf(out, "  %-20s %-17s %s\n  %-20s %-17s %s\n", "--help", "", "this list",
            "--version", "", "print the version");
}
