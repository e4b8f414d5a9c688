/* subscriber.h -- the instance's one Redis subscription: hiredis async on
 * the main libevent loop. Turns each channel message into one shared
 * frame for the hub, reconnects with back-off and,
 * once resubscribed, replays history into every open stream. */
#ifndef SSEGATE_SUBSCRIBER_H
#define SSEGATE_SUBSCRIBER_H

struct event_base;
struct config;
struct hub;
struct subscriber;

/* Borrows base, cfg and hub; they must outlive the subscriber. Returns
 * NULL when out of memory. Connecting starts at once (asynchronously). */
struct subscriber *
subscriber_new(struct event_base *base, const struct config *cfg,
               struct hub *hub);

/* Disconnects and frees; NULL is ignored. Loop thread only. */
void
subscriber_free(struct subscriber *sub);

/* 1 while subscribed to the channel; any thread. */
int
subscriber_is_up(const struct subscriber *sub);

/* Publish backpressure, any thread. Returns 0 at once while fewer than
 * PUBLISH_BACKLOG of this instance's events are waiting to be fanned out
 * (or while unsubscribed: the replay covers those); else waits up to
 * PUBLISH_WAIT_MS for room and returns -1 if none came. */
int
subscriber_wait_room(struct subscriber *sub);

/* Counts events of this instance's as accepted, after their write. */
void
subscriber_note_published(struct subscriber *sub, unsigned events);

#endif
