/* presence.h -- who is on each topic, told to Redis: this instance's
 * streams on each topic and each member's (a user id or a token's sub),
 * kept here from the hub's join and leave hooks and sent as absolute
 * counts (write.lua's 'presence' op) on the main loop's own connection;
 * the instance kept alive in Redis ('alive', every PRESENCE_TTL_SECS / 6)
 * and dead instances' counts taken away; GET /presence reads what every
 * instance told (store_presence_get_command). See docs/ARCHITECTURE.md
 * "Presence". */
#ifndef SSEGATE_PRESENCE_H
#define SSEGATE_PRESENCE_H

struct config;
struct event_base;
struct hub;
struct presence;

/* Listens to hub's topics (hub_add_topic_hooks: before any stream is
 * added) and starts telling Redis. NULL when out of memory. */
struct presence *
presence_new(struct event_base *base, const struct config *cfg, struct hub *hub);

/* Shutdown, first step: this instance leaves (its counts and its
 * members' leave events go at once, in one script), and what changes
 * after is not sent. */
void
presence_leave(struct presence *p);

/* 1 once Redis answered presence_leave (or could not: Redis is away, and
 * the other instances take the counts away within PRESENCE_TTL_SECS):
 * shutdown may go on. */
int
presence_settled(const struct presence *p);

/* Stops listening to the hub and frees everything; what is in flight is
 * failed. NULL is ignored. */
void
presence_free(struct presence *p);

#endif
