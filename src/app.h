/* app.h -- the read-mostly context every request handler borrows: the
 * configuration, the hub of streams, the writer loops, the subscriber's
 * health, the publish keys and the shutdown flag. main.c owns it and everything it points
 * to. */
#ifndef SSEGATE_APP_H
#define SSEGATE_APP_H

#include <stdatomic.h>

struct auth;
struct config;
struct hub;
struct pubkey_set;
struct replay;
struct subscriber;
struct sse_frame;
struct writers;

/* Retries spread over a stopping instance's streams (each gets one of
 * these, at random): enough steps that its clients come back spread. */
#define APP_LAST_FRAMES 16

struct app {
    const struct config *cfg;
    struct hub *hub;
    struct writers *writers;    /* own every stream once it has started */
    struct subscriber *sub;
    struct replay *replay;      /* reads history for streams, page by page */
    struct sse_frame *hello;    /* "retry: N\n: ssegate <id>\n", shared by every stream */
    struct auth *auth;          /* stream tokens; NULL: open mode (no AUTH_* key) */
    const struct pubkey_set *keys;  /* PUBLISH_KEYS: none lets every write in */
    const struct pubkey_set *metrics_keys;  /* METRICS_KEY: none leaves /metrics open */
    atomic_int draining;        /* set at SIGTERM: /health answers 503 "draining" */
    atomic_int stopping;        /* set DRAIN_SECS later: no more accepts, and a
                                 * new stream ends at once with a retry */
    /* "retry: N\n: ssegate <id> stopping\n", N spread over [100,
     * SSE_RETRY_MS]: what every stream ends with once stopping is set
     * (made before it, read-only after; nlast 0 when out of memory). */
    struct sse_frame *last[APP_LAST_FRAMES];
    size_t nlast;
};

#endif
