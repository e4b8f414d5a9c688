/* clients.h -- how many connections each client address holds
 * (MAX_CONNECTIONS_PER_CLIENT), counted across the HTTP threads, which
 * take a connection's slot, and whoever ends a taken-over stream, which
 * gives it back. Thread-safe. */
#ifndef SSEGATE_CLIENTS_H
#define SSEGATE_CLIENTS_H

#include "netaddr.h"

struct clients;

/* One connection's place in its client's count: empty (c == NULL) or
 * held. A held slot must be released exactly once, or moved; it is
 * plain data, so moving it is copying it and emptying the source
 * (clients_move). */
struct clients_slot {
    struct clients *c;
    struct netaddr addr;
};

enum clients_result {
    CLIENTS_OK = 0,             /* counted (or no cap: nothing to count) */
    CLIENTS_FULL,               /* the address holds max_per_client already */
    CLIENTS_NO_MEMORY
};

/* A table allowing max_per_client connections per address; 0: no cap,
 * and then nothing is counted at all. NULL when out of memory. */
struct clients *
clients_new(unsigned max_per_client);

/* Every slot must have been released. NULL is ignored. */
void
clients_free(struct clients *c);

/* Counts one more connection for a (netaddr_client_key applied by the
 * caller) into *slot, which must be empty; on anything but CLIENTS_OK
 * *slot stays empty. Any thread. */
enum clients_result
clients_acquire(struct clients *c, const struct netaddr *a, struct clients_slot *slot);

/* Gives a held slot back and empties it; an empty one is ignored. Any
 * thread, under any lock of ours: the table's locks are leaves. */
void
clients_release(struct clients_slot *slot);

/* *to (empty) takes *from's slot; *from is left empty. */
void
clients_move(struct clients_slot *to, struct clients_slot *from);

/* How many connections a holds now (for tests and logs). */
unsigned
clients_count(struct clients *c, const struct netaddr *a);

#endif
