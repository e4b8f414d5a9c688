/* fuzz_envelope.c -- libFuzzer target: a message on the Redis channel
 * (anyone who can PUBLISH there writes it), read by envelope_parse and
 * framed for every matching stream as the subscriber does. Checks that
 * what envelope_parse accepts is sane and that a client reads the
 * message back whole, as one event of the parsed type and id.
 *
 * fuzz-sources: src/envelope.c src/strictjson.c src/eventid.c src/sse.c src/topic.c
 * fuzz-libs: json-c
 * fuzz-covers: src/envelope.c:envelope_parse src/strictjson.c
 */
#include <stdint.h>
#include <string.h>

#include "envelope.h"
#include "eventid.h"
#include "fuzz.h"
#include "sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *msg = fuzz_copy(data, size, 0);
    struct envelope_view v;
    char err[128];
    struct sse_frame *f;
    struct fuzz_sse_event ev;
    char idbuf[EVENTID_STR_MAX];
    char *want;
    size_t want_len, n;

    memset(err, 'x', sizeof(err));
    if (envelope_parse(msg, size, &v, err, sizeof(err)) == -1) {
        FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
        FUZZ_CHECK(err[0] != '\0');
        free(msg);
        return 0;
    }
    /* The userId becomes a hub key and a log field. */
    n = strlen(v.user_id);
    FUZZ_CHECK(n > 0 && n <= ENVELOPE_USER_MAX);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK((unsigned char)v.user_id[i] >= 0x20 && v.user_id[i] != 0x7f);
    FUZZ_CHECK(envelope_type_valid(v.type, strlen(v.type)));
    FUZZ_CHECK(strlen(v.server_id) <= ENVELOPE_SERVER_MAX);
    if (v.has_id) {
        struct event_id back;
        int len = eventid_format(&v.id, idbuf, sizeof(idbuf));

        FUZZ_CHECK(len > 0);
        FUZZ_CHECK(eventid_parse(idbuf, (size_t)len, &back) == 0);
        FUZZ_CHECK(eventid_cmp(&back, &v.id) == 0);
    }

    /* The subscriber's frame: the message itself is the data. */
    f = sse_frame_new_event(v.has_id ? &v.id : NULL, v.type, msg, size);
    FUZZ_CHECK(f != NULL);
    FUZZ_CHECK(f->len == strlen(f->bytes) || memchr(msg, '\0', size) != NULL);
    FUZZ_CHECK(f->len >= 2 && memcmp(f->bytes + f->len - 2, "\n\n", 2) == 0);
    FUZZ_CHECK(fuzz_sse_parse(f->bytes, f->len, &ev) == 1);
    want = fuzz_sse_lines(msg, size, &want_len);
    FUZZ_CHECK(ev.data_len == want_len && memcmp(ev.data, want, want_len) == 0);
    FUZZ_CHECK(ev.type != NULL && strcmp(ev.type, v.type) == 0);
    if (v.has_id)
        FUZZ_CHECK(ev.id != NULL && strcmp(ev.id, idbuf) == 0);
    else
        FUZZ_CHECK(ev.id == NULL);
    free(want);
    fuzz_sse_event_clear(&ev);
    sse_frame_unref(f);
    free(msg);
    return 0;
}
