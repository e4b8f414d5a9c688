/* sse.c -- Server-Sent Events framing. Owns struct sse_frame: each event
 * is encoded once into one allocation that every recipient shares by
 * reference, and the last sse_frame_unref(), on whichever thread, frees
 * it. Pure: no I/O. */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"

/* Appends n bytes of s at offset at, copying only what fits in cap. The
 * returned offset counts everything, so one pass both sizes and fills. */
static size_t
sse_put(char *buf, size_t cap, size_t at, const char *s, size_t n)
{
    if (n > 0 && at < cap)
        memcpy(buf + at, s, n <= cap - at ? n : cap - at);
    return at + n;
}

size_t
sse_encode_event(char *buf, size_t cap, const struct event_id *id,
                 const char *event, const char *data, size_t data_len)
{
    char idbuf[EVENTID_STR_MAX];
    size_t at = 0, i = 0;

    if (data == NULL) {         /* no data is empty data, one "data: \n" */
        data = "";
        data_len = 0;
    }
    if (id != NULL) {
        int n = eventid_format(id, idbuf, sizeof(idbuf));   /* always fits */

        at = sse_put(buf, cap, at, "id: ", 4);
        at = sse_put(buf, cap, at, idbuf, n > 0 ? (size_t)n : 0);
        at = sse_put(buf, cap, at, "\n", 1);
    }
    if (event != NULL && event[0] != '\0') {
        at = sse_put(buf, cap, at, "event: ", 7);
        at = sse_put(buf, cap, at, event, strlen(event));
        at = sse_put(buf, cap, at, "\n", 1);
    }
    /* One "data:" line per line of data. EventSource ends a line at CRLF,
     * LF or a lone CR, so a CR we passed through would cut the data short
     * and its remainder would be read as a field of its own. */
    for (;;) {
        size_t start = i;

        while (i < data_len && data[i] != '\n' && data[i] != '\r')
            i++;
        at = sse_put(buf, cap, at, "data: ", 6);
        at = sse_put(buf, cap, at, data + start, i - start);
        at = sse_put(buf, cap, at, "\n", 1);
        if (i == data_len)
            break;
        if (data[i] == '\r' && i + 1 < data_len && data[i + 1] == '\n')
            i++;
        i++;        /* past the line end; data ending in one gives "data: \n" */
    }
    return sse_put(buf, cap, at, "\n", 1);
}

/* A frame for len bytes plus the NUL, with one reference. */
static struct sse_frame *
sse_frame_alloc(size_t len)
{
    struct sse_frame *f;

    if (len > SIZE_MAX - sizeof(*f) - 1)
        return NULL;
    if ((f = malloc(sizeof(*f) + len + 1)) == NULL)
        return NULL;
    atomic_init(&f->refcount, 1);
    f->has_id = 0;
    f->event = 0;
    f->ts_ms = 0;
    f->id.ms = 0;
    f->id.seq = 0;
    f->len = len;
    f->bytes[len] = '\0';
    return f;
}

struct sse_frame *
sse_frame_new_event(const struct event_id *id, const char *event,
                    const char *data, size_t data_len)
{
    struct sse_frame *f;
    size_t len;

    /* A line break in the type would start a field of the client's
     * choosing ("id:", "retry:"), so such an event is refused, not
     * repaired. */
    if (event != NULL &&
        (strnlen(event, SSE_EVENT_MAX + 1) > SSE_EVENT_MAX ||
         strpbrk(event, "\r\n") != NULL))
        return NULL;
    len = sse_encode_event(NULL, 0, id, event, data, data_len);
    if ((f = sse_frame_alloc(len)) == NULL)
        return NULL;
    sse_encode_event(f->bytes, len, id, event, data, data_len);
    f->event = 1;
    if (id != NULL) {
        f->has_id = 1;
        f->id = *id;
    }
    return f;
}

struct sse_frame *
sse_frame_new_raw(const char *bytes, size_t len)
{
    struct sse_frame *f = sse_frame_alloc(len);

    if (f != NULL && len > 0)
        memcpy(f->bytes, bytes, len);
    return f;
}

struct sse_frame *
sse_frame_ref(struct sse_frame *f)
{
    /* Relaxed is enough: the caller already holds a reference, so the
     * frame cannot be freed under us, and its bytes never change. */
    atomic_fetch_add_explicit(&f->refcount, 1, memory_order_relaxed);
    return f;
}

void
sse_frame_unref(struct sse_frame *f)
{
    unsigned old;

    if (f == NULL)
        return;
    /* Release orders this thread's reads of the frame before the drop;
     * the acquire fence makes every other thread's reads happen before
     * the free (the pattern of C++ shared_ptr). */
    old = atomic_fetch_sub_explicit(&f->refcount, 1, memory_order_release);
    assert(old > 0 && "frame reference count went below zero");
    if (old == 1) {
        atomic_thread_fence(memory_order_acquire);
        free(f);
    }
}

struct sse_frame *
sse_frame_new_retry(unsigned retry_ms, const char *comment)
{
    char buf[256];
    int n = snprintf(buf, sizeof(buf), "retry: %u\n: %s\n", retry_ms, comment);

    if (n < 0 || (size_t)n >= sizeof(buf))
        return NULL;
    return sse_frame_new_raw(buf, (size_t)n);
}

unsigned
sse_retry_spread(unsigned retry_ms, unsigned long r)
{
    unsigned lo = retry_ms < 100 ? retry_ms : 100;

    return lo + (unsigned)(r % (unsigned long)(retry_ms - lo + 1));
}
