/* replay.h -- history into streams, a page at a time. A stream's opening
 * page is read on its HTTP thread's pipeline (api.c) and applied here;
 * every later page, every stream opened while Redis could not answer,
 * and every stream's catch-up after a lost subscription are read by the
 * replay reader: one pipelined Redis connection on the main loop, a few
 * pages in flight, each read only when its stream's queue has room for
 * it. Reads change nothing, so a failed one is simply read again once
 * Redis answers: a stream never ends because history could not be read
 * (only for a missing account, or out of memory). */
#ifndef SSEGATE_REPLAY_H
#define SSEGATE_REPLAY_H

#include <stddef.h>

#include "eventid.h"
#include "store.h"
#include "stream.h"

struct config;
struct event_base;
struct hub;
struct replay;

/* The most bytes of events one page holds (past its first event): half
 * a stream's queue, so one page can be read while the previous drains,
 * and at most REPLAY_PAGE_MAX_KIB, so no single read costs Redis more
 * than a few milliseconds. */
#define REPLAY_PAGE_MAX_KIB 256
size_t
replay_page_bytes(const struct config *cfg);

/* The opening page is smaller: it answers the open (the account check)
 * and starts the stream, on the HTTP thread, where a burst of opens
 * would otherwise keep writes waiting behind megabytes of history; a
 * resume after a blip fits in it, a longer one goes on in the reader. */
#define REPLAY_OPEN_PAGE_KIB 32
size_t
replay_open_page_bytes(const struct config *cfg);

/* Applies one page read for s (after: where it started, NULL for a
 * stream starting at the deployment's current last id; gen: what
 * stream_replay_gen said when it was sent): a "gap" event first if
 * history lost events after *after, then its events. Takes r's frames.
 * Returns what stream_replay_page says, with *next set on
 * STREAM_REPLAY_MORE; STREAM_REPLAY_OVER (the stream ended) when out of
 * memory. */
enum stream_replay
replay_apply(struct stream *s, const struct event_id *after,
             struct store_replay *r, unsigned gen, struct event_id *next);

/* The gap event for a stream whose Last-Event-ID is not an event id of
 * ours (the raw value, shown safely in its data): such a stream starts
 * now, with this event first. NULL when out of memory. */
struct sse_frame *
replay_foreign_gap(const char *raw_id);

/* The reader, on base (the main loop); borrows base and cfg. NULL when
 * out of memory. */
struct replay *
replay_new(struct event_base *base, const struct config *cfg);

/* Drops every stream it still reads for (their references) and closes
 * its connection. NULL is ignored. Main thread only. */
void
replay_free(struct replay *rp);

/* Any thread: reads s's history (s replaying, see stream_new and
 * stream_begin_replay) after *after, or from the deployment's current
 * last id when after is NULL, page by page until it caught up. Takes its
 * own reference to s. Returns 0, or -1 when out of memory (s is then
 * ended). */
int
replay_add(struct replay *rp, struct stream *s, const struct event_id *after);

/* Like replay_add, for a stream whose *after is where it opened (no id
 * of its client's): events trimmed before the first page are nothing it
 * missed, so that page reports no gap. */
int
replay_add_opened(struct replay *rp, struct stream *s, const struct event_id *after);

/* Main thread. fn(arg, s) says whether s's history may be read now: a
 * stream on topics waits until the subscriber has every one of them
 * subscribed, so that what its read misses comes live (subscriber.c sets
 * it; NULL fn: always). */
void
replay_set_ready(struct replay *rp, int (*fn)(void *arg, struct stream *s), void *arg);

/* Any thread: streams waiting for their topics may be ready now. */
void
replay_kick(struct replay *rp);

/* Main thread, once the subscription is back: every stream of hub reads
 * what it may have missed meanwhile, after the last id it queued. */
void
replay_recover(struct replay *rp, struct hub *hub);

#endif
