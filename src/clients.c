/* clients.c -- connections per client address. Owns a table of counts,
 * split into shards by the address's hash, each under its own mutex; an
 * address has an entry only while it holds a connection, so the table
 * grows with the clients connected, not with every client ever seen.
 *
 * The shard mutexes are leaves: nothing else is locked while one is
 * held, so any thread may release a slot under any lock of its own (a
 * stream's last reference can go inside a fan-out, under a hub shard). */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clients.h"

#define CLIENTS_SHARDS 64           /* power of two */
#define CLIENTS_SLOTS 64            /* chains per shard, power of two */

struct clients_entry {
    struct clients_entry *next;
    struct netaddr addr;
    unsigned count;
};

struct clients_shard {
    pthread_mutex_t mu;
    struct clients_entry *chain[CLIENTS_SLOTS];
};

struct clients {
    unsigned max;
    struct clients_shard shard[CLIENTS_SHARDS];
};

static uint32_t
clients_hash(const struct netaddr *a)
{
    uint32_t h = 2166136261u;   /* FNV-1a: 4 or 16 bytes, cheap, good spread */
    size_t n = a->family == 4 ? 4 : 16;

    h = (h ^ a->family) * 16777619u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ a->bytes[i]) * 16777619u;
    return h;
}

struct clients *
clients_new(unsigned max_per_client)
{
    struct clients *c = calloc(1, sizeof(*c));
    int i;

    if (c == NULL)
        return NULL;
    c->max = max_per_client;
    for (i = 0; i < CLIENTS_SHARDS; i++) {
        if (pthread_mutex_init(&c->shard[i].mu, NULL) != 0)
            goto err;
    }
    return c;
err:
    while (--i >= 0)
        pthread_mutex_destroy(&c->shard[i].mu);
    free(c);
    return NULL;
}

void
clients_free(struct clients *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < CLIENTS_SHARDS; i++) {
        for (int j = 0; j < CLIENTS_SLOTS; j++) {
            struct clients_entry *e = c->shard[i].chain[j], *next;

            for (; e != NULL; e = next) {
                next = e->next;
                free(e);
            }
        }
        pthread_mutex_destroy(&c->shard[i].mu);
    }
    free(c);
}

/* Caller holds the shard's lock. The link pointing at a's entry, or at
 * the NULL ending its chain. */
static struct clients_entry **
clients_find(struct clients_shard *sh, uint32_t hash, const struct netaddr *a)
{
    struct clients_entry **ep = &sh->chain[(hash / CLIENTS_SHARDS) & (CLIENTS_SLOTS - 1)];

    while (*ep != NULL && !netaddr_equal(&(*ep)->addr, a))
        ep = &(*ep)->next;
    return ep;
}

enum clients_result
clients_acquire(struct clients *c, const struct netaddr *a, struct clients_slot *slot)
{
    uint32_t hash;
    struct clients_shard *sh;
    struct clients_entry **ep, *e;
    enum clients_result rc = CLIENTS_OK;

    slot->c = NULL;
    if (c == NULL || c->max == 0)
        return CLIENTS_OK;
    hash = clients_hash(a);
    sh = &c->shard[hash & (CLIENTS_SHARDS - 1)];
    pthread_mutex_lock(&sh->mu);
    ep = clients_find(sh, hash, a);
    if ((e = *ep) == NULL) {
        if ((e = calloc(1, sizeof(*e))) == NULL) {
            rc = CLIENTS_NO_MEMORY;
            goto out;
        }
        e->addr = *a;
        *ep = e;
    }
    if (e->count >= c->max) {
        rc = CLIENTS_FULL;
        goto out;
    }
    e->count++;
    slot->c = c;
    slot->addr = *a;
out:
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

void
clients_release(struct clients_slot *slot)
{
    struct clients *c = slot->c;
    uint32_t hash;
    struct clients_shard *sh;
    struct clients_entry **ep, *e;

    if (c == NULL)
        return;
    slot->c = NULL;
    hash = clients_hash(&slot->addr);
    sh = &c->shard[hash & (CLIENTS_SHARDS - 1)];
    pthread_mutex_lock(&sh->mu);
    ep = clients_find(sh, hash, &slot->addr);
    if ((e = *ep) != NULL && --e->count == 0) {
        *ep = e->next;
        free(e);
    }
    pthread_mutex_unlock(&sh->mu);
}

void
clients_move(struct clients_slot *to, struct clients_slot *from)
{
    *to = *from;
    from->c = NULL;
}

unsigned
clients_count(struct clients *c, const struct netaddr *a)
{
    uint32_t hash;
    struct clients_shard *sh;
    struct clients_entry *e;
    unsigned n;

    if (c == NULL)
        return 0;
    hash = clients_hash(a);
    sh = &c->shard[hash & (CLIENTS_SHARDS - 1)];
    pthread_mutex_lock(&sh->mu);
    e = *clients_find(sh, hash, a);
    n = e != NULL ? e->count : 0;
    pthread_mutex_unlock(&sh->mu);
    return n;
}
