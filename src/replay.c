/* replay.c -- history into streams. Owns nothing past a call: the frames
 * store.c builds are borrowed by stream_finish_replay (which takes its own
 * references) and dropped here. */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "replay.h"
#include "sse.h"
#include "store.h"
#include "stream.h"

/* The "gap" event has no id: the client keeps its Last-Event-ID, and the
 * data says from where events were lost so it can reload over REST. */
static struct sse_frame *
replay_gap_frame(const struct event_id *after)
{
    char id[EVENTID_STR_MAX], data[256];
    int n;

    eventid_format(after, id, sizeof(id));
    n = snprintf(data, sizeof(data),
                 "{\"type\":\"gap\",\"lastEventId\":\"%s\",\"message\":"
                 "\"events after this id were trimmed from history; "
                 "reload state over REST\"}", id);
    if (n < 0 || (size_t)n >= sizeof(data))
        return NULL;
    return sse_frame_new_event(NULL, "gap", data, (size_t)n);
}

enum store_result
replay_finish(struct stream *s, const struct event_id *after, struct store_replay *r)
{
    struct sse_frame *gap = NULL;

    if (r->gap && (gap = replay_gap_frame(after)) == NULL) {
        store_replay_clear(r);
        return STORE_ERROR;
    }
    stream_finish_replay(s, gap, r->frames, r->n, r->has_start ? &r->start : NULL);
    sse_frame_unref(gap);
    store_replay_clear(r);
    return STORE_OK;
}

/* Reads history after `after` for s and finishes one replay with it. */
static enum store_result
replay_run(struct stream *s, const struct event_id *after)
{
    const char *uid = stream_user_id(s);
    struct store_replay r;
    enum store_result rc;

    rc = store_stream_open(uid[0] ? uid : NULL, after, &r);
    if (rc != STORE_OK)
        return rc;
    return replay_finish(s, after, &r);
}

void
replay_recover(struct stream *s)
{
    struct event_id after;
    enum store_result rc;

    stream_begin_replay(s, &after);
    rc = replay_run(s, &after);
    if (rc != STORE_OK) {
        /* Release the held frames, then end: the client reconnects with
         * its Last-Event-ID and the replay is retried on its open. */
        stream_finish_replay(s, NULL, NULL, 0, NULL);
        stream_end(s, STREAM_END_REPLAY_FAILED);
    }
}
