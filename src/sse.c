/* sse.c -- Server-Sent Events framing. Builds each event's bytes once, in
 * one allocation that every recipient shares by reference; the last unref
 * frees it. Pure: no I/O. */
#include <stdlib.h>
#include <string.h>

#include "sse.h"

/* Appends n bytes of s at offset at, writing only what fits in cap; the
 * returned offset keeps counting, so one pass both sizes and fills. */
static size_t
sse_put(char *buf, size_t cap, size_t at, const char *s, size_t n)
{
    if (at < cap)
        memcpy(buf + at, s, at + n <= cap ? n : cap - at);
    return at + n;
}

size_t
sse_encode_event(char *buf, size_t cap, const struct event_id *id,
                 const char *event, const char *data, size_t data_len)
{
    size_t at = 0, i = 0;
    char idbuf[EVENTID_STR_MAX];

    if (id != NULL) {
        int n = eventid_format(id, idbuf, sizeof(idbuf));
        at = sse_put(buf, cap, at, "id: ", 4);
        at = sse_put(buf, cap, at, idbuf, (size_t)n);
        at = sse_put(buf, cap, at, "\n", 1);
    }
    if (event != NULL && event[0] != '\0') {
        at = sse_put(buf, cap, at, "event: ", 7);
        at = sse_put(buf, cap, at, event, strlen(event));
        at = sse_put(buf, cap, at, "\n", 1);
    }
    /* One "data:" line per line of data; the SSE parser splits on CRLF,
     * LF and CR alike, so must we, or a CR would end the line early. */
    do {
        size_t start = i;
        while (i < data_len && data[i] != '\n' && data[i] != '\r')
            i++;
        at = sse_put(buf, cap, at, "data: ", 6);
        at = sse_put(buf, cap, at, data + start, i - start);
        at = sse_put(buf, cap, at, "\n", 1);
        if (i < data_len) {
            if (data[i] == '\r' && i + 1 < data_len && data[i + 1] == '\n')
                i++;
            i++;
            if (i == data_len) {
                at = sse_put(buf, cap, at, "data: \n", 7);
                break;
            }
        }
    } while (i < data_len);
    return sse_put(buf, cap, at, "\n", 1);
}

static struct sse_frame *
sse_frame_alloc(size_t len)
{
    struct sse_frame *f = malloc(sizeof(*f) + len + 1);
    if (f == NULL)
        return NULL;
    atomic_init(&f->refcount, 1);
    f->has_id = 0;
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

    if (event != NULL && (strlen(event) > SSE_EVENT_MAX || strpbrk(event, "\r\n")))
        return NULL;
    len = sse_encode_event(NULL, 0, id, event, data, data_len);
    if ((f = sse_frame_alloc(len)) == NULL)
        return NULL;
    sse_encode_event(f->bytes, len, id, event, data, data_len);
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
    if (f != NULL)
        memcpy(f->bytes, bytes, len);
    return f;
}

struct sse_frame *
sse_frame_ref(struct sse_frame *f)
{
    atomic_fetch_add(&f->refcount, 1);
    return f;
}

void
sse_frame_unref(struct sse_frame *f)
{
    if (f != NULL && atomic_fetch_sub(&f->refcount, 1) == 1)
        free(f);
}
