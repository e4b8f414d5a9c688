/* fuzz_body.c -- libFuzzer target: REST request bodies (body.c over
 * strictjson.c). The first byte picks the parser (POST /events,
 * /accounts, /accounts/ID/snapshots), the rest is the body. Checks that
 * every accepted body holds only what the API promises, that every
 * refusal names a documented error, and, for an event, that the
 * envelope built from it reads back through the channel parser and
 * reaches a client as one event of the right type and user.
 *
 * fuzz-sources: src/body.c src/strictjson.c src/envelope.c src/eventid.c src/sse.c src/topic.c
 * fuzz-libs: json-c
 * fuzz-covers: src/body.c src/strictjson.c
 */
#include <json-c/json.h>
#include <stdint.h>
#include <string.h>

#include "body.h"
#include "envelope.h"
#include "fuzz.h"
#include "sse.h"
#include "topic.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_error(const struct body_error *e)
{
    static const char *const codes[] = { "invalid_json", "invalid_field", "missing_field",
                                         "unknown_field", "reserved_type", "out_of_memory", NULL };
    const char *const *c = codes;

    FUZZ_CHECK(memchr(e->code, '\0', sizeof(e->code)) != NULL);
    FUZZ_CHECK(memchr(e->message, '\0', sizeof(e->message)) != NULL);
    while (*c != NULL && strcmp(*c, e->code) != 0)
        c++;
    FUZZ_CHECK(*c != NULL);
    FUZZ_CHECK(e->message[0] != '\0');
}

/* A strict reading of text as one JSON value, nothing after it. */
static int
json_text_valid(const char *s, size_t len)
{
    json_tokener *tok = json_tokener_new_ex(64);
    json_object *o;
    int ok;

    FUZZ_CHECK(tok != NULL);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    o = json_tokener_parse_ex(tok, s, (int)len);
    ok = json_tokener_get_error(tok) == json_tokener_success &&
         json_tokener_get_parse_end(tok) == len;
    /* A bare number at the end of input needs the end to be known. */
    if (!ok && json_tokener_get_error(tok) == json_tokener_continue) {
        json_object_put(o);
        o = json_tokener_parse_ex(tok, "", 1);
        ok = json_tokener_get_error(tok) == json_tokener_success;
    }
    json_object_put(o);
    json_tokener_free(tok);
    return ok;
}

/* What write.lua publishes: {"id":"<id>",<rest>. */
static void
check_envelope(const struct event_input *in)
{
    static const struct event_id id = { 1732484473123ULL, 7 };
    int topic = in->topic[0] != '\0';
    char *rest = topic ? envelope_build_topic_rest(in->type, in->topic, in->data_json,
                                                   in->data_len, "fuzz-1", 1732484473123LL)
                       : envelope_build_rest(in->type, in->user_id, in->data_json, in->data_len,
                                             "fuzz-1", 1732484473123LL);
    char *msg;
    size_t len;
    struct envelope_view v;
    char err[128];
    struct sse_frame *f;
    struct fuzz_sse_event ev;

    FUZZ_CHECK(rest != NULL);
    len = strlen(rest) + 30;
    msg = malloc(len);
    FUZZ_CHECK(msg != NULL);
    len = (size_t)snprintf(msg, len, "{\"id\":\"1732484473123-7\",%s", rest);
    free(rest);
    FUZZ_CHECK((topic ? envelope_parse_topic(msg, len, &v, err, sizeof(err))
                      : envelope_parse(msg, len, &v, err, sizeof(err))) == 0);
    FUZZ_CHECK(topic || strcmp(v.user_id, in->user_id) == 0);
    FUZZ_CHECK(strcmp(v.type, in->type) == 0);
    FUZZ_CHECK(strcmp(v.server_id, "fuzz-1") == 0);
    FUZZ_CHECK(v.has_id && eventid_cmp(&v.id, &id) == 0);
    /* One line: the frame carries it as one data line, and the client
     * gets the envelope back byte for byte. */
    FUZZ_CHECK(memchr(msg, '\n', len) == NULL && memchr(msg, '\r', len) == NULL);
    f = sse_frame_new_event(&v.id, v.type, msg, len);
    FUZZ_CHECK(f != NULL);
    FUZZ_CHECK(fuzz_sse_parse(f->bytes, f->len, &ev) == 1);
    FUZZ_CHECK(ev.ndata == 1 && ev.data_len == len && memcmp(ev.data, msg, len) == 0);
    FUZZ_CHECK(strcmp(ev.type, in->type) == 0 && strcmp(ev.id, "1732484473123-7") == 0);
    fuzz_sse_event_clear(&ev);
    sse_frame_unref(f);
    free(msg);
}

static void
fuzz_event(const char *buf, size_t len)
{
    struct event_input in;
    struct body_error e;

    if (body_parse_event(buf, len, &in, &e) == -1) {
        FUZZ_CHECK(in.data_json == NULL);
        check_error(&e);
        return;
    }
    /* Exactly one of a user and a topic (issue: topics). */
    FUZZ_CHECK((in.user_id[0] != '\0') != (in.topic[0] != '\0'));
    FUZZ_CHECK(in.user_id[0] != '\0' ? body_user_id_valid(in.user_id, strlen(in.user_id))
                                      : topic_name_valid(in.topic, strlen(in.topic)));
    FUZZ_CHECK(envelope_type_valid(in.type, strlen(in.type)));
    FUZZ_CHECK(in.data_json != NULL && strlen(in.data_json) == in.data_len);
    FUZZ_CHECK(json_text_valid(in.data_json, in.data_len));
    check_envelope(&in);
    event_input_clear(&in);
}

/* Counts the code points of UTF-8 as body.c reads it, or returns -1.
 * Not checked (yet): json-c 0.16's VALIDATE_UTF8 lets overlong forms
 * ("e0 80 af"), encoded surrogates ("ed a0 80") and code points past
 * U+10FFFF ("f4 90 80 80") through, and body.c accepts them in a name. */
static long
utf8_chars(const unsigned char *s, size_t n)
{
    long chars = 0;

    for (size_t i = 0; i < n; chars++) {
        unsigned char b = s[i];
        size_t extra = b < 0x80 ? 0 : b >= 0xf0 ? 3 : b >= 0xe0 ? 2 : 1;
        unsigned long cp;

        if ((b >= 0x80 && b < 0xc2) || b > 0xf4 || extra > n - i - 1)
            return -1;
        cp = b & (extra == 0 ? 0x7fu : 0x3fu >> extra);
        for (size_t k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return -1;
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            return -1;
        i += extra + 1;
    }
    return chars;
}

static void
fuzz_account(const char *buf, size_t len)
{
    struct account_input in;
    struct body_error e;
    long chars;

    if (body_parse_account(buf, len, &in, &e) == -1) {
        check_error(&e);
        return;
    }
    FUZZ_CHECK(memchr(in.name, '\0', sizeof(in.name)) != NULL);
    chars = utf8_chars((const unsigned char *)in.name, strlen(in.name));
    FUZZ_CHECK(chars >= 1 && chars <= BODY_NAME_MAX_CHARS);
    FUZZ_CHECK(in.balance >= 0 && in.balance <= BODY_BALANCE_MAX);
}

static void
fuzz_snapshot(const char *buf, size_t len)
{
    struct snapshot_input in;
    struct body_error e;

    if (body_parse_snapshot(buf, len, &in, &e) == -1) {
        check_error(&e);
        return;
    }
    FUZZ_CHECK(!in.has_balance || (in.balance >= 0 && in.balance <= BODY_BALANCE_MAX));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf;

    if (size == 0 || size - 1 > BODY_MAX_BYTES)
        return 0;
    buf = fuzz_copy(data + 1, size - 1, 0);
    switch (data[0] % 3) {
    case 0:
        fuzz_event(buf, size - 1);
        break;
    case 1:
        fuzz_account(buf, size - 1);
        break;
    default:
        fuzz_snapshot(buf, size - 1);
        break;
    }
    free(buf);
    return 0;
}
