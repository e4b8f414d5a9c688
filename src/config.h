/* config.h -- every setting from an environment variable or the flag of
 * the same meaning, validated once at start-up into struct config. */
#ifndef SSEGATE_CONFIG_H
#define SSEGATE_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cors.h"
#include "netaddr.h"

/* Longest SERVER_ID. Every instance's id travels in its events, so the
 * envelope keeps ids this long (ENVELOPE_SERVER_MAX). */
#define CONFIG_SERVER_ID_MAX 127
/* Longest REDIS_CHANNEL. */
#define CONFIG_CHANNEL_MAX 127
/* AUTH_SECRET: HS256 wants a key at least as long as its hash (RFC
 * 7518 3.2), so a shorter one is refused rather than weakly used. */
#define CONFIG_AUTH_SECRET_MIN 32
#define CONFIG_AUTH_SECRET_MAX 512
/* A stream token's lifetime (AUTH_TOKEN_TTL_SECS, `ssegate token --ttl`). */
#define CONFIG_TOKEN_TTL_MIN 1
#define CONFIG_TOKEN_TTL_MAX 2592000
/* Longest `ssegate token --sub`: token.h's TOKEN_SUB_MAX. */
#define CONFIG_TOKEN_SUB_MAX 64
/* `ssegate token --topic`: token.h's TOKEN_TOPICS_MAX grants, each a
 * topic name (topic.h's TOPIC_NAME_MAX) or a prefix and "*". */
#define CONFIG_TOKEN_TOPICS_MAX 32
#define CONFIG_TOKEN_TOPIC_MAX 128

/* REDIS_SENTINELS: the Redis Sentinels asked for the master, "host:port"
 * each, at most CONFIG_SENTINELS_MAX. n == 0: none, REDIS_HOST is the
 * master. */
#define CONFIG_SENTINELS_MAX 8
#define CONFIG_SENTINEL_HOST_MAX 255
struct config_sentinels {
    unsigned n;
    struct config_sentinel {
        char host[CONFIG_SENTINEL_HOST_MAX + 1];
        uint16_t port;
    } at[CONFIG_SENTINELS_MAX];
};

/* A rate limit, "N/Ws": at most n requests per window_s seconds from one
 * client address, in bursts of up to n. n == 0: no limit. */
struct config_rate {
    unsigned n;
    unsigned window_s;
};
/* The largest window a rate limit may name (a day), and the most requests. */
#define CONFIG_RATE_WINDOW_MAX 86400u
#define CONFIG_RATE_N_MAX 1000000u
/* PUBLISH_KEYS: at most this many keys (two let a key be rotated: add
 * the new one, move the writers over, drop the old one), each this long
 * (16 characters of a random base64 string are 96 bits). */
#define CONFIG_PUBLISH_KEYS_COUNT 8
#define CONFIG_PUBLISH_KEY_MIN 16
#define CONFIG_PUBLISH_KEY_MAX 128

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
    char redis_username[256];   /* REDIS_USERNAME: Redis 6 ACL user; "" is "default" */
    char redis_password[256];   /* REDIS_PASSWORD: "" sends no AUTH */
    /* Redis Sentinel (sentinel.c): where to ask which server is the
     * master (then REDIS_HOST/REDIS_PORT are not used), the master's name,
     * and the sentinels' own AUTH password ("" sends none) */
    struct config_sentinels redis_sentinels;    /* REDIS_SENTINELS */
    char redis_master_name[256];                /* REDIS_MASTER_NAME */
    char redis_sentinel_password[256];          /* REDIS_SENTINEL_PASSWORD */
    /* REDIS_WAIT_REPLICAS: a write is answered 2xx only once this many
     * replicas acknowledged it (WAIT); 0: no wait */
    unsigned redis_wait_replicas;
    /* REDIS_CHANNEL: the pub/sub channel others publish on (never in
     * ssegate:*, the gateways' own names) */
    char redis_channel[CONFIG_CHANNEL_MAX + 1];
    unsigned history_maxlen;    /* HISTORY_MAXLEN: events kept per user */
    unsigned firehose_maxlen;   /* FIREHOSE_MAXLEN: events kept for the firehose */
    unsigned topic_history_maxlen;  /* TOPIC_HISTORY_MAXLEN: events kept per topic */
    unsigned max_topics_per_stream; /* MAX_TOPICS_PER_STREAM */
    /* TOPIC_CHANNEL_PREFIX: others publish to topic T on this + T (never
     * over ssegate:events, the gateways' own channels) */
    char topic_channel_prefix[CONFIG_CHANNEL_MAX + 1];
    unsigned drain_secs;        /* DRAIN_SECS: serving on after SIGTERM, /health 503 */
    unsigned shutdown_grace_secs;   /* SHUTDOWN_GRACE_SECS: exit within this after SIGTERM */
    unsigned presence_ttl_secs; /* PRESENCE_TTL_SECS: a dead instance's streams leave presence within */
    unsigned presence_events;   /* PRESENCE_EVENTS: 1 writes presence.join / presence.leave */
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
    int log_format;             /* LOG_FORMAT: a LOG_FORMAT_* from log.h */
    char log_file[1024];        /* LOG_FILE: "" is stderr */
    unsigned access_log;        /* ACCESS_LOG: 1 logs a line per request */
    /* METRICS_KEY: keys (as PUBLISH_KEYS) one of which GET /metrics must
     * send as "Authorization: Bearer <key>"; "" leaves it open. Secret. */
    char metrics_key[CONFIG_PUBLISH_KEYS_COUNT * (CONFIG_PUBLISH_KEY_MAX + 1)];
    /* Stream tokens (auth.c). Either key turns secure mode on for
     * streams; "" is unset. */
    char auth_secret[CONFIG_AUTH_SECRET_MAX + 1];   /* AUTH_SECRET: HS256 key */
    char auth_public_key_file[1024];    /* AUTH_PUBLIC_KEY_FILE: PEM, RS256/ES256 */
    char auth_issuer[256];      /* AUTH_ISSUER: a token's iss must match */
    char auth_audience[256];    /* AUTH_AUDIENCE: a token's aud must name it */
    unsigned auth_token_ttl_secs;   /* AUTH_TOKEN_TTL_SECS: tokens we sign */
    /* Limits per client (a client is the TCP peer, or what X-Forwarded-For
     * names when the peer is a trusted proxy). */
    struct config_rate rate_limit_writes;   /* RATE_LIMIT_WRITES */
    struct config_rate rate_limit_streams;  /* RATE_LIMIT_STREAMS */
    struct netaddr_cidrs trusted_proxies;   /* TRUSTED_PROXIES */
    unsigned max_streams_per_user;  /* MAX_STREAMS_PER_USER: per instance; 0 none */
    /* MAX_CONNECTIONS_PER_CLIENT: connections, streams included; 0 none */
    unsigned max_connections_per_client;
    struct cors_origins cors_origins;       /* CORS_ORIGINS: none: CORS off */
    /* PUBLISH_KEYS: keys separated by commas, each of which a write may
     * send as "Authorization: Bearer <key>"; "" lets every write in.
     * Secret: never logged, never echoed in an error. */
    char publish_keys[CONFIG_PUBLISH_KEYS_COUNT * (CONFIG_PUBLISH_KEY_MAX + 1)];
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

/* `ssegate token`: what to sign, besides the settings. */
struct config_token {
    char sub[CONFIG_TOKEN_SUB_MAX + 1];     /* --sub: the user id */
    unsigned ttl_secs;          /* --ttl, else AUTH_TOKEN_TTL_SECS */
    int firehose;               /* --firehose: the token also opens the firehose */
    /* --topic T (repeatable): the token's "topics" grants */
    char topics[CONFIG_TOKEN_TOPICS_MAX][CONFIG_TOKEN_TOPIC_MAX + 2];
    const char *topic_ptrs[CONFIG_TOKEN_TOPICS_MAX];
    size_t ntopics;
};

/* The subcommand's arguments, argv[0] being "token": --sub ID (required:
 * 1 to CONFIG_TOKEN_SUB_MAX visible ASCII characters), --ttl SECS,
 * --firehose and --topic T (repeatable) into t, every other flag and the environment into cfg as
 * config_load reads them. Same results as config_load. */
enum config_result
config_load_token(struct config *cfg, struct config_token *t, int argc, char **argv,
                  config_getenv_fn getenv_fn, char *err, size_t errlen);

/* The subcommand's usage. */
void
config_usage_token(FILE *out, const char *progname);

#endif
