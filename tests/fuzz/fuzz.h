/* fuzz.h -- what the libFuzzer targets in tests/fuzz/ share: a check that
 * turns a broken invariant into a crash libFuzzer keeps, and a reader of
 * SSE frames as a browser's EventSource parses them (WHATWG HTML, "event
 * stream interpretation"), so a target can check what a client would see
 * rather than the bytes. Header-only: each target is one program. */
#ifndef SSEGATE_FUZZ_H
#define SSEGATE_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A broken invariant is a finding like a sanitizer report: abort, and
 * libFuzzer saves the input as a crash. */
#define FUZZ_CHECK(cond)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__,        \
                    __LINE__, #cond);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)

/* The input as an allocation of exactly its size, so ASan sees any read
 * past it (libFuzzer's own buffer may be larger); with_nul adds a NUL
 * after it, for parsers of C strings. The caller frees it. */
static inline char *
fuzz_copy(const uint8_t *data, size_t size, int with_nul)
{
    char *p = malloc(size + (with_nul ? 1 : 0) + (size == 0 && !with_nul));

    FUZZ_CHECK(p != NULL);
    if (size > 0)
        memcpy(p, data, size);
    if (with_nul)
        p[size] = '\0';
    return p;
}

/* One event as EventSource dispatches it. Strings are NUL-terminated
 * copies bounded by the frame they came from. */
struct fuzz_sse_event {
    char *id;           /* NULL: no id field */
    char *type;         /* NULL: no event field ("message") */
    char *data;         /* data lines joined by "\n" */
    size_t data_len;
    int ndata;          /* how many data fields */
};

static inline void
fuzz_sse_event_clear(struct fuzz_sse_event *e)
{
    free(e->id);
    free(e->type);
    free(e->data);
    memset(e, 0, sizeof(*e));
}

static inline char *
fuzz_strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);

    FUZZ_CHECK(p != NULL);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* Reads the frame (len bytes) as an event stream. Returns how many events
 * a client would dispatch; the first is left in *ev (the caller clears
 * it). Comment lines are skipped; a field is "name: value" or "name:value"
 * or a bare "name". */
static inline int
fuzz_sse_parse(const char *f, size_t len, struct fuzz_sse_event *ev)
{
    struct fuzz_sse_event cur = { 0 };
    int dispatched = 0;
    size_t i = 0;

    memset(ev, 0, sizeof(*ev));
    while (i < len) {
        size_t start = i, n, colon;
        const char *line, *val;
        size_t vlen;

        while (i < len && f[i] != '\n' && f[i] != '\r')
            i++;
        if (i == len)
            break;          /* an unterminated last line is never read */
        line = f + start;
        n = i - start;
        if (f[i] == '\r' && i + 1 < len && f[i + 1] == '\n')
            i++;
        i++;
        if (n == 0) {       /* blank line: dispatch */
            if (cur.ndata > 0) {
                if (dispatched++ == 0)
                    *ev = cur;
                else
                    fuzz_sse_event_clear(&cur);
            } else {
                fuzz_sse_event_clear(&cur);
            }
            memset(&cur, 0, sizeof(cur));
            continue;
        }
        if (line[0] == ':')
            continue;
        for (colon = 0; colon < n && line[colon] != ':'; colon++)
            ;
        val = colon < n ? line + colon + 1 : line + n;
        vlen = colon < n ? n - colon - 1 : 0;
        if (vlen > 0 && val[0] == ' ') {
            val++;
            vlen--;
        }
        if (colon == 4 && memcmp(line, "data", 4) == 0) {
            char *d = malloc(cur.data_len + vlen + 2);

            FUZZ_CHECK(d != NULL);
            if (cur.data_len > 0)
                memcpy(d, cur.data, cur.data_len);
            memcpy(d + cur.data_len, val, vlen);
            d[cur.data_len + vlen] = '\n';
            d[cur.data_len + vlen + 1] = '\0';
            free(cur.data);
            cur.data = d;
            cur.data_len += vlen + 1;
            cur.ndata++;
        } else if (colon == 5 && memcmp(line, "event", 5) == 0) {
            free(cur.type);
            cur.type = fuzz_strndup(val, vlen);
        } else if (colon == 2 && memcmp(line, "id", 2) == 0) {
            free(cur.id);
            cur.id = fuzz_strndup(val, vlen);
        }
    }
    fuzz_sse_event_clear(&cur);     /* an event never ended is not dispatched */
    if (dispatched > 0 && ev->data_len > 0)
        ev->data[--ev->data_len] = '\0';    /* the last "\n" is removed */
    return dispatched;
}

/* data (len bytes) with every CRLF and lone CR made LF: what a client
 * reads back from data lines split at each. */
static inline char *
fuzz_sse_lines(const char *data, size_t len, size_t *out_len)
{
    char *p = malloc(len + 1);
    size_t n = 0;

    FUZZ_CHECK(p != NULL);
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\r') {
            if (i + 1 < len && data[i + 1] == '\n')
                i++;
            p[n++] = '\n';
        } else {
            p[n++] = data[i];
        }
    }
    p[n] = '\0';
    *out_len = n;
    return p;
}

#endif
