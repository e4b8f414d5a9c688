/* sse.h -- Server-Sent Events framing into one shared, immutable,
 * reference-counted frame per event. Pure: no I/O. */
#ifndef SSEGATE_SSE_H
#define SSEGATE_SSE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "eventid.h"

/* Longest "event:" type we frame, and so the longest event type the API
 * accepts (body.c, envelope.c). */
#define SSE_EVENT_MAX 64

struct sse_frame {
    atomic_uint refcount;       /* frees at zero; any thread may unref */
    int has_id;                 /* 0 for comments and id-less events */
    struct event_id id;         /* valid when has_id */
    int event;                  /* an event (not a comment or a retry line) */
    /* A live event's envelope ts (ms since the epoch), set by its maker
     * before the frame is shared, for the delivery delay; 0: none. */
    int64_t ts_ms;
    size_t len;                 /* bytes in bytes[], excluding the NUL */
    char bytes[];               /* "id: ..\nevent: ..\ndata: ..\n\n" + NUL */
};

/* Builds an event frame: "id: <id>\n" (only when id != NULL), then
 * "event: <event>\n" (only when event != NULL and not empty), then one
 * "data: <line>\n" per line of data (lines split on "\r\n", "\n" or
 * "\r", as the SSE spec parses them; empty data gives one "data: \n"),
 * then "\n". Returns a frame with refcount 1 owned by the caller, or
 * NULL if allocation fails or event contains '\r' or '\n' or is longer
 * than SSE_EVENT_MAX. data need not be NUL-terminated. */
struct sse_frame *
sse_frame_new_event(const struct event_id *id, const char *event,
                    const char *data, size_t data_len);

/* A frame of literal bytes (a comment such as ": ping\n\n" or a
 * "retry:" line), copied; has_id is 0. Returns NULL on allocation
 * failure. */
struct sse_frame *
sse_frame_new_raw(const char *bytes, size_t len);

/* "retry: <retry_ms>\n: <comment>\n", with no blank line after ("retry"
 * takes effect when its line is read, WHATWG 9.2.6, and lenient clients
 * would dispatch a blank line as an empty message): a stream's hello,
 * and its last words when its instance stops. NULL on allocation failure
 * or a comment too long (256 bytes in all). */
struct sse_frame *
sse_frame_new_retry(unsigned retry_ms, const char *comment);

/* The retry a stream gets when its instance stops: r (any random number)
 * spread over [min(100, retry_ms), retry_ms], so thousands of clients do
 * not come back in the same millisecond. */
unsigned
sse_retry_spread(unsigned retry_ms, unsigned long r);

/* Takes one more reference and returns f. */
struct sse_frame *
sse_frame_ref(struct sse_frame *f);

/* Drops one reference; frees the frame at zero. NULL is ignored. */
void
sse_frame_unref(struct sse_frame *f);

/* The encoder behind sse_frame_new_event: writes at most cap bytes of
 * the frame into buf (no NUL) and returns the full frame length, so a
 * call with cap 0 sizes the buffer. */
size_t
sse_encode_event(char *buf, size_t cap, const struct event_id *id,
                 const char *event, const char *data, size_t data_len);

#endif
