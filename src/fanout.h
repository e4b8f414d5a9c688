/* fanout.h -- a parallel for-each with a barrier, for sending one event to
 * many streams on more than one core. The caller works too; helpers join
 * while the run lasts; the call returns only when every item is done, so
 * the next event's run cannot overtake this one on any stream. */
#ifndef SSEGATE_FANOUT_H
#define SSEGATE_FANOUT_H

#include <stddef.h>

struct fanout;

/* Called with a chunk of consecutive items; worker tells which thread
 * runs it (0 for the caller, 1..helpers for the helpers), so that a
 * callback can keep per-thread state without locks. */
typedef void (*fanout_fn)(void *const *items, size_t n, unsigned worker, void *arg);

/* Starts helpers threads (0: every run is serial on the caller). Runs of
 * fewer than min_items items stay serial. Returns NULL on failure. */
struct fanout *
fanout_new(unsigned helpers, size_t min_items);

/* Stops the helpers and frees fo. NULL is ignored. */
void
fanout_free(struct fanout *fo);

/* Calls fn on chunks covering every items[i] once, spread over the
 * caller and the helpers, and returns when all calls have returned.
 * Chunks of one run may run in any order. One run at a time: callers
 * serialise. */
void
fanout_run(struct fanout *fo, void *const *items, size_t n, fanout_fn fn, void *arg);

/* The number of threads that may run a run's chunks: helpers + 1. */
unsigned
fanout_workers(const struct fanout *fo);

#endif
