/* replay.h -- fills a stream from Redis history: when it opens (with or
 * without Last-Event-ID) and when the subscriber comes back after losing
 * Redis, so a client never misses an event that history still holds. */
#ifndef SSEGATE_REPLAY_H
#define SSEGATE_REPLAY_H

#include "eventid.h"
#include "store.h"

struct stream;

/* Finishes the opening replay of a new stream (stream_new starts in
 * replay mode) with the history read r made for it (store_read_command
 * on the HTTP thread's pipeline): queues, in order, a "gap" event if
 * history lost events after *after, then r's events, then what arrived
 * live meanwhile (after == NULL: the stream starts at the deployment's
 * current last id, no replay). Takes r's frames either way. */
enum store_result
replay_finish(struct stream *s, const struct event_id *after, struct store_replay *r);

/* The gap event for a stream whose Last-Event-ID is not an event id of
 * ours (the raw value, shown safely in its data): such a stream starts
 * now, with this event first. NULL when out of memory. */
struct sse_frame *
replay_foreign_gap(const char *raw_id);

/* After a lost subscription: queues every event after the last one the
 * stream queued. A stream whose history cannot be read is ended, so its
 * client resumes with Last-Event-ID instead of silently missing events. */
void
replay_recover(struct stream *s);

#endif
