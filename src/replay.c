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
 * data says from where events may be missing so it can reload over REST.
 * id is the client's own (already an event id, or printable ASCII). */
static struct sse_frame *
replay_gap_frame(const char *id, const char *why)
{
    char data[256];
    int n = snprintf(data, sizeof(data),
                     "{\"type\":\"gap\",\"lastEventId\":\"%s\",\"message\":\"%s; "
                     "reload state over REST\"}", id, why);

    if (n < 0 || (size_t)n >= sizeof(data))
        return NULL;
    return sse_frame_new_event(NULL, "gap", data, (size_t)n);
}

/* A Last-Event-ID that is not one of ours (an id from an earlier system,
 * a trailing space), shown safely: printable ASCII but the JSON string's
 * own specials, at most REPLAY_FOREIGN_ID_MAX bytes. */
#define REPLAY_FOREIGN_ID_MAX 64
static void
replay_show_id(const char *raw, char *out, size_t cap)
{
    size_t n = 0;

    for (; *raw != '\0' && n + 1 < cap && n < REPLAY_FOREIGN_ID_MAX; raw++) {
        unsigned char ch = (unsigned char)*raw;

        out[n++] = ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\' ? (char)ch : '?';
    }
    out[n] = '\0';
}

struct sse_frame *
replay_foreign_gap(const char *raw_id)
{
    char id[REPLAY_FOREIGN_ID_MAX + 1];

    replay_show_id(raw_id, id, sizeof(id));
    return replay_gap_frame(id, "this id is not an event id of this service, "
                                "so events before this stream may be missing");
}

enum store_result
replay_finish(struct stream *s, const struct event_id *after, struct store_replay *r)
{
    struct sse_frame *gap = NULL;

    char id[EVENTID_STR_MAX];

    if (r->gap) {
        eventid_format(after, id, sizeof(id));
        if ((gap = replay_gap_frame(id, "events after this id were trimmed from history")) == NULL) {
            store_replay_clear(r);
            return STORE_ERROR;
        }
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
