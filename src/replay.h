/* replay.h -- fills a stream from Redis history: when it opens (with or
 * without Last-Event-ID) and when the subscriber comes back after losing
 * Redis, so a client never misses an event that history still holds. */
#ifndef SSEGATE_REPLAY_H
#define SSEGATE_REPLAY_H

#include "eventid.h"
#include "store.h"

struct stream;

/* Finishes the opening replay of a new stream (stream_new starts in
 * replay mode): checks the account exists and queues, in order, a "gap"
 * event if history lost events after *after, then every held event after
 * *after (after == NULL: start at the deployment's current last id, no
 * replay). On failure the stream is left as it was (replay still open)
 * and the caller drops it. Runs on the calling thread's Redis connection. */
enum store_result
replay_open(struct stream *s, const struct event_id *after);

/* replay_open's second half, for a history read made elsewhere (a
 * pipelined stream open): queues the gap event if r says so and r's
 * frames. Takes r's frames either way. */
enum store_result
replay_finish(struct stream *s, const struct event_id *after, struct store_replay *r);

/* After a lost subscription: queues every event after the last one the
 * stream queued. A stream whose history cannot be read is ended, so its
 * client resumes with Last-Event-ID instead of silently missing events. */
void
replay_recover(struct stream *s);

#endif
