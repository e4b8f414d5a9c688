/* evpipe.h -- a pipeline (pipeline.h) driven by a libevent loop: watches
 * its socket for what it asks, wakes at its deadlines (and the owner's),
 * and after each turn calls the owner's pump. For the main loop's Redis
 * users: the replay reader (replay.c) and presence (presence.c). Not
 * thread-safe: everything runs on the loop's thread. */
#ifndef SSEGATE_EVPIPE_H
#define SSEGATE_EVPIPE_H

struct config;
struct event_base;
struct evpipe;
struct pipeline;

/* Called on the loop after the pipeline handled its socket or its
 * deadlines (replies ran their done callbacks): the owner sends what it
 * may, then calls evpipe_arm. */
typedef void (*evpipe_pump_fn)(void *arg);

/* A pipeline for cfg's Redis (connected on first use), or NULL when out
 * of memory. */
struct evpipe *
evpipe_new(struct event_base *base, const struct config *cfg, evpipe_pump_fn pump,
           void *arg);

/* Frees the pipeline first (every command in flight is failed, its done
 * callback run), then the events. NULL is ignored. */
void
evpipe_free(struct evpipe *ep);

struct pipeline *
evpipe_pipeline(struct evpipe *ep);

/* Ends a pump: writes what was sent, watches the socket for what the
 * pipeline now asks, and wakes the pump at the pipeline's next deadline
 * or within wake_ms (-1: no wake of the owner's own). */
void
evpipe_arm(struct evpipe *ep, int wake_ms);

#endif
