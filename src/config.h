/* config.h -- every setting from an environment variable or the flag of
 * the same meaning, validated once at start-up into struct config. */
#ifndef SSEGATE_CONFIG_H
#define SSEGATE_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Longest SERVER_ID. Every instance's id travels in its events, so the
 * envelope keeps ids this long (ENVELOPE_SERVER_MAX). */
#define CONFIG_SERVER_ID_MAX 127
/* Longest REDIS_CHANNEL. */
#define CONFIG_CHANNEL_MAX 127

/* Each field's variable, flag, default and range live in one place:
 * the config_options[] table in config.c, which --help prints. The
 * comments here say only what a field means. */
struct config {
    char listen_addr[64];       /* LISTEN_ADDR: IPv4 literal to listen on */
    uint16_t port;              /* PORT: HTTP port */
    /* SERVER_ID: this instance's name in events and /health */
    char server_id[CONFIG_SERVER_ID_MAX + 1];
    char redis_host[256];       /* REDIS_HOST */
    uint16_t redis_port;        /* REDIS_PORT */
    char redis_password[256];   /* REDIS_PASSWORD: "" sends no AUTH */
    /* REDIS_CHANNEL: the pub/sub channel all instances share */
    char redis_channel[CONFIG_CHANNEL_MAX + 1];
    unsigned history_maxlen;    /* HISTORY_MAXLEN: events kept per user */
    unsigned firehose_maxlen;   /* FIREHOSE_MAXLEN: events kept for the firehose */
    unsigned heartbeat_secs;    /* HEARTBEAT_SECS: idle time before a ": ping" comment */
    unsigned sse_retry_ms;      /* SSE_RETRY_MS: sent to clients as "retry:" */
    unsigned http_threads;      /* HTTP_THREADS */
    unsigned max_connections;   /* MAX_CONNECTIONS: streams and HTTP connections */
    unsigned writer_threads;    /* WRITER_THREADS: stream writer loops */
    unsigned fanout_threads;    /* FANOUT_THREADS: fan-out helpers; 0 none */
    unsigned fanout_uring;      /* FANOUT_URING: 1 batches fan-out writes via io_uring */
    unsigned publish_backlog;   /* PUBLISH_BACKLOG: own events unsent before a write waits */
    unsigned publish_wait_ms;   /* PUBLISH_WAIT_MS: longest wait before 503 overloaded */
    unsigned idempotency_ttl_secs;  /* IDEMPOTENCY_TTL_SECS: a key's first answer is kept */
    unsigned stream_queue_kib;  /* STREAM_QUEUE_KIB: unsent KiB before a slow stream closes */
    /* STREAM_WRITE_TIMEOUT_SECS: no byte taken by a stream's socket for
     * this long while it has output: the client stopped reading */
    unsigned stream_write_timeout_secs;
    unsigned redis_timeout_ms;  /* REDIS_TIMEOUT_MS: per-command timeout before a 503 */
    unsigned request_timeout_ms; /* REQUEST_TIMEOUT_MS: for a request's head, then its body */
    /* MAX_PENDING_BODY_KIB: request bodies held at once (all HTTP threads) */
    unsigned max_pending_body_kib;
    int log_level;              /* LOG_LEVEL: a LOG_LEVEL_* from log.h */
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
