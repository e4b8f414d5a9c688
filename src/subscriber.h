/* subscriber.h -- the instance's one Redis subscription (the gateways'
 * own channel and REDIS_CHANNEL): hiredis async on the main libevent
 * loop. Turns each channel message into one shared frame for the hub,
 * reconnects with back-off and, once resubscribed, has the replay reader
 * catch every open stream up from history. */
#ifndef SSEGATE_SUBSCRIBER_H
#define SSEGATE_SUBSCRIBER_H

struct event_base;
struct config;
struct event_id;
struct hub;
struct replay;
struct subscriber;

/* Borrows base, cfg, hub and replay; they must outlive the subscriber.
 * Returns NULL when out of memory. Connecting starts at once
 * (asynchronously). */
struct subscriber *
subscriber_new(struct event_base *base, const struct config *cfg,
               struct hub *hub, struct replay *replay);

/* Disconnects and frees; NULL is ignored. Loop thread only. */
void
subscriber_free(struct subscriber *sub);

/* 1 while subscribed to both channels (ours and REDIS_CHANNEL); any
 * thread. */
int
subscriber_is_up(const struct subscriber *sub);

/* Publish backpressure, any thread. 1 while fewer than PUBLISH_BACKLOG
 * of this instance's events are waiting to be fanned out (or while
 * unsubscribed: the replay covers those), else 0. Never waits. */
int
subscriber_has_room(struct subscriber *sub);

/* A publisher that found no room and will wait: subscriber_wait_begin,
 * then test subscriber_has_room again (room freed in between is then
 * either seen or announced through the room hook), and
 * subscriber_wait_end once it stops waiting, however that ends. Any
 * thread. */
void
subscriber_wait_begin(struct subscriber *sub);
void
subscriber_wait_end(struct subscriber *sub);

/* Sets the room hook: fn(arg) runs on the loop thread whenever room is
 * freed while someone waits (it must only wake the waiters, e.g. write an
 * eventfd). NULL fn: none. Loop thread only; NULL sub is ignored. */
void
subscriber_on_room(struct subscriber *sub, void (*fn)(void *), void *arg);

/* A write of this instance's got id: subscriber_last_id is at least it
 * from now on, before the event comes back through the channel. Any
 * thread. */
void
subscriber_note_id(struct subscriber *sub, const struct event_id *id);

/* The newest event id this instance fanned out or wrote, in *out:
 * returns 1, or 0 if it has seen none. Any thread. */
int
subscriber_last_id(struct subscriber *sub, struct event_id *out);

/* This instance's events accepted and not yet fanned out (may dip below
 * zero for a moment). Any thread. */
long
subscriber_backlog(const struct subscriber *sub);

/* Main thread: 1 when the subscription is up and both channels of each
 * of the n topics are confirmed by Redis, so history read now misses
 * nothing that comes live after. The hub tells the subscriber which
 * topics are held (its topic hooks, set by subscriber_new). */
int
subscriber_topics_ready(struct subscriber *sub, const char *const *topics, size_t n);

/* Counts events of this instance's as accepted, after their write. */
void
subscriber_note_published(struct subscriber *sub, unsigned events);

#endif
