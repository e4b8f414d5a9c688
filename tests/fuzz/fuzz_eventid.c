/* fuzz_eventid.c -- libFuzzer target: a client's resume id (the
 * Last-Event-ID header, or lastEventId in the query) as api.c reads it:
 * eventid_parse, and for an id that is not ours the safe form quoted in
 * the gap event (eventid_show_foreign). Checks that an accepted id
 * formats and parses back to itself and orders consistently, and that a
 * foreign id is shown as a short string JSON and a log line can hold.
 *
 * fuzz-sources: src/eventid.c src/sse.c
 * fuzz-libs:
 * fuzz-covers: src/eventid.c
 */
#include <stdint.h>
#include <string.h>

#include "eventid.h"
#include "fuzz.h"
#include "sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_parsed(const char *s, size_t len, const struct event_id *id)
{
    char buf[EVENTID_STR_MAX];
    struct event_id back, next;
    int n = eventid_format(id, buf, sizeof(buf));

    FUZZ_CHECK(n > 0 && (size_t)n < sizeof(buf));
    FUZZ_CHECK(eventid_parse(buf, (size_t)n, &back) == 0);
    FUZZ_CHECK(eventid_cmp(&back, id) == 0);
    /* Only digits and one dash: the id goes into "id:" lines and Redis
     * commands as it is. */
    for (size_t i = 0; i < len; i++)
        FUZZ_CHECK((s[i] >= '0' && s[i] <= '9') || s[i] == '-');
    /* Ordering: the next id is after this one (unless at the very end). */
    next = *id;
    if (next.seq < UINT64_MAX) {
        next.seq++;
        FUZZ_CHECK(eventid_cmp(id, &next) < 0 && eventid_cmp(&next, id) > 0);
    }
    /* A frame with this id carries exactly it. */
    {
        struct sse_frame *f = sse_frame_new_event(id, "t", "{}", 2);
        struct fuzz_sse_event ev;

        FUZZ_CHECK(f != NULL && f->has_id && eventid_cmp(&f->id, id) == 0);
        FUZZ_CHECK(fuzz_sse_parse(f->bytes, f->len, &ev) == 1);
        FUZZ_CHECK(ev.id != NULL && strcmp(ev.id, buf) == 0);
        fuzz_sse_event_clear(&ev);
        sse_frame_unref(f);
    }
}

static void
check_foreign(const char *raw)
{
    char out[EVENTID_FOREIGN_MAX + 1], small[8];
    size_t n;

    memset(out, 'x', sizeof(out));
    eventid_show_foreign(raw, out, sizeof(out));
    n = strlen(out);
    FUZZ_CHECK(n <= EVENTID_FOREIGN_MAX && n <= strlen(raw));
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];

        FUZZ_CHECK(c >= 0x20 && c < 0x7f && c != '"' && c != '\\');
        FUZZ_CHECK(c == (unsigned char)raw[i] || c == '?');
    }
    eventid_show_foreign(raw, small, sizeof(small));
    FUZZ_CHECK(strlen(small) < sizeof(small) && strncmp(small, out, strlen(small)) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A header or query value is a C string: api.c reads strlen bytes. */
    char *s = fuzz_copy(data, size, 1);
    size_t len = strlen(s);
    struct event_id id = { 123, 456 }, other;

    if (eventid_parse(s, len, &id) == 0) {
        check_parsed(s, len, &id);
    } else {
        FUZZ_CHECK(id.ms == 123 && id.seq == 456);     /* untouched */
        check_foreign(s);
    }
    /* The exact-length form (a value with bytes after a NUL) never reads
     * past its length. */
    free(s);
    s = fuzz_copy(data, size, 0);
    if (eventid_parse(s, size, &other) == 0)
        FUZZ_CHECK(memchr(s, '\0', size) == NULL);
    free(s);
    return 0;
}
