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
#include "topic.h"

enum config_kind {
    CONFIG_KIND_PORT,       /* uint16_t in min..max */
    CONFIG_KIND_UINT,       /* unsigned in min..max */
    CONFIG_KIND_STRING,     /* char[size], non-empty when min is 1 */
    CONFIG_KIND_IPV4,       /* char[size], an IPv4 literal */
    CONFIG_KIND_LOG_LEVEL,  /* int: debug|info|warn|error */
    CONFIG_KIND_LOG_FORMAT, /* int: text|json */
    CONFIG_KIND_SECRET,     /* char[size]: empty, or at least min bytes; never shown */
    CONFIG_KIND_RATE,       /* struct config_rate: "N/Ws", "" for none */
    CONFIG_KIND_CIDRS,      /* struct netaddr_cidrs: "a/n,b/m" */
    CONFIG_KIND_ORIGINS,    /* struct cors_origins: "https://a,https://b" or "*" */
    CONFIG_KIND_KEY_LIST,   /* char[size]: "" or keys separated by commas */
    CONFIG_KIND_CHANNEL,    /* char[size], non-empty, outside CONFIG_OWN_PREFIX */
    CONFIG_KIND_TOPIC_PREFIX, /* char[size], non-empty, outside CONFIG_OWN_EVENTS */
    CONFIG_KIND_SENTINELS   /* struct config_sentinels: "host:port,host:port" */
};

/* The gateways' own namespace in Redis: their keys and their channel
 * (ssegate:events, store.h), the one whose ids streams trust. REDIS_CHANNEL,
 * where anybody may publish, must lie outside it, so that it can never be
 * that channel and one ACL pattern (&ssegate:*) keeps outside publishers
 * off ours. */
#define CONFIG_OWN_PREFIX "ssegate:"
/* The gateways' own channels: ssegate:events and ssegate:events:<topic>.
 * TOPIC_CHANNEL_PREFIX, where outsiders publish to topics, may sit in
 * ssegate:* (its default does, so one ACL pattern &ssegate:topic:* names
 * it) but never over these, whose ids streams trust. */
#define CONFIG_OWN_EVENTS "ssegate:events"

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
    { "REDIS_USERNAME", "--redis-username", CONFIG_KIND_STRING, "", 0, 0,
      CONFIG_FIELD(redis_username), "Redis ACL user for AUTH (Redis 6 and later)" },
    { "REDIS_PASSWORD", "--redis-password", CONFIG_KIND_STRING, "", 0, 0,
      CONFIG_FIELD(redis_password), "Redis AUTH password" },
    { "REDIS_SENTINELS", "--redis-sentinels", CONFIG_KIND_SENTINELS, "", 0, 0,
      CONFIG_FIELD(redis_sentinels), "Redis Sentinels host:port,... asked for the master (instead of REDIS_HOST/REDIS_PORT)" },
    { "REDIS_MASTER_NAME", "--redis-master-name", CONFIG_KIND_STRING, "mymaster", 1, 0,
      CONFIG_FIELD(redis_master_name), "the master's name the sentinels monitor" },
    { "REDIS_SENTINEL_PASSWORD", "--redis-sentinel-password", CONFIG_KIND_STRING, "", 0, 0,
      CONFIG_FIELD(redis_sentinel_password), "the sentinels' AUTH password" },
    { "REDIS_WAIT_REPLICAS", "--redis-wait-replicas", CONFIG_KIND_UINT, "0", 0, 64,
      CONFIG_FIELD(redis_wait_replicas), "replicas that must acknowledge a write before its 2xx (WAIT; else 503)" },
    { "REDIS_CHANNEL", "--redis-channel", CONFIG_KIND_CHANNEL, "user-events", 1, 0,
      CONFIG_FIELD(redis_channel), "pub/sub channel others publish on (not ssegate:*)" },
    { "HISTORY_MAXLEN", "--history-maxlen", CONFIG_KIND_UINT, "1000", 1, 1000000,
      CONFIG_FIELD(history_maxlen), "events kept per user for resume" },
    { "FIREHOSE_MAXLEN", "--firehose-maxlen", CONFIG_KIND_UINT, "10000", 1, 1000000,
      CONFIG_FIELD(firehose_maxlen), "events kept for firehose resume" },
    { "TOPIC_HISTORY_MAXLEN", "--topic-history-maxlen", CONFIG_KIND_UINT, "1000", 1, 1000000,
      CONFIG_FIELD(topic_history_maxlen), "events kept per topic for resume" },
    { "MAX_TOPICS_PER_STREAM", "--max-topics-per-stream", CONFIG_KIND_UINT, "32", 1, 32,
      CONFIG_FIELD(max_topics_per_stream), "most topics one stream may name" },
    { "TOPIC_CHANNEL_PREFIX", "--topic-channel-prefix", CONFIG_KIND_TOPIC_PREFIX, "ssegate:topic:", 1, 0,
      CONFIG_FIELD(topic_channel_prefix), "others publish to topic T on this prefix + T (not ssegate:events*)" },
    { "DRAIN_SECS", "--drain-secs", CONFIG_KIND_UINT, "2", 0, 300,
      CONFIG_FIELD(drain_secs), "seconds served on after SIGTERM while /health answers 503 draining" },
    { "SHUTDOWN_GRACE_SECS", "--shutdown-grace-secs", CONFIG_KIND_UINT, "10", 1, 3600,
      CONFIG_FIELD(shutdown_grace_secs), "seconds after SIGTERM by which the process has exited" },
    { "PRESENCE_TTL_SECS", "--presence-ttl-secs", CONFIG_KIND_UINT, "30", 3, 3600,
      CONFIG_FIELD(presence_ttl_secs), "seconds within which a dead instance's streams leave presence" },
    { "PRESENCE_EVENTS", "--presence-events", CONFIG_KIND_UINT, "0", 0, 1,
      CONFIG_FIELD(presence_events), "1: write presence.join and presence.leave events to topics" },
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
    { "LOG_FORMAT", "--log-format", CONFIG_KIND_LOG_FORMAT, "text", 0, 0,
      CONFIG_FIELD(log_format), "text, or json: one JSON object a line" },
    { "LOG_FILE", "--log-file", CONFIG_KIND_STRING, "", 0, 0,
      CONFIG_FIELD(log_file), "file the logs are appended to, reopened on SIGHUP (none: stderr)" },
    { "ACCESS_LOG", "--access-log", CONFIG_KIND_UINT, "1", 0, 1,
      CONFIG_FIELD(access_log), "1: a line per HTTP request (streams: at the open); 0: none" },
    { "METRICS_KEY", "--metrics-key", CONFIG_KIND_KEY_LIST, "", 0, 0,
      CONFIG_FIELD(metrics_key), "keys separated by commas; when set, GET /metrics needs Authorization: Bearer <one of them>" },
    { "AUTH_SECRET", "--auth-secret", CONFIG_KIND_SECRET, "", CONFIG_AUTH_SECRET_MIN, 0,
      CONFIG_FIELD(auth_secret), "HS256 key (32 bytes or more): streams need a token" },
    { "AUTH_PUBLIC_KEY_FILE", "--auth-public-key-file", CONFIG_KIND_STRING, "", 0, 0,
      CONFIG_FIELD(auth_public_key_file), "PEM public key for RS256/ES256 tokens: streams need a token" },
    { "AUTH_ISSUER", "--auth-issuer", CONFIG_KIND_STRING, "", 0, 0,
      CONFIG_FIELD(auth_issuer), "a token's iss must be this" },
    { "AUTH_AUDIENCE", "--auth-audience", CONFIG_KIND_STRING, "", 0, 0,
      CONFIG_FIELD(auth_audience), "a token's aud must name this" },
    { "AUTH_TOKEN_TTL_SECS", "--auth-token-ttl-secs", CONFIG_KIND_UINT, "3600",
      CONFIG_TOKEN_TTL_MIN, CONFIG_TOKEN_TTL_MAX,
      CONFIG_FIELD(auth_token_ttl_secs), "lifetime of the tokens POST /accounts returns" },
    /* Limits per client, and CORS. */
    { "RATE_LIMIT_WRITES", "--rate-limit-writes", CONFIG_KIND_RATE, "", 0, 0,
      CONFIG_FIELD(rate_limit_writes), "writes per client address, N/Ws (e.g. 100/10s), shared by every instance" },
    { "RATE_LIMIT_STREAMS", "--rate-limit-streams", CONFIG_KIND_RATE, "", 0, 0,
      CONFIG_FIELD(rate_limit_streams), "stream opens per client address, N/Ws, shared by every instance" },
    { "TRUSTED_PROXIES", "--trusted-proxies", CONFIG_KIND_CIDRS, "", 0, 0,
      CONFIG_FIELD(trusted_proxies), "CIDRs of proxies whose X-Forwarded-For names the client" },
    { "MAX_STREAMS_PER_USER", "--max-streams-per-user", CONFIG_KIND_UINT, "0", 0, 1000000,
      CONFIG_FIELD(max_streams_per_user), "most streams of one userId on this instance (0: no limit)" },
    { "MAX_CONNECTIONS_PER_CLIENT", "--max-connections-per-client", CONFIG_KIND_UINT, "256", 0, 1000000,
      CONFIG_FIELD(max_connections_per_client), "most connections, streams included, of one client address (0: no limit)" },
    { "CORS_ORIGINS", "--cors-origins", CONFIG_KIND_ORIGINS, "", 0, 0,
      CONFIG_FIELD(cors_origins), "browser origins allowed to call the API, comma-separated, or *" },
    { "PUBLISH_KEYS", "--publish-keys", CONFIG_KIND_KEY_LIST, "", 0, 0,
      CONFIG_FIELD(publish_keys),
      "keys separated by commas; every write then needs Authorization: Bearer and one of them" },
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

/* "N/Ws" (also "N/W" with m or h, and "N/s" for W = 1): at most N
 * requests per W seconds. "" is no limit. */
static int
config_parse_rate(const char *v, struct config_rate *out)
{
    const char *slash = strchr(v, '/');
    char num[16];
    unsigned long n, w = 1;
    size_t len, wlen;
    unsigned long unit;

    out->n = 0;
    out->window_s = 0;
    if (*v == '\0')
        return 0;
    if (slash == NULL || (len = (size_t)(slash - v)) == 0 || len >= sizeof(num))
        return -1;
    memcpy(num, v, len);
    num[len] = '\0';
    if (config_parse_digits(num, &n) == -1 || n < 1 || n > CONFIG_RATE_N_MAX)
        return -1;
    wlen = strlen(slash + 1);
    if (wlen == 0 || wlen >= sizeof(num))
        return -1;
    switch (slash[wlen]) {
    case 's': unit = 1; break;
    case 'm': unit = 60; break;
    case 'h': unit = 3600; break;
    default: return -1;
    }
    if (wlen > 1) {
        memcpy(num, slash + 1, wlen - 1);
        num[wlen - 1] = '\0';
        if (config_parse_digits(num, &w) == -1)
            return -1;
    }
    if (w < 1 || w > CONFIG_RATE_WINDOW_MAX / unit)
        return -1;
    out->n = (unsigned)n;
    out->window_s = (unsigned)(w * unit);
    return 0;
}

/* REDIS_SENTINELS: 1..CONFIG_SENTINELS_MAX "host:port" items separated
 * by commas (the port after the last ':'), or "" for none. why says
 * which item is wrong and how. */
static int
config_parse_sentinels(const char *v, struct config_sentinels *out, char *why,
                       size_t whylen)
{
    memset(out, 0, sizeof(*out));
    while (*v != '\0') {
        size_t n = strcspn(v, ","), hlen;
        const char *colon = NULL;
        char port[8];
        unsigned long p;

        for (size_t i = 0; i < n; i++)
            if (v[i] == ':')
                colon = v + i;
        if (out->n == CONFIG_SENTINELS_MAX) {
            snprintf(why, whylen, "more than %d sentinels", CONFIG_SENTINELS_MAX);
            return -1;
        }
        hlen = colon != NULL ? (size_t)(colon - v) : 0;
        if (colon == NULL || hlen == 0 || hlen > CONFIG_SENTINEL_HOST_MAX ||
            n - hlen - 1 == 0 || n - hlen - 1 >= sizeof(port)) {
            snprintf(why, whylen, "sentinel %u is not host:port", out->n + 1);
            return -1;
        }
        memcpy(port, colon + 1, n - hlen - 1);
        port[n - hlen - 1] = '\0';
        if (config_parse_digits(port, &p) == -1 || p < 1 || p > 65535) {
            snprintf(why, whylen, "sentinel %u: port is not a number in 1..65535",
                     out->n + 1);
            return -1;
        }
        memcpy(out->at[out->n].host, v, hlen);
        out->at[out->n].host[hlen] = '\0';
        out->at[out->n].port = (uint16_t)p;
        out->n++;
        if (v[n] == '\0')
            break;
        v += n + 1;
        if (*v == '\0') {
            snprintf(why, whylen, "a trailing comma");
            return -1;
        }
    }
    return 0;
}

/* A list parser's reason, which quotes the item it refused: printable,
 * like config_show's copies, before it reaches a terminal or a log. */
static void
config_printable(char *why)
{
    for (; *why != '\0'; why++)
        if ((unsigned char)*why < 0x20 || *why == 0x7f)
            *why = '?';
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

/* A key's characters: RFC 6750's b64token, what a Bearer token may hold. */
static int
config_key_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || strchr("-._~+/=", c) != NULL;
}

/* PUBLISH_KEYS: 1..CONFIG_PUBLISH_KEYS_COUNT keys separated by commas,
 * each CONFIG_PUBLISH_KEY_MIN..CONFIG_PUBLISH_KEY_MAX b64token
 * characters, or "". The error names the key by its place, never by its
 * value: it is a secret. */
static int
config_check_keys(const char *name, const char *v, char *err, size_t errlen)
{
    unsigned count = 0;

    if (*v == '\0')
        return 0;
    for (;;) {
        size_t n = strcspn(v, ",");

        if (++count > CONFIG_PUBLISH_KEYS_COUNT) {
            snprintf(err, errlen, "%s: more than %d keys", name,
                     CONFIG_PUBLISH_KEYS_COUNT);
            return -1;
        }
        if (n < CONFIG_PUBLISH_KEY_MIN || n > CONFIG_PUBLISH_KEY_MAX) {
            snprintf(err, errlen, "%s: key %u has %zu characters, not %d to %d",
                     name, count, n, CONFIG_PUBLISH_KEY_MIN, CONFIG_PUBLISH_KEY_MAX);
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            if (!config_key_char(v[i])) {
                snprintf(err, errlen, "%s: key %u has a character outside "
                         "A-Z a-z 0-9 - . _ ~ + / =", name, count);
                return -1;
            }
        }
        if (v[n] == '\0')
            return 0;
        v += n + 1;
    }
}

/* Stores value v of option o in cfg. name is what the user wrote, the
 * variable or the flag, so the error points at the thing to fix. */
static int
config_set(struct config *cfg, const struct config_option *o, const char *name,
           const char *v, char *err, size_t errlen)
{
    char *field = (char *)cfg + o->offset;
    char shown[48], why[160];
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
    case CONFIG_KIND_CHANNEL:
        if (strncmp(v, CONFIG_OWN_PREFIX, sizeof(CONFIG_OWN_PREFIX) - 1) == 0) {
            snprintf(err, errlen, "%s: '%s' is in " CONFIG_OWN_PREFIX "*, the "
                     "gateways' own names; pick a channel outside it", name, shown);
            return -1;
        }
        return config_set_string(field, o, name, v, err, errlen);
    case CONFIG_KIND_TOPIC_PREFIX:
        if (strncmp(v, CONFIG_OWN_EVENTS, sizeof(CONFIG_OWN_EVENTS) - 1) == 0) {
            snprintf(err, errlen, "%s: '%s' starts with " CONFIG_OWN_EVENTS ", the "
                     "gateways' own channels; pick a prefix outside it", name, shown);
            return -1;
        }
        return config_set_string(field, o, name, v, err, errlen);
    case CONFIG_KIND_SECRET:
        /* The error says how long, never what: it may be most of a key. */
        if (v[0] != '\0' && strlen(v) < o->min) {
            snprintf(err, errlen, "%s: %zu bytes is shorter than the %lu required",
                     name, strlen(v), o->min);
            return -1;
        }
        if (strlen(v) >= o->size) {
            snprintf(err, errlen, "%s: %zu bytes is longer than the %zu allowed",
                     name, strlen(v), o->size - 1);
            return -1;
        }
        memcpy(field, v, strlen(v) + 1);
        return 0;
    case CONFIG_KIND_KEY_LIST:
        if (config_check_keys(name, v, err, errlen) == -1)
            return -1;
        return config_set_string(field, o, name, v, err, errlen);
    case CONFIG_KIND_LOG_LEVEL:
        if ((level = log_parse_level(v)) < 0) {
            snprintf(err, errlen, "%s: '%s' is not one of debug, info, warn, error",
                     name, shown);
            return -1;
        }
        *(int *)(void *)field = level;
        return 0;
    case CONFIG_KIND_LOG_FORMAT:
        if ((level = log_parse_format(v)) < 0) {
            snprintf(err, errlen, "%s: '%s' is not text or json", name, shown);
            return -1;
        }
        *(int *)(void *)field = level;
        return 0;
    case CONFIG_KIND_RATE:
        if (config_parse_rate(v, (struct config_rate *)(void *)field) == -1) {
            snprintf(err, errlen, "%s: '%s' is not N/Ws, N requests (1..%u) per W "
                     "seconds (s, m or h; at most a day), e.g. 100/10s",
                     name, shown, CONFIG_RATE_N_MAX);
            return -1;
        }
        return 0;
    case CONFIG_KIND_CIDRS:
        if (netaddr_cidrs_parse(v, (struct netaddr_cidrs *)(void *)field, why,
                                sizeof(why)) == -1) {
            config_printable(why);
            snprintf(err, errlen, "%s: %s", name, why);
            return -1;
        }
        return 0;
    case CONFIG_KIND_SENTINELS:
        if (config_parse_sentinels(v, (struct config_sentinels *)(void *)field, why,
                                   sizeof(why)) == -1) {
            config_printable(why);
            snprintf(err, errlen, "%s: %s (want host:port,host:port,...)", name, why);
            return -1;
        }
        return 0;
    case CONFIG_KIND_ORIGINS:
        if (cors_parse(v, (struct cors_origins *)(void *)field, why, sizeof(why)) == -1) {
            config_printable(why);
            snprintf(err, errlen, "%s: %s", name, why);
            return -1;
        }
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

/* Settings that exclude each other, once all are read: the sentinels
 * name the master, so a REDIS_HOST or REDIS_PORT given too would be
 * silently ignored; refused instead. given[i]: option i was set. */
static int
config_check_combined(const struct config *cfg, const unsigned char *given,
                      char *err, size_t errlen)
{
    /* The drain comes out of the grace, and the streams need some of it. */
    if (cfg->drain_secs >= cfg->shutdown_grace_secs) {
        snprintf(err, errlen, "DRAIN_SECS (%u) must be less than SHUTDOWN_GRACE_SECS (%u)",
                 cfg->drain_secs, cfg->shutdown_grace_secs);
        return -1;
    }
    if (cfg->redis_sentinels.n == 0)
        return 0;
    for (size_t i = 0; i < CONFIG_NOPTIONS; i++) {
        const char *env = config_options[i].env;

        if (given[i] && (strcmp(env, "REDIS_HOST") == 0 || strcmp(env, "REDIS_PORT") == 0)) {
            snprintf(err, errlen, "REDIS_SENTINELS and %s are both set: with sentinels "
                     "the master's address comes from them; unset one", env);
            return -1;
        }
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
    unsigned char given[CONFIG_NOPTIONS] = { 0 };

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
        if (v != NULL && v[0] != '\0') {
            if (config_set(cfg, o, o->env, v, err, errlen) == -1)
                return CONFIG_ERROR;
            given[i] = 1;
        }
    }
    for (int i = 1; i < argc; i++) {
        if ((r = config_next_flag(argc, argv, &i, &o, &v, err, errlen)) != CONFIG_OK)
            return r;
        if (config_set(cfg, o, o->flag, v, err, errlen) == -1)
            return CONFIG_ERROR;
        given[o - config_options] = 1;
    }
    if (config_check_combined(cfg, given, err, errlen) == -1)
        return CONFIG_ERROR;
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
    case CONFIG_KIND_LOG_FORMAT:
        return "FORMAT";
    case CONFIG_KIND_RATE:
        return "RATE";
    case CONFIG_KIND_CIDRS:
    case CONFIG_KIND_ORIGINS:
    case CONFIG_KIND_SENTINELS:
        return "LIST";
    case CONFIG_KIND_KEY_LIST:
        return "KEYS";
    case CONFIG_KIND_STRING:
    case CONFIG_KIND_CHANNEL:
    case CONFIG_KIND_TOPIC_PREFIX:
    case CONFIG_KIND_SECRET:
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

/* ------------------------------------------------------- ssegate token */

/* Most words `ssegate token` passes on to config_load. */
#define CONFIG_TOKEN_ARGS_MAX 64

/* Is arg the subcommand's flag name (as "--name" or "--name=...")?
 * Sets *value to what follows '=' (NULL without one). */
static int
config_token_flag(const char *arg, const char *name, const char **value)
{
    size_t n = strlen(name);

    if (strncmp(arg, name, n) != 0 || (arg[n] != '\0' && arg[n] != '='))
        return 0;
    *value = arg[n] == '=' ? arg + n + 1 : NULL;
    return 1;
}

/* A user id a token may carry: what a stream's userId can be compared
 * with, and safe in a log line. */
static int
config_token_sub_ok(const char *v)
{
    size_t n = strlen(v);

    if (n == 0 || n > CONFIG_TOKEN_SUB_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f)
            return 0;
    }
    return 1;
}

enum config_result
config_load_token(struct config *cfg, struct config_token *t, int argc, char **argv,
                  config_getenv_fn getenv_fn, char *err, size_t errlen)
{
    char *rest[CONFIG_TOKEN_ARGS_MAX + 1];
    int nrest = 1, has_ttl = 0, is_sub;
    unsigned long ttl = 0;
    const char *v;
    char shown[48];
    enum config_result r;

    memset(t, 0, sizeof(*t));
    if (errlen > 0)
        err[0] = '\0';
    rest[0] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];

        if (config_token_flag(arg, "--firehose", &v)) {
            if (v != NULL) {
                snprintf(err, errlen, "--firehose: takes no value");
                return CONFIG_ERROR;
            }
            t->firehose = 1;
            continue;
        }
        if (config_token_flag(arg, "--topic", &v)) {
            if (v == NULL && i + 1 < argc)
                v = argv[++i];
            if (v == NULL || !topic_grant_valid(v, strlen(v))) {
                config_show(v != NULL ? v : "", shown, sizeof(shown));
                snprintf(err, errlen, "--topic: '%s' is not a topic name, or a prefix of "
                         "one ending in *", shown);
                return CONFIG_ERROR;
            }
            if (t->ntopics == CONFIG_TOKEN_TOPICS_MAX) {
                snprintf(err, errlen, "--topic: at most %d", CONFIG_TOKEN_TOPICS_MAX);
                return CONFIG_ERROR;
            }
            memcpy(t->topics[t->ntopics], v, strlen(v) + 1);
            t->topic_ptrs[t->ntopics] = t->topics[t->ntopics];
            t->ntopics++;
            continue;
        }
        is_sub = config_token_flag(arg, "--sub", &v);
        if (is_sub || config_token_flag(arg, "--ttl", &v)) {
            if (v == NULL && i + 1 < argc) {
                v = argv[++i];
            } else if (v == NULL) {
                snprintf(err, errlen, "%s: needs a value", is_sub ? "--sub" : "--ttl");
                return CONFIG_ERROR;
            }
            if (is_sub) {
                if (!config_token_sub_ok(v)) {
                    config_show(v, shown, sizeof(shown));
                    snprintf(err, errlen, "--sub: '%s' is not 1 to %d visible ASCII characters",
                             shown, CONFIG_TOKEN_SUB_MAX);
                    return CONFIG_ERROR;
                }
                memcpy(t->sub, v, strlen(v) + 1);
            } else {
                if (config_parse_digits(v, &ttl) == -1 || ttl < CONFIG_TOKEN_TTL_MIN ||
                    ttl > CONFIG_TOKEN_TTL_MAX) {
                    config_show(v, shown, sizeof(shown));
                    snprintf(err, errlen, "--ttl: '%s' is not a number in %d..%d",
                             shown, CONFIG_TOKEN_TTL_MIN, CONFIG_TOKEN_TTL_MAX);
                    return CONFIG_ERROR;
                }
                has_ttl = 1;
            }
            continue;
        }
        if (nrest == CONFIG_TOKEN_ARGS_MAX) {
            snprintf(err, errlen, "too many arguments");
            return CONFIG_ERROR;
        }
        rest[nrest++] = argv[i];
    }
    rest[nrest] = NULL;
    if ((r = config_load(cfg, nrest, rest, getenv_fn, err, errlen)) != CONFIG_OK)
        return r;
    if (t->sub[0] == '\0') {
        snprintf(err, errlen, "--sub: required (the user id the token is for)");
        return CONFIG_ERROR;
    }
    t->ttl_secs = has_ttl ? (unsigned)ttl : cfg->auth_token_ttl_secs;
    return CONFIG_OK;
}

void
config_usage_token(FILE *out, const char *progname)
{
    fprintf(out,
            "usage: %s token --sub ID [--ttl SECS] [--firehose] [--topic T]... [option]...\n"
            "\n"
            "Prints a stream token (HS256, signed with AUTH_SECRET or --auth-secret)\n"
            "for user ID, valid for SECS seconds (%d..%d, default\n"
            "AUTH_TOKEN_TTL_SECS); --firehose lets it open the firehose too;\n"
            "each --topic T (a topic, or a prefix ending in *) lets it name\n"
            "matching topics (the topics claim, at most 32). It\n"
            "carries AUTH_ISSUER and AUTH_AUDIENCE when they are set. The options\n"
            "are those of '%s --help'.\n",
            progname, CONFIG_TOKEN_TTL_MIN, CONFIG_TOKEN_TTL_MAX, progname);
}
