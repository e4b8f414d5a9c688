/* fanout.c -- spreads one event's sends over more than one core. Owns its
 * helper threads. Why: over TCP every send runs the
 * kernel's whole transmit path (and on loopback the receiver's too), about
 * 5 us, so one thread sending an event to 1,000 streams makes the last
 * recipient wait 5 ms. Items are claimed in chunks from one atomic cursor:
 * whoever is free takes the next chunk, so a helper that wakes late costs
 * nothing, and the run ends with a barrier so runs never overlap. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "fanout.h"

#define FANOUT_CHUNK 16         /* items per claim: cheap cursor, fair split */

/* A helper thread: its fan-out and its worker number. */
struct fanout_helper {
    pthread_t thread;
    struct fanout *fo;
    unsigned worker;
};

struct fanout {
    pthread_mutex_t mu;
    pthread_cond_t work;        /* a run opened, or stop */
    pthread_cond_t idle;        /* the last helper left the run */
    struct fanout_helper *helper;
    unsigned nthreads;          /* helpers started */
    size_t min_items;
    /* The open run; under mu, but for the cursor. */
    void *const *items;
    size_t n;
    fanout_fn fn;
    void *arg;
    atomic_size_t cursor;
    unsigned long gen;          /* run number, so a helper joins each once */
    int open;                   /* helpers may still join */
    unsigned active;            /* helpers inside the run */
    int stopping;
};

/* Claims chunks until none is left. */
static void
fanout_work(struct fanout *fo, void *const *items, size_t n, fanout_fn fn,
            void *arg, unsigned worker)
{
    for (;;) {
        size_t i = atomic_fetch_add(&fo->cursor, FANOUT_CHUNK);

        if (i >= n)
            return;
        fn(items + i, n - i < FANOUT_CHUNK ? n - i : FANOUT_CHUNK, worker, arg);
    }
}

static void *
fanout_helper_main(void *arg)
{
    struct fanout_helper *me = arg;
    struct fanout *fo = me->fo;
    unsigned long seen = 0;

    pthread_mutex_lock(&fo->mu);
    for (;;) {
        void *const *items;
        size_t n;
        fanout_fn fn;
        void *fn_arg;

        while (!fo->stopping && (!fo->open || seen == fo->gen))
            pthread_cond_wait(&fo->work, &fo->mu);
        if (fo->stopping)
            break;
        seen = fo->gen;
        fo->active++;
        items = fo->items;
        n = fo->n;
        fn = fo->fn;
        fn_arg = fo->arg;
        pthread_mutex_unlock(&fo->mu);
        fanout_work(fo, items, n, fn, fn_arg, me->worker);
        pthread_mutex_lock(&fo->mu);
        if (--fo->active == 0)
            pthread_cond_signal(&fo->idle);
    }
    pthread_mutex_unlock(&fo->mu);
    return NULL;
}

struct fanout *
fanout_new(unsigned helpers, size_t min_items)
{
    struct fanout *fo = calloc(1, sizeof(*fo));

    if (fo == NULL)
        return NULL;
    pthread_mutex_init(&fo->mu, NULL);
    pthread_cond_init(&fo->work, NULL);
    pthread_cond_init(&fo->idle, NULL);
    atomic_init(&fo->cursor, 0);
    fo->min_items = min_items;
    if (helpers > 0 && (fo->helper = calloc(helpers, sizeof(*fo->helper))) == NULL) {
        fanout_free(fo);
        return NULL;
    }
    for (; fo->nthreads < helpers; fo->nthreads++) {
        struct fanout_helper *me = &fo->helper[fo->nthreads];

        me->fo = fo;
        me->worker = fo->nthreads + 1;
        if (pthread_create(&me->thread, NULL, fanout_helper_main, me) != 0) {
            fanout_free(fo);
            return NULL;
        }
    }
    return fo;
}

void
fanout_free(struct fanout *fo)
{
    if (fo == NULL)
        return;
    pthread_mutex_lock(&fo->mu);
    fo->stopping = 1;
    pthread_cond_broadcast(&fo->work);
    pthread_mutex_unlock(&fo->mu);
    for (unsigned i = 0; i < fo->nthreads; i++)
        pthread_join(fo->helper[i].thread, NULL);
    free(fo->helper);
    pthread_cond_destroy(&fo->idle);
    pthread_cond_destroy(&fo->work);
    pthread_mutex_destroy(&fo->mu);
    free(fo);
}

void
fanout_run(struct fanout *fo, void *const *items, size_t n, fanout_fn fn, void *arg)
{
    if (fo->nthreads == 0 || n < fo->min_items) {
        if (n > 0)
            fn(items, n, 0, arg);
        return;
    }
    pthread_mutex_lock(&fo->mu);
    fo->items = items;
    fo->n = n;
    fo->fn = fn;
    fo->arg = arg;
    atomic_store(&fo->cursor, 0);
    fo->gen++;
    fo->open = 1;
    pthread_cond_broadcast(&fo->work);
    pthread_mutex_unlock(&fo->mu);

    fanout_work(fo, items, n, fn, arg, 0);

    /* The barrier: a helper still in a chunk may be sending to a stream
     * the next run sends to as well. */
    pthread_mutex_lock(&fo->mu);
    fo->open = 0;
    while (fo->active > 0)
        pthread_cond_wait(&fo->idle, &fo->mu);
    pthread_mutex_unlock(&fo->mu);
}

unsigned
fanout_workers(const struct fanout *fo)
{
    return fo->nthreads + 1;
}
