/* config.c -- every setting from its environment variable or its flag,
 * validated once at start-up into struct config. One table row per
 * setting drives the default, the parsing, the error message and the
 * --help line, so they cannot drift apart, and
 * tests/integration/test_config_docs.py holds env.example and the
 * README's table to --help. Pure: reads the environment only through the
 * caller's getenv function and allocates nothing. */
#include <arpa/inet.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

enum config_kind {
    CONFIG_KIND_PORT,       /* uint16_t in min..max */
    CONFIG_KIND_UINT,       /* unsigned in min..max */
    CONFIG_KIND_STRING,     /* char[size], non-empty when min is 1 */
    CONFIG_KIND_IPV4,       /* char[size], an IPv4 literal */
    CONFIG_KIND_LOG_LEVEL   /* int: debug|info|warn|error */
};

struct config_option {
    const char *env;
    const char *flag;
    enum config_kind kind;
    const char *def;            /* NULL: the host name */
    unsigned long min, max;     /* numbers: the range; strings: min 1 = not empty */
    size_t offset, size;        /* the field in struct config */
    const char *help;
};

#define CONFIG_FIELD(f) offsetof(struct config, f), sizeof(((struct config *)0)->f)

/* When gethostname() fails; SERVER_ID only has to tell instances apart. */
#define CONFIG_FALLBACK_SERVER_ID "ssegate"

static const struct config_option config_options[] = {
    { "LISTEN_ADDR", "--listen-addr", CONFIG_KIND_IPV4, "0.0.0.0", 0, 0,
      CONFIG_FIELD(listen_addr), "IPv4 address to listen on" },
    { "PORT", "--port", CONFIG_KIND_PORT, "3000", 1, 65535,
      CONFIG_FIELD(port), "HTTP port" },
    { "SERVER_ID", "--server-id", CONFIG_KIND_STRING, NULL, 1, 0,
      CONFIG_FIELD(server_id), "instance name in events and /health" },
    { "REDIS_HOST", "--redis-host", CONFIG_KIND_STRING, "127.0.0.1", 1, 0,
      CONFIG_FIELD(redis_host), "Redis host" },
    { "REDIS_PORT", "--redis-port", CONFIG_KIND_PORT, "6379", 1, 65535,
      CONFIG_FIELD(redis_port), "Redis port" },
    { "REDIS_PASSWORD", "--redis-password", CONFIG_KIND_STRING, "", 0, 0,
      CONFIG_FIELD(redis_password), "Redis AUTH password" },
    { "REDIS_CHANNEL", "--redis-channel", CONFIG_KIND_STRING, "user-events", 1, 0,
      CONFIG_FIELD(redis_channel), "pub/sub channel all instances share" },
    { "HISTORY_MAXLEN", "--history-maxlen", CONFIG_KIND_UINT, "1000", 1, 1000000,
      CONFIG_FIELD(history_maxlen), "events kept per user for resume" },
    { "FIREHOSE_MAXLEN", "--firehose-maxlen", CONFIG_KIND_UINT, "10000", 1, 1000000,
      CONFIG_FIELD(firehose_maxlen), "events kept for firehose resume" },
    { "HEARTBEAT_SECS", "--heartbeat-secs", CONFIG_KIND_UINT, "15", 1, 3600,
      CONFIG_FIELD(heartbeat_secs), "seconds between ': ping' comments" },
    { "SSE_RETRY_MS", "--sse-retry-ms", CONFIG_KIND_UINT, "3000", 0, 3600000,
      CONFIG_FIELD(sse_retry_ms), "reconnect delay sent as 'retry:'" },
    { "HTTP_THREADS", "--http-threads", CONFIG_KIND_UINT, "2", 1, 64,
      CONFIG_FIELD(http_threads), "HTTP worker threads" },
    { "MAX_CONNECTIONS", "--max-connections", CONFIG_KIND_UINT, "10000", 16, 1000000,
      CONFIG_FIELD(max_connections), "most simultaneous connections" },
    { "STREAM_QUEUE_KIB", "--stream-queue-kib", CONFIG_KIND_UINT, "4096", 16, 1048576,
      CONFIG_FIELD(stream_queue_kib), "unsent KiB before a slow stream is closed" },
    { "STREAM_WRITE_TIMEOUT_SECS", "--stream-write-timeout-secs", CONFIG_KIND_UINT, "30", 1, 3600,
      CONFIG_FIELD(stream_write_timeout_secs), "seconds a stream's socket may take no byte of its output before it is closed" },
    { "WRITER_THREADS", "--writer-threads", CONFIG_KIND_UINT, "2", 1, 64,
      CONFIG_FIELD(writer_threads), "stream writer loops" },
    { "FANOUT_THREADS", "--fanout-threads", CONFIG_KIND_UINT, "1", 0, 64,
      CONFIG_FIELD(fanout_threads), "threads that help send a large fan-out (0: none)" },
    { "FANOUT_URING", "--fanout-uring", CONFIG_KIND_UINT, "1", 0, 1,
      CONFIG_FIELD(fanout_uring), "1: a fan-out's writes go out through io_uring where the kernel allows it" },
    { "PUBLISH_BACKLOG", "--publish-backlog", CONFIG_KIND_UINT, "64", 1, 1000000,
      CONFIG_FIELD(publish_backlog), "own events not yet fanned out before a publish waits" },
    { "PUBLISH_WAIT_MS", "--publish-wait-ms", CONFIG_KIND_UINT, "1000", 0, 60000,
      CONFIG_FIELD(publish_wait_ms), "how long a publish waits for room before a 503" },
    { "IDEMPOTENCY_TTL_SECS", "--idempotency-ttl-secs", CONFIG_KIND_UINT, "86400", 1, 2592000,
      CONFIG_FIELD(idempotency_ttl_secs), "how long a write's Idempotency-Key keeps its first answer" },
    { "REQUEST_TIMEOUT_MS", "--request-timeout-ms", CONFIG_KIND_UINT, "10000", 100, 600000,
      CONFIG_FIELD(request_timeout_ms), "time a request's head, then its body, may take to arrive" },
    { "MAX_PENDING_BODY_KIB", "--max-pending-body-kib", CONFIG_KIND_UINT, "65536", 64, 4194304,
      CONFIG_FIELD(max_pending_body_kib), "KiB all request bodies being received may hold together; past it a new one gets 503" },
    { "REDIS_TIMEOUT_MS", "--redis-timeout-ms", CONFIG_KIND_UINT, "500", 10, 60000,
      CONFIG_FIELD(redis_timeout_ms), "Redis command timeout before a 503" },
    { "LOG_LEVEL", "--log-level", CONFIG_KIND_LOG_LEVEL, "info", 0, 0,
      CONFIG_FIELD(log_level), "debug, info, warn or error" },
};

#define CONFIG_NOPTIONS (sizeof(config_options) / sizeof(config_options[0]))

/* Decimal digits only: no sign, space or suffix, which strtoul would
 * accept. Too many digits saturate at ULONG_MAX, so the range check
 * reports "out of range" rather than "not a number". */
static int
config_parse_digits(const char *v, unsigned long *out)
{
    unsigned long n = 0;

    if (*v == '\0')
        return -1;
    for (; *v != '\0'; v++) {
        unsigned d;

        if (*v < '0' || *v > '9')
            return -1;
        d = (unsigned)(*v - '0');
        n = n > (ULONG_MAX - d) / 10 ? ULONG_MAX : n * 10 + d;
    }
    *out = n;
    return 0;
}

/* A bounded, printable copy of a user's value for a one-line error. */
static void
config_show(const char *v, char *out, size_t cap)
{
    size_t n = 0;

    for (; *v != '\0' && n + 4 < cap; v++)
        out[n++] = (unsigned char)*v < 0x20 || *v == 0x7f ? '?' : *v;
    if (*v != '\0') {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

/* Copies v into the char[o->size] at field, or fails naming the setting. */
static int
config_set_string(char *field, const struct config_option *o, const char *name,
                  const char *v, char *err, size_t errlen)
{
    size_t len = strlen(v);

    if (len >= o->size) {
        snprintf(err, errlen, "%s: %zu bytes is longer than the %zu allowed",
                 name, len, o->size - 1);
        return -1;
    }
    if (len < o->min) {
        snprintf(err, errlen, "%s: must not be empty", name);
        return -1;
    }
    memcpy(field, v, len + 1);
    return 0;
}

/* Stores value v of option o in cfg. name is what the user wrote, the
 * variable or the flag, so the error points at the thing to fix. */
static int
config_set(struct config *cfg, const struct config_option *o, const char *name,
           const char *v, char *err, size_t errlen)
{
    char *field = (char *)cfg + o->offset;
    char shown[48];
    unsigned long n;
    struct in_addr addr;
    int level;

    config_show(v, shown, sizeof(shown));
    switch (o->kind) {
    case CONFIG_KIND_PORT:
    case CONFIG_KIND_UINT:
        if (config_parse_digits(v, &n) == -1) {
            snprintf(err, errlen, "%s: '%s' is not a number in %lu..%lu",
                     name, shown, o->min, o->max);
            return -1;
        }
        if (n < o->min || n > o->max) {
            snprintf(err, errlen, "%s: '%s' is out of range %lu..%lu",
                     name, shown, o->min, o->max);
            return -1;
        }
        if (o->kind == CONFIG_KIND_PORT)
            *(uint16_t *)(void *)field = (uint16_t)n;
        else
            *(unsigned *)(void *)field = (unsigned)n;
        return 0;
    case CONFIG_KIND_IPV4:
        if (inet_pton(AF_INET, v, &addr) != 1) {
            snprintf(err, errlen, "%s: '%s' is not an IPv4 address", name, shown);
            return -1;
        }
        return config_set_string(field, o, name, v, err, errlen);
    case CONFIG_KIND_STRING:
        return config_set_string(field, o, name, v, err, errlen);
    case CONFIG_KIND_LOG_LEVEL:
        if ((level = log_parse_level(v)) < 0) {
            snprintf(err, errlen, "%s: '%s' is not one of debug, info, warn, error",
                     name, shown);
            return -1;
        }
        *(int *)(void *)field = level;
        return 0;
    }
    snprintf(err, errlen, "%s: unknown setting kind", name);
    return -1;
}

static const struct config_option *
config_find_flag(const char *arg, size_t len)
{
    for (size_t i = 0; i < CONFIG_NOPTIONS; i++) {
        const char *f = config_options[i].flag;

        if (strlen(f) == len && memcmp(f, arg, len) == 0)
            return &config_options[i];
    }
    return NULL;
}

/* Reads the flag at argv[*i] and its value ("--port=1" or "--port 1"),
 * leaving *i on the last word used. CONFIG_OK fills *opt and *value;
 * --help and --version return at once; anything else is CONFIG_ERROR. */
static enum config_result
config_next_flag(int argc, char **argv, int *i, const struct config_option **opt,
                 const char **value, char *err, size_t errlen)
{
    const char *arg = argv[*i], *eq = strchr(arg, '=');
    char shown[48];

    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
        return CONFIG_HELP;
    if (strcmp(arg, "--version") == 0 || strcmp(arg, "-V") == 0)
        return CONFIG_VERSION;
    if (strncmp(arg, "--", 2) != 0 ||
        (*opt = config_find_flag(arg, eq != NULL ? (size_t)(eq - arg) : strlen(arg))) == NULL) {
        config_show(arg, shown, sizeof(shown));
        snprintf(err, errlen, "%s: unknown option (see --help)", shown);
        return CONFIG_ERROR;
    }
    if (eq != NULL) {
        *value = eq + 1;
    } else if (*i + 1 < argc) {
        *value = argv[++*i];
    } else {
        snprintf(err, errlen, "%s: needs a value", (*opt)->flag);
        return CONFIG_ERROR;
    }
    return CONFIG_OK;
}

static int
config_load_defaults(struct config *cfg, char *err, size_t errlen)
{
    char host[sizeof(cfg->server_id)];

    memset(cfg, 0, sizeof(*cfg));
    /* gethostname() may truncate without a NUL, or fail on a long name. */
    if (gethostname(host, sizeof(host)) != 0)
        host[0] = '\0';
    host[sizeof(host) - 1] = '\0';
    if (host[0] == '\0')
        snprintf(host, sizeof(host), "%s", CONFIG_FALLBACK_SERVER_ID);
    for (size_t i = 0; i < CONFIG_NOPTIONS; i++) {
        const struct config_option *o = &config_options[i];

        if (config_set(cfg, o, o->env, o->def != NULL ? o->def : host, err,
                       errlen) == -1)
            return -1;
    }
    return 0;
}

enum config_result
config_load(struct config *cfg, int argc, char **argv,
            config_getenv_fn getenv_fn, char *err, size_t errlen)
{
    const struct config_option *o;
    const char *v;
    enum config_result r;

    memset(cfg, 0, sizeof(*cfg));       /* defined even when we stop early */
    if (errlen > 0)
        err[0] = '\0';
    /* Walk argv once first: --help and --version must work even when the
     * environment holds a bad value, which is when they are needed. */
    for (int i = 1; i < argc; i++) {
        if ((r = config_next_flag(argc, argv, &i, &o, &v, err, errlen)) != CONFIG_OK)
            return r;
    }
    if (config_load_defaults(cfg, err, errlen) == -1)
        return CONFIG_ERROR;
    for (size_t i = 0; i < CONFIG_NOPTIONS; i++) {
        o = &config_options[i];
        v = getenv_fn(o->env);
        /* Empty is unset, as in ${VAR:-default}: compose files and
         * env.example leave optional variables empty. */
        if (v != NULL && v[0] != '\0' &&
            config_set(cfg, o, o->env, v, err, errlen) == -1)
            return CONFIG_ERROR;
    }
    for (int i = 1; i < argc; i++) {
        if ((r = config_next_flag(argc, argv, &i, &o, &v, err, errlen)) != CONFIG_OK)
            return r;
        if (config_set(cfg, o, o->flag, v, err, errlen) == -1)
            return CONFIG_ERROR;
    }
    return CONFIG_OK;
}

static const char *
config_metavar(enum config_kind kind)
{
    switch (kind) {
    case CONFIG_KIND_PORT:
    case CONFIG_KIND_UINT:
        return "N";
    case CONFIG_KIND_IPV4:
        return "ADDR";
    case CONFIG_KIND_LOG_LEVEL:
        return "LEVEL";
    case CONFIG_KIND_STRING:
        break;
    }
    return "TEXT";
}

void
config_usage(FILE *out, const char *progname)
{
    int flag_w = (int)strlen("-V, --version"), env_w = 0;
    char flag[64], range[48];

    for (size_t i = 0; i < CONFIG_NOPTIONS; i++) {
        const struct config_option *o = &config_options[i];
        int fw = snprintf(flag, sizeof(flag), "%s=%s", o->flag, config_metavar(o->kind));
        int ew = (int)strlen(o->env);

        flag_w = fw > flag_w ? fw : flag_w;
        env_w = ew > env_w ? ew : env_w;
    }
    fprintf(out,
            "usage: %s [option]...\n"
            "\n"
            "Each option can also be set by the environment variable beside it\n"
            "(an empty variable counts as unset); an option given here wins.\n"
            "\n",
            progname);
    for (size_t i = 0; i < CONFIG_NOPTIONS; i++) {
        const struct config_option *o = &config_options[i];
        const char *def = o->def == NULL ? "host name"
                          : o->def[0] == '\0' ? "none" : o->def;

        snprintf(flag, sizeof(flag), "%s=%s", o->flag, config_metavar(o->kind));
        range[0] = '\0';
        if (o->kind == CONFIG_KIND_PORT || o->kind == CONFIG_KIND_UINT)
            snprintf(range, sizeof(range), "%lu..%lu, ", o->min, o->max);
        fprintf(out, "  %-*s  %-*s  %s (%sdefault %s)\n", flag_w, flag, env_w,
                o->env, o->help, range, def);
    }
    fprintf(out, "  %-*s  %-*s  %s\n", flag_w, "-h, --help", env_w, "",
            "print this help and exit");
    fprintf(out, "  %-*s  %-*s  %s\n", flag_w, "-V, --version", env_w, "",
            "print the version and exit");
}
