/* config.h -- every setting from an environment variable or the flag of
 * the same meaning, validated once at start-up into struct config. */
#ifndef SSEGATE_CONFIG_H
#define SSEGATE_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct config {
    char listen_addr[64];       /* LISTEN_ADDR, default "0.0.0.0" (IPv4 literal) */
    uint16_t port;              /* PORT, default 3000, 1..65535 */
    char server_id[128];        /* SERVER_ID, default: gethostname() */
    char redis_host[256];       /* REDIS_HOST, default "127.0.0.1" */
    uint16_t redis_port;        /* REDIS_PORT, default 6379 */
    char redis_password[256];   /* REDIS_PASSWORD, default unset ("") */
    char redis_channel[128];    /* REDIS_CHANNEL, default "user-events" */
    unsigned history_maxlen;    /* HISTORY_MAXLEN, default 1000, 1..1000000 */
    unsigned firehose_maxlen;   /* FIREHOSE_MAXLEN, default 10000, 1..1000000 */
    unsigned heartbeat_secs;    /* HEARTBEAT_SECS, default 15, 1..3600 */
    unsigned sse_retry_ms;      /* SSE_RETRY_MS, default 3000, 0..3600000 */
    unsigned http_threads;      /* HTTP_THREADS, default 2, 1..64 */
    unsigned max_connections;   /* MAX_CONNECTIONS, default 10000, 16..1000000 */
    unsigned writer_threads;    /* WRITER_THREADS, default 2, 1..64 */
    unsigned fanout_threads;    /* FANOUT_THREADS, default 1, 0..64 */
    unsigned fanout_uring;      /* FANOUT_URING, default 1, 0..1 */
    unsigned publish_backlog;   /* PUBLISH_BACKLOG, default 64, 1..1000000 */
    unsigned publish_wait_ms;   /* PUBLISH_WAIT_MS, default 1000, 0..60000 */
    unsigned stream_queue_kib;  /* STREAM_QUEUE_KIB, default 4096, 16..1048576 */
    unsigned redis_timeout_ms;  /* REDIS_TIMEOUT_MS, default 500, 10..60000 */
    int log_level;              /* LOG_LEVEL: debug|info|warn|error, default info */
};

enum config_result {
    CONFIG_OK = 0,      /* cfg filled; run */
    CONFIG_HELP,        /* --help: caller prints config_usage(), exits 0 */
    CONFIG_VERSION,     /* --version: caller prints the version, exits 0 */
    CONFIG_ERROR        /* err holds one line naming the variable or flag; exit 2 */
};

/* Looks up an environment variable; NULL when unset. Tests pass their own. */
typedef const char *(*config_getenv_fn)(const char *name);

/* Fills cfg from defaults, then the environment (via getenv_fn), then
 * argv (flags win over variables). Flags are "--port 3000" or
 * "--port=3000"; each variable FOO_BAR has the flag --foo-bar. An
 * invalid or out-of-range value, an unknown flag or a flag without its
 * value gives CONFIG_ERROR and one line in err such as
 * "PORT: 'abc' is not a number in 1..65535". An empty variable counts
 * as unset. */
enum config_result
config_load(struct config *cfg, int argc, char **argv,
            config_getenv_fn getenv_fn, char *err, size_t errlen);

/* Prints every flag with its variable, default and meaning. */
void
config_usage(FILE *out, const char *progname);

#endif
