/* sentinel.h -- where the Redis master is, when Redis Sentinel says so
 * (REDIS_SENTINELS): one thread of ours asks the sentinels, checks that
 * the server they name says it is the master (ROLE), and keeps the answer
 * for rconn.c, which every Redis connection goes through. Connections
 * never wait for a sentinel: they read the last answer, and a connection
 * that lost the master (connect or I/O error, READONLY) only asks the
 * thread to look again (sentinel_suspect). Without REDIS_SENTINELS none of
 * this runs. */
#ifndef SSEGATE_SENTINEL_H
#define SSEGATE_SENTINEL_H

#include <stddef.h>
#include <stdint.h>

struct config;

/* Copies what the lookups need from cfg. Call once before other threads
 * start (rconn_setup does). */
void
sentinel_setup(const struct config *cfg);

/* 1 when REDIS_SENTINELS is set. Any thread. */
int
sentinel_enabled(void);

/* Starts the lookup thread (nothing without sentinels). Returns 0, or -1
 * when the thread cannot start. */
int
sentinel_start(void);

/* Stops and joins the thread; at most one lookup's timeouts late. */
void
sentinel_stop(void);

/* The master as last confirmed: 0 with host (cap bytes), *port and *gen
 * (changes with every new master) filled, or -1 while none is known yet.
 * Never waits on the network. Any thread. */
int
sentinel_master(char *host, size_t cap, uint16_t *port, unsigned *gen);

/* The current master's generation (0: none yet). Any thread. */
unsigned
sentinel_generation(void);

/* A connection lost the master (it could not connect, the connection
 * failed, or the server answered READONLY): ask the sentinels again now
 * rather than at the next periodic look. Cheap, any thread; a burst of
 * calls makes one lookup. */
void
sentinel_suspect(void);

/* fn(arg) is called on the lookup thread after each change of master
 * (NULL: none), so a connection on an event loop can reconnect at once.
 * fn must only hand the news over (event_active); it runs under the
 * hook's mutex, so after sentinel_on_change(NULL, NULL) returns it is not
 * running. */
void
sentinel_on_change(void (*fn)(void *), void *arg);

#endif
