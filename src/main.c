/* main.c -- wiring, signals and the shutdown order. Owns the event base,
 * the fan-out helpers, the hub, the writer loops, the replay reader, the
 * subscriber, the HTTP server, the per-client connection counts, the
 * heap trim's timer and the shared hello frame.
 *
 * Threads: this one runs the libevent loop (the Redis subscription and
 * the fan-out, signals); http.c runs HTTP_THREADS HTTP threads, writer.c
 * WRITER_THREADS writer loops (which also beat the heartbeats), fanout.c
 * FANOUT_THREADS helpers. See docs/ARCHITECTURE.md. */
#include <event2/event.h>
#include <errno.h>
#include <event2/thread.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "app.h"
#include "auth.h"
#include "clients.h"
#include "clock.h"
#include "config.h"
#include "fanout.h"
#include "http.h"
#include "hub.h"
#include "log.h"
#include "presence.h"
#include "pubkey.h"
#include "rconn.h"
#include "replay.h"
#include "sse.h"
#include "store.h"
#include "strictjson.h"
#include "subscriber.h"
#include "trim.h"
#include "version.h"
#include "writer.h"

#define DRAIN_POLL_MS 10
/* Descriptors kept for Redis connections, logs and the listener. */
#define FD_RESERVE 64
/* Allocations this large come from mmap and go back to the kernel when
 * freed (glibc's default, 128 KiB and rising, keeps them in the heap). */
#define MAIN_MMAP_THRESHOLD (32 * 1024)
/* Fan-outs smaller than this are sent by the subscriber alone: waking a
 * helper costs about as much as a few dozen sends. */
#define MAIN_FANOUT_MIN 128

struct gateway {
    struct config cfg;
    struct app app;
    struct event_base *base;
    struct http *http;
    struct http_routes routes;
    struct fanout *fanout;
    struct clients *clients;    /* connections per client address */
    struct pubkey_set keys;
    struct pubkey_set metrics_keys;
    struct presence *presence;
    struct trim *trim;          /* malloc_trim once a load has gone */
    struct event *sigint_ev, *sigterm_ev, *sighup_ev, *drain_ev, *linger_ev;
    int64_t stop_deadline_ms;   /* monotonic: SHUTDOWN_GRACE_SECS after the signal */
};

static const char *
main_getenv(const char *name)
{
    return getenv(name);
}

/* Streams are file descriptors: take every descriptor the hard limit
 * allows, and never promise more connections than that. */
static void
main_raise_fd_limit(struct config *cfg)
{
    struct rlimit rl;
    rlim_t want;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    want = (rlim_t)cfg->max_connections + FD_RESERVE;
    if (rl.rlim_cur != RLIM_INFINITY && want > rl.rlim_cur) {
        unsigned fit = rl.rlim_cur > 2 * FD_RESERVE
                           ? (unsigned)(rl.rlim_cur - FD_RESERVE) : FD_RESERVE;

        log_warn("MAX_CONNECTIONS %u exceeds the file descriptor limit %llu;"
                 " using %u", cfg->max_connections,
                 (unsigned long long)rl.rlim_cur, fit);
        cfg->max_connections = fit;
    }
}

/* Shutdown, last step: once every stream ended, every connection closed
 * (requests in flight answered, a proxy's idle kept-alive connections
 * closed by the proxy: http_connections) and Redis heard the instance
 * leave, or at SHUTDOWN_GRACE_SECS after the signal, the loop ends and
 * main() frees in reverse order. */
static void
main_on_drain(evutil_socket_t fd, short what, void *arg)
{
    struct gateway *g = arg;
    size_t left = hub_count(g->app.hub);
    unsigned conns = http_connections(g->http);
    int settled = presence_settled(g->presence);

    (void)fd;
    (void)what;
    if ((left > 0 || conns > 0 || !settled) && clock_mono_ms() < g->stop_deadline_ms)
        return;
    if (left > 0)
        log_warn("shutdown: closing %zu streams that did not drain", left);
    if (conns > 0)
        log_warn("shutdown: closing %u connections still open (a request in progress "
                 "gets no answer)", conns);
    if (!settled)
        log_warn("shutdown: Redis did not hear that this instance left; other "
                 "instances take its presence away within PRESENCE_TTL_SECS");
    event_del(g->drain_ev);
    event_base_loopbreak(g->base);
}

/* Shutdown, second step (DRAIN_SECS after the signal): stop accepting,
 * take the instance out of presence, end every stream after a "retry:"
 * spread over its clients (each flushes what it holds and ends its
 * chunked body cleanly), then wait (main_on_drain). */
static void
main_stop_serving(struct gateway *g)
{
    struct timeval poll = { 0, DRAIN_POLL_MS * 1000 };
    char comment[CONFIG_SERVER_ID_MAX + 24];

    /* Only this thread sets it: the frames are made before anyone may
     * read them (api.c, once it sees stopping). */
    if (atomic_load(&g->app.stopping))
        return;
    snprintf(comment, sizeof(comment), "ssegate %s stopping", g->cfg.server_id);
    for (size_t i = 0; i < APP_LAST_FRAMES; i++) {
        unsigned ms = sse_retry_spread(g->cfg.sse_retry_ms, (unsigned long)random());

        if ((g->app.last[g->app.nlast] = sse_frame_new_retry(ms, comment)) != NULL)
            g->app.nlast++;
    }
    atomic_store(&g->app.stopping, 1);
    event_del(g->linger_ev);
    log_info("shutdown: ending %zu streams", hub_count(g->app.hub));
    http_quiesce(g->http);
    /* Its streams leave presence in one go, before they close one by one. */
    presence_leave(g->presence);
    hub_close(g->app.hub, STREAM_END_SHUTDOWN, g->app.last, g->app.nlast);
    event_add(g->drain_ev, &poll);
}

static void
main_on_linger(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    main_stop_serving(arg);
}

/* Shutdown, first step (SIGTERM, SIGINT): /health answers 503
 * "draining" at once, so load balancers send new clients elsewhere,
 * while the instance serves on for DRAIN_SECS what was already routed
 * to it. A second signal skips the rest of that wait. */
static void
main_on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct gateway *g = arg;
    struct timeval linger = { (time_t)g->cfg.drain_secs, 0 };
    const char *name = sig == SIGINT ? "SIGINT" : "SIGTERM";

    (void)what;
    if (atomic_exchange(&g->app.draining, 1)) {
        log_info("%s: shutdown already in progress%s", name,
                 atomic_load(&g->app.stopping) ? "" : "; not waiting DRAIN_SECS");
        main_stop_serving(g);
        return;
    }
    g->stop_deadline_ms = clock_mono_ms() + (int64_t)g->cfg.shutdown_grace_secs * 1000;
    http_drain(g->http);
    log_info("%s: draining (/health answers 503), serving %zu streams for %u s more",
             name, hub_count(g->app.hub), g->cfg.drain_secs);
    if (g->cfg.drain_secs == 0 || evtimer_add(g->linger_ev, &linger) == -1)
        main_stop_serving(g);
}

/* SIGHUP (logrotate moved LOG_FILE): reopen it, never exit. On the main
 * loop, as a libevent signal event, not in a signal handler. */
static void
main_on_hup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    switch (log_reopen()) {
    case 1:
        log_info("SIGHUP: LOG_FILE reopened");
        break;
    case 0:
        log_info("SIGHUP: logging to stderr, nothing to reopen");
        break;
    default:
        log_error("SIGHUP: cannot reopen LOG_FILE (%s); logging on to the old file",
                  strerror(errno));
        break;
    }
}

/* "retry: N" tells EventSource how long to wait before reconnecting; the
 * comment names the instance, so `curl -N` shows life at once. The first
 * event's frame ends with its own blank line (sse_frame_new_retry). */
static struct sse_frame *
main_hello_frame(const struct config *cfg)
{
    char comment[CONFIG_SERVER_ID_MAX + 16];

    snprintf(comment, sizeof(comment), "ssegate %s", cfg->server_id);
    return sse_frame_new_retry(cfg->sse_retry_ms, comment);
}

/* `ssegate token --sub ID [--ttl SECS] [--firehose] [--topic T]...`: prints a stream
 * token signed with AUTH_SECRET, for operators and tests. argv[0] is
 * "token". Exit 0, or 2 with one line when there is nothing to sign
 * with or a setting is wrong. */
static int
main_token(int argc, char **argv)
{
    static struct config cfg;
    struct config_token t;
    struct auth *a = NULL;
    char err[256], *tok;

    switch (config_load_token(&cfg, &t, argc, argv, main_getenv, err, sizeof(err))) {
    case CONFIG_OK:
        break;
    case CONFIG_HELP:
        config_usage_token(stdout, "ssegate");
        return 0;
    case CONFIG_VERSION:
        printf("ssegate %s\n", SSEGATE_VERSION);
        return 0;
    case CONFIG_ERROR:
        fprintf(stderr, "ssegate token: %s\n", err);
        return 2;
    }
    if (cfg.auth_secret[0] == '\0') {
        fprintf(stderr, "ssegate token: AUTH_SECRET (or --auth-secret) is not set: "
                "there is no key to sign with\n");
        return 2;
    }
    if (auth_new(&cfg, &a, err, sizeof(err)) == -1) {
        fprintf(stderr, "ssegate token: %s\n", err);
        return 2;
    }
    tok = auth_sign(a, t.sub, clock_wall_ms(), t.ttl_secs, t.firehose, t.topic_ptrs,
                    t.ntopics);
    auth_free(a);
    if (tok == NULL) {
        fprintf(stderr, "ssegate token: out of memory\n");
        return 1;
    }
    printf("%s\n", tok);
    free(tok);
    return 0;
}

int
main(int argc, char **argv)
{
    static struct gateway g;
    char err[256];
    int status = 1;

    if (argc > 1 && strcmp(argv[1], "token") == 0)
        return main_token(argc - 1, argv + 1);
    switch (config_load(&g.cfg, argc, argv, main_getenv, err, sizeof(err))) {
    case CONFIG_OK:
        break;
    case CONFIG_HELP:
        config_usage(stdout, "ssegate");
        return 0;
    case CONFIG_VERSION:
        printf("ssegate %s\n", SSEGATE_VERSION);
        return 0;
    case CONFIG_ERROR:
        fprintf(stderr, "ssegate: %s\n", err);
        return 2;
    }
    /* A key that cannot be used is a setting to fix, like any other. */
    if (auth_new(&g.cfg, &g.app.auth, err, sizeof(err)) == -1) {
        fprintf(stderr, "ssegate: %s\n", err);
        return 2;
    }
    /* Checking who reads while letting anyone write is not secure. */
    if (g.app.auth != NULL && g.cfg.publish_keys[0] == '\0') {
        fprintf(stderr, "ssegate: secure mode (AUTH_SECRET or AUTH_PUBLIC_KEY_FILE) "
                        "needs PUBLISH_KEYS: otherwise anyone may write\n");
        auth_free(g.app.auth);
    strictjson_thread_end();
        return 2;
    }
    /* Until the libevent signal event replaces it, a SIGHUP (logrotate
     * early) must not kill the process. */
    signal(SIGHUP, SIG_IGN);
    log_set_level((enum log_level)g.cfg.log_level);
    log_set_format((enum log_format)g.cfg.log_format);
    log_set_server_id(g.cfg.server_id);
    if (log_open_file(g.cfg.log_file) == -1) {
        fprintf(stderr, "ssegate: LOG_FILE: cannot open '%s': %s\n", g.cfg.log_file,
                strerror(errno));
        auth_free(g.app.auth);
        return 2;
    }
    /* MHD sends with MSG_NOSIGNAL, but hiredis uses plain write(). */
    signal(SIGPIPE, SIG_IGN);
    /* Request bodies (up to 64 KiB), what is parsed from them, and big
     * frames come and go in bursts, across threads: freed into glibc's
     * per-thread heaps, 2,000 connections' bodies stayed resident (100 MB)
     * after their clients left. Before any thread starts. */
    mallopt(M_MMAP_THRESHOLD, MAIN_MMAP_THRESHOLD);
    srandom((unsigned)time(NULL) ^ (unsigned)getpid());
    main_raise_fd_limit(&g.cfg);
    store_setup(&g.cfg);
    /* With REDIS_SENTINELS, the thread that asks them for the master. */
    if (rconn_start() == -1) {
        log_error("start-up failed: cannot start the Redis Sentinel lookups");
        return 1;
    }

    g.app.cfg = &g.cfg;
    atomic_init(&g.app.stopping, 0);
    atomic_init(&g.app.draining, 0);
    /* Only digests are kept; the keys' text goes from the config. */
    if (pubkey_set_init(&g.keys, g.cfg.publish_keys) == -1) {
        log_error("start-up failed: PUBLISH_KEYS: cannot hash the keys");
        return 1;
    }
    memset(g.cfg.publish_keys, 0, sizeof(g.cfg.publish_keys));
    g.app.keys = &g.keys;
    if (pubkey_set_init(&g.metrics_keys, g.cfg.metrics_key) == -1) {
        log_error("start-up failed: METRICS_KEY: cannot hash the keys");
        return 1;
    }
    memset(g.cfg.metrics_key, 0, sizeof(g.cfg.metrics_key));
    g.app.metrics_keys = &g.metrics_keys;
    /* The writer loops are woken from other threads (event_active). */
    if (evthread_use_pthreads() != 0) {
        log_error("start-up failed: libevent threads");
        return 1;
    }
    if ((g.base = event_base_new()) == NULL ||
        (g.fanout = fanout_new(g.cfg.fanout_threads, MAIN_FANOUT_MIN)) == NULL ||
        (g.clients = clients_new(g.cfg.max_connections_per_client)) == NULL ||
        (g.app.hub = hub_new(g.fanout, (int)g.cfg.fanout_uring)) == NULL ||
        (g.app.hello = main_hello_frame(&g.cfg)) == NULL ||
        (g.app.replay = replay_new(g.base, &g.cfg)) == NULL ||
        (g.app.sub = subscriber_new(g.base, &g.cfg, g.app.hub, g.app.replay)) == NULL ||
        (g.presence = presence_new(g.base, &g.cfg, g.app.hub)) == NULL ||
        (g.sigint_ev = evsignal_new(g.base, SIGINT, main_on_signal, &g)) == NULL ||
        (g.sigterm_ev = evsignal_new(g.base, SIGTERM, main_on_signal, &g)) == NULL ||
        (g.sighup_ev = evsignal_new(g.base, SIGHUP, main_on_hup, &g)) == NULL ||
        (g.drain_ev = event_new(g.base, -1, EV_PERSIST, main_on_drain, &g)) == NULL ||
        (g.linger_ev = evtimer_new(g.base, main_on_linger, &g)) == NULL ||
        event_add(g.sigint_ev, NULL) == -1 || event_add(g.sigterm_ev, NULL) == -1 ||
        event_add(g.sighup_ev, NULL) == -1) {
        log_error("start-up failed: out of memory");
        goto out;
    }
    if ((g.app.writers = writers_start(&g.cfg, g.app.hub)) == NULL) {
        log_error("start-up failed: cannot start the stream writers");
        goto out;
    }
    api_routes(&g.app, &g.routes);
    if ((g.http = http_start(&g.cfg, &g.routes, g.clients, err, sizeof(err))) == NULL) {
        log_error("start-up failed: %s", err);
        goto out;
    }
    /* Room in the publish backlog resumes the publishers waiting for it. */
    subscriber_on_room(g.app.sub, http_wake, g.http);
    if ((g.trim = trim_new(g.base, g.http, g.app.hub)) == NULL) {
        log_error("start-up failed: out of memory");
        goto out;
    }
    rconn_target(err, sizeof(err));
    log_info("ssegate %s listening on %s:%u (server id %s, %u HTTP threads, "
             "redis %s, channel %s, writes %s)", SSEGATE_VERSION,
             g.cfg.listen_addr, g.cfg.port, g.cfg.server_id, g.cfg.http_threads,
             err, g.cfg.redis_channel,
             pubkey_set_enabled(&g.keys) ? "need a publish key" : "open to all");
    if (g.app.auth != NULL)
        log_info("secure mode: streams need a token (%s)", auth_algs(g.app.auth));
    event_base_dispatch(g.base);
    status = 0;
    log_info("stopped");
out:
    /* Reverse order of creation. http_stop joins the HTTP threads, whose
     * Redis connections close as they exit (they hand streams to the
     * replay reader, so it goes after them). */
    trim_free(g.trim);
    subscriber_on_room(g.app.sub, NULL, NULL);
    http_stop(g.http);
    writers_stop(g.app.writers);
    presence_free(g.presence);
    subscriber_free(g.app.sub);
    replay_free(g.app.replay);
    rconn_stop();
    hub_free(g.app.hub);
    /* After every stream's last reference: each gave its client's place
     * back as its socket closed. */
    clients_free(g.clients);
    fanout_free(g.fanout);
    sse_frame_unref(g.app.hello);
    for (size_t i = 0; i < g.app.nlast; i++)
        sse_frame_unref(g.app.last[i]);
    auth_free(g.app.auth);
    if (g.drain_ev != NULL)
        event_free(g.drain_ev);
    if (g.linger_ev != NULL)
        event_free(g.linger_ev);
    if (g.sighup_ev != NULL)
        event_free(g.sighup_ev);
    if (g.sigterm_ev != NULL)
        event_free(g.sigterm_ev);
    if (g.sigint_ev != NULL)
        event_free(g.sigint_ev);
    if (g.base != NULL)
        event_base_free(g.base);
    libevent_global_shutdown();
    pubkey_set_clear(&g.keys);
    pubkey_set_clear(&g.metrics_keys);
    return status;
}
