/* fanout.h -- a parallel for-each with a barrier, for sending one event to
 * many streams on more than one core. The caller works too; helpers join
 * while the run lasts; the call returns only when every item is done, so
 * the next event's run cannot overtake this one on any stream. */
#ifndef SSEGATE_FANOUT_H
#define SSEGATE_FANOUT_H

#include <stddef.h>

struct fanout;

typedef void (*fanout_fn)(void *item, void *arg);

/* Starts helpers threads (0: every run is serial on the caller). Runs of
 * fewer than min_items items stay serial. Returns NULL on failure. */
struct fanout *
fanout_new(unsigned helpers, size_t min_items);

/* Stops the helpers and frees fo. NULL is ignored. */
void
fanout_free(struct fanout *fo);

/* Calls fn(items[i], arg) once for every i < n, spread over the caller
 * and the helpers, and returns when all calls have returned. Calls on one
 * run may happen in any order. One run at a time: callers serialise. */
void
fanout_run(struct fanout *fo, void *const *items, size_t n, fanout_fn fn, void *arg);

/* Returns a scratch array of at least n pointers owned by fo, valid
 * until the next call, or NULL when out of memory. For building a run's
 * items without an allocation per event; caller serialised. */
void **
fanout_scratch(struct fanout *fo, size_t n);

#endif
