#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "config.h"
#include "log.h"

enum kind { K_U16, K_UINT, K_STR, K_ADDR, K_LEVEL };
struct opt { const char *env, *flag; enum kind kind; const char *def; unsigned long min, max; size_t off, size; const char *help; };
#define O(f) offsetof(struct config, f), sizeof(((struct config *)0)->f)
static const struct opt opts[] = {
    { "PORT", "--port", K_U16, "3000", 1, 65535, O(port), "HTTP port" },
    { "LISTEN_ADDR", "--listen-addr", K_ADDR, "0.0.0.0", 0, 0, O(listen_addr), "IPv4 address to listen on" },
    { "SERVER_ID", "--server-id", K_STR, NULL, 0, 0, O(server_id), "instance name shown in events and /health" },
    { "REDIS_HOST", "--redis-host", K_STR, "127.0.0.1", 0, 0, O(redis_host), "Redis host" },
    { "REDIS_PORT", "--redis-port", K_U16, "6379", 1, 65535, O(redis_port), "Redis port" },
    { "REDIS_PASSWORD", "--redis-password", K_STR, "", 0, 0, O(redis_password), "Redis AUTH password" },
    { "REDIS_CHANNEL", "--redis-channel", K_STR, "user-events", 0, 0, O(redis_channel), "pub/sub channel" },
    { "HISTORY_MAXLEN", "--history-maxlen", K_UINT, "1000", 1, 1000000, O(history_maxlen), "events kept per user" },
    { "FIREHOSE_MAXLEN", "--firehose-maxlen", K_UINT, "10000", 1, 1000000, O(firehose_maxlen), "events kept for the firehose" },
    { "HEARTBEAT_SECS", "--heartbeat-secs", K_UINT, "15", 1, 3600, O(heartbeat_secs), "seconds between pings" },
    { "SSE_RETRY_MS", "--sse-retry-ms", K_UINT, "3000", 0, 3600000, O(sse_retry_ms), "retry: sent to clients" },
    { "HTTP_THREADS", "--http-threads", K_UINT, "8", 1, 64, O(http_threads), "HTTP threads" },
    { "MAX_CONNECTIONS", "--max-connections", K_UINT, "10000", 16, 1000000, O(max_connections), "connection limit" },
    { "STREAM_QUEUE_KIB", "--stream-queue-kib", K_UINT, "4096", 16, 1048576, O(stream_queue_kib), "per-stream queue bound" },
    { "REDIS_TIMEOUT_MS", "--redis-timeout-ms", K_UINT, "500", 10, 60000, O(redis_timeout_ms), "Redis command timeout" },
    { "LOG_LEVEL", "--log-level", K_LEVEL, "info", 0, 0, O(log_level), "debug|info|warn|error" },
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static int
config_set(struct config *cfg, const struct opt *o, const char *name, const char *v, char *err, size_t errlen)
{
    char *p = (char *)cfg + o->off;
    unsigned long n = 0;
    switch (o->kind) {
    case K_U16: case K_UINT:
        if (*v == '\0' || strspn(v, "0123456789") != strlen(v) || strlen(v) > 9) {
            snprintf(err, errlen, "%s: '%s' is not a number in %lu..%lu", name, v, o->min, o->max);
            return -1;
        }
        n = strtoul(v, NULL, 10);
        if (n < o->min || n > o->max) {
            snprintf(err, errlen, "%s: '%s' is out of range %lu..%lu", name, v, o->min, o->max);
            return -1;
        }
        if (o->kind == K_U16) *(uint16_t *)(void *)p = (uint16_t)n;
        else *(unsigned *)(void *)p = (unsigned)n;
        return 0;
    case K_ADDR: {
        struct in_addr a;
        if (inet_pton(AF_INET, v, &a) != 1) {
            snprintf(err, errlen, "%s: '%s' is not an IPv4 address", name, v);
            return -1;
        }
    }   /* fall through */
    case K_STR:
        if (strlen(v) >= o->size) {
            snprintf(err, errlen, "%s: longer than %zu characters", name, o->size - 1);
            return -1;
        }
        strcpy(p, v);
        return 0;
    case K_LEVEL: {
        int l = log_parse_level(v);
        if (l < 0) {
            snprintf(err, errlen, "%s: '%s' is not one of debug, info, warn, error", name, v);
            return -1;
        }
        *(int *)(void *)p = l;
        return 0;
    }
    }
    return -1;
}

enum config_result
config_load(struct config *cfg, int argc, char **argv, config_getenv_fn getenv_fn, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < NOPTS; i++) {
        const char *v = opts[i].def;
        char host[128];
        if (v == NULL) {
            if (gethostname(host, sizeof(host)) != 0) strcpy(host, "ssegate");
            host[sizeof(host) - 1] = '\0';
            v = host;
        }
        if (config_set(cfg, &opts[i], opts[i].env, v, err, errlen) == -1) return CONFIG_ERROR;
    }
    for (size_t i = 0; i < NOPTS; i++) {
        const char *v = getenv_fn(opts[i].env);
        if (v != NULL && *v != '\0' && config_set(cfg, &opts[i], opts[i].env, v, err, errlen) == -1)
            return CONFIG_ERROR;
    }
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a], *eq, *v;
        size_t nl;
        size_t i;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) return CONFIG_HELP;
        if (strcmp(arg, "--version") == 0 || strcmp(arg, "-V") == 0) return CONFIG_VERSION;
        eq = strchr(arg, '=');
        nl = eq ? (size_t)(eq - arg) : strlen(arg);
        for (i = 0; i < NOPTS; i++)
            if (strlen(opts[i].flag) == nl && strncmp(opts[i].flag, arg, nl) == 0) break;
        if (i == NOPTS) { snprintf(err, errlen, "unknown option '%s' (see --help)", arg); return CONFIG_ERROR; }
        if (eq) v = eq + 1;
        else if (a + 1 < argc) v = argv[++a];
        else { snprintf(err, errlen, "%s: needs a value", opts[i].flag); return CONFIG_ERROR; }
        if (config_set(cfg, &opts[i], opts[i].flag, v, err, errlen) == -1) return CONFIG_ERROR;
    }
    return CONFIG_OK;
}

void
config_usage(FILE *out, const char *progname)
{
    fprintf(out, "usage: %s [options]\n", progname);
    for (size_t i = 0; i < NOPTS; i++)
        fprintf(out, "  %-22s %-18s %s (default: %s)\n", opts[i].flag, opts[i].env, opts[i].help, opts[i].def ? opts[i].def : "host name");
}
